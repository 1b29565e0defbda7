"""The definitions load, and everything the README names exists in them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import dagster as dg
import pytest

from codelupe_pipeline.definitions import build_definitions, defs
from codelupe_pipeline.settings import CHECKOUT_DIR, Settings

README = CHECKOUT_DIR / "README.md"


def readme_names(section: str) -> set[str]:
    """Backticked names in the first column of the README table under `section`."""
    text = README.read_text()
    start = text.index(section)
    end = min(i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1), len(text)) if i > 0)
    block = text[start:end]
    return set(re.findall(r"^\| `([a-z_]+)`", block, flags=re.M))


def test_module_level_definitions_load() -> None:
    assert isinstance(defs, dg.Definitions)
    dg.Definitions.validate_loadable(defs)


def test_every_name_in_the_readme_is_defined(settings: Settings) -> None:
    built = build_definitions(settings)
    asset_graph = built.resolve_asset_graph()
    assets = {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
    checks = {key.name for key in asset_graph.asset_check_keys}
    jobs = {job.name for job in built.resolve_all_job_defs()}
    sensors = {s.name for s in built.sensors or []}
    schedules = {s.name for s in built.schedules or []}

    named = {kind: readme_names(f"### {kind.capitalize()}") for kind in ("assets", "checks", "jobs", "automation")}
    assert named["assets"], "README lists no assets"
    assert named["assets"] <= assets, named["assets"] - assets
    assert named["checks"] <= checks, named["checks"] - checks
    assert named["jobs"] <= jobs, named["jobs"] - jobs
    assert named["automation"] <= sensors | schedules, named["automation"] - (sensors | schedules)


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [env for env, _, _ in Settings.describe() if f"`{env}`" not in text]
    assert not missing


def test_asset_groups_and_pools(settings: Settings) -> None:
    graph = build_definitions(settings).resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {"ingestion", "curation", "training", "evaluation", "registry"}
    # Every asset that opens the DuckDB warehouse shares the single-writer pool.
    for name in ("raw_code_files", "file_features", "curated_files", "curated_snapshot"):
        assert graph.get(dg.AssetKey(name)).pools == {"duckdb"}
    assert graph.get(dg.AssetKey("lora_adapter")).pools == {"gpu"}


def test_every_asset_says_what_it_is_and_who_owns_it(settings: Settings) -> None:
    graph = build_definitions(
        dataclasses.replace(settings, asset_owners=("team:ml", "ana@example.com"))
    ).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:ml", "ana@example.com"], key
        assert node.kinds, key
        assert node.code_version, key
        assert node.description and len(node.description) > 30, key


def test_every_run_config_field_is_documented_and_optional(settings: Settings) -> None:
    """The launchpad: every asset materializes with defaults, and each field says what it does."""
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    configured = 0
    for node in job.graph.node_defs:
        config_type = node.config_schema.config_type if node.config_schema else None
        for name, field in getattr(config_type, "fields", {}).items():
            configured += 1
            assert field.description and len(field.description) > 10, f"{node.name}.{name}"
            assert not field.is_required, f"{node.name}.{name}"
    assert configured > 30


def test_a_bad_owner_names_its_setting(settings: Settings) -> None:
    with pytest.raises(ValueError, match="CODELUPE_ASSET_OWNERS: 'bob'"):
        build_definitions(dataclasses.replace(settings, asset_owners=("bob",)))


def test_adding_a_sql_file_adds_an_asset(tmp_path: Path, settings: Settings) -> None:
    sql_dir = tmp_path / "models"
    sql_dir.mkdir()
    for path in (CHECKOUT_DIR / "dbt_like_sql").iterdir():
        (sql_dir / path.name).write_text(path.read_text())
    (sql_dir / "python_share.sql").write_text(
        "-- Share of Python files in the curated set.\n"
        "SELECT avg((language = 'python')::INT) AS share FROM {{ ref('curated_files') }}\n"
    )
    graph = build_definitions(Settings(**{**vars(settings), "sql_dir": sql_dir})).resolve_asset_graph()
    node = graph.get(dg.AssetKey("python_share"))
    assert node.description == "Share of Python files in the curated set."
    assert dg.AssetKey("curated_files") in node.parent_keys


def test_dagster_yaml_is_a_valid_instance_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    home.mkdir()
    (home / "dagster.yaml").write_text(Path(CHECKOUT_DIR / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.is_persistent
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
        assert instance.get_run_by_id(run.run_id) is not None
    assert any(home.rglob("*.db")), "SQLite storage should live under DAGSTER_HOME"


def test_settings_round_trip_through_the_environment(settings: Settings) -> None:
    assert Settings.from_env(settings.to_env()) == settings
