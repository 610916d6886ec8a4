"""Logical capture's pure parts: pgoutput decoding, what a change means for a spec, snapshot
visibility, names and identities (no servers)."""

from __future__ import annotations

import struct

import pytest

from sync_pipeline.core.cdc import logical
from sync_pipeline.core.cdc.fanout import Watched
from sync_pipeline.core.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    Decoder,
    Other,
    Relation,
    Truncate,
)
from sync_pipeline.core.spec.model import SpecError, parse_specs


def _tuple(values: list[str | object | None]) -> bytes:
    out = struct.pack("!H", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            raw = str(value).encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def _relation(relid: int, schema: str, name: str, columns: list[tuple[str, bool]], identity: bytes = b"d"):
    out = b"R" + struct.pack("!I", relid) + schema.encode() + b"\0" + name.encode() + b"\0" + identity
    out += struct.pack("!H", len(columns))
    for column, key in columns:
        out += struct.pack("!B", 1 if key else 0) + column.encode() + b"\0" + struct.pack("!Ii", 23, -1)
    return out


REVIEWS = _relation(7, "shop", "reviews", [("id", True), ("product_id", False), ("stars", False)], b"f")


def test_transaction_bounds_and_a_relation_layout_decode():
    decoder = Decoder()
    begin = decoder.decode(b"B" + struct.pack("!QqI", 0x33F61FD0, 123456, 27240))
    assert begin == Begin(0x33F61FD0, 123456, 27240)
    relation = decoder.decode(REVIEWS)
    assert isinstance(relation, Relation) and relation.qualified == "shop.reviews"
    assert relation.columns == ("id", "product_id", "stars") and relation.key_columns == ("id",)
    assert relation.replica_identity == "f"
    commit = decoder.decode(b"C" + struct.pack("!BQQq", 0, 0x33F61FD0, 0x33F62000, 123456))
    assert commit == Commit(0x33F61FD0, 0x33F62000, 123456)
    assert decoder.decode(b"Yxyz") == Other("Y")


def test_insert_update_delete_and_truncate_carry_their_rows():
    decoder = Decoder()
    decoder.decode(REVIEWS)
    insert = decoder.decode(b"I" + struct.pack("!I", 7) + b"N" + _tuple(["9", "3", None]))
    assert insert == Change("I", 7, {"id": "9", "product_id": "3", "stars": None}, None)
    update = decoder.decode(
        b"U" + struct.pack("!I", 7) + b"O" + _tuple(["1", "1", "5"]) + b"N" + _tuple(["1", "4", UNCHANGED])
    )
    assert update.old == {"id": "1", "product_id": "1", "stars": "5"} and not update.old_is_key
    assert update.new["stars"] is UNCHANGED
    delete = decoder.decode(b"D" + struct.pack("!I", 7) + b"K" + _tuple(["2", None, None]))
    assert delete.op == "D" and delete.new is None and delete.old_is_key
    truncate = decoder.decode(b"T" + struct.pack("!IBII", 2, 0, 7, 8))
    assert truncate == Truncate((7, 8))


def test_only_the_columns_a_drain_reads_are_decoded_and_the_rest_is_stepped_over():
    decoder = Decoder(wanted={7: frozenset({"id", "product_id"})})
    decoder.decode(REVIEWS)
    update = decoder.decode(
        b"U" + struct.pack("!I", 7) + b"O" + _tuple(["1", "1", "5" * 500]) + b"N" + _tuple(["1", "4", None])
    )
    assert update.old == {"id": "1", "product_id": "1"} and update.new == {"id": "1", "product_id": "4"}
    other = _relation(8, "shop", "tags", [("id", True), ("label", False)])
    decoder.decode(other)  # a relation the drain names no columns for: every column
    insert = decoder.decode(b"I" + struct.pack("!I", 8) + b"N" + _tuple(["3", UNCHANGED]))
    assert insert.new == {"id": "3", "label": UNCHANGED}


def test_a_change_before_its_relation_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="before its Relation message"):
        Decoder().decode(b"I" + struct.pack("!I", 99) + b"N" + _tuple(["1"]))


ROOT = Watched("shop.products", None, ("id",), (), ("id", "name", "updated_at"))
CHILD = Watched("shop.reviews", "reviews", ("id",), ("product_id",), ("id", "product_id", "stars"))


def test_a_root_key_change_deletes_the_old_document_and_writes_the_new():
    change = Change("U", 1, {"id": "2", "name": "x", "updated_at": None}, {"id": "1"}, old_is_key=True)
    entries = logical.entries_for(change, ROOT)
    assert entries == [logical.Entry(None, {"id": "1"}, "D"), logical.Entry(None, {"id": "2"}, "U")]
    plain = Change("U", 1, {"id": "2", "name": "y", "updated_at": None}, None)
    assert logical.entries_for(plain, ROOT) == [logical.Entry(None, {"id": "2"}, "U")]
    deleted = Change("D", 1, None, {"id": "5"}, old_is_key=True)
    assert logical.entries_for(deleted, ROOT) == [logical.Entry(None, {"id": "5"}, "D")]


def test_a_child_records_old_and_new_links_and_skips_updates_of_unread_columns():
    moved = Change(
        "U", 7, {"id": "1", "product_id": "4", "stars": "5"}, {"id": "1", "product_id": "1", "stars": "5"}
    )
    (entry,) = logical.entries_for(moved, CHILD)
    assert entry == logical.Entry("reviews", {"id": "1"}, "U", [{"product_id": "1"}, {"product_id": "4"}])
    # only a column no document reads changed (not in `required`): nothing to do
    unread = Change("U", 7, {"id": "1", "product_id": "1", "stars": "5", "helpful": "3"},
                    {"id": "1", "product_id": "1", "stars": "5", "helpful": "2"})  # fmt: skip
    assert logical.entries_for(unread, CHILD) == []
    # an unchanged TOASTed value is taken from the old row
    toasted = Change(
        "U",
        7,
        {"id": "1", "product_id": UNCHANGED, "stars": "4"},
        {"id": "1", "product_id": "1", "stars": "5"},
    )
    (entry,) = logical.entries_for(toasted, CHILD)
    assert entry.link == [{"product_id": "1"}, {"product_id": "1"}]
    deleted = Change("D", 7, None, {"id": "2", "product_id": "1", "stars": "3"})
    assert logical.entries_for(deleted, CHILD)[0].link == [{"product_id": "1"}, None]


def test_visibility_follows_the_snapshot_and_the_epoch():
    epoch = 3 << 32
    snapshot = f"{epoch + 100}:{epoch + 110}:{epoch + 105},{epoch + 107}"
    assert logical.visible_in(99, snapshot) and logical.visible_in(106, snapshot)
    assert not logical.visible_in(105, snapshot)  # still in progress for this snapshot
    assert not logical.visible_in(110, snapshot)  # began after it
    assert logical.visible_in(2**32 - 5, f"{epoch + 3}:{epoch + 4}:")  # the previous epoch's


def test_slot_names_fit_postgresql_and_stay_apart():
    assert logical.slot_name("products") == "sync_pipeline_products"
    long_a, long_b = logical.slot_name("a" * 60 + "x"), logical.slot_name("a" * 60 + "y")
    assert len(long_a) <= 63 and long_a != long_b


def test_tables_that_need_their_old_rows_whole():
    assert logical.needs_full_identity(CHILD, "d", True)  # the old link leads to the old parent
    assert not logical.needs_full_identity(ROOT, "d", True)  # the key is enough
    assert logical.needs_full_identity(ROOT, "d", False)  # no key: PostgreSQL would refuse UPDATEs
    assert not logical.needs_full_identity(CHILD, "f", True)
    # a document key the identity does not log: a DELETE would name no document
    assert logical.needs_full_identity(ROOT, "d", True, frozenset({"sku"}))
    assert not logical.needs_full_identity(ROOT, "i", True, frozenset({"id"}))


SPEC = """
{top}
specs:
  - name: a
    source: {{table: a, primary_key: id, updated_at: u}}
    target: {{index: a}}
    partitions: {{grain: day, start: "2026-01-01"}}
  - name: b
    {capture}
    source: {{table: b, primary_key: id, updated_at: u}}
    target: {{index: b}}
    partitions: {{grain: day, start: "2026-01-01"}}
"""


def test_capture_defaults_to_triggers_and_a_file_level_setting_covers_every_spec():
    a, b = parse_specs(SPEC.format(top="", capture=""))
    assert a.capture == b.capture == "triggers"
    a, b = parse_specs(SPEC.format(top="capture: logical", capture="capture: triggers"))
    assert (a.capture, b.capture) == ("logical", "triggers")
    with pytest.raises(SpecError, match=r"specs\[1\]\.capture: Input should be .* \(spec 'b'\)"):
        parse_specs(SPEC.format(top="", capture="capture: wal2json"))
