local x: {string} = {}
