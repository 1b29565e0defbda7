"""Ingestion into a real DuckDB file from real git repositories and directories."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from codelupe_pipeline.ingest.ingestion import ingest_source
from codelupe_pipeline.ingest.languages import detect_language
from codelupe_pipeline.ingest.scan import ScanRules
from codelupe_pipeline.ingest.sources import GitSource, LocalSource, SourcesFileError, load_catalog, load_sources
from codelupe_pipeline_tests.corpus import GIT_REPO_FILES, GO_FILE, commit_all, git, make_git_repo, write_files

RULES = ScanRules(languages=frozenset({"python", "rust", "go", "typescript", "dart", "sql"}))


def rows(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for path, status, revision in con.execute(
        "SELECT path, status, revision FROM raw_files WHERE source = ? ORDER BY ingested_at, status", [source]
    ).fetchall():
        out.setdefault(path, []).append((status, revision))
    return out


def test_git_source_new_commit_reingests_only_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = make_git_repo(repo, GIT_REPO_FILES)
    source = GitSource(kind="git", name="repo", url=str(repo))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    report = ingest_source(con, source, RULES, tmp_path / "git")
    assert report.status == "ingested" and report.added == 4 and report.license == "MIT"
    assert report.skipped == {"unknown_language": 1, "language_not_kept": 1}  # LICENSE, README.md

    assert ingest_source(con, source, RULES, tmp_path / "git").status == "unchanged"

    (repo / "cache" / "cache.go").write_text(GO_FILE.replace("TTLCache", "ExpiringCache"))
    (repo / "web" / "paging.ts").unlink()
    second = commit_all(repo, "change one file, delete another")
    report = ingest_source(con, source, RULES, tmp_path / "git")
    assert (report.added, report.changed, report.deleted, report.unchanged) == (0, 1, 1, 2)

    state = rows(con, "repo")
    assert state["cache/cache.go"] == [("superseded", first), ("current", second)]
    assert state["web/paging.ts"] == [("deleted", first)]
    assert state["src/ring.rs"] == [("current", first)]  # untouched: not re-read, not rewritten


def test_git_ref_tag_and_pinned_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = make_git_repo(repo, {"v.py": "VERSION = 1\n" * 3})
    git(repo, "tag", "v1")
    (repo / "v.py").write_text("VERSION = 2\n" * 3)
    commit_all(repo, "two")
    git(repo, "checkout", "--quiet", "-b", "dev")
    (repo / "v.py").write_text("VERSION = 3\n" * 3)
    commit_all(repo, "three")
    git(repo, "checkout", "--quiet", "main")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    def content(source: GitSource) -> str:
        ingest_source(con, source, RULES, tmp_path / "git")
        (text,) = con.execute(
            "SELECT content FROM raw_files JOIN raw_blobs USING (sha256) WHERE source = ? AND status = 'current'",
            [source.name],
        ).fetchone()  # type: ignore[misc]
        return str(text)

    assert content(GitSource(kind="git", name="head", url=str(repo))).startswith("VERSION = 2")
    assert content(GitSource(kind="git", name="tag", url=str(repo), ref="v1")).startswith("VERSION = 1")
    assert content(GitSource(kind="git", name="branch", url=str(repo), ref="dev")).startswith("VERSION = 3")
    assert content(GitSource(kind="git", name="pinned", url=repo.as_uri(), commit=first)).startswith("VERSION = 1")
    with pytest.raises(ValueError, match="commit"):
        GitSource(kind="git", name="short", url=str(repo), commit=first[:8])


def test_local_directory_is_incremental(tmp_path: Path) -> None:
    root = tmp_path / "code"
    write_files(root, {"a.py": "x = 1\n" * 12, "b.go": "package b\n" * 12})
    source = LocalSource(kind="local", name="code", path=root)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert ingest_source(con, source, RULES, tmp_path / "git").added == 2
    assert ingest_source(con, source, RULES, tmp_path / "git").status == "unchanged"
    (root / "a.py").write_text("x = 2\n" * 12)
    report = ingest_source(con, source, RULES, tmp_path / "git")
    assert (report.added, report.changed, report.deleted) == (0, 1, 0)


def test_a_failing_source_leaves_stored_rows_intact(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    root = tmp_path / "code"
    write_files(root, {"a.py": "x = 1\n" * 12})
    ingest_source(con, LocalSource(kind="local", name="code", path=root), RULES, tmp_path / "git")
    with pytest.raises(Exception, match="git fetch"):
        ingest_source(con, GitSource(kind="git", name="bad", url=str(tmp_path / "nope")), RULES, tmp_path / "g")
    assert con.execute("SELECT count(*) FROM raw_files WHERE status = 'current'").fetchone() == (1,)


def test_sources_file_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - name: x\n    kind: git\n")
    with pytest.raises(SourcesFileError, match=r"sources\.yaml.*sources\.0\.git\.url"):
        load_sources(path)
    path.write_text("sources:\n  - {name: a, kind: local, path: /tmp}\n  - {name: a, kind: local, path: /}\n")
    with pytest.raises(SourcesFileError, match="used twice"):
        load_sources(path)
    assert load_sources(tmp_path / "absent.yaml")[0].kind == "python_stdlib"
    path.write_text("sources: []\ngithub:\n  searches: [{name: a}, {name: a}]\n")
    with pytest.raises(SourcesFileError, match="search names must be unique"):
        load_catalog(path)
    path.write_text("sources:\n  - {name: d, kind: dataset, path: x.parquet, colums: {}}\n")
    with pytest.raises(SourcesFileError, match=r"sources\.0\.dataset\.colums: Extra inputs"):
        load_catalog(path)


@pytest.mark.parametrize(
    ("path", "head", "language"),
    [
        ("src/main.rs", b"", "rust"),
        ("cmd/server/main.go", b"", "go"),
        ("pkg/mod.py", b"", "python"),
        ("web/paging.ts", b"", "typescript"),
        ("web/App.tsx", b"", "tsx"),
        ("web/app.mjs", b"", "javascript"),
        ("lib/money.dart", b"", "dart"),
        ("queries/q.sql", b"", "sql"),
        ("src/Main.java", b"", "java"),
        ("app/Main.kt", b"", "kotlin"),
        ("src/ring.c", b"", "c"),
        ("src/ring.cpp", b"", "cpp"),
        ("src/Ring.cs", b"", "csharp"),
        ("Sources/App.swift", b"", "swift"),
        ("scripts/setup.sh", b"", "shell"),
        ("Dockerfile", b"", "dockerfile"),
        ("docker/Dockerfile.dev", b"", "dockerfile"),
        ("Makefile", b"", "makefile"),
        ("bin/tool", b"#!/usr/bin/env python3\n", "python"),
        ("bin/run", b"#!/bin/bash\n", "shell"),
        ("bin/serve", b"#!/usr/bin/env -S deno run --allow-net\n", "typescript"),
        ("bin/py312", b"#!/usr/local/bin/python3.12 -u\n", "python"),
        ("notes.txt", b"", None),
    ],
)
def test_language_detection(path: str, head: bytes, language: str | None) -> None:
    assert detect_language(path, head) == language
