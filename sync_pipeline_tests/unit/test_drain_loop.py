"""The drain's one loop (ops/drain/loop.take_changes) over a change source, and which sources a
spec's drain gets (ops/drain/sources.change_sources) — no server: the source here is a queue of
claims arriving on a clock the test moves, the claims' writing a plain function.

What the two real sources do with PostgreSQL, the slot and Elasticsearch is covered by the
integration tests: test_logical*.py (the slot), test_correctness.py, test_relations.py,
test_partitioned_capture.py, test_poison_rows.py and test_sync.py (the buffer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sync_pipeline.core.spec.model import parse_specs
from sync_pipeline.io.postgres import engine_for
from sync_pipeline.io.search import search_client
from sync_pipeline.ops.drain.loop import Claim, Drain, take_changes
from sync_pipeline.ops.drain.slot import SlotClaim, SlotSource
from sync_pipeline.ops.drain.sources import BufferSource, change_sources


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Arriving:
    """A change source whose claims arrive at set times; waiting moves the clock."""

    clock: Clock
    arrivals: list[tuple[float, Claim]]
    caught_up_at: float = 0.0
    step: float = 0.1
    waits: int = 0
    confirmed: list[Claim] = field(default_factory=list)

    def claim(self, deadline: float) -> Claim | None:
        if self.arrivals and self.arrivals[0][0] <= self.clock.now:
            return self.arrivals.pop(0)[1]
        return None

    def confirm(self, claim: Claim) -> None:
        self.confirmed.append(claim)

    def wait(self, seconds: float) -> None:
        self.waits += 1
        self.clock.now += min(self.step, seconds)

    def caught_up(self) -> bool:
        return self.clock.now >= self.caught_up_at

    def cover_partitions(self, conn, table, watched) -> None:  # pragma: no cover - not looped over
        raise AssertionError("the loop covers no partitions")

    def close(self) -> None:
        pass


def _claim(count: int = 1, last: bool = True) -> Claim:
    return Claim(conn=None, transaction=None, count=count, last=last)  # type: ignore[arg-type]


@dataclass
class Taken:
    """What the loop handed to `take` and how often it refreshed."""

    writes: bool = True
    claims: list[Claim] = field(default_factory=list)
    refreshes: list[int] = field(default_factory=list)  # claims taken at each refresh

    def take(self, claim: Claim) -> bool:
        self.claims.append(claim)
        return self.writes

    def refresh(self) -> None:
        self.refreshes.append(len(self.claims))


def test_a_one_off_drain_takes_what_waits_and_ends_without_waiting():
    clock = Clock()
    source = Arriving(clock, [(0.0, _claim(2, last=False)), (0.0, _claim(2, last=False)), (0.0, _claim(1))])
    taken = Taken()
    claims = take_changes(source, taken.take, taken.refresh, idle_seconds=0, clock=clock)
    assert claims == 3 and [c.count for c in taken.claims] == [2, 2, 1]
    assert source.waits == 0 and clock.now == 0.0


def test_a_following_drain_takes_what_arrives_until_idle_for_idle_seconds():
    clock = Clock()
    late = _claim()
    source = Arriving(clock, [(0.0, _claim()), (1.0, _claim()), (2.5, _claim()), (5.0, late)])
    taken = Taken()
    take_changes(source, taken.take, taken.refresh, idle_seconds=2.0, clock=clock)
    assert len(taken.claims) == 3 and source.arrivals[0][1] is late  # 2.5 s after the last, it ended
    assert 4.5 <= clock.now < 4.7, clock.now


def test_a_following_drain_without_idle_seconds_runs_to_its_deadline():
    clock = Clock()
    source = Arriving(clock, [(0.0, _claim()), (3.0, _claim())])
    taken = Taken()
    take_changes(source, taken.take, taken.refresh, idle_seconds=None, deadline=10.0, clock=clock)
    assert len(taken.claims) == 2 and 10.0 <= clock.now < 10.2, clock.now


def test_a_one_off_drain_waits_until_its_source_caught_up():
    """The slot says whether the server has sent everything committed before the drain began;
    until it has, an empty claim is no reason to end."""
    clock = Clock()
    source = Arriving(clock, [(0.25, _claim())], caught_up_at=0.35)
    taken = Taken()
    take_changes(source, taken.take, taken.refresh, idle_seconds=0, clock=clock)
    assert len(taken.claims) == 1 and source.waits >= 3 and clock.now >= 0.35


def test_a_passed_deadline_still_takes_one_claim_then_stops():
    clock = Clock(now=5.0)
    left = _claim()
    source = Arriving(clock, [(0.0, _claim(last=False)), (0.0, left)])
    taken = Taken()
    take_changes(source, taken.take, taken.refresh, idle_seconds=None, deadline=1.0, clock=clock)
    assert len(taken.claims) == 1 and source.arrivals == [(0.0, left)]
    assert taken.refreshes == [1]  # what it wrote is searchable before the run ends


def test_max_batches_bounds_the_claims_of_a_run():
    clock = Clock()
    source = Arriving(clock, [(0.0, _claim(last=False)) for _ in range(5)])
    taken = Taken()
    assert take_changes(source, taken.take, taken.refresh, idle_seconds=0, max_batches=2, clock=clock) == 2
    assert len(source.arrivals) == 3


def test_the_index_is_refreshed_once_a_burst_is_written_not_per_batch():
    clock = Clock()
    burst = [(0.0, _claim(last=False)), (0.0, _claim(last=False)), (0.0, _claim(last=True))]
    source = Arriving(clock, [*burst, (1.0, _claim(last=False))])
    taken = Taken()
    take_changes(source, taken.take, taken.refresh, idle_seconds=2.0, clock=clock)
    # after the burst's last claim, then once the next claim found nothing behind it
    assert taken.refreshes == [3, 4]


def test_claims_that_wrote_nothing_refresh_nothing():
    clock = Clock()
    source = Arriving(clock, [(0.0, _claim()), (0.0, _claim())])
    taken = Taken(writes=False)
    take_changes(source, taken.take, taken.refresh, idle_seconds=0, clock=clock)
    assert len(taken.claims) == 2 and taken.refreshes == []


def _drain(capture: str, notify: bool = False) -> Drain:
    (spec,) = parse_specs(
        f"""
specs:
  - name: orders
    capture: {capture}
    source: {{table: orders, primary_key: id, updated_at: updated_at}}
    target: {{index: orders}}
    partitions: {{grain: month, start: "2026-01-01"}}
    buffer_sensor: {{notify: {str(notify).lower()}}}
"""
    )
    # handles only: nothing here connects
    return Drain(engine_for("postgresql://sync@127.0.0.1:9/none"), search_client("http://127.0.0.1:9"), spec)


def test_a_trigger_spec_is_drained_from_the_buffer_alone():
    for following in (False, True):
        sources = change_sources(_drain("triggers"), following=following)
        assert [type(s) for s in sources] == [BufferSource]


def test_a_logical_spec_is_drained_from_its_slot_after_what_the_buffer_still_holds():
    drain = _drain("logical")
    sources = change_sources(drain, following=True)
    assert [type(s) for s in sources] == [BufferSource, SlotSource]
    assert all(s.drain is drain for s in sources)  # type: ignore[attr-defined]


def test_only_a_following_trigger_drain_listens_for_notify():
    """A one-off drain, and the logical spec's look at the buffer's leftovers, never wait on the
    buffer: neither opens a listening connection (none is opened here at all: no server)."""
    one_off = change_sources(_drain("triggers", notify=True), following=False)
    leftovers = change_sources(_drain("logical", notify=True), following=True)[0]
    assert one_off[0]._listener is None and leftovers._listener is None  # type: ignore[attr-defined]


class Recorded:
    """A claim's transaction and the slot's stream, writing what happens to them in one log."""

    def __init__(self, log: list[str]):
        self.log, self.is_active = log, True

    def commit(self) -> None:
        self.log.append("commit")
        self.is_active = False

    def confirm(self, position: int) -> None:
        self.log.append(f"slot confirmed to {position}")


def test_the_slot_moves_past_a_claim_only_after_its_transaction_committed():
    # the claim's transaction holds its dead letters: moving the slot first would let a crash
    # between the two lose them, the changes gone from the slot and no record of the refusal
    log: list[str] = []
    drain = type("DrainStub", (), {"engine": None, "spec": None})()
    source = SlotSource(drain)
    source._stream = Recorded(log)
    claim = SlotClaim(conn=None, transaction=Recorded(log), count=1, position=42)
    source.confirm(claim)
    assert log == ["commit", "slot confirmed to 42"]
