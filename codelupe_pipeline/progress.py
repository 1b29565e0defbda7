"""A terminal progress bar for a Dagster run: steps done out of the job's steps, the step running now and
its latest log line (a training step's loss, a benchmark's score), read from the instance's event log.

It polls the event log from a thread, so it works for any run the instance records, whoever executes it.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import IO

import dagster as dg
from tqdm import tqdm

DONE = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
RUN_ENDED = {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}


class RunProgress:
    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        total_steps: int,
        file: IO[str] | None = None,
        disable: bool | None = None,  # None: shown only on a terminal
        poll_seconds: float = 0.5,
    ) -> None:
        self.instance, self.run_id, self.poll_seconds = instance, run_id, poll_seconds
        self.bar = tqdm(total=total_steps, unit="step", file=file, disable=disable, dynamic_ncols=True)
        self.cursor: str | None = None
        self.running: set[str] = set()
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="run-progress", daemon=True)

    def __enter__(self) -> RunProgress:
        if not self.bar.disable:
            self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.update()  # the events written after the last poll
        self.bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.update()

    def update(self) -> None:
        """Read the events since the last call and move the bar."""
        if self.bar.disable:
            return
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=500)
            for record in page.records:
                self._on(record.event_log_entry)
            self.cursor = page.cursor
            if not page.has_more:
                break

    def _on(self, entry: dg.EventLogEntry) -> None:
        event, step = entry.dagster_event, entry.step_key
        if event is None:
            if step and entry.user_message:
                self.bar.set_postfix_str(entry.user_message.splitlines()[0][:80], refresh=False)
        elif event.event_type == dg.DagsterEventType.STEP_START and step:
            self.running.add(step)
        elif event.event_type in DONE and step:
            self.running.discard(step)
            if event.event_type == dg.DagsterEventType.STEP_FAILURE:
                self.failed.append(step)
            self.bar.update(1)
        elif event.event_type in RUN_ENDED:
            # Steps after a failed one end without an event of their own: the run's end accounts for them.
            self.running.clear()
            self.bar.update(self.bar.total - self.bar.n)
        else:
            return
        now = ", ".join(sorted(self.running)) or "waiting"
        self.bar.set_description_str(f"{now}{f' ({len(self.failed)} failed)' if self.failed else ''}", refresh=True)
