local r: {[string]: any} = {}
