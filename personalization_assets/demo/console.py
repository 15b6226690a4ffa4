"""The demo's console: only what a demo user can act on."""

from __future__ import annotations

import warnings


def hide_library_warnings() -> None:
    """Drop warnings raised inside installed libraries (Dagster's BetaWarning on `backfill_policy`
    and the like) from the console: they are for the developers, a demo user can do nothing about
    them. Warnings from the project's own code still show."""
    show = warnings.showwarning

    def _show(message, category, filename, lineno, file=None, line=None):
        if "site-packages" in filename or "dist-packages" in filename:
            return
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = _show
