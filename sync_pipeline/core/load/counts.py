"""The load counters, spelled once: what a load did with its documents.

Every document of a batch or a load lands in exactly one of indexed, deleted, stale_skipped,
conflicts, failed and dead_lettered; `batches` counts the bulk batches. A batch's result, a
load's and a drain's totals, a run's totals and a recorded batch each carry one `Counts` and
read its counters as their own (`Counted`). The names are the run history's metadata keys,
the CLI's JSON keys and the batch table's columns, in this order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Counts:
    indexed: int = 0
    deleted: int = 0
    stale_skipped: int = 0  # ES already holds a newer read's version: not a failure, and counted
    # a 409 although this was the newest read: ES holds a version no read of ours wrote (an edit
    # out of band, a future version); the sides disagree, the run's check fails
    conflicts: int = 0
    failed: int = 0  # transient failures that outlived the retries: the run must fail
    dead_lettered: int = 0  # refused for good, or no document can carry the row
    batches: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{name: getattr(self, name) + getattr(other, name) for name in COUNTERS})

    @property
    def written(self) -> int:
        return self.indexed + self.deleted

    @property
    def docs(self) -> int:
        """Every document counted, each once."""
        return self.written + self.stale_skipped + self.conflicts + self.failed + self.dead_lettered

    def as_dict(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """The counters by name (all, or `names`), in their order."""
        return {name: getattr(self, name) for name in (COUNTERS if names is None else names)}

    @classmethod
    def read(cls, values: Mapping[str, Any], number: Callable[[Any], float]) -> Counts:
        """The counters found in `values` (a materialization's metadata, a table row), each read
        by `number`; those missing are 0."""
        return cls(**{name: int(number(values.get(name))) for name in COUNTERS})


COUNTERS = tuple(f.name for f in fields(Counts))
PER_BATCH = tuple(name for name in COUNTERS if name != "batches")  # what a batch records of itself
ONE_BATCH = Counts(batches=1)
# the order a run's alert (its text, its Slack fields; batches first) and the CLI's log record of a
# run (batches last) list the document counters in, as they always have
RUN_ORDER = ("indexed", "deleted", "failed", "stale_skipped", "conflicts", "dead_lettered")
ALERT_ORDER = ("batches", *RUN_ORDER)


class Counted:
    """A record or an accumulator around a `Counts`: its counters read as its own attributes
    (`totals.indexed`). Counting goes through `counts` (`self.counts += Counts(indexed=1)`);
    the attributes are read-only."""

    counts: Counts

    @property
    def docs(self) -> int:
        return self.counts.docs


def _counter(name: str) -> property:
    return property(lambda self: getattr(self.counts, name), doc=f"`counts.{name}`")


for _name in COUNTERS:
    setattr(Counted, _name, _counter(_name))
