"""Every audiences test closes the buses it opens (see personalization_assets_tests/leaks.py)."""

from personalization_assets_tests.leaks import no_leaked_bus_thread  # noqa: F401 - autouse fixture
