"""Every bus test closes what it opens (see personalization_assets_tests/leaks.py)."""

from personalization_assets_tests.leaks import closing, no_leaked_bus_thread  # noqa: F401 - fixtures
