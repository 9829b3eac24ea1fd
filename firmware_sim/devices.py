"""The fleet's devices: a truck's GNSS receiver and an e-seal, with what each actually sent.

These hold device state and bookkeeping only; the fleet runner decides when they act and
carries their bytes. The bookkeeping is the point: for every seal the summary lists which
counters went out genuine, which were replays or forgeries and which were lost, so a test can
compute exactly what the agent had to accept and what it had to reject.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.gnss import ClockSkew, Conditions, FixModel
from firmware_sim.motion import Motion
from firmware_sim.nmea import epoch_bytes
from firmware_sim.route import PositionNoise, Route
from firmware_sim.scenario import SealSpec, TruckSpec
from firmware_sim.seal import Seal, SealMessage, forge

HISTORY = 256
"""Genuine messages a seal remembers for replay attacks (an attacker's recording)."""


class GpsDevice:
    """A truck's receiver: epoch ``k`` is due at ``round(k * 1000 / rate_hz)`` ms."""

    def __init__(self, spec: TruckSpec, seed: int, conditions: Conditions) -> None:
        self.spec = spec
        route = Route.from_geojson_file(spec.route, spec.speed_mps)
        self.motion = Motion(route, spec.speed_mps, spec.zones, spec.stops)
        noise = (
            PositionNoise(spec.noise_m, seed=f"{seed}:{spec.id}:noise")
            if spec.noise_m > 0
            else None
        )
        self.model = FixModel(
            self.motion, noise, conditions, sats=spec.sats, hdop=spec.hdop,
            seed=f"{seed}:{spec.id}",
        )
        self.epochs = 0
        self.fix_epochs = 0
        self.nofix_epochs = 0
        self.lost_epochs = 0

    def due_ms(self, k: int) -> int:
        return round(k * 1000 / self.spec.rate_hz)

    def epoch(self, k: int, t0_ms: int) -> bytes:
        t_ms = self.due_ms(k)
        fix = self.model.fix(t_ms / 1000, t0_ms + t_ms)
        self.epochs += 1
        if fix.has_fix:
            self.fix_epochs += 1
        else:
            self.nofix_epochs += 1
        return epoch_bytes(fix, self.spec.talker, 2, self.spec.sentences)

    def summary(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "fix_epochs": self.fix_epochs,
            "nofix_epochs": self.nofix_epochs,
            "lost_epochs": self.lost_epochs,
            "route_m": round(self.motion.route.length_m, 1),
            "drive_s": round(self.motion.duration_s, 3),
        }


@dataclass
class SealLog:
    """Per-seal truth for the summary; counter lists are sorted when reported."""

    genuine: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    replays: list[int] = field(default_factory=list)
    forged: list[int] = field(default_factory=list)
    skewed: list[int] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)
    undelivered_faults: int = 0
    skipped: list[str] = field(default_factory=list)


class SealDevice:
    """One e-seal: its firmware state, heartbeat schedule and attack history."""

    def __init__(
        self,
        spec: SealSpec,
        key: bytes,
        *,
        seed: int,
        t0_ms: int,
        ctr: int,
        skews: tuple[ClockSkew, ...],
        forger_key: bytes,
    ) -> None:
        self.spec = spec
        self.seal = Seal(
            spec.id, key, ctr=ctr, state=spec.state, battery_pct=spec.battery_pct,
            drain_pct_per_h=spec.drain_pct_per_h, clock_skew_ms=spec.clock_skew_ms, t0_ms=t0_ms,
        )
        self.t0_ms = t0_ms
        self._rng = random.Random(f"{seed}:{spec.id}:seal")
        phase_s = spec.phase_s if spec.phase_s is not None else self._rng.uniform(
            0, spec.heartbeat_s)
        self.phase_ms = round(phase_s * 1000)
        self.period_ms = max(1, round(spec.heartbeat_s * 1000))
        self.skews = skews
        self.forger_key = forger_key
        self.history: deque[SealMessage] = deque(maxlen=HISTORY)
        self.log = SealLog()
        self.sent = 0
        self.last_battery = self.seal.battery_at(t0_ms)
        self._lost: set[int] = set()
        self._digest = hashlib.sha256()

    def rebase(self, t0_ms: int) -> None:
        """Move simulated t = 0 (real-time runs start the clock once every port is ready)."""
        self.t0_ms = self.seal.t0_ms = t0_ms
        self.last_battery = self.seal.battery_at(t0_ms)

    def heartbeat_due_ms(self, n: int) -> int:
        return self.phase_ms + n * self.period_ms

    def genuine(self, t_rel_ms: int, state: str | None = None) -> SealMessage:
        """The next genuine message (a heartbeat, or an event if ``state`` changes it)."""
        event = state is not None and state != self.seal.state
        if state is not None:
            self.seal.set_state(state)
        skew = sum(s.skew_ms for s in self.skews if s.active(t_rel_ms / 1000))
        msg = self.seal.message(self.t0_ms + t_rel_ms, skew)
        # History is kept at generation time, not at delivery (MQTT acks arrive in any
        # order), so which message a replay picks does not depend on network timing.
        self.history.append(msg)
        self.last_battery = msg.battery_pct
        if skew:
            self.log.skewed.append(msg.ctr)
        if event:
            self.log.events.append([msg.ctr, msg.state])
        return msg

    def replay(self, ctr: int | None) -> SealMessage | None:
        """An earlier genuine message, resent unchanged; None if there is nothing to replay."""
        heard = [m for m in self.history if m.ctr not in self._lost]
        if ctr is not None:
            heard = [m for m in heard if m.ctr == ctr]
            return heard[0] if heard else None
        return self._rng.choice(heard) if heard else None

    def forged(self, t_rel_ms: int, state: str | None) -> SealMessage:
        """What an attacker without the key sends: the next counter, MAC'd with a wrong key.

        The counter is not consumed: the real seal's next genuine message carries the same
        counter, and the agent must accept it after rejecting the forgery.
        """
        s = self.seal
        t_ms = self.t0_ms + t_rel_ms
        fake = s.sign(s.ctr + 1, state or s.state, s.battery_at(t_ms), s.clock(t_ms))
        return forge(fake, self.forger_key)

    def record(self, kind: str, msg: SealMessage, delivered: bool) -> None:
        """Book a message by kind (``genuine``/``replay``/``forged``) once its fate is known."""
        if kind == "genuine":
            if delivered:
                self.log.genuine.append(msg.ctr)
            else:
                self.log.lost.append(msg.ctr)
                self._lost.add(msg.ctr)
        elif not delivered:
            self.log.undelivered_faults += 1
        elif kind == "replay":
            self.log.replays.append(msg.ctr)
        else:
            self.log.forged.append(msg.ctr)
        if delivered:
            self.sent += 1

    def note_payload(self, payload: bytes) -> None:
        """Fold an MQTT payload into the seal's digest, in publish order."""
        self._digest.update(payload + b"\n")

    def summary(self) -> dict[str, Any]:
        log = self.log
        out: dict[str, Any] = {
            "via": self.spec.via,
            "sent": self.sent,
            "genuine": sorted(log.genuine),
            "lost": sorted(log.lost),
            "replays": sorted(log.replays),
            "forged": sorted(log.forged),
            "skewed": sorted(log.skewed),
            "events": log.events,
            "last_ctr": self.seal.ctr,
            "state": self.seal.state,
            "battery_pct": self.last_battery,
        }
        if log.undelivered_faults:
            out["undelivered_faults"] = log.undelivered_faults
        if log.skipped:
            out["skipped"] = log.skipped
        if self.spec.via == "mqtt":
            out["sha256"] = self._digest.hexdigest()
        return out
