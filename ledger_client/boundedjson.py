"""JSON from parties we do not trust, bounded in size and nesting depth before it is parsed.

The C JSON decoder recurses once per nesting level, guarded only by the interpreter's recursion
limit, and web3's dependency py_ecc raises that limit to 100000 at import: ``json.loads(b'[' *
100000)`` then overflows the C stack and kills the process (a segfault, not an exception). Any
process that imports web3 and parses what a gateway sent (the customs receiver, `sealtrail
verify`) would be one MQTT message away from a crash loop. So the depth is measured on the bytes
first, with no recursion at all, and anything deeper than a record can be is refused.

Strings are removed before brackets are counted (a ``[`` inside a string is not nesting). Every
pass runs in C (``bytes.replace``, ``bytes.translate``, a regular expression,
``itertools.accumulate``), and a text with no more brackets than the limit (every record) is
let through after two ``bytes.count`` calls.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

from sealtrail.errors import UsageError

MAX_DEPTH = 32
"""A record is at most body -> object -> list -> object deep; plans and evidence files a few
levels more. 32 leaves room and is far below any stack limit."""

_STRING = re.compile(rb'"[^"]*"')
_NESTING = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 open, -1 (signed) close
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))


class JsonBoundError(UsageError):
    """Too large, too deep, or not JSON at all; the message says which and the limit."""


def depth(data: bytes) -> int:
    """Greatest nesting depth of the JSON text ``data`` (its strings do not count).

    Escaped backslashes, then escaped quotes, are dropped (left to right, as a JSON reader pairs
    them), so every quote left delimits a string; then everything but quotes and brackets goes,
    strings are cut out of what is left, and the depth is the greatest running sum."""
    skeleton = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    brackets = _STRING.sub(b"", skeleton).translate(_NESTING, b'"')
    return max(accumulate(array("b", brackets)), default=0)


def loads(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH,
          decoder: json.JSONDecoder | None = None) -> Any:
    """``json.loads`` that refuses, with JsonBoundError, anything over ``max_bytes`` or nested
    deeper than ``max_depth``, invalid UTF-8, and invalid JSON; it never recurses deeply.
    ``decoder`` may carry hooks (``parse_float``...); a ValueError one raises becomes a
    JsonBoundError."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JsonBoundError(f"{len(raw)} bytes, more than the {max_bytes} allowed")
    if raw.count(b"[") + raw.count(b"{") > max_depth and (found := depth(raw)) > max_depth:
        raise JsonBoundError(f"nested {found} deep, more than the {max_depth} allowed")
    try:
        text = raw.decode("utf-8")
        return json.loads(text) if decoder is None else decoder.decode(text)
    except UnicodeDecodeError as exc:
        raise JsonBoundError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise JsonBoundError(f"not JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more digits than int() accepts
        raise JsonBoundError(f"not usable JSON: {exc}") from None
