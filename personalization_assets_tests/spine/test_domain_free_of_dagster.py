"""Domain logic is plain Python: only the Dagster shells may import Dagster (house style, issue 22).

Every module of `personalization_assets` is parsed (not imported) and each `import` statement is
read, including the ones inside functions, so a lazy `import dagster` counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "personalization_assets"

# The Dagster shells, by path relative to the package: a folder (ending in /) or a module.
SHELLS = {
    "assets/": "the asset, check, sensor and job layers",
    "resources/": "the resources per deployment (warehouse, io_manager, snowflake_io, snowflake_session, pool, ...)",
    "definitions.py": "the one dg.Definitions",
    "cli.py": "`personalization`: registers every command, the Dagster ones too (demo, ui, up, exporter)",
    "sensors.py": "sensors",
    "schedules.py": "schedules",
    "partitions.py": "the partition definitions and their run tags",
    "live.py": "`personalization up`: starts `dagster dev` beside the services",
    "demo/run.py": "`personalization demo`: materializes the graph on the demo's instance",
    "demo/progress.py": "the demo's per-layer progress, read from the run's Dagster events",
    "demo/state.py": "the demo's Dagster instance (cursors reset by --fresh)",
    "monitoring/exporter.py": "the pipeline exporter: reads materializations from the Dagster instance",
}
# Domain modules that still import a shell module (at the top or inside a function), so they can
# load Dagster indirectly. The plain warehouse connection is `personalization_assets/warehouse.py`.
# Remove a line when it is fixed; add none.
REACHES_A_SHELL: set[str] = set()
SHELL_MODULES = tuple(s.rstrip("/").removesuffix(".py").replace("/", ".") for s in SHELLS)


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _is_shell(rel: str) -> bool:
    return any(rel.startswith(s) if s.endswith("/") else rel == s for s in SHELLS)


def _domain_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not _is_shell(_relative(p)))


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if node.module else [alias.name for alias in node.names]
            out += [(node.lineno, name, node.level) for name in names]
    return out


def _absolute(path: Path, module: str, level: int) -> str:
    """`from ..resources import x` in personalization_assets/quality/y.py -> resources (package-relative)."""
    if level == 0:
        prefix = "personalization_assets."
        return module[len(prefix):] if module.startswith(prefix) else ""
    parts = list(path.relative_to(PACKAGE).parent.parts)
    base = parts[:len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*base, module])


def test_the_listed_shells_exist():
    for shell in SHELLS:
        assert (PACKAGE / shell).exists(), f"{shell} is listed as a Dagster shell but is gone: remove it from SHELLS"


def test_no_domain_module_imports_dagster():
    offenders = [f"{_relative(p)}:{line}: import {module}" for p in _domain_modules()
                 for line, module, level in _imports(p)
                 if level == 0 and (module == "dagster" or module.startswith(("dagster.", "dagster_")))]
    assert len(_domain_modules()) > 100  # the scan sees the package
    assert not offenders, ("domain modules import Dagster; move that half to assets/ (or list a real "
                           "Dagster shell in SHELLS):\n" + "\n".join(offenders))


def test_no_new_domain_module_reaches_a_shell():
    reaching = set()
    for p in _domain_modules():
        for _, module, level in _imports(p):
            target = _absolute(p, module, level)
            if any(target == m or target.startswith(m + ".") for m in SHELL_MODULES):
                reaching.add(_relative(p))
    assert reaching - REACHES_A_SHELL == set(), "new domain modules import a Dagster shell module"
    assert REACHES_A_SHELL - reaching == set(), "fixed: remove these from REACHES_A_SHELL"
