return { entries = {} }
