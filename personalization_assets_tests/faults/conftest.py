import dagster as dg
import pytest

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
