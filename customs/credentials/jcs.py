"""RFC 8785 JSON Canonicalization Scheme (JCS), complete, plus the strict parser it needs.

Our own records are integers-only with ASCII keys, where JCS is just sorted compact JSON
(``ledger_client.records.canonical``). A credential from another issuer is not bound by that:
it may carry floats and non-ASCII keys, and its signer (typically JavaScript) serialised
numbers the ECMAScript way and sorted keys by UTF-16 code units. Verifying such a credential
needs the whole scheme, so it is here, checked against the ``rfc8785`` package.

Choices where RFC 8785 leaves room or Python differs from JavaScript:
- A Python ``int`` beyond +/-(2**53 - 1) is refused (as ``rfc8785`` does): it has no exact
  IEEE double, and silently rounding a number we were asked to sign is worse than an error.
- ``loads`` parses the way a JavaScript verifier would: an integer literal beyond that range
  becomes the nearest double, so a foreign credential canonicalises to what its signer saw.
- Lone surrogates (possible in a Python ``str`` from a ``\\ud800`` escape) are an error, as
  RFC 8785 section 3.2.2.2 requires. NaN and the infinities are errors (they are not JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from customs.credentials.errors import MalformedCredential
from ledger_client import boundedjson

MAX_SAFE_INT = 2**53 - 1
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}
for _c in range(0x20):
    _ESCAPES.setdefault(chr(_c), f"\\u{_c:04x}")


class JCSError(MalformedCredential):
    """A value with no JCS canonical form (a float that is not finite, an unsafe integer, a
    lone surrogate, a duplicate key, a type JSON does not have)."""


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    parts: list[str] = []
    _write(value, parts)
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate; _write checks strings, this is a net
        raise JCSError(f"lone surrogate in a string: {exc}") from None


def dumps(value: Any) -> str:
    """Canonical form as text (for messages and test vectors; sign the bytes)."""
    return canonicalize(value).decode("utf-8")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise JCSError(f"integer {value} is outside +/-(2**53-1) and has no exact JCS form")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for key in sorted(value, key=_utf16_key):
            if not first:
                out.append(",")
            first = False
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise JCSError(f"{type(value).__name__} is not a JSON value")


def _utf16_key(key: Any) -> bytes:
    """Sort key: UTF-16 code units, compared as unsigned 16-bit numbers (big-endian bytes
    compare the same way). Python's own order is by code point, which differs above U+FFFF."""
    if not isinstance(key, str):
        raise JCSError(f"object key {key!r} is not a string")
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError:
        raise JCSError(f"lone surrogate in object key {key!r}") from None


def _string(text: str) -> str:
    """A JSON string the way ECMAScript's JSON.stringify writes it: only '"', '\\' and the
    controls are escaped (named escapes where JSON has them, else lowercase \\u00xx)."""
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            raise JCSError(f"lone surrogate U+{ord(ch):04X} in string {text[:40]!r}")
    if not any(ch in _ESCAPES for ch in text):
        return f'"{text}"'
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in text) + '"'


def number(x: float) -> str:
    """ECMAScript Number::toString for a finite double (RFC 8785 section 3.2.2.3).

    Python's ``repr`` already yields the shortest digit string that round-trips, choosing the
    closest one, which is what ECMAScript requires; only the layout (where the point goes,
    when to switch to exponent form, "e+21" not "e21") differs, and is redone here.
    """
    if not math.isfinite(x):
        raise JCSError(f"{x!r} is not a JSON number")
    if x == 0:
        return "0"  # also -0.0
    if x < 0:
        return "-" + number(-x)
    mantissa, _, exp_text = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) - len(frac)  # value = int(digits) * 10**exp
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    s, k = stripped, len(stripped)
    n = k + exponent  # ECMAScript's n: value = 0.s * 10**n
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = s if k == 1 else s[0] + "." + s[1:]
    return f"{head}e{sign}{abs(e)}"


def loads(data: bytes | str) -> Any:
    """Parse I-JSON strictly: UTF-8 only, no duplicate keys, no NaN/Infinity, numbers read
    the way JavaScript reads them. Any refusal is a JCSError (exit 3)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JCSError(f"not UTF-8: {exc}") from None
    if data.startswith("\ufeff"):
        raise JCSError("starts with a byte-order mark")
    try:  # bounded: a process that imported web3 segfaults on deep JSON (boundedjson)
        return boundedjson.loads(data, max_bytes=MAX_DOCUMENT_BYTES, max_depth=MAX_DEPTH,
                                 decoder=_DECODER)
    except boundedjson.JsonBoundError as exc:
        raise JCSError(str(exc)) from None


MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JCSError(f"duplicate object key {key!r}")
        out[key] = value
    return out


def _js_int(text: str) -> int | float:
    try:
        value = int(text)
    except ValueError:  # more digits than Python converts; no double is that precise anyway
        return _js_float(text)
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else _js_float(text)


def _js_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JCSError(f"number {text[:40]} is out of the IEEE double range")
    return value


def _no_constant(name: str) -> Any:
    raise JCSError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_int=_js_int,
                            parse_float=_js_float, parse_constant=_no_constant)
