function f(): () -> () end
