"""deploy/docker-compose.yml is a valid Compose file, checked as `docker compose config` checks it:
against the Compose Specification's JSON Schema (vendored), after interpolating `${VAR...}`."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from personalization_assets import settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "personalization_assets_tests/fixtures/compose-spec/compose-spec.json").read_text())
COMPOSE = (ROOT / "deploy/docker-compose.yml").read_text()
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation rules; a missing `:?` variable is an error naming it, as in compose."""
    def value(m: re.Match) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        got = env.get(name)
        if op in (":?", "?") and (got is None or (op == ":?" and got == "")):
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and (got is None or (op == ":-" and got == "")):
            return arg
        return got or ""
    return VARIABLE.sub(value, text)


def required_variables(text: str) -> set[str]:
    return {m["name"] for m in VARIABLE.finditer(text) if m["op"] in (":?", "?")}


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(SCHEMA)


def filled() -> dict:
    env = {name: f"value-of-{name.lower()}" for name in required_variables(COMPOSE)}
    return yaml.safe_load(interpolate(COMPOSE, env))


def test_the_compose_file_is_valid_against_the_compose_specification():
    errors = sorted(validator().iter_errors(filled()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_it_asks_for_every_setting_prod_requires_and_runs_the_services_the_instance_needs():
    needed = required_variables(COMPOSE)
    missing = [n for n in settings.PROD_REQUIRED if n not in needed and n not in COMPOSE]
    assert missing == [], f"deploy/docker-compose.yml never sets {missing}"
    services = filled()["services"]
    assert {"dagster_postgres", "personalization_code", "dagster_webserver", "dagster_daemon"} <= set(services)
    with pytest.raises(KeyError, match="SNOWFLAKE_ACCOUNT"):  # as `docker compose config` refuses it
        interpolate(COMPOSE, {n: "x" for n in required_variables(COMPOSE) if n != "SNOWFLAKE_ACCOUNT"})


@pytest.mark.parametrize("break_it, where", [
    (lambda doc: doc["services"]["dagster_webserver"].update(enviroment={"A": "1"}), "enviroment"),  # a typo
    (lambda doc: doc["services"]["dagster_daemon"].update(restart=["on-failure"]), "restart"),
    (lambda doc: doc["services"]["dagster_postgres"]["healthcheck"].update(intervall="5s"), "intervall"),
    (lambda doc: doc["services"]["dagster_webserver"].update(depends_on={"dagster_postgres": {"condition": "healthy"}}),
     "condition"),
])
def test_the_check_catches_a_broken_file(break_it, where):
    doc = copy.deepcopy(filled())
    break_it(doc)
    messages = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator().iter_errors(doc)]
    assert messages and any(where in m for m in messages), messages
