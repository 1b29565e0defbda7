"""Evaluation results in their own DuckDB file (<data_dir>/eval/results.duckdb), never the curation warehouse.

One row per scored (model, benchmark) in `scores`, one row per task in `task_results`; a row of `scores` is
also the cache: a base model or champion already scored under the same cache key (benchmark version,
generation settings, sandbox limits, harness version) is not scored again. `self_tests` remembers which
tasks' canonical solutions fail on this machine, so that they are excluded instead of counted as misses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from codelupe_pipeline.duckdb_lock import connect_waiting

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    score_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMP,
    subject_key VARCHAR,      -- base:<fingerprint> | version:<n> | adapter:<path>
    subject_label VARCHAR,
    base_model VARCHAR,
    adapter VARCHAR,
    benchmark VARCHAR,
    benchmark_version VARCHAR,
    cache_key VARCHAR,
    settings VARCHAR,         -- JSON: what the cache key covers
    metrics VARCHAR,          -- JSON: metric name -> value
    tasks INTEGER,
    seconds DOUBLE,
    isolation VARCHAR,
    dagster_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS task_results (
    score_id VARCHAR,
    benchmark VARCHAR,
    task_id VARCHAR,
    language VARCHAR,
    samples INTEGER,
    passed INTEGER,
    pass_at_1 DOUBLE,
    exact_match DOUBLE,
    edit_similarity DOUBLE,
    statuses VARCHAR,         -- JSON: outcome -> count
    first_failure VARCHAR,
    completion VARCHAR        -- the first sample (truncated)
);
CREATE TABLE IF NOT EXISTS self_tests (
    cache_key VARCHAR PRIMARY KEY,
    benchmark VARCHAR,
    benchmark_version VARCHAR,
    broken VARCHAR,           -- JSON: task id -> why its canonical solution fails here
    checked INTEGER,
    created_at TIMESTAMP
);
"""


@dataclass
class TaskRow:
    task_id: str
    language: str
    samples: int = 0
    passed: int = 0
    exact_match: float | None = None
    edit_similarity: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    first_failure: str = ""
    completion: str = ""

    @property
    def pass_at_1(self) -> float | None:
        return self.passed / self.samples if self.samples else None


@dataclass
class ScoreRecord:
    subject_key: str
    subject_label: str
    base_model: str
    adapter: str
    benchmark: str
    benchmark_version: str
    cache_key: str
    settings: dict[str, object]
    metrics: dict[str, float]
    tasks: list[TaskRow]
    seconds: float = 0.0
    isolation: str = ""
    dagster_run_id: str = ""
    score_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class ResultsStore:
    def __init__(self, path: Path, lock_timeout_seconds: float = 300.0) -> None:
        self.path = path
        self.lock_timeout_seconds = lock_timeout_seconds

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, waiting while another process (a second evaluation, `codelupe evaluate`) holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = connect_waiting(lambda: duckdb.connect(str(self.path)), self.lock_timeout_seconds, max_delay=2.0)
        try:
            con.execute(SCHEMA)
            yield con
        finally:
            con.close()

    def save(self, record: ScoreRecord) -> None:
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    record.score_id,
                    datetime.now(UTC).replace(tzinfo=None),
                    record.subject_key,
                    record.subject_label,
                    record.base_model,
                    record.adapter,
                    record.benchmark,
                    record.benchmark_version,
                    record.cache_key,
                    json.dumps(record.settings, sort_keys=True, default=str),
                    json.dumps(record.metrics, sort_keys=True),
                    len(record.tasks),
                    record.seconds,
                    record.isolation,
                    record.dagster_run_id,
                ],
            )
            if record.tasks:
                con.executemany(
                    "INSERT INTO task_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        [
                            record.score_id,
                            record.benchmark,
                            t.task_id,
                            t.language,
                            t.samples,
                            t.passed,
                            t.pass_at_1,
                            t.exact_match,
                            t.edit_similarity,
                            json.dumps(t.statuses, sort_keys=True),
                            t.first_failure[:1000],
                            t.completion[:4000],
                        ]
                        for t in record.tasks
                    ],
                )
            con.execute("COMMIT")

    def cached(self, subject_key: str, cache_key: str) -> dict[str, float] | None:
        """The metrics of the latest score of this model under this cache key, if any."""
        with self.connect() as con:
            row = con.execute(
                "SELECT metrics FROM scores WHERE subject_key = ? AND cache_key = ? ORDER BY created_at DESC LIMIT 1",
                [subject_key, cache_key],
            ).fetchone()
        return json.loads(row[0]) if row else None

    def self_test(self, cache_key: str) -> dict[str, str] | None:
        with self.connect() as con:
            row = con.execute("SELECT broken FROM self_tests WHERE cache_key = ?", [cache_key]).fetchone()
        return json.loads(row[0]) if row else None

    def save_self_test(
        self, cache_key: str, benchmark: str, version: str, broken: dict[str, str], checked: int
    ) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO self_tests VALUES (?, ?, ?, ?, ?, ?)",
                [cache_key, benchmark, version, json.dumps(broken), checked, datetime.now(UTC).replace(tzinfo=None)],
            )
