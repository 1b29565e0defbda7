"""The dbt-like SQL model runner: dependencies, descriptions, declared tests, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from codelupe_pipeline.curate.sql_models import SqlModelError, load_models, run_model, run_test
from codelupe_pipeline.settings import CHECKOUT_DIR


def write(dir_: Path, name: str, text: str) -> None:
    (dir_ / name).write_text(text)


def test_project_models_parse_in_dependency_order() -> None:
    models = load_models(CHECKOUT_DIR / "dbt_like_sql", known_sources={"raw_files", "raw_blobs"})
    order = list(models)
    assert order.index("stg_raw_files") < order.index("file_features") < order.index("curated_files")
    assert models["curated_files"].materialized == "table"
    assert models["stg_raw_files"].materialized == "view"
    assert {t.name for t in models["curated_files"].tests} >= {"unique_sha256", "min_rows"}


def test_refs_tests_and_errors(tmp_path: Path) -> None:
    write(
        tmp_path,
        "numbers.sql",
        "-- Some numbers.\n{{ config(materialized='table') }}\nSELECT range AS n FROM range(5)\n",
    )
    write(
        tmp_path,
        "evens.sql",
        "-- Even numbers only.\n"
        "{{ config(materialized='view', tests={'unique': ['n'], 'min_rows': 3}) }}\n"
        "SELECT n FROM {{ ref('numbers') }} WHERE n % 2 = 0\n",
    )
    models = load_models(tmp_path)
    assert list(models) == ["numbers", "evens"] and models["evens"].description == "Even numbers only."
    con = duckdb.connect()
    for model in models.values():
        run_model(con, model, {})
    unique, min_rows = models["evens"].tests
    assert run_test(con, models["evens"], unique) == 0
    assert run_test(con, models["evens"], min_rows) == 0  # 0, 2, 4

    write(tmp_path, "broken.sql", "-- A typo on line 3.\n\nSELECT nope FROM {{ ref('numbers') }}\n")
    broken = load_models(tmp_path)["broken"]
    with pytest.raises(SqlModelError, match=r"broken\.sql:3: BinderException"):
        run_model(con, broken, {})

    write(tmp_path, "dangling.sql", "SELECT 1\n\nFROM {{ ref('missing') }}\n")
    with pytest.raises(SqlModelError, match=r"dangling\.sql:3: ref\('missing'\) names no model"):
        load_models(tmp_path)
