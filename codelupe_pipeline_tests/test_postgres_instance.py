"""The same pipeline on a real Postgres server: Dagster storage and the MLflow registry both in Postgres."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from mlflow import MlflowClient

from codelupe_pipeline.automation.growth import GrowthPolicy
from codelupe_pipeline.automation.run_once import run_pipeline_once
from codelupe_pipeline.automation.sensors import build_growth_sensor
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.instance import instance_config, prepare_dagster_home
from codelupe_pipeline.settings import Settings
from codelupe_pipeline_tests.conftest import FAST_RUN_CONFIG
from codelupe_pipeline_tests.postgres import PostgresServer


def test_instance_config_switches_storage_only_when_asked(settings: Settings) -> None:
    assert "sqlite" in instance_config(settings)["storage"]
    with_pg = instance_config(dataclasses.replace(settings, postgres_url="postgresql://u@h/db"))
    assert with_pg["storage"] == {"postgres": {"postgres_url": {"env": "CODELUPE_POSTGRES_URL"}}}
    assert with_pg["concurrency"] == instance_config(settings)["concurrency"]  # only storage changes


def test_pipeline_sensor_and_registry_on_postgres(
    settings: Settings, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        settings,
        postgres_url=postgres_server.create_database("dagster"),
        mlflow_tracking_uri=postgres_server.create_database("mlflow"),
    )
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))  # restored after the test
    home = prepare_dagster_home(settings)
    defs = build_definitions(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = run_pipeline_once(defs, instance, FAST_RUN_CONFIG).result  # as `codelupe run` does
        assert result.success

        # The run and its events live in Postgres, not in a SQLite file.
        con = psycopg2.connect(settings.postgres_url)
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", [result.run_id])
            assert cur.fetchone() == (1,)
            cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", [result.run_id])
            assert cur.fetchone()[0] > 50
        con.close()
        assert not list(home.rglob("*.db"))

        # A sensor tick reads the materializations back from Postgres: trained already, so it skips.
        sensor = build_growth_sensor("train_adapter", GrowthPolicy(min_new_rows=1))
        skip = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(skip, dg.SkipReason) and "already trained" in str(skip.skip_message)

    # The model registry in Postgres holds the version with its aliases and provenance.
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(settings.registered_model, "champion")
    assert champion.tags["dataset_version"]
    assert client.get_model_version_by_alias(settings.registered_model, "challenger").version == champion.version
