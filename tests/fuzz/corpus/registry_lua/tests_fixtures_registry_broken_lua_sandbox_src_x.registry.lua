local ok = io == nil and os == nil and require == nil and load == nil and dofile == nil
return { namespace = "app", entries = { { name = "probe", kind = "registry.entry", sandboxed = ok } } }
