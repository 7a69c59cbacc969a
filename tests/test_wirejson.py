"""JSON on the per-token path: the standard library's compact bytes for JSON's own types,
and its answers for what orjson refuses (a model's chunk is untrusted input)."""

import json
import math
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat import wirejson

compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

text = st.text(st.characters(exclude_categories=["Cs"]))
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text,
    lambda inner: st.lists(inner) | st.dictionaries(text, inner),
    max_leaves=20,
)


@given(values)
def test_it_writes_the_standard_librarys_compact_bytes(value):
    assert wirejson.dumps(value) == compact(value).encode()


@given(values)
def test_it_reads_back_what_it_writes(value):
    assert wirejson.loads(wirejson.dumps(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_is_the_same_number(number):
    assert json.loads(wirejson.dumps({"n": number})) == {"n": number}


def test_nan_and_the_infinities_are_written_as_null_which_is_json():
    assert wirejson.dumps([math.nan, math.inf, -math.inf]) == b"[null,null,null]"


def test_a_uuid_is_written_as_its_value_and_a_datetime_is_refused_as_before():
    key = uuid.UUID(int=1)
    assert wirejson.dumps({"id": key}) == b'{"id":"00000000-0000-0000-0000-000000000001"}'
    with pytest.raises(TypeError):
        wirejson.dumps({"at": datetime.now(UTC)})


@pytest.mark.parametrize(
    "value",
    [{1: "a key that is not a string"}, {"n": 2**70}],
    ids=["int-key", "big-int"],
)
def test_what_orjson_will_not_write_is_written_as_the_standard_library_does(value):
    assert wirejson.dumps(value) == compact(value).encode()


@pytest.mark.parametrize(
    "document",
    [b'{"content":"\\ud800"}', b'{"content":"\\udfff tail"}'],
    ids=["high", "low"],
)
def test_a_lone_surrogate_is_read_as_the_standard_library_reads_it(document):
    assert wirejson.loads(document) == json.loads(document)


def test_nan_is_read_as_the_standard_library_reads_it():
    assert math.isnan(wirejson.loads(b'{"n":NaN}')["n"])


def test_an_integer_past_64_bits_is_read_as_the_nearest_float():
    assert wirejson.loads(b'{"n":123456789012345678901234567890}') == {"n": 1.2345678901234568e29}


@pytest.mark.parametrize("document", [b"{", b"\xff", b'{"a":1}x', b""])
def test_what_is_not_json_is_a_value_error(document):
    with pytest.raises(ValueError):
        wirejson.loads(document)
