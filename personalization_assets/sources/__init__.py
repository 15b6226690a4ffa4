"""Clients for the systems the platform ingests from. Plain Python, no Dagster."""


class SourceError(RuntimeError):
    """A source could not be read. The message names the source and the cause."""

    def __init__(self, source: str, cause: str):
        super().__init__(f"{source}: {cause}")
        self.source = source
        self.cause = cause
