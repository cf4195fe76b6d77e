type Mode = "a" | "b"
