"""results' decoding of integer lists (per-query latencies): a clean list is read in one pass and equals the
item-by-item reading; any item that is not a plain integer is refused with the same message as before, naming
the list, the item and what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from annbench import results

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results" / "ci_smoke" / "faiss-ivf-1a0c301e-native.json"


def _doc() -> dict[str, Any]:
    return results.dump(results.load(FIXTURE))


def _first_search(doc: dict[str, Any]) -> int:
    return next(i for i, st in enumerate(doc["steps"]) if st["op"] == "search")


def test_a_latency_list_reads_back_equal_and_is_a_copy() -> None:
    doc = _doc()
    i = _first_search(doc)
    lat = doc["steps"][i]["settings"][0]["latency_ns"]
    assert len(lat) > 100 and all(type(x) is int for x in lat)
    rec = results.parse(doc)
    got = rec.steps[i].settings[0].latency_ns
    assert got == lat and got is not lat
    assert results.dump(rec) == doc


@pytest.mark.parametrize("bad, shown", [(True, "bool True"), (1.5, "float 1.5"), ("7", "str '7'"),
                                        (None, "NoneType None")])
def test_an_item_that_is_not_an_integer_is_named(bad: Any, shown: str) -> None:
    doc = _doc()
    i = _first_search(doc)
    doc["steps"][i]["settings"][0]["latency_ns"][3] = bad
    with pytest.raises(results.ResultError) as err:
        results.parse(doc, "f.json")
    assert str(err.value) == f"f.json: steps[{i}].settings[0].latency_ns[3]: expected an integer, got {shown}"


def test_an_empty_latency_list_is_read() -> None:
    doc = _doc()
    i = _first_search(doc)
    doc["steps"][i]["settings"][0]["latency_ns"] = []
    assert results.parse(doc).steps[i].settings[0].latency_ns == []
