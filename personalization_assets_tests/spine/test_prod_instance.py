"""deploy/: the production Dagster instance (Postgres storage, queued runs with tag limits, one
Docker container per run) loads against the real PostgreSQL on 127.0.0.1 and records a real
materialization there; the compose file wires the containers the instance expects."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from personalization_assets import settings
from personalization_assets.assets.seeds import SEEDS
from personalization_assets.resources.warehouse import DuckDBWarehouse
from personalization_assets_tests.conftest import require_module

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def prod_home(postgres_url, tmp_path, monkeypatch):
    """$DAGSTER_HOME holding deploy/dagster.prod.yaml, pointed at a throwaway database."""
    require_module("dagster_postgres", extra="prod")
    require_module("dagster_docker", extra="prod")
    import psycopg2

    name = f"h23_prod_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f'create database "{name}"')
    for var, value in {"DAGSTER_PG_USERNAME": "postgres", "DAGSTER_PG_PASSWORD": "unused-under-trust",
                       "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_DB": name,
                       "DAGSTER_RUN_IMAGE": "personalization:test", "DAGSTER_RUN_NETWORK": "none"}.items():
        monkeypatch.setenv(var, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.prod.yaml", home / "dagster.yaml")
    try:
        yield home, name
    finally:
        admin.cursor().execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def test_the_prod_instance_stores_a_materialization_in_postgres(prod_home, tmp_path):
    import psycopg2
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    home, db = prod_home
    seed = SEEDS["country_synonyms"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_launcher, DockerRunLauncher)
        assert instance.run_launcher.image == "personalization:test"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 8
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
        limits = {(limit["key"], str(limit.get("value"))): limit["limit"] for limit in queue.tag_concurrency_limits}
        assert limits[("on_demand", "true")] == 1 and limits[("dagster/backfill", "None")] == 4
        assert limits[("dagster/partition", "{'applyLimitPerUniqueValue': True}")] == 1

        result = dg.materialize([seed], instance=instance, resources={
            "warehouse": DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))})
        assert result.success
        latest = instance.get_latest_materialization_event(seed.key)
        assert latest is not None and latest.run_id == result.run_id

    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db) as conn, conn.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (result.run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
                    (result.run_id, "ASSET_MATERIALIZATION"))
        assert cur.fetchone()[0] == 1


def test_the_compose_file_runs_the_image_the_instance_launches():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"dagster_postgres", "personalization_code", "dagster_webserver", "dagster_daemon"} <= set(services)
    env = services["dagster_daemon"]["environment"]
    assert env["DAGSTER_PG_HOST"] == "dagster_postgres" and env["DAGSTER_RUN_NETWORK"] in compose["networks"]
    assert services["personalization_code"]["image"] == env["DAGSTER_RUN_IMAGE"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["dagster_daemon"]["volumes"]
    assert services["dagster_daemon"]["depends_on"]["dagster_postgres"]["condition"] == "service_healthy"
    # Every variable the run launcher forwards into a run container is set for the daemon.
    instance = yaml.safe_load((DEPLOY / "dagster.prod.yaml").read_text())
    forwarded = set(instance["run_launcher"]["config"]["env_vars"])
    assert forwarded <= set(env), forwarded - set(env)
    assert set(settings.PROD_REQUIRED) <= forwarded, set(settings.PROD_REQUIRED) - forwarded  # runs can start
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["host"] == "personalization_code"
    assert str(server["port"]) in services["personalization_code"]["command"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/dagster.prod.yaml /opt/dagster/home/dagster.yaml" in dockerfile
    assert ".[snowflake,prod]" in dockerfile
