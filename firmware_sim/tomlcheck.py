"""Typed reads from a parsed TOML table that name the exact key when something is wrong.

Scenario files are written by hand by test engineers; "expected a number" without saying where
wastes their time. Every error here carries a dotted path such as ``trucks[1].stops[0].at_m``,
and keys nobody read are reported with a close-match suggestion, because a typo in an optional
key would otherwise silently fall back to the default.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from sealtrail.errors import UsageError


class ScenarioError(UsageError):
    """A scenario file is unreadable or invalid; the message names the file and the key (exit 2)."""


class Table:
    """A TOML table being read: remembers which keys were used so ``done`` can flag the rest."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where}: must be a table, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.where = where
        self._used: set[str] = set()

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self._path(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self._used.add(key)
        return self.data.get(key, default)

    def require(self, key: str) -> Any:
        self._used.add(key)
        if key not in self.data:
            raise ScenarioError(f"{self._path(key)}: missing (required)")
        return self.data[key]

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        positive: bool = False,
        maximum: float | None = None,
    ) -> float:
        value = self.require(key) if default is None else self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {_kind(value)} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(key, f"must be finite, got {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value:g}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum:g}, got {value:g}")
        return value

    def integer(
        self, key: str, default: int | None = None, *, minimum: int | None = None
    ) -> int:
        value = self.require(key) if default is None else self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_kind(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def string(self, key: str, default: str | None = None) -> str:
        value = self.require(key) if default is None else self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {_kind(value)} {value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else self.raw(key)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {_kind(value)} {value!r}")
        return value

    def strings(self, key: str, default: list[str] | None = None) -> list[str]:
        """A string or a list of strings (``target = "a"`` and ``target = ["a", "b"]``)."""
        value = self.require(key) if default is None else self.raw(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a string or a list of strings, got {value!r}")
        return list(value)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]`` or ``key = [{...}, ...]``); absent means empty."""
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"must be an array of tables, got {_kind(value)}")
        return [Table(item, f"{self._path(key)}[{i}]") for i, item in enumerate(value)]

    def table(self, key: str) -> Table:
        """A sub-table; absent means empty."""
        return Table(self.raw(key, {}), self._path(key))

    def done(self) -> None:
        """Raise on the first key nobody asked for, suggesting the closest known key."""
        for key in self.data:
            if key not in self._used:
                close = difflib.get_close_matches(key, sorted(self._used), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                known = ", ".join(sorted(self._used))
                raise self.fail(key, f"unknown key{hint}; known keys here: {known}")


def _kind(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    return names.get(type(value), "table" if isinstance(value, dict) else type(value).__name__)
