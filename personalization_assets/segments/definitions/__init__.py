"""Built-in segment definitions (YAML, package data)."""
