f(function(cb: (err: string?) -> ()) end)
