"""The Dagster instance's home: where DAGSTER_HOME is, and the dagster.yaml written there.

The checkout's `dagster.yaml` is the one source of the instance configuration. It is written to
<data_dir>/dagster/dagster.yaml as is (SQLite storage, the embedded default), or with its storage switched to
Postgres when CODELUPE_POSTGRES_URL is set: run, event-log and schedule storage then live in that database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from codelupe_pipeline.settings import CHECKOUT_DIR, Settings

DAGSTER_YAML = CHECKOUT_DIR / "dagster.yaml"
POSTGRES_URL_ENV = "CODELUPE_POSTGRES_URL"


def instance_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(DAGSTER_YAML.read_text())
    if settings.postgres_url:
        # The URL stays an env reference: no password is written to disk.
        config["storage"] = {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
    return config


def prepare_dagster_home(settings: Settings) -> Path:
    """Write DAGSTER_HOME/dagster.yaml for these settings, point DAGSTER_HOME at it and create its storage.

    Creating the storage here, in one process, matters: a webserver and a daemon started together on a fresh
    home would both create the SQLite schedule database, and two Alembic stamps leave it unusable.
    """
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    storage = "postgres (CODELUPE_POSTGRES_URL)" if settings.postgres_url else "sqlite (embedded default)"
    text = (
        f"# Written by codelupe from {DAGSTER_YAML}; edit that file, not this one. Storage: {storage}.\n"
        + yaml.safe_dump(instance_config(settings), sort_keys=False)
    )
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    if settings.postgres_url:
        os.environ[POSTGRES_URL_ENV] = settings.postgres_url
    import dagster as dg  # here: `codelupe --help` should not pay for importing Dagster

    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home
