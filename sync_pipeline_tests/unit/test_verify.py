"""The merge of two key-ordered streams that `verify` is built on."""

from sync_pipeline.core.documents.diff import VerifyReport, diff_sorted, differing_fields
from sync_pipeline.io.search.multi_fields import checkable


def docs(*items):
    return [((k,), str(k), doc) for k, doc in items]


def test_identical_streams_have_no_drift():
    side = docs((1, {"a": 1}), (2, {"a": 2}))
    report = diff_sorted(side, list(side), VerifyReport("s", "i"))
    assert report.ok and report.pg_count == 2 and report.es_count == 2


def test_missing_extra_and_changed_documents_are_counted():
    pg = docs((1, {"a": 1}), (2, {"a": 2}), (4, {"a": 4, "b": [1]}))
    es = docs((1, {"a": 1}), (3, {"a": 3}), (4, {"a": 4, "b": [2]}), (5, {"a": 5}))
    report = diff_sorted(pg, es, VerifyReport("s", "i"))
    assert (report.missing, report.extra, report.mismatched) == (1, 2, 1)
    assert report.missing_ids == ["2"]
    assert report.extra_ids == ["3", "5"]
    assert report.mismatches[0].doc_id == "4" and report.mismatches[0].fields == ["b"]
    assert (report.pg_count, report.es_count) == (3, 4)
    assert not report.ok
    assert "DRIFT" in report.lines()[0]


def test_one_side_empty():
    report = diff_sorted(docs((1, {}), (2, {})), [], VerifyReport("s", "i"))
    assert report.missing == 2 and report.extra == 0


def test_null_and_absent_fields_are_equal_but_values_are_not():
    assert differing_fields({"a": None, "b": 1}, {"b": 1}) == []
    assert differing_fields({"a": 1.5}, {"a": 1.50}) == []
    assert differing_fields({"a": "x"}, {"a": "y"}) == ["a"]


def test_composite_keys_compare_as_tuples():
    pg = [((1, "b"), '[1,"b"]', {}), ((2, "a"), '[2,"a"]', {})]
    es = [((1, "b"), '[1,"b"]', {}), ((1, "c"), '[1,"c"]', {}), ((2, "a"), '[2,"a"]', {})]
    report = diff_sorted(pg, es, VerifyReport("s", "i"))
    assert report.extra_ids == ['[1,"c"]'] and report.missing == 0


class Recorder:
    def __init__(self):
        self.ids = []

    def repair(self, doc_id):
        self.ids.append(doc_id)


def test_repairs_are_requested_for_missing_changed_and_extra_documents_in_order():
    pg = [((1,), "1", {"a": 1}), ((2,), "2", {"a": 2}), ((4,), "4", {"a": 4})]
    es = [((2,), "2", {"a": 0}), ((3,), "3", {}), ((4,), "4", {"a": 4})]
    repairs = Recorder()
    diff_sorted(pg, es, VerifyReport("s", "i"), repairs)
    assert repairs.ids == ["1", "2", "3"]


def test_the_multi_fields_verify_counts_are_those_that_index_every_value_of_their_parent():
    keyword = {"type": "keyword"}
    mappings = {
        "properties": {
            "title": {"type": "text", "fields": {"raw": keyword, "short": {**keyword, "ignore_above": 20}}},
            "maker": {"properties": {"label": {"type": "text", "fields": {"raw": keyword}}}},
            "reviews": {
                "type": "nested",
                "properties": {"body": {"type": "text", "fields": {"raw": keyword}}},
            },
            "price": {"type": "double", "fields": {"text": {"type": "keyword", "index": False}}},
            "sku": keyword,
        }
    }
    # a sub-field that may skip a value proves nothing by its absence; nested needs nested queries
    assert checkable(mappings) == [("title", "title.raw"), ("maker.label", "maker.label.raw")]
