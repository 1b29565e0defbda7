"""Dataset sources in The Stack layout: real Parquet and JSONL files, streamed in batches into a real DuckDB."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codelupe_pipeline.ingest import datasets
from codelupe_pipeline.ingest.datasets import DatasetError
from codelupe_pipeline.ingest.ingestion import ingest_source
from codelupe_pipeline.ingest.scan import ScanRules
from codelupe_pipeline.ingest.sources import DatasetSource
from codelupe_pipeline_tests.corpus import GO_FILE, PYTHON_FILE, RUST_FILE, TYPESCRIPT_FILE

RULES = ScanRules(languages=frozenset({"python", "rust", "go", "typescript", "tsx"}))


def write_stack_v1_parquet(path: Path) -> None:
    """The Stack v1 column names, in two row groups."""
    rows = [
        ("Python", "pkg/intervals.py", "alice/intervals", ["MIT"], 120, 7, PYTHON_FILE),
        ("Rust", "src/ring.rs", "bob/ring", ["Apache-2.0", "MIT"], None, None, RUST_FILE),
        ("Go", "vendor/x/cache.go", "carol/svc", ["MIT"], 5, 1, GO_FILE),  # vendored
        ("Java", "Main.java", "dan/app", ["MIT"], 1, 0, "class Main {}\n"),  # language not kept
        ("Python", "bin/blob.py", "erin/tools", ["MIT"], 1, 0, "\x00\x01\x02 not text"),  # binary
    ]
    table = pa.table(
        {
            "lang": [r[0] for r in rows],
            "max_stars_repo_path": [r[1] for r in rows],
            "max_stars_repo_name": [r[2] for r in rows],
            "max_stars_repo_licenses": pa.array([r[3] for r in rows], pa.list_(pa.string())),
            "max_stars_count": pa.array([r[4] for r in rows], pa.int64()),
            "max_forks_count": pa.array([r[5] for r in rows], pa.int64()),
            "content": [r[6] for r in rows],
            "avg_line_length": [10.0] * len(rows),  # a column the mapping does not use: never read
        }
    )
    pq.write_table(table, path, row_group_size=2)


def smol_record(repo: str, path: str, content: str, license: str = "MIT", stars: int = 3) -> dict[str, object]:
    """the-stack-smol column names."""
    return {"repository_name": repo, "path": path, "lang": "TypeScript", "licenses": [license], "stars": stars,
            "content": content}  # fmt: skip


def write_jsonl_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    root = tmp_path / "the-stack"
    root.mkdir()
    write_stack_v1_parquet(root / "part-0.parquet")
    write_jsonl_gz(
        root / "part-1.jsonl.gz",
        [
            json.dumps(smol_record("fay/web", "src/paging.ts", TYPESCRIPT_FILE)),
            json.dumps(smol_record("fay/web", "src/App.tsx", "export const App = () => <div/>;\n", stars=4)),
            "{not json",
            json.dumps(smol_record("fay/web", "src/paging.ts", "// a second row for the same path\n")),
            json.dumps(smol_record("gus/bad", "src/bad.ts", "const s = '\ud800';\n")),  # a lone surrogate
        ],
    )
    return root


def current(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[object, ...]]:
    rows = con.execute(
        "SELECT path, repo, language, license, stars, forks, revision, ingested_at FROM raw_files "
        "WHERE source = 'stack' AND status = 'current'"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_stack_layout_parquet_and_jsonl_with_licences_and_stars(
    tmp_path: Path, dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "BATCH_ROWS", 2)  # stream in several record batches
    source = DatasetSource(kind="dataset", name="stack", path=str(dataset_dir))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    report = ingest_source(con, source, RULES, tmp_path / "git")
    assert report.status == "ingested" and report.added == 4
    assert report.skipped == {
        "vendored_or_build_dir": 1,
        "language_not_kept": 1,
        "binary": 1,
        "bad_record": 1,
        "duplicate_path": 1,
        "undecodable": 1,
    }
    rows = current(con)
    assert {path: row[:5] for path, row in rows.items()} == {
        "alice/intervals/pkg/intervals.py": ("alice/intervals", "python", "MIT", 120, 7),
        "bob/ring/src/ring.rs": ("bob/ring", "rust", "Apache-2.0 OR MIT", None, None),
        "fay/web/src/paging.ts": ("fay/web", "typescript", "MIT", 3, None),
        "fay/web/src/App.tsx": ("fay/web", "tsx", "MIT", 4, None),  # the path's extension beats `lang`
    }
    (content,) = con.execute(
        "SELECT content FROM raw_blobs JOIN raw_files USING (sha256) WHERE path = 'fay/web/src/paging.ts'"
    ).fetchone()  # type: ignore[misc]
    assert content == TYPESCRIPT_FILE  # the first row of a path wins

    # Unchanged files are not read again; a touched file (new mtime, same bytes) is not a change either.
    assert ingest_source(con, source, RULES, tmp_path / "git").status == "unchanged"
    os.utime(dataset_dir / "part-0.parquet", ns=(1, 1))
    touched = ingest_source(con, source, RULES, tmp_path / "git")
    assert touched.status == "unchanged" and touched.unchanged == 4
    assert current(con) == rows

    # One changed row and one dropped row in the JSONL file: only that file is read, only they change.
    write_jsonl_gz(
        dataset_dir / "part-1.jsonl.gz",
        [json.dumps(smol_record("fay/web", "src/paging.ts", TYPESCRIPT_FILE + "// v2\n", stars=9))],
    )
    report = ingest_source(con, source, RULES, tmp_path / "git")
    assert (report.added, report.changed, report.deleted, report.unchanged) == (0, 1, 1, 2)
    after = current(con)
    assert after["alice/intervals/pkg/intervals.py"] == rows["alice/intervals/pkg/intervals.py"]  # not rewritten
    assert after["fay/web/src/paging.ts"][3] == 9 and "fay/web/src/App.tsx" not in after
    statuses = dict(
        con.execute("SELECT status, count(*) FROM raw_files WHERE source = 'stack' GROUP BY status").fetchall()
    )
    assert statuses == {"current": 3, "superseded": 1, "deleted": 1}

    # A data file that disappears takes its rows with it (marked deleted).
    (dataset_dir / "part-0.parquet").unlink()
    report = ingest_source(con, source, RULES, tmp_path / "git")
    assert report.deleted == 2 and set(current(con)) == {"fay/web/src/paging.ts"}


def test_a_single_jsonl_file_with_column_overrides_and_a_row_cap(tmp_path: Path) -> None:
    path = tmp_path / "code.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"text": f"x_{i} = {i}\n" * 3, "file": f"m{i}.py", "lic": "BSD-3-Clause"}) for i in range(5)
        )
    )
    source = DatasetSource.model_validate(
        {
            "kind": "dataset",
            "name": "mine",
            "path": str(path),
            "columns": {"content": ["text"], "path": ["file"], "license": ["lic"]},
            "max_rows": 3,
        }
    )
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert ingest_source(con, source, RULES, tmp_path / "git").added == 3
    rows = con.execute("SELECT path, repo, license FROM raw_files ORDER BY path").fetchall()
    assert rows == [
        ("m0.py", "mine", "BSD-3-Clause"),
        ("m1.py", "mine", "BSD-3-Clause"),
        ("m2.py", "mine", "BSD-3-Clause"),
    ]


def test_unreadable_data_and_offline_hub_ids_fail_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    fake = tmp_path / "fake.parquet"
    fake.write_text("this is not parquet")
    with pytest.raises(DatasetError, match=r"fake\.parquet: not a readable Parquet file"):
        ingest_source(con, DatasetSource(kind="dataset", name="fake", path=str(fake)), RULES, tmp_path / "git")
    with pytest.raises(DatasetError, match=r"nothing-here.*no data files found"):
        ingest_source(
            con, DatasetSource(kind="dataset", name="x", path=str(tmp_path / "nothing-here")), RULES, tmp_path / "g"
        )
    assert con.execute("SELECT count(*) FROM raw_files").fetchone() == (0,)

    # A hub id needs the network; offline (as here) the error says so and names the source and the id.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = DatasetSource(kind="dataset", name="smol", hub_id="bigcode/the-stack-smol", data_dir="data/rust")
    with pytest.raises(DatasetError, match=r"'smol'.*'bigcode/the-stack-smol' needs the network.*HF_HUB_OFFLINE"):
        ingest_source(con, hub, RULES, tmp_path / "git")


def test_a_dataset_source_needs_exactly_one_location() -> None:
    with pytest.raises(ValueError, match="exactly one of `path`"):
        DatasetSource(kind="dataset", name="both", path="a.parquet", hub_id="bigcode/the-stack-smol")
    with pytest.raises(ValueError, match="exactly one of `path`"):
        DatasetSource(kind="dataset", name="neither")
