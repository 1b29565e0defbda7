"""Opening a DuckDB file another process may hold: DuckDB allows one writer process at a time, so wait for it."""

from __future__ import annotations

import time
from collections.abc import Callable

import duckdb


def connect_waiting(
    open_connection: Callable[[], duckdb.DuckDBPyConnection], timeout_seconds: float, max_delay: float = 5.0
) -> duckdb.DuckDBPyConnection:
    """`open_connection()`, retried with exponential backoff while another process holds the file's lock."""
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    while True:
        try:
            return open_connection()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
