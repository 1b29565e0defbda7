"""A corpus of bad inputs ends in a successful Dagster run: every skip counted by reason, the good files stored."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import duckdb

from codelupe_pipeline.assets.ingestion import SOURCES, SOURCES_INGESTED_CHECK, raw_code_files
from codelupe_pipeline.automation.sources_sensor import partition_range_tags
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.settings import Settings
from codelupe_pipeline_tests.bad_inputs import (
    build_bad_git_repo,
    build_bad_local_dir,
    build_empty_git_repo,
    permissions_enforced_for_root,
)
from codelupe_pipeline_tests.corpus import write_sources_file

LANGUAGES = ("python", "rust", "go", "javascript")


def partition_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        out[str(m.partition)] = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return out


def skip_counts(markdown: object) -> dict[str, int]:
    """{reason: files} from the `skipped_files_by_reason` table."""
    return {r: int(n.replace(",", "")) for r, n in re.findall(r"^\| (\w+) \| ([\d,]+) \|", str(markdown), re.M)}


def ingest(settings: Settings, instance: dg.DagsterInstance, names: list[str]) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    with permissions_enforced_for_root():
        return dg.materialize(
            [raw_code_files], resources=defs.resources, instance=instance, tags=partition_range_tags(names)
        )


def test_bad_inputs_are_skipped_by_reason_and_the_run_succeeds(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    build_bad_local_dir(corpus / "messy", outside=tmp_path / "outside.py")
    build_bad_git_repo(corpus / "messy-repo")
    build_empty_git_repo(corpus / "empty-repo")
    sealed = corpus / "sealed-root"
    sealed.mkdir()
    sealed.chmod(0)
    sources = [
        {"name": "messy-dir", "kind": "local", "path": str(corpus / "messy")},
        {"name": "messy-repo", "kind": "git", "url": str(corpus / "messy-repo")},
        {"name": "empty-repo", "kind": "git", "url": str(corpus / "empty-repo")},
        {"name": "bad-url", "kind": "git", "url": "file:///nonexistent/nowhere.git"},
        {"name": "sealed-dir", "kind": "local", "path": str(sealed)},
    ]
    settings = Settings(
        data_dir=tmp_path / "data",
        sources_file=write_sources_file(tmp_path / "sources.yaml", sources),
        languages=LANGUAGES,
    )
    names = [s["name"] for s in sources]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SOURCES, names)
        result = ingest(settings, instance, names)
        assert result.success
        meta = partition_metadata(result)
        assert {n: meta[n]["source_status"] for n in names} == {
            "messy-dir": "ingested",
            "messy-repo": "ingested",
            "empty-repo": "empty",
            "bad-url": "failed",
            "sealed-dir": "failed",
        }
        assert "git fetch" in str(meta["bad-url"]["error"]) and "nowhere.git" in str(meta["bad-url"]["error"])
        assert "PermissionError" in str(meta["sealed-dir"]["error"])

        assert skip_counts(meta["messy-dir"]["skipped_files_by_reason"]) == {
            "binary": 1,
            "undecodable": 1,
            "too_large": 1,
            "empty": 1,
            "unknown_language": 1,
            "vendored_or_build_dir": 1,  # node_modules, counted once: never walked into
            "lockfile": 1,
            "symlink_loop": 3,  # loop_a -> loop_b -> loop_a, and dir_loop -> .
            "symlink_outside_root": 1,
            "symlink": 1,  # alias.py: its target src/good.py is ingested under its own path
            "not_a_regular_file": 1,  # the FIFO, never opened
            "unreadable": 2,  # locked.py (mode 000) and the sealed directory
        }
        assert skip_counts(meta["messy-repo"]["skipped_files_by_reason"]) == {
            "binary": 1,
            "undecodable": 1,
            "too_large": 1,
            "empty": 1,
            "unknown_language": 1,
            "vendored_or_build_dir": 1,
            "lockfile": 1,
            "symlink_outside_root": 1,
        }
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == SOURCES_INGESTED_CHECK and not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert "bad-url" in str(check.metadata["failed_sources"].value)

        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            stored = {
                (s, p) for s, p in con.execute("SELECT source, path FROM raw_files WHERE status = 'current'").fetchall()
            }
        weird = {"with space.py", "new\nline.py", "caf\\xe9.py"}  # the non-UTF-8 byte stored as an escape
        assert stored == {
            ("messy-dir", "src/good.py"),
            ("messy-dir", "src/ring.rs"),
            *(("messy-dir", name) for name in weird),
            ("messy-repo", "lib/good.go"),
            *(("messy-repo", name) for name in weird),
        }

        # The same inputs again: nothing re-read, nothing stored changes, the run still succeeds.
        again = partition_metadata(ingest(settings, instance, names))
        assert again["messy-repo"]["source_status"] == "unchanged"
        assert again["messy-dir"]["source_status"] == "unchanged"
        assert again["messy-dir"]["files_unchanged"] == 5
