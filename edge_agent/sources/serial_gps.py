"""NMEA GPS receiver on a serial port (USB dongle, UART, or a pseudo-terminal in tests).

The serial plumbing (backpressure, reconnect, bounded framing) is serial_port's; this module
only joins it to the NMEA decoder and the per-sensor filters and health checks.
"""

from __future__ import annotations

from edge_agent.agent import Item
from edge_agent.sources.gnss_health import HealthParams
from edge_agent.sources.gps_filter import FixFilterParams
from edge_agent.sources.gps_stream import GpsStream
from edge_agent.sources.nmea import NOT_DROPPED, NmeaDecoder
from edge_agent.sources.serial_port import SerialLineSource
from edge_agent.stats import ComponentStats, split


class NmeaHandler:
    def __init__(self, stream: GpsStream):
        self.decoder = NmeaDecoder()
        self.stream = stream

    @property
    def rejected(self) -> int:
        return self.decoder.rejected

    def handle(self, line: bytes) -> list[Item]:
        return [d for obs in self.decoder.feed(line) for d in self.stream.observe(obs)]

    def reset(self) -> list[Item]:
        return [d for obs in self.decoder.reset() for d in self.stream.observe(obs)]

    def stats(self) -> ComponentStats:
        """Fixes decoded and accepted; lines and fixes dropped by the decoder and filters."""
        dropped, events = split(self.decoder.counts, NOT_DROPPED, "nmea_")
        dropped.update(self.stream.counts)
        return ComponentStats(added=self.decoder.emitted, written=self.stream.accepted,
                              dropped=dropped, events=events)


class SerialGpsSource(SerialLineSource):
    def __init__(self, port: str, *, sensor_id: str = "gps0", baudrate: int = 9600,
                 max_line: int = 512, backoff_s: tuple[float, float] = (0.2, 30.0),
                 filters: FixFilterParams | None = None, health: HealthParams | None = None,
                 silence_s: float | None = 10.0):
        self.stream = GpsStream(sensor_id, filters, health)
        self.nmea = NmeaHandler(self.stream)
        super().__init__(port, self.nmea, sensor_id=sensor_id, kind="gps", baudrate=baudrate,
                         max_line=max_line, backoff_s=backoff_s, silence_s=silence_s)

    @property
    def decoder(self) -> NmeaDecoder:
        return self.nmea.decoder
