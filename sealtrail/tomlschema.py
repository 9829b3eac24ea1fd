"""TOML tables -> frozen dataclasses, with every problem named by its dotted key.

An installer editing gateway.toml on a truck over a flaky SSH session needs one run that lists
everything wrong, each problem naming the key (``sources.serial_gps[1].baud``) and saying what
is wrong with it; a stack trace or "invalid config" costs a second site visit. So this module
collects problems instead of stopping at the first, refuses unknown keys (a typo silently
falling back to a default is how a gateway ends up anchoring nothing), and suggests the key
that was probably meant.

A schema is a dataclass (kw_only, frozen): a field without a default is required; the type
hint says what TOML value is accepted (str, int, float, bool, Path, ``X | None``, a nested
dataclass for a sub-table, ``tuple[Dataclass, ...]`` for an array of tables, ``tuple[str,
...]``); ``field(metadata=check(fn))`` adds a constraint, ``fn(value) -> message | None``.
For ``int | None`` and ``float | None`` the TOML value ``false`` means "off" (TOML has no null).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Check = Callable[[Any], str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    key: str  # dotted path, "" for the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def check(*fns: Check) -> dict[str, Any]:
    """Field metadata: constraints run after the type is right."""
    return {"checks": fns}


INTERNAL: dict[str, Any] = {"internal": True}
"""Field metadata: not a TOML key (filled in by the loader), never dumped."""


def at_least(low: float) -> Check:
    return lambda v: None if v is None or v >= low else f"must be >= {low:g}, got {v!r}"


def between(low: float, high: float) -> Check:
    return lambda v: (None if v is None or low <= v <= high
                      else f"must be between {low:g} and {high:g}, got {v!r}")


def one_of(*allowed: object) -> Check:
    def run(v: object) -> str | None:
        if v is None or v in allowed:
            return None
        return f"{v!r} is not one of {', '.join(repr(a) for a in allowed)}"
    return run


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def did_you_mean(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Builder:
    """Builds one dataclass tree from a parsed TOML document, collecting problems."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def table(self, cls: type[T], raw: Any, path: str) -> T | None:
        """The dataclass for one TOML table, or None if it had problems (already recorded)."""
        if not isinstance(raw, dict):
            self.problem(path, f"expected a table, got {_kind(raw)}")
            return None
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        hints = typing.get_type_hints(cls)
        before = len(self.problems)
        fields = {k: f for k, f in fields.items() if not f.metadata.get("internal")}
        for key in raw:
            if key not in fields:
                self.problem(join(path, key), "unknown key" + did_you_mean(key, fields))
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            key = join(path, name)
            if name not in raw:
                if spec.default is dataclasses.MISSING and \
                        spec.default_factory is dataclasses.MISSING:
                    self.problem(key, "required key is missing")
                continue
            value = self.value(hints[name], raw[name], key)
            if value is _BAD:
                continue
            for fn in spec.metadata.get("checks", ()):
                message = fn(value)
                if message:
                    self.problem(key, message)
                    break
            else:
                values[name] = value
        if len(self.problems) > before:
            return None
        try:
            return cls(**values)
        except ValueError as exc:  # the schema's own cross-field checks (__post_init__)
            self.problem(path, str(exc))
            return None

    def value(self, hint: Any, raw: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (types.UnionType, typing.Union):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if raw is False and options[0] in (int, float):
                return None  # "false" switches a numeric limit off
            return self.value(options[0], raw, key)
        if origin is tuple:
            item = typing.get_args(hint)[0]
            if not isinstance(raw, list):
                self.problem(key, f"expected an array, got {_kind(raw)}")
                return _BAD
            if dataclasses.is_dataclass(item):
                built = [self.table(item, entry, f"{key}[{i}]") for i, entry in enumerate(raw)]
            else:
                built = [self.value(item, entry, f"{key}[{i}]") for i, entry in enumerate(raw)]
            if any(b is None or b is _BAD for b in built):
                return _BAD
            return tuple(built)
        if dataclasses.is_dataclass(hint):
            built = self.table(hint, raw, key)  # type: ignore[arg-type]
            return _BAD if built is None else built
        return self.scalar(hint, raw, key)

    def scalar(self, hint: Any, raw: Any, key: str) -> Any:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            return self._wrong(key, "true or false", raw)
        if hint is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            return self._wrong(key, "an integer", raw)
        if hint is float:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return float(raw)
            return self._wrong(key, "a number", raw)
        if hint is str:
            if isinstance(raw, str) and raw:
                return raw
            return self._wrong(key, "a non-empty string", raw)
        if hint is Path:
            if isinstance(raw, str) and raw:
                path = Path(raw).expanduser()
                return path if path.is_absolute() else self.base_dir / path
            return self._wrong(key, "a path (string)", raw)
        raise TypeError(f"unsupported schema type {hint!r} at {key}")  # a schema bug

    def _wrong(self, key: str, wanted: str, raw: Any) -> Any:
        self.problem(key, f"expected {wanted}, got {_kind(raw)}")
        return _BAD


_BAD = object()


def _kind(raw: Any) -> str:
    if isinstance(raw, bool):
        return f"a boolean ({str(raw).lower()})"
    if isinstance(raw, int | float):
        return f"a number ({raw!r})"
    if isinstance(raw, str):
        return f"a string ({raw!r})" if raw else "an empty string"
    if isinstance(raw, list):
        return "an array"
    if isinstance(raw, dict):
        return "a table"
    return type(raw).__name__  # dates and times


# --- the effective configuration, as TOML ----------------------------------------------------

def dump(obj: Any, path: str = "") -> list[str]:
    """TOML text for a config tree (scalars first, then sub-tables and arrays of tables);
    unset optional keys appear as comments so the output shows every key there is."""
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    hints = typing.get_type_hints(type(obj))
    for spec in dataclasses.fields(obj):
        if spec.metadata.get("internal"):
            continue
        value = getattr(obj, spec.name)
        if dataclasses.is_dataclass(value) or (
                isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0])):
            nested.append((spec.name, value))
        elif value is None and set(typing.get_args(hints[spec.name])) & {int, float}:
            lines.append(f"{spec.name} = false")  # a numeric limit switched off
        elif value is None:
            lines.append(f"# {spec.name} = (not set)")
        else:
            lines.append(f"{spec.name} = {_toml(value)}")
    for name, value in nested:
        key = join(path, name)
        if isinstance(value, tuple):
            for entry in value:
                lines += ["", f"[[{key}]]", *dump(entry, key)]
        else:
            lines += ["", f"[{key}]", *dump(value, key)]
    return lines


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
