import dagster as dg
import pytest

from .deadline import default_signal_handlers
from .harness import environment


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """The same Dagster home and warehouse for the test process and the children it kills."""
    values = environment(tmp_path)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def instance(env):
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture(autouse=True)
def _foreground_signal_handlers():
    """SIGINT and SIGTERM as in a foreground process, whatever shell started pytest: ignored, they
    hold every in-process run in a thread up by 60 s, then fail it (`deadline.py` says why)."""
    with default_signal_handlers():
        yield
