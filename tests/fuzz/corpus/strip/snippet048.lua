function f(): ...any end
