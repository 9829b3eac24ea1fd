"""The offline half of `sealtrail verify`, without any ledger: the file's own checks (links,
header gateway, seq labels), signatures and inclusion proofs, the verdict order, and the
report naming records by their signed seq.
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ledger_client.evidence import Evidence, EvidenceRecord
from ledger_client.proof import AnchorRef, make_proof
from ledger_client.records import GENESIS_PREV, canonical, parse, record_hash, sign_record
from ledger_client.verify import (
    SEVERITY,
    BrokenLink,
    MislabelledSeq,
    NotAnchored,
    TamperedRecord,
    UnknownGateway,
    WrongGateway,
    unsigned_bytes,
    worst,
)
from ledger_client.verify_file import check_offline, report

GW = "gw-offline"
KEY = Ed25519PrivateKey.generate()
ANCHOR = AnchorRef(31337, "0x" + "22" * 20, 1, "0x" + "33" * 32, 5, "0x" + "44" * 32, 0)
JSON = st.recursive(st.integers(-(2**53) + 1, 2**53 - 1) | st.text() | st.booleans(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)),
                                      inner, max_size=3), max_leaves=12)


def _chain(n: int, key: Ed25519PrivateKey = KEY, gw: str = GW, lon: int = 0) -> list[bytes]:
    out, prev = [], GENESIS_PREV
    for seq in range(1, n + 1):
        body = {"lat_e7": seq, "lon_e7": lon}
        out.append(sign_record({"v": 1, "gw": gw, "seq": seq, "t_ms": seq, "kind": "gps",
                                "src": "gps0", "body": body, "prev": prev}, key)[1])
        prev = record_hash(out[-1]).hex()
    return out


def _file(signed: list[bytes], labels: list[int] | None = None, gw: str = GW,
          proofs: bool = True) -> Evidence:
    labels = labels or list(range(1, len(signed) + 1))
    records = [EvidenceRecord(label, s, make_proof(signed, 1, i + 1, ANCHOR, "anchored")
                              if proofs else None, "anchored")
               for i, (label, s) in enumerate(zip(labels, signed, strict=True))]
    return Evidence(gw, records, 31337, ANCHOR.contract)


def _verdicts(ev: Evidence, keys: dict[str, object] | None = None) -> dict[int | None, str]:
    results = check_offline(ev, keys if keys is not None else {GW: KEY.public_key()})
    return {r.seq: r.error.label if r.error else "ok" for r in results}


@given(JSON, st.text(), st.dictionaries(st.sampled_from(["sig", "seq", "src", "x"]), JSON))
def test_the_signed_member_is_cut_out_exactly(body: object, src: str, extra: dict) -> None:
    """The bytes a signature covers, cut out of signed bytes, are the canonical encoding of the
    record without `sig`, whatever the body holds (even a member named "sig") or src says."""
    record, signed = sign_record({"v": 1, "gw": GW, "seq": 7, "t_ms": 1, "kind": "gps",
                                  "src": src + ',"sig":"', "body": {"v": body, **extra},
                                  "prev": GENESIS_PREV}, KEY)
    parse(signed)
    unsigned = canonical({k: v for k, v in record.items() if k != "sig"})
    assert unsigned_bytes(signed, record["sig"]) == unsigned


def test_a_consistent_file_has_no_failure() -> None:
    assert set(_verdicts(_file(_chain(6))).values()) == {"ok"}


def test_each_way_a_file_can_lie_is_its_own_failure() -> None:
    signed = _chain(6)
    assert _verdicts(_file(signed, labels=[1, 2, 3, 9, 5, 6]))[4] == MislabelledSeq.label
    assert set(_verdicts(_file(signed, gw="gw-other")).values()) == {WrongGateway.label}
    fork = _chain(6, lon=1)[:3] + signed[3:]  # another chain by the same key, spliced at 4
    assert fork[0] != signed[0]
    assert _verdicts(_file(fork)) == {1: "ok", 2: "ok", 3: "ok", 4: BrokenLink.label,
                                      5: "ok", 6: "ok"}
    tampered = [*signed[:2], signed[2].replace(b'"lat_e7":3', b'"lat_e7":4'), *signed[3:]]
    verdicts = _verdicts(_file(tampered, proofs=False))
    assert (verdicts[3], verdicts[4], verdicts[5]) == (TamperedRecord.label, BrokenLink.label,
                                                        NotAnchored.label)
    assert set(_verdicts(_file(signed), keys={}).values()) == {UnknownGateway.label}
    other_key = {GW: Ed25519PrivateKey.generate().public_key()}
    assert set(_verdicts(_file(signed), keys=other_key).values()) == {TamperedRecord.label}


def test_the_report_names_the_signed_seq_and_every_failure_of_a_record() -> None:
    signed = _chain(3)
    ev = _file(signed, labels=[1, 7, 3], gw="gw-other")
    ev.records.append(EvidenceRecord(8, b"not a record", None, "pending"))
    lines, code = report(check_offline(ev, {GW: KEY.public_key()}))
    assert code == TamperedRecord.exit_code == 11  # the bytes that are no record at all
    assert lines[1].startswith("FAIL  seq 2 gps gps0: wrong gateway: ")  # before "mislabelled"
    assert lines[2].startswith("        and mislabelled seq: the file labels this record seq 7")
    assert lines[4].startswith("FAIL  seq ? (labelled 8) ?: tampered: ")
    assert lines[-1].startswith("summary: 0 of 4 records verified; 4 failed")


def test_severity_order_and_exit_codes() -> None:
    codes = [cls.exit_code for cls in SEVERITY]
    assert codes == [11, 16, 17, 18, 19, 13, 12, 15, 14, 10] and len(set(codes)) == len(codes)
    found = [NotAnchored("n"), MislabelledSeq("m"), BrokenLink("b"), WrongGateway("w")]
    assert isinstance(worst(found), BrokenLink) and worst([]) is None
    assert BrokenLink("x").code == 17  # the old name of exit_code still answers


def test_an_anchor_with_a_changed_field_is_still_a_proof() -> None:
    """check_offline does not look at the anchor (that is the ledger's part)."""
    signed = _chain(2)
    ev = _file(signed)
    moved = dataclasses.replace(ANCHOR, block_number=99)
    ev.records[0] = EvidenceRecord(1, signed[0], make_proof(signed, 1, 1, moved, "anchored"),
                                   "anchored")
    assert set(_verdicts(ev).values()) == {"ok"}
