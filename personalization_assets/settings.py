"""Where the platform keeps its local files, and which deployment is active.

Everything is read when called, never at import, so tests and the CLI can point a process at a
temporary directory by setting the environment first.
"""

import os
from pathlib import Path

DEFAULT_DATA_DIR = ".data"


def deployment() -> str:
    """`local` (embedded DuckDB, the default) or `prod` (Snowflake)."""
    name = os.environ.get("DAGSTER_DEPLOYMENT", "local").strip().lower() or "local"
    if name not in {"local", "prod"}:
        raise ValueError(f"DAGSTER_DEPLOYMENT must be 'local' or 'prod', not {name!r}")
    return name


def automation_running() -> bool:
    """Whether the automation sensor and the schedules start running (`PERSONALIZATION_AUTOMATION`:
    `running` or `stopped`). Locally they run unless stopped; in prod nothing starts unless the
    deployment says `running`, so a new Snowflake deployment does not begin writing by surprise."""
    value = os.environ.get("PERSONALIZATION_AUTOMATION", "").strip().lower()
    if value not in {"", "running", "stopped"}:
        raise ValueError(f"PERSONALIZATION_AUTOMATION must be 'running' or 'stopped', not {value!r}")
    return value == "running" or (not value and deployment() == "local")


def data_dir() -> Path:
    """Root of the embedded warehouse, event bus and demo sources (`PERSONALIZATION_DATA_DIR`)."""
    return Path(os.environ.get("PERSONALIZATION_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def warehouse_path() -> Path:
    return Path(os.environ.get("PERSONALIZATION_DUCKDB_PATH", data_dir() / "warehouse.duckdb"))


def crm_url() -> str:
    """SQLAlchemy URL of the CRM database; the demo seeds a SQLite file."""
    return os.environ.get("CRM_DATABASE_URL", f"sqlite:///{data_dir() / 'crm.sqlite'}")


def event_bus_url() -> str:
    return os.environ.get("EVENT_BUS_URL", f"sqlite:///{data_dir() / 'events.db'}")


def orders_api_url() -> str:
    """Base URL of the e-commerce API. Empty means: serve the demo catalogue in-process."""
    return os.environ.get("ORDERS_API_URL", "")


# -- production (`DAGSTER_DEPLOYMENT=prod`) ---------------------------------------------------------
# Locally every source falls back to the seeded demo; in prod a fallback would silently read demo
# data with demo credentials, so each of these must be set (docs/deployment.md).
PROD_REQUIRED = (
    "SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE", "SNOWFLAKE_WAREHOUSE",
    "CRM_DATABASE_URL", "ORDERS_API_URL", "ORDERS_API_CLIENT_ID", "ORDERS_API_CLIENT_SECRET", "EVENT_BUS_URL",
)
# Exactly one way to sign in to Snowflake. Key-pair first: Snowflake is retiring password-only
# sign-ins. OAuth reads its token from a file (rotated by whoever issues it, never in config).
SNOWFLAKE_AUTH = ("SNOWFLAKE_PRIVATE_KEY_PATH", "SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_OAUTH_TOKEN_FILE",
                  "SNOWFLAKE_PASSWORD")


class MissingSettings(ValueError):
    """Prod cannot start: the message names every setting to fix, on one line."""


def env(name: str) -> str:
    return os.environ.get(name, "").strip()


def is_set(name: str) -> bool:
    return bool(env(name))


def snowflake_auth() -> str:
    """The one SNOWFLAKE_AUTH variable that is set (check_prod_settings guarantees there is one)."""
    return next(name for name in SNOWFLAKE_AUTH if is_set(name))


def check_prod_settings() -> None:
    """Raise MissingSettings naming each missing or conflicting prod setting."""
    problems = [name for name in PROD_REQUIRED if not is_set(name)]
    auth = [name for name in SNOWFLAKE_AUTH if is_set(name)]
    if not auth:
        problems.append("one of " + " | ".join(SNOWFLAKE_AUTH))
    elif len(auth) > 1:
        problems.append(f"only one of {' and '.join(auth)} (they are alternatives)")
    for name in ("SNOWFLAKE_PRIVATE_KEY_PATH", "SNOWFLAKE_OAUTH_TOKEN_FILE"):
        if is_set(name) and not Path(env(name)).is_file():
            problems.append(f"{name} (no file at {env(name)})")
    if problems:
        raise MissingSettings("DAGSTER_DEPLOYMENT=prod refuses to start: set " + ", ".join(problems)
                              + " (see docs/deployment.md)")

