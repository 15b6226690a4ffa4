"""Every option of every `personalization` command has help text that shows its default, and
`personalization --version` names the installed version."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version

from personalization_assets.cli import build_parser


def _commands(parser: argparse.ArgumentParser, name: str = "personalization"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _commands(sub, f"{name} {sub_name}")


def _rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's help as `--help` prints it (argparse fills in %(default)s and, with
    ArgumentDefaultsHelpFormatter, appends the default)."""
    return parser._get_formatter()._expand_help(action)


def test_every_option_has_help_that_shows_its_default():
    problems, options, walked = [], 0, set()
    for command, parser in _commands(build_parser()):
        walked.add(command)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            options += 1
            where = f"{command} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                problems.append(f"{where}: no help")
                continue
            if action.required or not action.option_strings:
                continue  # a required option or a positional argument has no default to show
            shown = _rendered_help(parser, action)
            if "default" not in shown.lower() and not (action.default not in (None, "", False, [])
                                                       and str(action.default) in shown):
                problems.append(f"{where}: the default ({action.default!r}) is not shown in {shown!r}")
    assert {f"personalization {c}" for c in ("demo", "ui", "collector", "exporter", "triggers", "deliver", "up",
                                             "forget", "identity link", "lift", "audience preview")} <= walked
    assert options > 60, options
    assert not problems, "\n".join(problems)


def test_version_prints_the_installed_version():
    out = subprocess.run([sys.executable, "-m", "personalization_assets.cli", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"personalization {version('personalization-assets')}"
