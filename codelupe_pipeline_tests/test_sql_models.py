"""The dbt-like SQL model runner: dependencies, descriptions, declared tests, vars, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from codelupe_pipeline.assets.curation import SOURCE_TABLES
from codelupe_pipeline.curate.sql_models import SqlModelError, load_models, load_vars, run_model, run_test
from codelupe_pipeline.settings import CHECKOUT_DIR

SQL_DIR = CHECKOUT_DIR / "dbt_like_sql"


def write(dir_: Path, name: str, text: str) -> None:
    (dir_ / name).write_text(text)


def test_project_models_parse_in_dependency_order() -> None:
    models = load_models(SQL_DIR, known_sources=set(SOURCE_TABLES))
    order = list(models)
    chain = ["stg_raw_files", "secret_redactions", "redacted_files", "file_features", "file_verdicts",
             "deduped_files", "minhash_signatures", "near_duplicates", "contaminated_files", "file_decisions",
             "curated_files"]  # fmt: skip
    assert [order.index(name) for name in chain] == sorted(order.index(name) for name in chain)
    assert models["curated_files"].materialized == "table"
    assert models["stg_raw_files"].materialized == "view"
    assert {t.name for t in models["curated_files"].tests} >= {"unique_sha256", "min_rows"}
    # Every model says what it is, and every var it names is defined.
    assert all(not m.description.startswith("SQL model ") for m in models.values())
    variables = load_vars(SQL_DIR)
    assert all(name in variables for m in models.values() for name in m.vars)


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


def test_vars_and_per_language_vars(tmp_path: Path) -> None:
    write(tmp_path, "vars.yaml", "limit: 3\nline_limit: {default: 10, sql: null, json: 2}\nnames: [a, 'b''c']\n")
    write(
        tmp_path,
        "files.sql",
        "-- Files and their per-language limit.\n"
        "SELECT language, {{ var_by_language('line_limit') }} AS line_limit, {{ var('limit') }} AS n,\n"
        "       list_contains({{ var('names') }}, 'b''c') AS quoted\n"
        "FROM (VALUES ('python'), ('sql'), ('json')) AS t(language)\n",
    )
    model = load_models(tmp_path)["files"]
    assert model.vars == ("line_limit", "limit", "names")
    con = duckdb.connect()
    run_model(con, model, load_vars(tmp_path))
    rows = dict(con.execute("SELECT language, line_limit FROM files").fetchall())
    assert rows == {"python": 10, "sql": None, "json": 2}
    assert con.execute("SELECT DISTINCT n, quoted FROM files").fetchall() == [(3, True)]

    write(tmp_path, "files.sql", "-- Misused.\nSELECT {{ var('line_limit') }} AS x\n")
    with pytest.raises(SqlModelError, match=r"files\.sql:2: var\('line_limit'\) is a mapping"):
        run_model(con, load_models(tmp_path)["files"], load_vars(tmp_path))
    write(tmp_path, "files.sql", "-- Missing.\nSELECT {{ var('nope') }} AS x\n")
    with pytest.raises(SqlModelError, match=r"files\.sql:2: var\('nope'\) is not defined in vars\.yaml"):
        load_models(tmp_path)


def test_columns_are_documented_in_the_config(tmp_path: Path) -> None:
    write(
        tmp_path,
        "scores.sql",
        "-- Scores.\n{{ config(materialized='table', columns={'n': 'the number', 'square': 'n times n'}) }}\n"
        "SELECT range AS n, range * range AS square FROM range(3)\n",
    )
    model = load_models(tmp_path)["scores"]
    assert model.column_description("square") == "n times n" and model.column_description("other") is None
    run_model(duckdb.connect(), model, {})

    write(tmp_path, "typo.sql", "{{ config(columns={'sqare': 'n times n'}) }}\nSELECT 1 AS square\n")
    with pytest.raises(SqlModelError, match=r"typo\.sql: config columns describes sqare, which the model does not"):
        run_model(duckdb.connect(), load_models(tmp_path)["typo"], {})
    write(tmp_path, "typo.sql", "{{ config(columns=['square']) }}\nSELECT 1 AS square\n")
    with pytest.raises(SqlModelError, match=r"typo\.sql: config columns must map column names to descriptions"):
        load_models(tmp_path)


def test_the_report_models_document_their_columns() -> None:
    models = load_models(SQL_DIR, known_sources=set(SOURCE_TABLES))
    for name in ("curation_funnel", "language_mix", "dropped_samples", "redaction_counts"):
        assert len(models[name].columns) >= 3, name
