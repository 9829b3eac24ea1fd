"""What the rules need from a plan and from zones, as small protocols, plus the fix value.

The rules only ask "which zones contain this position at this time" and read a plan's fields,
so they are written against these protocols: ``geofences.TransitPlan``/``ZoneIndex``/
``FenceBundle`` satisfy them, and pure unit tests can pass tiny fakes.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from edge_agent.rules.params import RuleParams
from geofences import Corridor

AUTHORIZED_ROLES = frozenset({"customs_office", "authorized_stop", "port_area"})
"""Zones where a seal may be opened or a truck may stop under customs control."""

EARTH_RADIUS_M = 6_371_008.8
FIX_QUALITIES = range(1, 7)
"""GGA qualities that are positions (1 GPS .. 6 dead reckoning); 0 is no fix, 7/8 are not
evidence (manual input, simulator). The sources drop them already; the rules re-check."""


class ZoneLike(Protocol):
    @property
    def zone_id(self) -> str: ...

    @property
    def role(self) -> str: ...


class ZoneLookup(Protocol):
    def containing(self, lat_e7: int, lon_e7: int, t_ms: int,
                   margin_m: float = 0.0) -> Sequence[ZoneLike]: ...


class PlanLike(Protocol):
    """The fields of ``geofences.TransitPlan`` the rules read."""

    @property
    def plan_id(self) -> str: ...

    @property
    def vehicle(self) -> str: ...

    @property
    def containers(self) -> Sequence[Any]: ...

    @property
    def corridor(self) -> Corridor: ...

    @property
    def zones(self) -> ZoneLookup: ...

    @property
    def departure_office(self) -> str: ...

    @property
    def destination_office(self) -> str: ...

    @property
    def authorized_stops(self) -> Collection[str]: ...

    @property
    def valid_from_ms(self) -> int: ...

    @property
    def deadline_ms(self) -> int: ...

    @property
    def limits(self) -> Mapping[str, Any]: ...

    @property
    def digest(self) -> str: ...


class FencesLike(Protocol):
    """The fields of ``geofences.FenceBundle`` the rules read."""

    @property
    def bundle_id(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def zones(self) -> ZoneLookup: ...

    @property
    def digest(self) -> str: ...


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


@dataclass(frozen=True, slots=True)
class ActivePlan:
    """A plan as the rules use it: loaded at record ``seq``, with its limits applied."""

    plan: PlanLike
    seq: int
    params: RuleParams
    seal_container: Mapping[str, str]

    @classmethod
    def build(cls, plan: PlanLike, seq: int, base: RuleParams) -> ActivePlan:
        seal_container = {}
        for container in plan.containers:
            for seal_id in _field(container, "seal_ids"):
                seal_container[str(seal_id)] = str(_field(container, "container_id"))
        return cls(plan, seq, base.with_limits(plan.limits), seal_container)

    @property
    def plan_id(self) -> str:
        return self.plan.plan_id

    @property
    def digest(self) -> str:
        return self.plan.digest

    def started(self, t_ms: int) -> bool:
        return t_ms >= self.plan.valid_from_ms

    def authorizes(self, zone: ZoneLike) -> bool:
        """A zone where a stop or an opening is under customs control, for this plan."""
        return (zone.role in AUTHORIZED_ROLES or zone.zone_id in self.plan.authorized_stops
                or zone.zone_id in (self.plan.departure_office, self.plan.destination_office))


class Fix(NamedTuple):
    """A GPS reading reduced to what the rules use. HDOP, satellites and speed are None when
    the receiver did not report them (an RMC-only receiver has no satellite count, a GGA+ZDA
    one no speed): unknown is not zero, and a rule that needs one says what it does without."""

    seq: int
    t_ms: int
    lat_e7: int
    lon_e7: int
    fix_quality: int
    hdop_x10: int | None
    sats: int | None
    speed_cmps: int | None

    @classmethod
    def from_body(cls, seq: int, t_ms: int, body: Mapping[str, Any]) -> Fix | None:
        """None for a reading that is not a usable position (no fix, bad types)."""
        try:
            fix = cls(seq, t_ms, body["lat_e7"], body["lon_e7"], body.get("fix_quality", 1),
                      body.get("hdop_x10"), body.get("sats"), body.get("speed_cmps"))
        except (KeyError, TypeError):
            return None
        ints = (fix.lat_e7, fix.lon_e7, fix.fix_quality)
        optional = (fix.hdop_x10, fix.sats, fix.speed_cmps)
        if not all(type(v) is int for v in ints) or fix.fix_quality not in FIX_QUALITIES:
            return None
        if not all(v is None or type(v) is int for v in optional):
            return None
        if not (-900_000_000 <= fix.lat_e7 <= 900_000_000
                and -1_800_000_000 <= fix.lon_e7 <= 1_800_000_000):
            return None
        return fix

    def position(self) -> dict[str, int]:
        """The alert body's ``position``: where, how good (what is known of it), and when
        (``t_ms`` of the fix)."""
        out = {"lat_e7": self.lat_e7, "lon_e7": self.lon_e7, "fix_quality": self.fix_quality,
               "hdop_x10": self.hdop_x10, "sats": self.sats, "t_ms": self.t_ms}
        return {k: v for k, v in out.items() if v is not None}

    def to_list(self) -> list[int | None]:
        return [self.seq, self.t_ms, self.lat_e7, self.lon_e7, self.fix_quality,
                self.hdop_x10, self.sats, self.speed_cmps]

    @classmethod
    def from_list(cls, values: Sequence[int | None] | None) -> Fix | None:
        if not values:
            return None
        return cls(*(None if v is None else int(v) for v in values))  # type: ignore[arg-type]


def distance_m(a_lat_e7: int, a_lon_e7: int, b_lat_e7: int, b_lon_e7: int) -> float:
    """Equirectangular distance: within 0.1 % below 100 km, plenty for stop radii."""
    lat1, lat2 = math.radians(a_lat_e7 / 1e7), math.radians(b_lat_e7 / 1e7)
    dlon = math.radians((b_lon_e7 - a_lon_e7) / 1e7)
    dlon = (dlon + math.pi) % (2 * math.pi) - math.pi
    return EARTH_RADIUS_M * math.hypot(dlon * math.cos((lat1 + lat2) / 2), lat2 - lat1)


@dataclass(frozen=True, slots=True)
class Place:
    """Where something happened: the fix used (None if unknown) and the zones around it."""

    fix: Fix | None
    zones: tuple[ZoneLike, ...] = ()

    @property
    def known(self) -> bool:
        return self.fix is not None

    def zone_ids(self) -> list[str]:
        return sorted({z.zone_id for z in self.zones})

    def has(self, zone_id: str) -> bool:
        return any(z.zone_id == zone_id for z in self.zones)

    def authorized(self, plan: ActivePlan | None) -> bool:
        if plan is not None:
            return any(plan.authorizes(z) for z in self.zones)
        return any(z.role in AUTHORIZED_ROLES for z in self.zones)

    def describe(self) -> dict[str, Any]:
        """For alert details: which zones (id and role), or that the place is unknown."""
        if self.fix is None:
            return {"location": "unknown"}
        return {"zones": [{"id": z.zone_id, "role": z.role}
                          for z in sorted(self.zones, key=lambda z: z.zone_id)]}


def zones_at(lookups: Iterable[ZoneLookup], fix: Fix, t_ms: int,
             margin_m: float) -> tuple[ZoneLike, ...]:
    found: dict[str, ZoneLike] = {}
    for lookup in lookups:
        for zone in lookup.containing(fix.lat_e7, fix.lon_e7, t_ms, margin_m):
            found.setdefault(zone.zone_id, zone)
    return tuple(found.values())
