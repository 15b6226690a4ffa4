"""A missing system tool skips its tests with the way to get it, and fails them under CI=true."""

import pytest

from personalization_assets_tests.conftest import require_tool


def test_a_present_tool_gives_its_path():
    assert require_tool("git").endswith("/git")


def test_a_missing_tool_skips_with_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    how = r"promtool not found on PATH: install it with apt-get install -y prometheus$"
    with pytest.raises(pytest.skip.Exception, match=how):
        require_tool("promtool")


def test_a_missing_tool_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"prometheus not found on PATH: .*\(under CI=true this test must run, not skip\)"):
        require_tool("prometheus")
