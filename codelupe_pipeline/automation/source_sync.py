"""Keep the source partitions in step with the sources file. Plain logic, tested without Dagster.

A source new to the sources file gets a partition and an ingestion run. A source whose entry changed (a new
`ref`, other `exclude` patterns; not mere star counts) is ingested again. A source gone from the file first
gets a run of its partition, which marks its rows `removed` and records that in the partition's metadata;
only then is its partition deleted, so the UI never loses a partition whose rows are still training data.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SyncPlan:
    add: list[str]  # partitions to create, in sources-file order
    ingest: list[str]  # existing partitions to ingest again: entry changed, or back after a removal
    retire: list[str]  # partitions whose source left the file: one run retires their rows
    delete: list[str]  # partitions whose source left the file and whose retirement is recorded

    @property
    def empty(self) -> bool:
        return not (self.add or self.ingest or self.retire or self.delete)


def plan_source_sync(
    declared: Mapping[str, str],
    partitions: Sequence[str],
    seen: Mapping[str, str] | None,
    retired: Collection[str],
) -> SyncPlan:
    """What to do now.

    declared: source name -> entry fingerprint, in sources-file order.
    partitions: the existing partition keys.
    seen: the declared sources at the previous evaluation (None the first time: existing partitions are
        taken as ingested, e.g. by `codelupe run`).
    retired: partitions whose latest materialization recorded their source as removed.

    The plan is recomputed from scratch on every evaluation; the runs it asks for carry run keys made of the
    partition's latest materialization, so asking again before that run ends does not launch it twice.
    """
    existing = set(partitions)
    add = [name for name in declared if name not in existing]
    ingest = [
        name
        for name in declared
        if name in existing
        and (name in retired or (seen is not None and name in seen and seen[name] != declared[name]))
    ]
    gone = [p for p in partitions if p not in declared]
    return SyncPlan(
        add=add,
        ingest=ingest,
        retire=[p for p in gone if p not in retired],
        delete=[p for p in gone if p in retired],
    )
