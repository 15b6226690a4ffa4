"""Errors shared by the command-line tools."""


class UserError(Exception):
    """An expected failure of a command: `personalization` prints it as one line and exits 1."""
