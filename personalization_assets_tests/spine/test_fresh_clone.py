"""A fresh clone of the committed HEAD, with nothing beside it, runs the real-data tests under CI=true.

This is what a new user's checkout sees: no `../shared/data`, no `.data/`, no installed copy of its own
code in charge. The venv's editable install points at the original checkout, so a probe test written
into the clone proves that every project module the run imported came from the clone itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from personalization_assets_tests.conftest import REPO_ROOT, require_tool, unavailable

# Every test that once read ../shared/data (whole files where all of it did), and the test that
# loads the whole Definitions. The property-based tests beside them need no data and stay out.
REAL_DATA = {
    "quality/test_field_data.py": [],
    "quality/test_events.py": ["test_snowplow_payloads_map_or_report_reason"],
    "marts/test_clv.py": [],
    "marts/test_rfm_online_retail.py": [],
    "normalize/test_email.py": ["test_labelled_cases_agree_with_their_labels",
                                "test_is_email_suite_errors_are_rejected_unless_only_surrounding_whitespace_was_wrong",
                                "test_disposable_flag_uses_the_same_list_as_the_published_one"],
    "normalize/test_money.py": ["test_minor_units_of_every_iso_4217_currency_agree_with_the_six_table",
                                "test_online_retail_prices_in_gbp_add_up_to_the_exact_revenue"],
    "normalize/test_phone.py": ["test_every_format_of_every_example_number_gives_the_same_e164",
                                "test_a_number_written_internationally_ignores_the_default_region",
                                "test_the_compiled_region_check_agrees_with_phonenumbers_on_every_example",
                                "test_the_international_fast_path_agrees_with_phonenumbers_on_every_example",
                                "test_the_national_fast_path_agrees_with_phonenumbers_on_every_example"],
    "normalize/test_countries.py": ["test_every_online_retail_country_is_a_code_or_an_explicit_unknown",
                                    "test_every_iso_code_and_name_maps_to_itself"],
    "identity/test_febrl_smoke.py": [],
    "spine/test_definitions.py": [],
}
SUBSET = [f"personalization_assets_tests/{path}" + (f"::{test}" if test else "")
          for path, tests in REAL_DATA.items() for test in (tests or [None])]
PROBE_NAME = "personalization_assets_tests/test_imported_from_this_clone.py"
PROBE = '''"""Written by spine/test_fresh_clone.py into a fresh clone: runs last, after the subset."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_project_module_comes_from_this_clone():
    import personalization_assets.definitions  # noqa: F401  (the whole code location, if not yet)
    project = {name: module for name, module in sys.modules.items()
               if name.split(".")[0] in ("personalization_assets", "personalization_assets_tests")}
    assert "personalization_assets_tests.conftest" in project
    for name, module in project.items():
        files = [module.__file__] if getattr(module, "__file__", None) else list(getattr(module, "__path__", []))
        assert files and all(Path(f).resolve().is_relative_to(ROOT) for f in files), (name, files)
'''


def test_a_fresh_clone_runs_the_real_data_tests_with_nothing_beside_it(tmp_path, tmp_path_factory):
    git = require_tool("git")
    if not (REPO_ROOT / ".git").exists():
        unavailable(f"{REPO_ROOT} is not a git checkout", "run the suite from a clone of the repository")
    clone = tmp_path / "clone"
    subprocess.run([git, "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone"]  # no shared/ beside it
    (clone / PROBE_NAME).write_text(PROBE)
    report = tmp_path_factory.mktemp("report") / "junit.xml"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PERSONALIZATION_", "DAGSTER_")) and k != "PYTHONPATH"}
    env["CI"] = "true"  # a missing dataset, service or tool fails instead of skipping

    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                          *SUBSET, PROBE_NAME], cwd=clone, env=env, capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert {k: int(suite.get(k)) for k in ("failures", "errors", "skipped")} == {
        "failures": 0, "errors": 0, "skipped": 0}, run.stdout[-3000:]
    ran = {(case.get("classname"), case.get("name")) for case in suite.iter("testcase")}
    for path, test in [*(node.partition("::")[::2] for node in SUBSET), (PROBE_NAME, "")]:
        module = path.removesuffix(".py").replace("/", ".")
        assert any(m == module and (not test or name == test) for m, name in ran), f"{path}::{test} did not run"
