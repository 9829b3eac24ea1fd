"""`sealtrail plan sign|verify|show`: how customs signs transit plans and fence bundles, and how
anyone checks one before it reaches a gateway.

A gateway loads only a signed envelope from a key in its trusted-keys file (see
geofences/README.md); these commands make that envelope, check it exactly the way the gateway
will, and print what it says. Customs keys are ordinary Ed25519 key files
(`sealtrail keys init --key customs.key`, `sealtrail keys show --key customs.key`).

Typical use:
  sealtrail keys init --key customs.key
  sealtrail keys show --key customs.key >> customs.keys     # the gateways' trusted keys
  sealtrail plan sign --key customs.key plan.json -o plan.signed.json
  sealtrail plan verify --trusted-keys customs.keys plan.signed.json
  sealtrail plan show plan.signed.json [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geofences import (
    FENCES_FORMAT,
    PLAN_FORMAT,
    ROLES,
    FenceBundle,
    GeofenceError,
    SignatureError,
    TransitPlan,
    load_trusted_keys,
    parse_fences,
    parse_plan,
    read_envelope,
    sign_envelope,
)
from geofences.envelope import MALFORMED
from ledger_client.keys import KeyFileError, load_key

OK, BAD_SIGNATURE, BAD_INPUT = 0, 1, 2
_FORMAT_KIND = {PLAN_FORMAT: "plan", FENCES_FORMAT: "fences"}


class _Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Fail(BAD_INPUT, f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def _kind_of(payload: bytes, path: Path, wanted: str | None) -> str:
    """The document's kind from its ``format``; ``--kind`` must agree when given."""
    try:
        fmt = json.loads(payload).get("format")
    except (ValueError, AttributeError):
        fmt = None
    kind = _FORMAT_KIND.get(fmt) if isinstance(fmt, str) else None
    if kind is None:
        kind = wanted or "plan"  # let the parser explain what is wrong with it
    elif wanted is not None and wanted != kind:
        raise _Fail(BAD_INPUT, f"{path}: is a {kind} ({fmt}), not a {wanted}")
    return kind


def _parse(kind: str, payload: bytes, source: str) -> TransitPlan | FenceBundle:
    return (parse_plan if kind == "plan" else parse_fences)(payload, source=source)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sign(args: argparse.Namespace) -> int:
    src: Path = args.document
    payload = _read(src, "the document to sign")
    kind = _kind_of(payload, src, args.kind)
    try:
        key = load_key(args.key)
    except KeyFileError as exc:
        raise _Fail(BAD_INPUT, f"customs key: {exc}") from None
    try:
        doc = _parse(kind, payload, str(src))  # refuse to sign what a gateway would refuse
    except GeofenceError as exc:
        raise _Fail(BAD_INPUT, f"not signed: {exc}") from None
    out: Path = args.output or src.with_name(f"{src.stem}.signed.json")
    if out.exists() and not args.force:
        raise _Fail(BAD_INPUT, f"{out} exists; pass --force to replace it")
    env = sign_envelope(kind, payload, key, check=False)
    _write_atomic(out, env)
    ident = doc.plan_id if isinstance(doc, TransitPlan) else f"{doc.bundle_id} v{doc.version}"
    print(f"signed {kind} {ident} -> {out}")
    print(f"digest sha256:{doc.digest}")
    print(f"signer {read_envelope(env).signer_hex}")
    return OK


def _open(path: Path, trusted: Path | None, kind: str | None) -> tuple[Any, str, str]:
    """(document, signer hex, signer status) of an envelope; raises _Fail with the exit code."""
    data = _read(path, "the signed envelope")
    try:
        env = read_envelope(data, str(path))
    except SignatureError as exc:
        raise _Fail(BAD_INPUT if exc.reason == MALFORMED else BAD_SIGNATURE, str(exc)) from None
    if kind is not None and env.kind != kind:
        raise _Fail(BAD_INPUT, f"{path}: holds a {env.kind}, not a {kind}")
    if trusted is not None:
        try:
            keys = load_trusted_keys(trusted)
        except GeofenceError as exc:
            raise _Fail(BAD_INPUT, str(exc)) from None
        status = "trusted"
    else:
        keys, status = [env.signer], "signature valid; signer NOT checked (no --trusted-keys)"
    try:
        env.verify(keys, str(path))
    except SignatureError as exc:
        raise _Fail(BAD_SIGNATURE, str(exc)) from None
    try:
        doc = _parse(env.kind, env.payload, f"{path} ({env.kind})")
    except GeofenceError as exc:
        raise _Fail(BAD_INPUT, f"signature good but the {env.kind} is unusable: {exc}") from None
    return doc, env.signer_hex, status


def _verify(args: argparse.Namespace) -> int:
    doc, signer, _ = _open(args.envelope, args.trusted_keys, args.kind)
    ident = doc.plan_id if isinstance(doc, TransitPlan) else f"{doc.bundle_id} v{doc.version}"
    kind = "plan" if isinstance(doc, TransitPlan) else "fences"
    print(f"ok: {kind} {ident} signed by trusted key {signer}, digest sha256:{doc.digest}")
    return OK


def _iso(t_ms: int | None) -> str | None:
    if t_ms is None:
        return None
    return datetime.fromtimestamp(t_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _summary(doc: TransitPlan | FenceBundle, signer: str | None, status: str) -> dict[str, Any]:
    zones: dict[str, list[dict[str, Any]]] = {r: [] for r in ROLES}
    for z in doc.zones:
        entry: dict[str, Any] = {"id": z.zone_id, "name": z.name}
        entry["shape"] = f"circle r={z.radius_m:g} m" if z.is_circle else z.geometry.geom_type
        if z.valid_from_ms is not None or z.valid_until_ms is not None:
            entry["valid"] = [_iso(z.valid_from_ms), _iso(z.valid_until_ms)]
        zones[z.role].append(entry)
    proj = doc.zones.projection
    out: dict[str, Any] = {}
    if isinstance(doc, TransitPlan):
        c = doc.corridor
        out.update({
            "kind": "plan", "plan_id": doc.plan_id, "declaration_ref": doc.declaration_ref,
            "vehicle": doc.vehicle,
            "containers": [{"container_id": k.container_id, "seal_ids": list(k.seal_ids)}
                           for k in doc.containers],
            "corridor": {"id": c.corridor_id, "length_m": round(c.length_m, 1),
                         "width_m": c.width_m, "vertices": len(c.vertices_e7)},
            "departure_office": doc.departure_office,
            "destination_office": doc.destination_office,
            "authorized_stops": list(doc.authorized_stops),
            "valid_from": _iso(doc.valid_from_ms), "deadline": _iso(doc.deadline_ms),
            "limits": dict(doc.limits),
        })
    else:
        out.update({"kind": "fences", "bundle_id": doc.bundle_id, "version": doc.version})
    out.update({
        "zones": {r: v for r, v in zones.items() if v},
        "projection": {"type": "transverse Mercator (WGS 84)",
                       "origin_lat": round(proj.lat0_deg, 7),
                       "origin_lon": round(proj.lon0_deg, 7)},
        "signer": signer, "signer_status": status, "digest": f"sha256:{doc.digest}",
    })
    return out


def _show_text(s: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    if s["kind"] == "plan":
        c = s["corridor"]
        rows += [
            ("plan", s["plan_id"]), ("declaration", s["declaration_ref"]),
            ("vehicle", s["vehicle"]),
            ("containers", "; ".join(f"{k['container_id']} (seals {', '.join(k['seal_ids'])})"
                                     for k in s["containers"])),
            ("corridor", f"{c['id']}: {c['length_m'] / 1000:.2f} km, {c['vertices']} vertices, "
                         f"width_m {c['width_m']:g} each side of the centre line"),
            ("departure", s["departure_office"]), ("destination", s["destination_office"]),
            ("stops", ", ".join(s["authorized_stops"]) or "(none)"),
            ("valid from", s["valid_from"]), ("deadline", s["deadline"]),
            ("limits", ", ".join(f"{k}={v}" for k, v in s["limits"].items()) or "(defaults)"),
        ]
    else:
        rows += [("bundle", s["bundle_id"]), ("version", str(s["version"]))]
    for n, (role, zs) in enumerate(s["zones"].items()):
        rows.append(("zones" if n == 0 else "", f"{role}: " + "; ".join(
            f"{z['id']}" + (f" \"{z['name']}\"" if z["name"] else "") + f" [{z['shape']}]"
            + (f" valid {z['valid'][0] or '-'} .. {z['valid'][1] or '-'}" if "valid" in z else "")
            for z in zs)))
    p = s["projection"]
    rows += [
        ("projection", f"{p['type']}, origin {p['origin_lat']}, {p['origin_lon']}"),
        ("signer", f"{s['signer'] or '(unsigned)'} ({s['signer_status']})"),
        ("digest", s["digest"]),
    ]
    return "\n".join(f"{k:<14}{v}" for k, v in rows)


def _show(args: argparse.Namespace) -> int:
    path: Path = args.document
    data = _read(path, "the document")
    try:
        fmt = json.loads(data).get("format")
    except (ValueError, AttributeError):
        fmt = None
    if fmt in _FORMAT_KIND:  # an unsigned draft: show it, say so
        kind = _kind_of(data, path, args.kind)
        try:
            doc = _parse(kind, data, str(path))
        except GeofenceError as exc:
            raise _Fail(BAD_INPUT, str(exc)) from None
        signer, status = None, "UNSIGNED draft: a gateway refuses it until signed"
    else:
        doc, signer, status = _open(path, args.trusted_keys, args.kind)
    summary = _summary(doc, signer, status)
    print(json.dumps(summary, indent=1) if args.json else _show_text(summary))
    return OK


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except _Fail as exc:
            print(f"sealtrail plan {args.plan_command}: {exc}", file=sys.stderr)
            return exc.code
    return run


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = subparsers.add_parser(
        "plan", help="sign, verify and show transit plans and fence bundles (customs)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = plan.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    kind_help = ("plan or fences; by default taken from the document's format field "
                 f"({PLAN_FORMAT} / {FENCES_FORMAT}), and must agree with it when given")

    sign = sub.add_parser(
        "sign", help="sign a plan or fence bundle with a customs key",
        description="Validate PLAN.json exactly as a gateway will (geometry, roles, references, "
                    "seals, dates) and, only if it is valid, write a signed envelope holding its "
                    "exact bytes. Exit 0 signed, 2 invalid document or unusable key.")
    sign.add_argument("document", type=Path, metavar="PLAN.json",
                      help="the plan (sealtrail-plan/1) or fence bundle (sealtrail-fences/1)")
    sign.add_argument("--key", type=Path, required=True,
                      help="customs Ed25519 key file (made with `sealtrail keys init --key`)")
    sign.add_argument("-o", "--output", type=Path, default=None,
                      help="envelope to write (default: PLAN.signed.json beside the input)")
    sign.add_argument("--kind", choices=("plan", "fences"), default=None, help=kind_help)
    sign.add_argument("--force", action="store_true", help="replace an existing output file")
    sign.set_defaults(func=_guard(_sign))

    verify = sub.add_parser(
        "verify", help="check a signed envelope as a gateway would",
        description="Check the envelope's signature against the trusted customs keys, then "
                    "parse its payload. Exit 0 valid; 1 unsigned, unknown signer or bad "
                    "signature; 2 bad input (unreadable file, malformed envelope, bad keys file, "
                    "or a correctly signed but invalid payload). The message says which.")
    verify.add_argument("envelope", type=Path, metavar="SIGNED", help="signed envelope file")
    verify.add_argument("--trusted-keys", type=Path, required=True, metavar="FILE",
                        help="customs public keys, hex, one per line, # comments (the gateway's "
                             "[rules] customs_keys_file)")
    verify.add_argument("--kind", choices=("plan", "fences"), default=None,
                        help="require this kind of envelope")
    verify.set_defaults(func=_guard(_verify))

    show = sub.add_parser(
        "show", help="print what a plan or bundle says",
        description="Print a summary: ids, declaration, vehicle, containers and seals, corridor "
                    "length and width, zones by role, dates, limits, projection, signer and "
                    "digest. The signature is always checked against the signer it names; with "
                    "--trusted-keys the signer must also be trusted. An unsigned draft is shown "
                    "marked UNSIGNED. Exit codes as for verify.")
    show.add_argument("document", type=Path, metavar="SIGNED", help="signed envelope (or draft)")
    show.add_argument("--trusted-keys", type=Path, default=None, metavar="FILE",
                      help="also require the signer to be one of these keys")
    show.add_argument("--kind", choices=("plan", "fences"), default=None,
                      help="require this kind of document")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=_guard(_show))
