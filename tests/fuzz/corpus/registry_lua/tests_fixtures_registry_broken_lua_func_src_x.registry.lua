return { namespace = "app", entries = { { name = "f", kind = "registry.entry", fn = function() end } } }
