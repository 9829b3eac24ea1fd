"""GPS through gpsd, the standard GPS stack on a Raspberry Pi: a client of its JSON protocol.

Where gpsd already owns the receiver (chrony time service, several readers of one GPS,
receivers gpsd speaks binary to), the agent asks gpsd rather than the serial port. Decoding
and the epoch merge are gpsd_decode's (pure); this module is the socket: it sends
``?WATCH={"enable":true,"json":true}`` and feeds the reports through the decoder and the
sensor's GpsStream, the same filters and health checks as the serial source.

gpsd goes away (restart, package upgrade, USB receiver re-plugged), so a refused, dropped or
silent connection is retried with capped, jittered exponential backoff and never needs an
agent restart. gpsd sends at least a TPV every receiver cycle while a device is attached, so
``stall_s`` without a byte means a hung daemon or a dead link (a half-open TCP connection
never ends by itself): we drop the connection and start over. Losing and regaining the data
flow are recorded as signed status records, like a serial receiver unplugged, but only on the
transition, so a gateway whose gpsd has no receiver does not fill its journal. Lines are
framed with a hard bound and the decoder never raises, so nothing gpsd sends can raise out of
this source; the agent's bounded queue holds reading back when ingest is busy (gpsd then drops
us as a slow client, and we reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

from edge_agent.agent import Emit
from edge_agent.journal import Draft
from edge_agent.sources.framing import LineFramer
from edge_agent.sources.gps_fix import GpsFix, NoFix
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.gpsd_decode import NOT_DROPPED, GpsdDecoder
from edge_agent.stats import ComponentStats, split
from sealtrail.backoff import Backoff
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_PORT = 2947
MAX_LINE = 16_384
"""gpsd truncates reports at 10,240 bytes (GPS_JSON_RESPONSE_MAX); anything longer is noise."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class GpsdSource:
    """One GPS sensor read through gpsd. ``device`` picks one receiver when gpsd has several.

    ``merge_window_s`` bounds how long an epoch waits for a SKY/GST that gpsd stopped sending
    (see gpsd_decode); in steady state nothing waits for it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 sensor_id: str = "gps0", device: str | None = None,
                 stream: GpsStream | None = None, max_line: int = MAX_LINE,
                 backoff_s: tuple[float, float] = (0.2, 30.0), stall_s: float = 10.0,
                 merge_window_s: float = 0.2, connect_timeout_s: float = 5.0,
                 clock: Callable[[], int] = wall_ms):
        self.host = host
        self.port = port
        self.sensor_id = sensor_id
        self.device = device
        self.stream = stream if stream is not None else GpsStream(sensor_id)
        self.decoder = GpsdDecoder(device)
        self.counts: Counter[str] = Counter()
        self.framer = LineFramer(max_line, self.counts)
        self.connected = asyncio.Event()
        """Set while a gpsd connection is open and watching (cleared on every drop)."""
        self.stall_s = stall_s
        self.merge_window_s = merge_window_s
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock
        self._backoff = Backoff(*backoff_s)
        self._ratelog = RateLimitedLog(log)
        self._flowing = False  # TPVs are arriving: the state whose changes are recorded
        self._ever_flowed = False

    @property
    def name(self) -> str:
        return f"gpsd:{self.sensor_id}"

    @property
    def url(self) -> str:
        return f"gpsd://{self.host}:{self.port}" + (self.device or "")

    def watch_command(self) -> bytes:
        args: dict[str, object] = {"enable": True, "json": True}
        if self.device is not None:
            args["device"] = self.device
        return b"?WATCH=" + json.dumps(args, separators=(",", ":")).encode("ascii") + b"\n"

    async def run(self, emit: Emit) -> None:
        """Read fixes forever, reconnecting as needed; returns only when cancelled."""
        while True:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as exc:
                self.counts["connect_failed"] += 1
                delay = self._backoff.next()
                self._ratelog.warning(f"{self.name} connect", "%s: cannot connect to %s (%s);"
                                      " retrying in %.1fs", self.name, self.url, exc, delay)
                await self._lost(emit, "connect_failed")
                await asyncio.sleep(delay)
                continue
            self.counts["connects"] += 1
            before = self.counts["bytes"]
            reason = "eof"
            try:
                writer.write(self.watch_command())
                await writer.drain()
                self.connected.set()
                log.info("%s: watching %s", self.name, self.url)
                reason = await self._read(reader, emit)
            except OSError as exc:  # reset by peer, broken pipe, ...
                reason = "error"
                self._ratelog.warning(f"{self.name} io", "%s: %s: %s", self.name, self.url, exc)
            finally:
                self.connected.clear()
                self.framer.reset()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            await self._observe(self.decoder.flush(), emit)  # the held epoch is still a fix
            self.decoder.reset()
            self.counts["disconnects"] += 1
            await self._lost(emit, reason)
            self._ratelog.warning(f"{self.name} gone", "%s: connection to %s ended (%s); "
                                  "reconnecting", self.name, self.url, reason)
            if self.counts["bytes"] > before:  # a working session: start backing off afresh
                self._backoff.reset()
            await asyncio.sleep(self._backoff.next())

    async def _read(self, reader: asyncio.StreamReader, emit: Emit) -> str:
        """Pump one connection until it ends; returns why ("eof" or "stall")."""
        loop = asyncio.get_running_loop()
        last_data = loop.time()
        while True:
            if self.decoder.pending:
                timeout = self.merge_window_s
            else:
                timeout = max(0.0, self.stall_s - (loop.time() - last_data))
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation
                # that races with the read completing, and the agent could not stop us.
                async with asyncio.timeout(timeout):
                    data = await reader.read(65_536)
            except TimeoutError:  # StreamReader.read loses nothing when cancelled
                if self.decoder.pending:
                    await self._observe(self.decoder.flush(), emit)
                    continue
                self.counts["stalls"] += 1
                return "stall"
            if not data:
                return "eof"
            last_data = loop.time()
            self.counts["bytes"] += len(data)
            for line in self.framer.feed(data):
                await self._observe(self.decoder.feed(line), emit)
            if self.decoder.last_error is not None:
                self._ratelog.warning(f"{self.name} gpsd error", "%s: gpsd says: %s",
                                      self.name, self.decoder.last_error)
                self.decoder.last_error = None

    async def _observe(self, observations: list[GpsFix | NoFix], emit: Emit) -> None:
        for obs in observations:
            self.counts["fixes" if isinstance(obs, GpsFix) else "no_fixes"] += 1
            if not self._flowing:
                self._flowing = True
                if self._ever_flowed:
                    await emit(self._status("sensorConnected"))
                self._ever_flowed = True
            for draft in self.stream.observe(obs):
                await emit(draft)

    async def _lost(self, emit: Emit, reason: str) -> None:
        if self._flowing:
            self._flowing = False
            await emit(self._status("sensorDisconnected", reason=reason))

    def _status(self, event: str, **details: object) -> Draft:
        return Draft(self.clock(), "status", self.sensor_id,
                     {"event": event, "port": self.url, **details})

    def stats(self) -> ComponentStats:
        """Fixes decoded and accepted; reports, fields and fixes dropped by reason; bytes,
        connections, stalls, no-fix epochs and gpsd's own messages as events."""
        dropped, events = split(self.decoder.counts, NOT_DROPPED, "gpsd_")
        dropped.update(self.stream.counts)
        port = dict(self.counts)
        dropped["line_too_long"] = port.pop("line_too_long", 0)
        return ComponentStats(added=port.pop("fixes", 0), written=self.stream.accepted,
                              dropped=dropped, events={**events, **port},
                              connected=self.connected.is_set())
