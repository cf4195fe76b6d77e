return {
  namespace = "app",
  entries = { name = = 1 },
}
