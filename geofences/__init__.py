"""Geofences for SealTrail: corridors, zones, transit plans and their signatures, in metres.

Pure code: no I/O beyond reading the files it is pointed at, no imports of ``edge_agent`` or
``ledger_client``. Positions are wire integers (``lat_e7``/``lon_e7``, degrees x 1e7) and times are
``t_ms`` (Unix ms), as in the journal records. See ``geofences/README.md``.
"""

from geofences.corridor import (
    Corridor,
    Fix,
    GeofenceError,
    SegmentCheck,
    corridor_from_degrees,
    load_corridor,
)
from geofences.crossing import Crossing, chord_crossings
from geofences.deviation import (
    LEAVING,
    OFF_ROUTE,
    ON_ROUTE,
    RETURNING,
    ROUTE_DEVIATION,
    ROUTE_RETURN,
    DeviationEvent,
    DeviationMonitor,
    DeviationParams,
)
from geofences.envelope import (
    ENVELOPE_FORMAT,
    Envelope,
    SignatureError,
    load_trusted_keys,
    open_envelope,
    read_envelope,
    sign_envelope,
)
from geofences.plan import (
    FENCES_FORMAT,
    PLAN_FORMAT,
    Container,
    FenceBundle,
    TransitPlan,
    parse_fences,
    parse_plan,
)
from geofences.projection import LocalProjection
from geofences.zone_monitor import (
    ENTERING,
    EXITING,
    GEOFENCE_ENTER,
    GEOFENCE_EXIT,
    INSIDE,
    ZoneEvent,
    ZoneMonitor,
    ZoneParams,
)
from geofences.zone_parse import zones_from_geojson
from geofences.zones import (
    AUTHORIZED_STOP,
    CUSTOMS_OFFICE,
    FORBIDDEN,
    PORT_AREA,
    ROLES,
    Zone,
    ZoneHits,
    ZoneIndex,
    ZoneSet,
)

__all__ = [
    "AUTHORIZED_STOP",
    "CUSTOMS_OFFICE",
    "ENTERING",
    "ENVELOPE_FORMAT",
    "EXITING",
    "FENCES_FORMAT",
    "FORBIDDEN",
    "GEOFENCE_ENTER",
    "GEOFENCE_EXIT",
    "INSIDE",
    "LEAVING",
    "OFF_ROUTE",
    "ON_ROUTE",
    "PLAN_FORMAT",
    "PORT_AREA",
    "RETURNING",
    "ROLES",
    "ROUTE_DEVIATION",
    "ROUTE_RETURN",
    "Container",
    "Corridor",
    "Crossing",
    "DeviationEvent",
    "DeviationMonitor",
    "DeviationParams",
    "Envelope",
    "FenceBundle",
    "Fix",
    "GeofenceError",
    "LocalProjection",
    "SegmentCheck",
    "SignatureError",
    "TransitPlan",
    "Zone",
    "ZoneEvent",
    "ZoneHits",
    "ZoneIndex",
    "ZoneMonitor",
    "ZoneParams",
    "ZoneSet",
    "chord_crossings",
    "corridor_from_degrees",
    "load_corridor",
    "load_trusted_keys",
    "open_envelope",
    "parse_fences",
    "parse_plan",
    "read_envelope",
    "sign_envelope",
    "zones_from_geojson",
]
