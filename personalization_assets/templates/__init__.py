"""Example Jinja2 e-mail templates (package data)."""
