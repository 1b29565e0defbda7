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
from dataclasses import dataclass, field, fields
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
    duplicates: int = 0  # rows refused because their path was taken (dataset sources)
    duplicate_examples: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


Params = Sequence[object] | Mapping[str, object] | None


def _exec(con: duckdb.DuckDBPyConnection, sql: str, params: Params = None) -> None:
    """Run a statement to completion (DuckDB keeps a result pending until it is fetched)."""
    con.execute(sql, params or []).fetchall()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Params = None) -> tuple[Any, ...] | None:
    """The first row of a query, its result consumed."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: Params = None) -> int:
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


_SQL_TYPES = {
    name: {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER"}[type_]
    for name, type_ in _ROW_TYPES.items()
}


def _rows_table(rows: Sequence[FileRow]) -> pa.Table:
    return pa.table({f.name: pa.array([getattr(r, f.name) for r in rows], _ROW_TYPES[f.name]) for f in fields(FileRow)})


class SourceWriter:
    """Writes one scan of one source: staged batch by batch, applied in one transaction.

    `write` stages files read by the scan, `keep` vouches for files it did not need to re-read (fingerprint
    unchanged), `keep_origin` for every row of an unchanged data file. `finish` applies the whole scan at once,
    in SQL: new and changed content is stored (a changed file supersedes its row), unchanged content only has
    its metadata refreshed, every current row nobody vouched for is marked deleted, and the source's state is
    recorded. Leaving the block without `finish` (an exception) leaves the stored rows as they were.

    Batches are staged in a temporary table and committed one by one: DuckDB holds on to the Arrow buffers a
    transaction read from until it ends, so staging in one long transaction would keep all of a big source in
    memory. Only the final step, DuckDB-internal and spillable, is one transaction.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str, revision: str) -> None:
        self._con = con
        self._source = source
        self._revision = revision  # what new rows are stored under
        self._now = _now()
        self._staged = 0

    def __enter__(self) -> SourceWriter:
        ensure_schema(self._con)
        columns = ", ".join(f"{name} {_SQL_TYPES[name]}" for name in _ROW_TYPES)
        _exec(self._con, f"CREATE OR REPLACE TEMP TABLE _staged (seq BIGINT, {columns})")
        _exec(self._con, "CREATE OR REPLACE TEMP TABLE _kept (path VARCHAR)")
        _exec(self._con, "CREATE OR REPLACE TEMP TABLE _kept_origins (origin VARCHAR)")
        return self

    def __exit__(self, *exc: object) -> None:
        for table in ("_staged", "_kept", "_kept_origins", "_duplicates", "_compared"):
            _exec(self._con, f"DROP TABLE IF EXISTS {table}")

    def write(self, rows: Sequence[FileRow]) -> None:
        """Stage a batch of files read by the scan."""
        if not rows:
            return
        table = _rows_table(rows).add_column(
            0, "seq", pa.array(range(self._staged, self._staged + len(rows)), pa.int64())
        )
        self._staged += len(rows)
        with _registered(self._con, "_batch", table):
            _exec(self._con, f"INSERT INTO _staged SELECT seq, {', '.join(_ROW_TYPES)} FROM _batch")

    def keep(self, paths: Sequence[str]) -> None:
        """These files are unchanged since the last scan (their fingerprint matched): keep their rows."""
        if paths:
            with _registered(self._con, "_batch", pa.table({"path": pa.array(list(paths), pa.string())})):
                _exec(self._con, "INSERT INTO _kept SELECT path FROM _batch")

    def keep_origin(self, origin: str) -> None:
        """Every current row read from the data file `origin` stays (the file did not change)."""
        _exec(self._con, "INSERT INTO _kept_origins VALUES (?)", [origin])

    def finish(
        self,
        state: SourceState,
        *,
        repo_metadata: tuple[str | None, int | None, int | None] | None = None,
        data_files: Mapping[str, str] | None = None,
    ) -> ApplyCounts:
        """Apply the scan, store the source's state and commit; return what changed.

        `repo_metadata` (licence, stars, forks) applies to every current row of a one-repository source;
        `data_files` (origin -> fingerprint) replaces the recorded data files of a dataset source.
        """
        con, source, now = self._con, self._source, self._now
        current = "SELECT * FROM raw_files WHERE source = $source AND status = 'current'"
        params = {"source": source}
        with _transaction(con):
            # A path already taken (earlier in this scan, by a kept file, or by a row of a kept data file)
            # stays with its first owner; the later rows are duplicates.
            _exec(
                con,
                f"""
                CREATE OR REPLACE TEMP TABLE _duplicates AS
                SELECT seq, path FROM (
                    SELECT seq, path, row_number() OVER (PARTITION BY path ORDER BY seq) AS n FROM _staged
                ) WHERE n > 1
                UNION ALL SELECT seq, path FROM _staged WHERE path IN (SELECT path FROM _kept)
                UNION ALL SELECT s.seq, s.path FROM _staged s JOIN ({current}) f USING (path)
                    WHERE f.origin IN (SELECT origin FROM _kept_origins)
                """,
                params,
            )
            _exec(con, "DELETE FROM _staged WHERE seq IN (SELECT seq FROM _duplicates)")
            duplicates = _count(con, "SELECT count(*) FROM _duplicates")
            examples = [p for (p,) in con.execute("SELECT path FROM _duplicates ORDER BY seq LIMIT 5").fetchall()]
            # Each staged file against the current row at its path.
            changed_metadata = " OR ".join(f"s.{m} IS DISTINCT FROM f.{m}" for m in _METADATA)
            _exec(
                con,
                f"""
                CREATE OR REPLACE TEMP TABLE _compared AS
                SELECT s.seq, s.path, f.sha256 IS NULL AS is_new, f.sha256 <> s.sha256 AS is_changed,
                       f.sha256 = s.sha256 AND ({changed_metadata}) AS is_touched
                FROM _staged s LEFT JOIN ({current}) f USING (path)
                """,
                params,
            )
            added = _count(con, "SELECT count(*) FROM _compared WHERE is_new")
            changed = _count(con, "SELECT count(*) FROM _compared WHERE is_changed")
            written = "(SELECT seq FROM _compared WHERE is_new OR is_changed)"
            _exec(
                con,
                f"""
                INSERT INTO raw_blobs
                SELECT DISTINCT ON (sha256) sha256, content FROM _staged
                WHERE seq IN {written} AND sha256 NOT IN (SELECT sha256 FROM raw_blobs)
                """,
            )
            _exec(
                con,
                """
                UPDATE raw_files SET status = 'superseded', status_changed_at = $now
                WHERE source = $source AND status = 'current'
                  AND path IN (SELECT path FROM _compared WHERE is_changed)
                """,
                {**params, "now": now},
            )
            _exec(
                con,
                f"""
                INSERT INTO raw_files (source, repo, path, revision, sha256, language, size_bytes, line_count,
                                       license, stars, forks, fingerprint, status, ingested_at, origin)
                SELECT $source, repo, path, $revision, sha256, language, size_bytes, line_count,
                       license, stars, forks, fingerprint, 'current', $now, origin
                FROM _staged WHERE seq IN {written}
                """,
                {**params, "revision": self._revision, "now": now},
            )
            _exec(
                con,
                f"""
                UPDATE raw_files SET {", ".join(f"{m} = s.{m}" for m in _METADATA)}
                FROM _staged s
                WHERE raw_files.source = $source AND raw_files.status = 'current' AND raw_files.path = s.path
                  AND s.seq IN (SELECT seq FROM _compared WHERE is_touched)
                """,
                params,
            )
            vouched = """
                path NOT IN (SELECT path FROM _staged) AND path NOT IN (SELECT path FROM _kept)
                AND (origin IS NULL OR origin NOT IN (SELECT origin FROM _kept_origins))
            """
            deleted = _count(con, f"SELECT count(*) FROM ({current}) WHERE {vouched}", params)
            if deleted:
                _exec(
                    con,
                    f"""
                    UPDATE raw_files SET status = 'deleted', status_changed_at = $now
                    WHERE source = $source AND status = 'current' AND {vouched}
                    """,
                    {**params, "now": now},
                )
            if repo_metadata is not None:
                license, stars, forks = repo_metadata
                # Licence and popularity belong to the repository: keep every current row in step with them.
                _exec(
                    con,
                    """
                    UPDATE raw_files SET license = $license, stars = $stars, forks = $forks
                    WHERE source = $source AND status = 'current' AND (license IS DISTINCT FROM $license
                          OR stars IS DISTINCT FROM $stars OR forks IS DISTINCT FROM $forks)
                    """,
                    {**params, "license": license, "stars": stars, "forks": forks},
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
                [source, state.kind, state.location, state.revision, state.license, now, state.config,
                 state.stars, state.forks],
            )  # fmt: skip
            current_rows = _count(con, f"SELECT count(*) FROM ({current})", params)
        return ApplyCounts(
            added=added,
            changed=changed,
            deleted=deleted,
            unchanged=current_rows - added - changed,
            duplicates=duplicates,
            duplicate_examples=examples,
        )
