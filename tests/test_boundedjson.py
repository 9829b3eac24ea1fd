"""Hostile JSON never reaches the recursive C decoder: size, depth, encoding, huge integers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_client.records import RecordError, parse
from sealtrail import boundedjson
from sealtrail.boundedjson import JsonBoundError, depth, loads

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30)


def reference_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


@given(JSON_VALUES)
def test_depth_on_the_bytes_equals_the_depth_of_the_value(value: object) -> None:
    raw = json.dumps(value).encode()
    assert depth(raw) == reference_depth(value)
    assert loads(raw, max_bytes=len(raw), max_depth=max(1, reference_depth(value))) == value


def test_brackets_inside_strings_do_not_count() -> None:
    raw = json.dumps({"a": "[[[[{{{{\\\"[[[", "b": ["]]]]"]}).encode()
    assert depth(raw) == 2


@pytest.mark.parametrize("payload, words", [
    (b"[" * 100_000, "nested 100000 deep"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "nested 40 deep"),
    (b"1" * 5000, "not usable JSON"),
    (b'"\xff"', "not UTF-8"),
    (b"{", "not JSON"),
    (b" " * 2000, "2000 bytes"),
])
def test_refusals_name_the_limit(payload: bytes, words: str) -> None:
    with pytest.raises(JsonBoundError, match=words):
        loads(payload, max_bytes=1000 if words == "2000 bytes" else 10**6)


def test_a_deep_payload_cannot_crash_a_process_that_imported_web3() -> None:
    """py_ecc (imported by web3) raises the recursion limit to 100000; json.loads of 60000
    brackets then overflows the C stack. Through boundedjson it is one clear error."""
    premise = subprocess.run([sys.executable, "-c", "import web3, json; json.loads(b'[' * 10**5)"],
                             capture_output=True, timeout=60)
    assert premise.returncode < 0, "plain json.loads no longer crashes here: premise changed"
    code = ("import web3, sys; from sealtrail.boundedjson import loads, JsonBoundError\n"
            "assert sys.getrecursionlimit() >= 100000, sys.getrecursionlimit()\n"
            "try:\n    loads(b'[' * 10**5, max_bytes=10**6)\n"
            "except JsonBoundError as e:\n    print('refused', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout and "nested 100000 deep" in done.stdout


@pytest.mark.parametrize("payload", [
    b'{"a":"\\ud800"}',               # lone surrogate: no UTF-8 form
    b'{"seq":' + b"9" * 5000 + b"}",  # more digits than int() takes
    b"[" * 50 + b"]" * 50,
])
def test_record_parse_turns_hostile_json_into_record_errors(payload: bytes) -> None:
    with pytest.raises(RecordError):
        parse(payload)


def test_module_limit_is_documented_and_small() -> None:
    assert boundedjson.MAX_DEPTH <= 64
