"""The raw code store in DuckDB: content-addressed blobs plus one row per (source, path, revision).

A row's status says whether it is training material: `current` rows are; a changed file `supersedes` its
previous row, a file gone from its source is marked `deleted`, and every row of a source removed from the
sources file is marked `removed`. History is never overwritten; curation reads only `current` rows.

One scan of a source is written through a `SourceWriter`, batch by batch, in a single transaction: a source
of any size streams through without being held in memory, and a scan that fails half-way leaves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_blobs (
    sha256      VARCHAR PRIMARY KEY,
    content     VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS raw_files (
    source      VARCHAR NOT NULL,
    repo        VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,
    revision    VARCHAR NOT NULL,   -- git commit, directory manifest hash or dataset revision of this content
    sha256      VARCHAR NOT NULL,   -- key into raw_blobs
    language    VARCHAR NOT NULL,
    size_bytes  BIGINT NOT NULL,
    line_count  BIGINT NOT NULL,
    license     VARCHAR,            -- SPDX id of the repository's licence, NULL when unknown
    stars       INTEGER,
    forks       INTEGER,
    fingerprint VARCHAR NOT NULL,   -- git blob id, mtime:size, or a row hash: skips unchanged files next time
    status      VARCHAR NOT NULL,   -- current | superseded | deleted | removed
    ingested_at TIMESTAMP NOT NULL,
    status_changed_at TIMESTAMP
);
ALTER TABLE raw_files ADD COLUMN IF NOT EXISTS origin VARCHAR;  -- the data file a dataset row came from
CREATE TABLE IF NOT EXISTS source_state (
    source      VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    location    VARCHAR NOT NULL,
    revision    VARCHAR NOT NULL,
    license     VARCHAR,
    scanned_at  TIMESTAMP NOT NULL
);
ALTER TABLE source_state ADD COLUMN IF NOT EXISTS config VARCHAR;       -- fingerprint of the sources-file entry
ALTER TABLE source_state ADD COLUMN IF NOT EXISTS stars INTEGER;
ALTER TABLE source_state ADD COLUMN IF NOT EXISTS forks INTEGER;
ALTER TABLE source_state ADD COLUMN IF NOT EXISTS removed_at TIMESTAMP;  -- set when it left the sources file
CREATE TABLE IF NOT EXISTS source_files (   -- data files of dataset sources: mtime_ns:size:sha256
    source      VARCHAR NOT NULL,
    origin      VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    PRIMARY KEY (source, origin)
);
"""


@dataclass(frozen=True)
class SourceState:
    kind: str
    location: str
    revision: str
    license: str | None
    config: str | None = None
    stars: int | None = None
    forks: int | None = None
    removed_at: datetime | None = None


@dataclass(frozen=True)
class FileRow:
    path: str
    sha256: str
    content: str
    language: str
    size_bytes: int
    line_count: int
    fingerprint: str
    repo: str
    license: str | None = None
    stars: int | None = None
    forks: int | None = None
    origin: str | None = None


# Row attributes that may change without the content changing; a difference updates the row in place.
_METADATA = ("fingerprint", "repo", "language", "license", "stars", "forks", "origin")


@dataclass(frozen=True)
class ApplyCounts:
    added: int
    changed: int
    deleted: int
    unchanged: int


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _exec(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | None = None) -> None:
    """Run a statement to completion (DuckDB keeps a result pending until it is fetched)."""
    con.execute(sql, params or []).fetchall()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] | None = None) -> tuple[Any, ...] | None:
    """The first row of a query, its result consumed."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object]) -> int:
    row = _one(con, sql, params)
    return int(row[0]) if row else 0


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    _exec(con, SCHEMA)


def source_state(con: duckdb.DuckDBPyConnection, source: str) -> SourceState | None:
    row = _one(
        con,
        "SELECT kind, location, revision, license, config, stars, forks, removed_at FROM source_state WHERE source = ?",
        [source],
    )
    return SourceState(*row) if row else None


def current_fingerprints(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT path, fingerprint FROM raw_files WHERE source = ? AND status = 'current'", [source]
    ).fetchall()
    return dict(rows)


def current_count(con: duckdb.DuckDBPyConnection, source: str) -> int:
    return _count(con, "SELECT count(*) FROM raw_files WHERE source = ? AND status = 'current'", [source])


def source_file_fingerprints(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    return dict(con.execute("SELECT origin, fingerprint FROM source_files WHERE source = ?", [source]).fetchall())


def current_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(
        con.execute("SELECT source, count(*) FROM raw_files WHERE status = 'current' GROUP BY source").fetchall()
    )


def record_data_files(con: duckdb.DuckDBPyConnection, source: str, fingerprints: Mapping[str, str]) -> None:
    """Replace the recorded fingerprints of a dataset source's data files (one transaction)."""
    with _transaction(con):
        _replace_data_files(con, source, fingerprints)


def _replace_data_files(con: duckdb.DuckDBPyConnection, source: str, fingerprints: Mapping[str, str]) -> None:
    _exec(con, "DELETE FROM source_files WHERE source = ?", [source])
    if fingerprints:
        con.executemany("INSERT INTO source_files VALUES (?, ?, ?)", [(source, o, f) for o, f in fingerprints.items()])


def refresh_popularity(con: duckdb.DuckDBPyConnection, source: str, stars: int | None, forks: int | None) -> None:
    """New star/fork counts for an otherwise unchanged source (one transaction)."""
    with _transaction(con):
        _exec(
            con,
            "UPDATE raw_files SET stars = ?, forks = ? WHERE source = ? AND status = 'current'",
            [stars, forks, source],
        )
        _exec(con, "UPDATE source_state SET stars = ?, forks = ? WHERE source = ?", [stars, forks, source])


def retire_sources(con: duckdb.DuckDBPyConnection, declared: Iterable[str]) -> dict[str, int]:
    """Mark every current row of a source no longer declared as `removed`; return rows retired per source.

    The rows and their content stay (history, and a re-added source finds its blobs again); they are no
    longer training material because curation reads current rows only.
    """
    ensure_schema(con)
    keep = pa.table({"source": pa.array(sorted(set(declared)), pa.string())})
    now = _now()
    with _transaction(con), _registered(con, "_declared", keep):
        retired = dict(
            con.execute(
                "SELECT source, count(*) FROM raw_files WHERE status = 'current' "
                "AND source NOT IN (SELECT source FROM _declared) GROUP BY source ORDER BY source"
            ).fetchall()
        )
        if retired:
            _exec(
                con,
                "UPDATE raw_files SET status = 'removed', status_changed_at = ? WHERE status = 'current' "
                "AND source NOT IN (SELECT source FROM _declared)",
                [now],
            )
            _exec(
                con,
                "UPDATE source_state SET removed_at = ? WHERE removed_at IS NULL "
                "AND source NOT IN (SELECT source FROM _declared)",
                [now],
            )
    return retired


def removed_rows(con: duckdb.DuckDBPyConnection, source: str) -> tuple[int, datetime | None]:
    """How many rows the latest removal of `source` retired, and when (0, None if it is not removed)."""
    state = source_state(con, source)
    if state is None or state.removed_at is None:
        return 0, None
    count = _count(
        con,
        "SELECT count(*) FROM raw_files WHERE source = ? AND status = 'removed' AND status_changed_at = ?",
        [source, state.removed_at],
    )
    return int(count), state.removed_at


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    _exec(con, "BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        _exec(con, "ROLLBACK")
        raise
    _exec(con, "COMMIT")


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """A pyarrow table visible to SQL under `name` for the duration of a block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


_ROW_TYPES = {
    "path": pa.string(),
    "sha256": pa.string(),
    "content": pa.string(),
    "language": pa.string(),
    "size_bytes": pa.int64(),
    "line_count": pa.int64(),
    "fingerprint": pa.string(),
    "repo": pa.string(),
    "license": pa.string(),
    "stars": pa.int32(),
    "forks": pa.int32(),
    "origin": pa.string(),
}


def _rows_table(rows: Sequence[FileRow]) -> pa.Table:
    return pa.table({f.name: pa.array([getattr(r, f.name) for r in rows], _ROW_TYPES[f.name]) for f in fields(FileRow)})


class SourceWriter:
    """Writes one scan of one source in a single transaction, in batches.

    `write` stores new and changed files (unchanged content only gets its metadata updated), `keep` vouches
    for files the scan did not need to re-read, `keep_origin` for every row of an unchanged data file.
    `finish` marks every current row nobody vouched for as deleted, records the source's state and commits.
    Leaving the block without `finish` (an exception) rolls everything back.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, revision: str) -> None:
        self._con = con
        self._source = source
        self._revision = revision  # what new rows are stored under
        self._now = _now()
        self._added = self._changed = self._unchanged = 0
        self._finished = False

    def __enter__(self) -> SourceWriter:
        ensure_schema(self._con)
        _exec(self._con, "CREATE OR REPLACE TEMP TABLE _seen (path VARCHAR)")
        _exec(self._con, "CREATE OR REPLACE TEMP TABLE _kept_origins (origin VARCHAR)")
        _exec(self._con, "BEGIN TRANSACTION")
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._finished:
            _exec(self._con, "ROLLBACK")
        _exec(self._con, "DROP TABLE IF EXISTS _seen")
        _exec(self._con, "DROP TABLE IF EXISTS _kept_origins")

    def write(self, rows: Sequence[FileRow]) -> list[str]:
        """Store a batch; return the paths refused because the source already has a file at that path."""
        unique: dict[str, FileRow] = {}
        duplicates: list[str] = []
        for row in rows:
            if row.path in unique:
                duplicates.append(row.path)
            else:
                unique[row.path] = row
        if not unique:
            return duplicates
        con, source = self._con, self._source
        with _registered(con, "_batch_paths", pa.table({"path": pa.array(list(unique), pa.string())})):
            taken = {
                p
                for (p,) in con.execute(
                    """
                    SELECT path FROM _batch_paths WHERE path IN (SELECT path FROM _seen)
                    UNION
                    SELECT f.path FROM raw_files f JOIN _batch_paths USING (path)
                    WHERE f.source = ? AND f.status = 'current'
                      AND f.origin IN (SELECT origin FROM _kept_origins)
                    """,
                    [source],
                ).fetchall()
            }
            for path in taken:
                duplicates.append(path)
                del unique[path]
            previous = {
                r[0]: r[1:]
                for r in con.execute(
                    f"""
                    SELECT f.path, f.sha256, {", ".join("f." + m for m in _METADATA)}
                    FROM raw_files f JOIN _batch_paths USING (path)
                    WHERE f.source = ? AND f.status = 'current'
                    """,
                    [source],
                ).fetchall()
            }
        new = [r for r in unique.values() if r.path not in previous or previous[r.path][0] != r.sha256]
        replaced = [r.path for r in new if r.path in previous]
        touched = [
            r
            for r in unique.values()
            if r.path in previous
            and previous[r.path][0] == r.sha256
            and previous[r.path][1:] != tuple(getattr(r, m) for m in _METADATA)
        ]
        if new:
            with _registered(con, "_new", _rows_table(new)):
                _exec(
                    con,
                    "INSERT INTO raw_blobs SELECT DISTINCT ON (sha256) sha256, content FROM _new "
                    "WHERE sha256 NOT IN (SELECT sha256 FROM raw_blobs)",
                )
                self._set_status(replaced, "superseded")
                _exec(
                    con,
                    """
                    INSERT INTO raw_files (source, repo, path, revision, sha256, language, size_bytes, line_count,
                                           license, stars, forks, fingerprint, status, ingested_at, origin)
                    SELECT ?, repo, path, ?, sha256, language, size_bytes, line_count,
                           license, stars, forks, fingerprint, 'current', ?, origin
                    FROM _new
                    """,
                    [source, self._revision, self._now],
                )
        if touched:
            with _registered(con, "_touched", _rows_table(touched)):
                _exec(
                    con,
                    f"""
                    UPDATE raw_files SET {", ".join(f"{m} = t.{m}" for m in _METADATA)}
                    FROM _touched t
                    WHERE raw_files.source = ? AND raw_files.status = 'current' AND raw_files.path = t.path
                    """,
                    [source],
                )
        self._see(list(unique))
        self._added += len(new) - len(replaced)
        self._changed += len(replaced)
        self._unchanged += len(unique) - len(new)
        return duplicates

    def keep(self, paths: Sequence[str]) -> None:
        """These files are unchanged since the last scan (their fingerprint matched): keep their rows."""
        self._see(paths)
        self._unchanged += len(paths)

    def _see(self, paths: Sequence[str]) -> None:
        if paths:
            with _registered(self._con, "_keep", pa.table({"path": pa.array(list(paths), pa.string())})):
                _exec(self._con, "INSERT INTO _seen SELECT path FROM _keep")

    def keep_origin(self, origin: str) -> int:
        """Every current row read from the data file `origin` stays (the file did not change)."""
        _exec(self._con, "INSERT INTO _kept_origins VALUES (?)", [origin])
        count = _count(
            self._con,
            "SELECT count(*) FROM raw_files WHERE source = ? AND status = 'current' AND origin = ?",
            [self._source, origin],
        )
        self._unchanged += count
        return count

    def finish(
        self,
        state: SourceState,
        *,
        repo_metadata: tuple[str | None, int | None, int | None] | None = None,
        data_files: Mapping[str, str] | None = None,
    ) -> ApplyCounts:
        """Mark unvouched rows deleted, store the source's state, commit; return what changed.

        `repo_metadata` (licence, stars, forks) applies to every current row of a one-repository source;
        `data_files` (origin -> fingerprint) replaces the recorded data files of a dataset source.
        """
        con, source = self._con, self._source
        deleted = _count(
            con,
            """
            SELECT count(*) FROM raw_files
            WHERE source = ? AND status = 'current' AND path NOT IN (SELECT path FROM _seen)
              AND (origin IS NULL OR origin NOT IN (SELECT origin FROM _kept_origins))
            """,
            [source],
        )
        if deleted:
            _exec(
                con,
                """
                UPDATE raw_files SET status = 'deleted', status_changed_at = ?
                WHERE source = ? AND status = 'current' AND path NOT IN (SELECT path FROM _seen)
                  AND (origin IS NULL OR origin NOT IN (SELECT origin FROM _kept_origins))
                """,
                [self._now, source],
            )
        if repo_metadata is not None:
            license, stars, forks = repo_metadata
            # Licence and popularity belong to the repository: keep every current row in step with them.
            _exec(
                con,
                """
                UPDATE raw_files SET license = ?, stars = ?, forks = ?
                WHERE source = ? AND status = 'current'
                  AND (license IS DISTINCT FROM ? OR stars IS DISTINCT FROM ? OR forks IS DISTINCT FROM ?)
                """,
                [license, stars, forks, source, license, stars, forks],
            )
        if data_files is not None:
            _replace_data_files(con, source, data_files)
        _exec(
            con,
            """
            INSERT OR REPLACE INTO source_state
                (source, kind, location, revision, license, scanned_at, config, stars, forks, removed_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
            """,
            [
                source,
                state.kind,
                state.location,
                state.revision,
                state.license,
                self._now,
                state.config,
                state.stars,
                state.forks,
            ],
        )
        _exec(con, "COMMIT")
        self._finished = True
        return ApplyCounts(self._added, self._changed, deleted, self._unchanged)

    def _set_status(self, paths: list[str], status: str) -> None:
        if not paths:
            return
        with _registered(self._con, "_paths", pa.table({"path": pa.array(paths, pa.string())})):
            _exec(
                self._con,
                """
                UPDATE raw_files SET status = ?, status_changed_at = ?
                WHERE source = ? AND status = 'current' AND path IN (SELECT path FROM _paths)
                """,
                [status, self._now, self._source],
            )
