"""Built-in backends (each in its own module) and the torch plugin."""
