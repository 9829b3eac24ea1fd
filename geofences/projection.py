"""Local metric projection for geofence evaluation.

Geofences are specified in WGS 84 degrees but their rules are in metres ("stay within 500 m of
the route"), so every corridor is evaluated in a plane. ``pyproj`` is not available on the
gateways, so the projection is implemented here.

Choice: an ellipsoidal **transverse Mercator** on WGS 84 with its central meridian and origin at
the centre of the corridor's bounding box, scale k0 = 1 on the central meridian. The forward and
inverse maps use Krüger's series to sixth order in the third flattening n, in the form given by
C. F. F. Karney, "Transverse Mercator with an accuracy of a few nanometers", J. Geodesy 85
(2011). Within a few thousand km of the central meridian the mapping itself is exact to well under
a millimetre; the only distance error left is the projection's point scale

    k ≈ 1 + x² / (2 R²)      (x = distance from the central meridian, R ≈ 6371 km)

which is why the point scale ``k`` is also computed: a short distance measured in the plane and
divided by ``k`` at that place is the ground (ellipsoid) distance to a few parts in 10⁶.

Why this and not the cheaper options:

* equirectangular with cos(lat0) scaling is wrong east-west by |tan(lat0)·Δlat|: about 0.4 % over
  a 50 km north-south extent at 45°, about 4 % over 500 km. That is 20 m on a 500 m corridor.
* a spherical azimuthal equidistant projection is exact only for distances from its centre and
  ignores the ellipsoid: N/M - 1 = e'²cos²φ ≈ 0.67 % anisotropy at the equator.
* transverse Mercator is conformal (scale is the same in every direction at a point, so a
  perpendicular offset from the route is scaled exactly like a distance along it) and its scale
  grows only with the square of the east-west distance from the centre.

Measured against an independent Vincenty reference (``test_projection_error_figures``), for an
extent running east-west (the worst orientation: its ends are furthest from the central meridian),
at latitudes 0°, 45°, 60° and -33.9°:

==========================================  ======================  =======================
                                            50 km extent            500 km extent
==========================================  ======================  =======================
plane distance between any two points       ≤ 6.6e-6 (6.6 mm/km)    ≤ 6.6e-4 (0.66 m/km)
offset ≤ 5 km from the route, uncorrected   ≤ 3.6 cm                ≤ 3.6 m
offset ≤ 5 km, divided by k at the fix      ≤ 0.05 mm               ≤ 4.4 mm
==========================================  ======================  =======================

The last row is what ``Corridor.distance_m`` reports. (The test asserts 1e-5 / 1e-3 for the first
row and 1 mm / 1 cm for the last.) The theoretical bound of the first row is k - 1 at the edge of
the extent: 7.7e-6 and 7.7e-4.

Limits (stated, not handled): the corridor must lie within ``MAX_CORRIDOR_RADIUS_M`` of its centre;
corridors that cross the antimeridian are not supported (their longitude bounding box spans the
world, so they are rejected by that radius check). Points further than ``DOMAIN_RADIUS_M`` from
the origin are outside the projection's domain (``covers`` is False) and callers must not project
them; ``Corridor`` falls back to a great-circle estimate for such points, which are thousands of km
outside any corridor. Works in both hemispheres and up to the poles (Karney's τ formulation has no
singularity there), although a corridor over a pole is not a use case.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WGS84_A: float = 6_378_137.0
"""WGS 84 semi-major axis, metres."""
WGS84_F: float = 1 / 298.257_223_563
"""WGS 84 flattening."""
MEAN_EARTH_RADIUS_M: float = 6_371_008.8
"""IUGG mean radius R1, for the coarse great-circle estimates only."""

MAX_CORRIDOR_RADIUS_M: float = 1_500_000.0
"""A corridor's vertices must be within this great-circle distance of its projection origin."""
DOMAIN_RADIUS_M: float = 3_000_000.0
"""Points within this distance of the origin are projected; beyond it they are "far away"."""

E7: int = 10_000_000
"""Wire scale of ``lat_e7``/``lon_e7``: degrees x 1e7."""

_E2 = WGS84_F * (2 - WGS84_F)
_E = math.sqrt(_E2)
_N = WGS84_F / (2 - WGS84_F)
_N2, _N3, _N4, _N5, _N6 = (_N**i for i in range(2, 7))
# Rectifying radius: the meridian arc length per radian of rectifying latitude.
_A_RECT = WGS84_A / (1 + _N) * (1 + _N2 / 4 + _N4 / 64 + _N6 / 256)
# Krüger series coefficients, Karney (2011) eq. (35) and (36), sixth order in n.
_ALPHA: tuple[float, ...] = (
    _N / 2 - 2 * _N2 / 3 + 5 * _N3 / 16 + 41 * _N4 / 180 - 127 * _N5 / 288 + 7891 * _N6 / 37800,
    13 * _N2 / 48 - 3 * _N3 / 5 + 557 * _N4 / 1440 + 281 * _N5 / 630 - 1983433 * _N6 / 1935360,
    61 * _N3 / 240 - 103 * _N4 / 140 + 15061 * _N5 / 26880 + 167603 * _N6 / 181440,
    49561 * _N4 / 161280 - 179 * _N5 / 168 + 6601661 * _N6 / 7257600,
    34729 * _N5 / 80640 - 3418889 * _N6 / 1995840,
    212378941 * _N6 / 319334400,
)
_ALPHA_D: tuple[float, ...] = tuple(2 * j * a for j, a in enumerate(_ALPHA, start=1))
"""Coefficients of the series' derivative, for the point scale k."""
_BETA: tuple[float, ...] = (
    _N / 2 - 2 * _N2 / 3 + 37 * _N3 / 96 - _N4 / 360 - 81 * _N5 / 512 + 96199 * _N6 / 604800,
    _N2 / 48 + _N3 / 15 - 437 * _N4 / 1440 + 46 * _N5 / 105 - 1118711 * _N6 / 3870720,
    17 * _N3 / 480 - 37 * _N4 / 840 - 209 * _N5 / 4480 + 5569 * _N6 / 90720,
    4397 * _N4 / 161280 - 11 * _N5 / 504 - 830251 * _N6 / 7257600,
    4583 * _N5 / 161280 - 108847 * _N6 / 3991680,
    20648693 * _N6 / 638668800,
)


def _wrap_lon_rad(dl: float) -> float:
    """Longitude difference wrapped to [-π, π)."""
    return (dl + math.pi) % (2 * math.pi) - math.pi


def _tau_prime(tau: float) -> float:
    """tan(conformal latitude) from tan(geodetic latitude), Karney (2011) eq. (7)-(9)."""
    sig = math.sinh(_E * math.atanh(_E * tau / math.hypot(1.0, tau)))
    return tau * math.hypot(1.0, sig) - sig * math.hypot(1.0, tau)


def _tau_from_tau_prime(taup: float) -> float:
    """Invert ``_tau_prime`` by Newton's method (Karney 2011, eq. (19)-(21)); 2-3 steps."""
    tau = taup / (1 - _E2)
    for _ in range(8):
        tp = _tau_prime(tau)
        dtau = (
            (taup - tp)
            * (1 + (1 - _E2) * tau * tau)
            / ((1 - _E2) * math.hypot(1.0, tp) * math.hypot(1.0, tau))
        )
        tau += dtau
        if abs(dtau) <= 1e-15 * max(1.0, abs(tau)):
            break
    return tau


def great_circle_m(lat1_deg: float, lon1_deg: float, lat2_deg: float, lon2_deg: float) -> float:
    """Haversine distance on the mean sphere (±0.5 %). For coarse domain checks only."""
    p1, p2 = math.radians(lat1_deg), math.radians(lat2_deg)
    dp = p2 - p1
    dl = math.radians(lon2_deg - lon1_deg)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * MEAN_EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class LocalProjection:
    """Transverse Mercator centred on (``lat0_deg``, ``lon0_deg``): x east, y north, metres.

    The origin maps to (0, 0). Build one per geofence with ``around`` so the central meridian runs
    through the middle of the geometry, where the scale error is smallest.
    """

    lat0_deg: float
    lon0_deg: float
    _y0: float = field(init=False, repr=False, compare=False)
    _memo: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat0_deg) and -90.0 <= self.lat0_deg <= 90.0):
            raise ValueError(f"projection origin latitude {self.lat0_deg!r} out of range")
        if not (math.isfinite(self.lon0_deg) and -180.0 <= self.lon0_deg <= 180.0):
            raise ValueError(f"projection origin longitude {self.lon0_deg!r} out of range")
        object.__setattr__(self, "_y0", 0.0)
        _, y0, _ = self._forward_raw(self.lat0_deg, self.lon0_deg)
        object.__setattr__(self, "_y0", y0)

    @classmethod
    def around(cls, points_deg: Iterable[tuple[float, float]]) -> LocalProjection:
        """Projection centred on the bounding box of (lat, lon) points.

        The bounding-box centre, not the mean of the vertices, keeps the worst-case distance from
        the central meridian (and so the scale error) as small as possible for the whole extent.
        """
        pts = list(points_deg)
        if not pts:
            raise ValueError("cannot centre a projection on no points")
        lats = [p[0] for p in pts]
        lons = [p[1] for p in pts]
        return cls((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)

    def _forward_raw(self, lat_deg: float, lon_deg: float) -> tuple[float, float, float]:
        """Karney (2011) forward map: (x, y - y0, point scale k).

        The Krüger series and its derivative (for k) are summed with Clenshaw's recurrence in
        complex arithmetic, so one complex cos/sin replaces twelve real cos/sin/cosh/sinh: this
        is the per-fix hot path of every geofence test (~2 µs instead of ~4 µs).
        """
        phi = math.radians(lat_deg)
        dl = math.radians(lon_deg - self.lon0_deg)
        if not -math.pi <= dl < math.pi:
            dl = _wrap_lon_rad(dl)
        sin_phi, cos_phi = math.sin(phi), math.cos(phi)
        tau = sin_phi / cos_phi if cos_phi else math.copysign(1e300, sin_phi)
        h = math.hypot(1.0, tau)
        sig = math.sinh(_E * math.atanh(_E * sin_phi))
        taup = tau * math.hypot(1.0, sig) - sig * h
        cos_dl, sin_dl = math.cos(dl), math.sin(dl)
        hyp = math.hypot(taup, cos_dl)
        zp = complex(math.atan2(taup, cos_dl), math.asinh(sin_dl / hyp))  # xi' + i eta'
        w = 2 * zp
        c1, s1 = cmath.cos(w), cmath.sin(w)
        two_c = 2 * c1
        a6, a5, a4, a3, a2, a1 = _ALPHA[::-1]
        d6, d5, d4, d3, d2, d1 = _ALPHA_D[::-1]
        # Clenshaw: sum a_j sin(j w) = y1 sin w; sum d_j cos(j w) = u1 cos w - u2.
        y1 = a6
        y1, y2 = two_c * y1 + a5, y1
        y1, y2 = two_c * y1 - y2 + a4, y1
        y1, y2 = two_c * y1 - y2 + a3, y1
        y1, y2 = two_c * y1 - y2 + a2, y1
        y1 = two_c * y1 - y2 + a1
        u1 = d6
        u1, u2 = two_c * u1 + d5, u1
        u1, u2 = two_c * u1 - u2 + d4, u1
        u1, u2 = two_c * u1 - u2 + d3, u1
        u1, u2 = two_c * u1 - u2 + d2, u1
        u1, u2 = two_c * u1 - u2 + d1, u1
        z = zp + s1 * y1
        dz = 1 + u1 * c1 - u2
        k = math.sqrt(1 - _E2 * sin_phi * sin_phi) * h / hyp * (_A_RECT / WGS84_A) * abs(dz)
        return _A_RECT * z.imag, _A_RECT * z.real - self._y0, k

    def forward_many(
        self, lat_deg: np.ndarray, lon_deg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised ``forward_with_scale``: arrays of degrees to arrays (x, y, k).

        Same formulas in numpy, for bulk work (building geometries, batch evaluation); agrees
        with the scalar map to a few nanometres.
        """
        phi = np.radians(np.asarray(lat_deg, dtype=float))
        dl = np.radians(np.asarray(lon_deg, dtype=float) - self.lon0_deg)
        dl = (dl + math.pi) % (2 * math.pi) - math.pi
        sin_phi, cos_phi = np.sin(phi), np.cos(phi)
        with np.errstate(divide="ignore"):
            tau = np.where(cos_phi != 0, sin_phi / np.where(cos_phi != 0, cos_phi, 1.0),
                           np.copysign(1e300, sin_phi))
        h = np.hypot(1.0, tau)
        sig = np.sinh(_E * np.arctanh(_E * sin_phi))
        taup = tau * np.hypot(1.0, sig) - sig * h
        cos_dl, sin_dl = np.cos(dl), np.sin(dl)
        hyp = np.hypot(taup, cos_dl)
        zp = np.arctan2(taup, cos_dl) + 1j * np.arcsinh(sin_dl / hyp)
        z = zp.copy()
        dz = np.ones_like(zp)
        for j, (a, d) in enumerate(zip(_ALPHA, _ALPHA_D, strict=True), start=1):
            z += a * np.sin(2 * j * zp)
            dz += d * np.cos(2 * j * zp)
        k = np.sqrt(1 - _E2 * sin_phi * sin_phi) * h / hyp * (_A_RECT / WGS84_A) * np.abs(dz)
        return _A_RECT * z.imag, _A_RECT * z.real - self._y0, k

    def forward_e7_with_scale(self, lat_e7: int, lon_e7: int) -> tuple[float, float, float]:
        """(x, y, k) for wire integers, remembering the last fix.

        A plan's corridor and zones share one projection and are asked about the same fix one
        after the other (route deviation, then zone monitor); the one-entry memo makes the
        second ask free. The memo is a single tuple, replaced atomically, so sharing the
        projection between threads is safe.
        """
        key = (lat_e7, lon_e7)
        memo = self._memo
        if memo is not None and memo[0] == key:
            return memo[1]
        out = self._forward_raw(lat_e7 / E7, lon_e7 / E7)
        object.__setattr__(self, "_memo", (key, out))
        return out

    def forward(self, lat_deg: float, lon_deg: float) -> tuple[float, float]:
        """(lat, lon) degrees to plane (x, y) metres."""
        x, y, _ = self._forward_raw(lat_deg, lon_deg)
        return x, y

    def forward_with_scale(self, lat_deg: float, lon_deg: float) -> tuple[float, float, float]:
        """(x, y, k): k is the point scale, plane metres per ground metre at that point."""
        return self._forward_raw(lat_deg, lon_deg)

    def forward_e7(self, lat_e7: int, lon_e7: int) -> tuple[float, float]:
        """Wire integers (degrees x 1e7) to plane metres."""
        x, y, _ = self._forward_raw(lat_e7 / E7, lon_e7 / E7)
        return x, y

    def scale_factor(self, lat_deg: float, lon_deg: float) -> float:
        """Point scale k at (lat, lon): ≥ 1, equal to 1 on the central meridian."""
        return self._forward_raw(lat_deg, lon_deg)[2]

    def inverse(self, x: float, y: float) -> tuple[float, float]:
        """Plane (x, y) metres back to (lat, lon) degrees (Karney 2011, section 3)."""
        xi = (y + self._y0) / _A_RECT
        eta = x / _A_RECT
        xip, etap = xi, eta
        for j, b in enumerate(_BETA, start=1):
            xip -= b * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
            etap -= b * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
        sinh_etap, cos_xip = math.sinh(etap), math.cos(xip)
        taup = math.sin(xip) / math.hypot(sinh_etap, cos_xip)
        dl = math.atan2(sinh_etap, cos_xip)
        tau = _tau_from_tau_prime(taup)
        lon = math.degrees(_wrap_lon_rad(math.radians(self.lon0_deg) + dl))
        return math.degrees(math.atan(tau)), lon

    def covers(self, lat_deg: float, lon_deg: float) -> bool:
        """True if the point is within ``DOMAIN_RADIUS_M`` of the origin (safe to project).

        Points within 15° of the origin in both latitude and longitude are at most ~2,360 km
        away and accepted without the haversine (the per-fix case); the answer is the same.
        """
        if abs(lat_deg - self.lat0_deg) <= 15.0 and abs(lon_deg - self.lon0_deg) <= 15.0:
            return True
        return great_circle_m(self.lat0_deg, self.lon0_deg, lat_deg, lon_deg) <= DOMAIN_RADIUS_M

    def covers_many(self, lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
        """Vectorised ``covers``: a boolean array."""
        p0, l0 = math.radians(self.lat0_deg), math.radians(self.lon0_deg)
        p1 = np.radians(np.asarray(lat_deg, dtype=float))
        l1 = np.radians(np.asarray(lon_deg, dtype=float))
        h = np.sin((p1 - p0) / 2) ** 2 + math.cos(p0) * np.cos(p1) * np.sin((l1 - l0) / 2) ** 2
        dist = 2 * MEAN_EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
        return np.asarray(dist <= DOMAIN_RADIUS_M)
