"""The serial line framer (edge_agent.sources.framing): bounded, and no sentence lost to the
binary a receiver mixes in on the same port (u-blox UBX, SiRF binary)."""

from __future__ import annotations

from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sources.framing import LineFramer
from edge_agent.sources.nmea import GpsFix, NmeaDecoder


def sentence(payload: str) -> bytes:
    cs = reduce(lambda a, b: a ^ b, payload.encode("ascii"), 0)
    return f"${payload}*{cs:02X}".encode("ascii")


RMC = sentence("GNRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A")
# UBX frame header (0xB5 0x62) repeated: 460 bytes of binary before the `$`, more than a line
UBX = b"\xb5b" * 230


def feed_chunks(framer: LineFramer, data: bytes, sizes: list[int]) -> tuple[list[bytes], int]:
    """All lines, and the most the framer held between reads."""
    out: list[bytes] = []
    peak, pos, k = 0, 0, 0
    while pos < len(data):
        n = sizes[k % len(sizes)] if sizes else len(data)
        out += framer.feed(data[pos:pos + n])
        peak = max(peak, len(framer._buf))
        pos, k = pos + n, k + 1
    return out, peak


def test_binary_longer_than_a_line_before_a_sentence_keeps_the_sentence() -> None:
    framer = LineFramer(512)
    assert framer.feed(UBX + RMC + b"\r\n") == [RMC]
    assert framer.counts == {"line_too_long": 1}  # the binary was dropped, and that is counted
    dec = NmeaDecoder()
    (line,) = framer.feed(UBX + RMC + b"\r\n")
    assert dec.feed(line) == []  # an RMC waits for the rest of its epoch...
    (fix,) = dec.flush()
    assert isinstance(fix, GpsFix) and fix.lat_e7 == 472_852_395  # ...and is a fix


def test_the_dollar_may_arrive_in_any_read() -> None:
    for size in (1, 2, 7, 64, 511, 512, 513, 4096):
        lines, peak = feed_chunks(LineFramer(512), UBX * 3 + RMC + b"\r\n", [size])
        assert lines == [RMC], size
        assert peak <= 512, size


def test_a_dollar_in_the_binary_is_not_kept_once_the_real_one_comes() -> None:
    framer = LineFramer(512)
    data = UBX + b"$\x01\x02" + UBX + RMC + b"\r\n"
    assert framer.feed(data) == [RMC]
    # a `$` tail that is itself longer than a line is dropped whole
    framer = LineFramer(512)
    assert framer.feed(b"$" + b"A" * 600 + b"\r\n" + RMC + b"\r\n") == [RMC]
    assert framer.counts == {"line_too_long": 1}


def test_ten_megabytes_of_noise_cost_no_memory() -> None:
    framer = LineFramer(512)
    noise = bytes(range(256)).replace(b"\n", b"").replace(b"$", b"") * 64
    peak = 0
    for _ in range(600):  # ~10 MB with no newline and no `$`
        assert framer.feed(noise) == []
        peak = max(peak, len(framer._buf))
    assert peak == 0
    assert framer.feed(b"\r\n" + RMC + b"\r\n") == [RMC]
    assert framer.counts == {"line_too_long": 1}


def test_short_lines_are_unchanged() -> None:
    framer = LineFramer(512)
    out = framer.feed(b"\x00junk" + RMC + b"\r\n" + RMC[:20])
    assert out == [b"\x00junk" + RMC]  # under a line's length: the decoder skips to the `$`
    assert framer.feed(RMC[20:] + b"\n\r\n\n") == [RMC]
    assert framer.counts == {}


@given(
    prefix=st.binary(max_size=3000).map(lambda b: b.replace(b"\n", b"")),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=8),
)
@settings(max_examples=300)
def test_any_binary_prefix_any_reads(prefix: bytes, sizes: list[int]) -> None:
    framer = LineFramer(512)
    lines, peak = feed_chunks(framer, prefix + RMC + b"\r\n", sizes)
    assert peak <= 512
    (line,) = lines  # the one line: the sentence, with what little binary fits before it
    assert line.endswith(RMC) and line[line.rfind(b"$"):] == RMC
    assert len(line) <= 512
