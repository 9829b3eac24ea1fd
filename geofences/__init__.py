"""Geofences for SealTrail: route corridors evaluated in metres, and route deviation detection.

Pure code: no I/O beyond ``load_corridor`` reading a GeoJSON file, no imports of ``edge_agent`` or
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
from geofences.projection import LocalProjection

__all__ = [
    "LEAVING",
    "OFF_ROUTE",
    "ON_ROUTE",
    "RETURNING",
    "ROUTE_DEVIATION",
    "ROUTE_RETURN",
    "Corridor",
    "DeviationEvent",
    "DeviationMonitor",
    "DeviationParams",
    "Fix",
    "GeofenceError",
    "LocalProjection",
    "SegmentCheck",
    "corridor_from_degrees",
    "load_corridor",
]
