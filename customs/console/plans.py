"""Transit plans as the console shows them: verified, then reduced to what a map draws.

A plan in the store is the signed envelope customs published (or an import brought); it is
shown only after its signature was checked against the customs keys this service trusts
(``geofences.open_envelope`` for a trip's page, which also parses the geometry the summary is
measured in; the signature check alone, ``Envelope.verify``, for the overview of every trip,
which draws the signed document as it is). A plan that does not verify is listed as such,
without geometry. Results are cached by the envelope's hash: a control room with a thousand
trips reloads the overview often; the cache is derived data, so another console instance
simply fills its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from geofences import GeofenceError, TransitPlan, open_envelope, read_envelope

TOPIC = re.compile(r"^(?:import:)?sealtrail/v1/([^/+#]+)/plans$")


@dataclass(frozen=True)
class PlanView:
    plan_id: str
    verified: bool
    error: str | None = None
    plan: TransitPlan | None = field(default=None, repr=False)
    doc: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        p = self.plan
        if p is None and self.verified:  # signature checked, geometry not parsed (overview)
            d = self.doc
            return {"plan_id": self.plan_id, "verified": True,
                    "declaration_ref": str(d.get("declaration_ref", ""))[:200],
                    "vehicle": str(d.get("vehicle", ""))[:200]}
        if p is None:
            return {"plan_id": self.plan_id, "verified": False, "error": self.error}
        return {"plan_id": p.plan_id, "verified": True, "declaration_ref": p.declaration_ref,
                "vehicle": p.vehicle,
                "containers": [{"container_id": c.container_id, "seal_ids": list(c.seal_ids)}
                               for c in p.containers],
                "departure_office": p.departure_office,
                "destination_office": p.destination_office,
                "authorized_stops": list(p.authorized_stops), "valid_from_ms": p.valid_from_ms,
                "deadline_ms": p.deadline_ms, "signer": p.signer, "digest": p.digest}

    def geometry(self) -> dict[str, Any] | None:
        """Corridor centre line as [lat, lon] pairs with its half-width, and the zones as
        the plan's own GeoJSON features (lon/lat), for Leaflet."""
        if not self.verified:
            return None
        zones = self.doc.get("zones", {}).get("features", []) if isinstance(
            self.doc.get("zones"), dict) else []
        p = self.plan
        if p is not None:
            line = [[la / 1e7, lo / 1e7] for la, lo in p.corridor.vertices_e7]
            return {"corridor": {"id": p.corridor.corridor_id, "width_m": p.corridor.width_m,
                                 "line": line}, "zones": zones}
        try:  # the signed document as it is (the full parse is the trip page's job)
            corridor = self.doc["corridor"]
            line = [[float(c[1]), float(c[0])] for c in corridor["geometry"]["coordinates"]]
            width = float(corridor["properties"]["width_m"])
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        return {"corridor": {"id": str(corridor["properties"].get("id", "")), "width_m": width,
                             "line": line}, "zones": zones}


class PlanCache:
    def __init__(self, trusted_keys: Collection[bytes], limit: int = 10_000):
        self.trusted_keys = list(trusted_keys)
        self.limit = limit
        self._cache: dict[str, PlanView] = {}
        self._lock = threading.Lock()

    def view(self, plan_id: str, envelope: bytes, *, parse: bool = True) -> PlanView:
        """The plan, verified; ``parse=False`` checks the signature only and keeps the signed
        document as it is (a thousand trips' overview: 0.3 ms a plan instead of 10)."""
        digest = hashlib.sha256(envelope).hexdigest()
        with self._lock:
            hit = self._cache.get(digest) or (None if parse else self._cache.get("~" + digest))
        if hit is not None:
            return hit
        view = self._open(plan_id, envelope) if parse else self._check(plan_id, envelope)
        digest = digest if parse else "~" + digest
        with self._lock:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            self._cache[digest] = view
        return view

    def _check(self, plan_id: str, envelope: bytes) -> PlanView:
        try:
            env = read_envelope(envelope, source=f"plan {plan_id}")
            env.verify(self.trusted_keys, f"plan {plan_id}")
            doc = json.loads(env.payload)
        except (GeofenceError, ValueError) as exc:
            return PlanView(plan_id, False, str(exc)[:300])
        if env.kind != "plan" or not isinstance(doc, dict) or doc.get("plan_id") != plan_id:
            return PlanView(plan_id, False, "not this plan's signed envelope")
        return PlanView(plan_id, True, None, None, doc)

    def _open(self, plan_id: str, envelope: bytes) -> PlanView:
        try:
            opened = open_envelope(envelope, self.trusted_keys, source=f"plan {plan_id}")
        except GeofenceError as exc:
            return PlanView(plan_id, False, str(exc)[:300])
        if not isinstance(opened, TransitPlan):
            return PlanView(plan_id, False, "a fence bundle, not a transit plan")
        if opened.plan_id != plan_id:
            return PlanView(plan_id, False, f"the envelope holds plan {opened.plan_id!r}")
        doc = json.loads(opened.payload)
        return PlanView(plan_id, True, None, opened, doc if isinstance(doc, dict) else {})


def gateway_of_source(source: str) -> str | None:
    """The gateway a plan was published to (``sealtrail/v1/<gw>/plans``), if the source says."""
    m = TOPIC.match(source)
    return m.group(1) if m else None
