"""RFC 8785 (JCS) in full: numbers, strings, key order, refusals, and the strict parser."""

from __future__ import annotations

import math
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from customs.credentials import jcs
from customs.credentials.errors import MalformedCredential
from customs.credentials.jcs import JCSError, canonicalize, loads, number

# Any text but lone surrogates (they have no JCS form; refusal is tested on its own).
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
safe_ints = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | finite | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)


@settings(deadline=None, max_examples=400)
@given(json_values)
def test_canonical_form_equals_the_rfc8785_package(value: object) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(deadline=None, max_examples=2000)
@given(finite)
def test_number_serialisation_equals_the_rfc8785_package(x: float) -> None:
    assert number(x) == rfc8785.dumps(x).decode()


@settings(deadline=None, max_examples=2000)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_number_serialisation_over_random_bit_patterns(bits: int) -> None:
    (x,) = struct.unpack(">d", bits.to_bytes(8, "big"))
    if math.isfinite(x):
        assert number(x) == rfc8785.dumps(x).decode()


@settings(deadline=None)
@given(json_values)
def test_parsing_canonical_bytes_gives_the_same_canonical_bytes(value: object) -> None:
    once = canonicalize(value)
    assert canonicalize(loads(once)) == once


# RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"), ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"), ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"), ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_rfc8785_appendix_b_numbers(bits: str, text: str) -> None:
    (x,) = struct.unpack(">d", bytes.fromhex(bits))
    assert number(x) == text


def test_keys_sort_by_utf16_code_units_as_in_rfc8785_section_3_2_3() -> None:
    doc = {"\u20ac": "Euro Sign", "\r": "Carriage Return",
           "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
           "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
           "\u00f6": "Latin Small Letter O With Diaeresis"}
    keys = list(loads(canonicalize(doc)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # Python's own (code point) order puts the emoji last: the two orders really differ here.
    assert sorted(doc)[-1] == "\U0001f600"


def test_string_escapes_as_in_rfc8785_section_3_2_2_2() -> None:
    value = "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/"
    assert canonicalize(value) == '"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'.encode()


def test_rfc8785_section_3_2_2_example_whole_object() -> None:
    doc = loads('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
                ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
                ' "literals": [null, true, false]}')
    assert canonicalize(doc) == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 2**53, -(2**53),
                                 "\ud800", {"\udfff": 1}, {1: "x"}, {"a": {1, 2}}, b"bytes"])
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(JCSError) as err:
        canonicalize(bad)
    assert isinstance(err.value, MalformedCredential) and err.value.code == 20


def test_loads_refuses_what_i_json_refuses() -> None:
    for text in ('{"a":1,"a":2}', '{"a":NaN}', "[Infinity]", "[1e400]", '\ufeff{"a":1}',
                 b'{"a":"\xff"}', "{", "[" * 100_000):
        with pytest.raises(JCSError):
            loads(text)


def test_loads_reads_big_integers_the_way_javascript_does() -> None:
    # 2**53 + 1 has no double; JavaScript reads the nearest one, and a JCS signer in
    # JavaScript signed that, so a verifier must canonicalise the same.
    assert canonicalize(loads("[9007199254740993, 12345678901234567890]")) == \
        b"[9007199254740992,12345678901234567000]"
    assert loads("[9007199254740991]") == [9007199254740991]


def test_integer_only_records_are_unchanged_by_full_jcs() -> None:
    from ledger_client.records import canonical

    record = {"v": 1, "gw": "gw-1", "seq": 7, "t_ms": 1_700_000_000_000, "kind": "gps",
              "src": "gps0", "body": {"lat_e7": -349_000_000, "lon_e7": -562_000_000},
              "prev": "0" * 64}
    assert jcs.canonicalize(record) == canonical(record)
