"""The raw code store in DuckDB: content-addressed blobs plus one row per (source, path, revision).

A changed file supersedes its previous row, a file gone from the source is marked deleted: history is never
overwritten, and curation reads only the rows whose status is 'current'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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
    revision    VARCHAR NOT NULL,   -- git commit, or the directory manifest hash, where this content appeared
    sha256      VARCHAR NOT NULL,   -- key into raw_blobs
    language    VARCHAR NOT NULL,
    size_bytes  BIGINT NOT NULL,
    line_count  BIGINT NOT NULL,
    license     VARCHAR,            -- SPDX id of the repository's licence, NULL when unknown
    stars       INTEGER,
    forks       INTEGER,
    fingerprint VARCHAR NOT NULL,   -- git blob id, or mtime:size, to skip unchanged files on the next scan
    status      VARCHAR NOT NULL,   -- current | superseded | deleted
    ingested_at TIMESTAMP NOT NULL,
    status_changed_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS source_state (
    source      VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    location    VARCHAR NOT NULL,
    revision    VARCHAR NOT NULL,
    license     VARCHAR,
    scanned_at  TIMESTAMP NOT NULL
);
"""


@dataclass(frozen=True)
class SourceState:
    kind: str
    location: str
    revision: str
    license: str | None


@dataclass(frozen=True)
class FileRow:
    path: str
    sha256: str
    content: str
    language: str
    size_bytes: int
    line_count: int
    fingerprint: str


@dataclass(frozen=True)
class ApplyCounts:
    added: int
    changed: int
    deleted: int
    touched: int  # same content, new fingerprint (e.g. mtime)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA)


def source_state(con: duckdb.DuckDBPyConnection, source: str) -> SourceState | None:
    row = con.execute(
        "SELECT kind, location, revision, license FROM source_state WHERE source = ?", [source]
    ).fetchone()
    return SourceState(*row) if row else None


def current_fingerprints(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT path, fingerprint FROM raw_files WHERE source = ? AND status = 'current'", [source]
    ).fetchall()
    return dict(rows)


def current_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(
        con.execute("SELECT source, count(*) FROM raw_files WHERE status = 'current' GROUP BY source").fetchall()
    )


def apply_scan(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    repo_of: dict[str, str],
    state: SourceState,
    files: list[FileRow],
    present: dict[str, str],
    stars: int | None,
    forks: int | None,
) -> ApplyCounts:
    """Store one scan of a source in a single transaction: all of it lands, or none of it does."""
    now = datetime.now(UTC).replace(tzinfo=None)
    previous = {
        path: sha
        for path, sha in con.execute(
            "SELECT path, sha256 FROM raw_files WHERE source = ? AND status = 'current'", [source]
        ).fetchall()
    }
    new_rows = [f for f in files if previous.get(f.path) != f.sha256]
    touched = [f for f in files if previous.get(f.path) == f.sha256]
    replaced = [f.path for f in new_rows if f.path in previous]
    deleted = [path for path in previous if path not in present]

    con.execute("BEGIN TRANSACTION")
    try:
        if new_rows:
            blobs = pa.table({"sha256": [f.sha256 for f in new_rows], "content": [f.content for f in new_rows]})
            con.register("_new_blobs", blobs)
            con.execute(
                "INSERT INTO raw_blobs SELECT DISTINCT ON (sha256) sha256, content FROM _new_blobs "
                "WHERE sha256 NOT IN (SELECT sha256 FROM raw_blobs)"
            )
            con.unregister("_new_blobs")
        _set_status(con, source, replaced, "superseded", now)
        _set_status(con, source, deleted, "deleted", now)
        if new_rows:
            rows = pa.table(
                {
                    "source": [source] * len(new_rows),
                    "repo": [repo_of[f.path] for f in new_rows],
                    "path": [f.path for f in new_rows],
                    "revision": [state.revision] * len(new_rows),
                    "sha256": [f.sha256 for f in new_rows],
                    "language": [f.language for f in new_rows],
                    "size_bytes": [f.size_bytes for f in new_rows],
                    "line_count": [f.line_count for f in new_rows],
                    "fingerprint": [f.fingerprint for f in new_rows],
                }
            )
            con.register("_new_rows", rows)
            con.execute(
                """
                INSERT INTO raw_files
                SELECT source, repo, path, revision, sha256, language, size_bytes, line_count,
                       ?, ?, ?, fingerprint, 'current', ?, NULL
                FROM _new_rows
                """,
                [state.license, stars, forks, now],
            )
            con.unregister("_new_rows")
        for f in touched:
            con.execute(
                "UPDATE raw_files SET fingerprint = ? WHERE source = ? AND path = ? AND status = 'current'",
                [f.fingerprint, source, f.path],
            )
        # Licence and popularity belong to the repository: keep every current row in step with them.
        con.execute(
            """
            UPDATE raw_files SET license = ?, stars = ?, forks = ?
            WHERE source = ? AND status = 'current'
              AND (license IS DISTINCT FROM ? OR stars IS DISTINCT FROM ? OR forks IS DISTINCT FROM ?)
            """,
            [state.license, stars, forks, source, state.license, stars, forks],
        )
        con.execute(
            """
            INSERT OR REPLACE INTO source_state VALUES (?, ?, ?, ?, ?, ?)
            """,
            [source, state.kind, state.location, state.revision, state.license, now],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return ApplyCounts(
        added=len(new_rows) - len(replaced), changed=len(replaced), deleted=len(deleted), touched=len(touched)
    )


def _set_status(con: duckdb.DuckDBPyConnection, source: str, paths: list[str], status: str, now: datetime) -> None:
    if not paths:
        return
    con.register("_paths", pa.table({"path": paths}))
    con.execute(
        """
        UPDATE raw_files SET status = ?, status_changed_at = ?
        WHERE source = ? AND status = 'current' AND path IN (SELECT path FROM _paths)
        """,
        [status, now, source],
    )
    con.unregister("_paths")
