"""JSON on the per-token path: the standard library's compact bytes, and its answers for
what orjson refuses (a model's chunk is untrusted input)."""

import json
import math

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


def test_a_float_is_the_same_number():
    for number in (0.5, 3.0, 0.1 + 0.2, 1e-05, 1e22, 123456789.123):
        assert json.loads(wirejson.dumps({"n": number})) == {"n": number}


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
