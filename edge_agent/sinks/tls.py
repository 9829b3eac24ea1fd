"""TLS client contexts for the customs links (MQTT broker, HTTPS webhook).

Verification is always on: the server certificate must chain to the given CA (or the system
store) and name the host we dialled. A gateway that would talk to anyone presenting a
certificate would hand its signed alerts, and its broker password, to whoever sits on the
cellular path.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsConfigError(ValueError):
    """A CA, certificate or key file that cannot be used; the message names the file."""


def client_context(ca: str | Path | None = None, cert: str | Path | None = None,
                   key: str | Path | None = None) -> ssl.SSLContext:
    """A verifying client context: `ca` (PEM) instead of the system store when given, and a
    client certificate `cert` + `key` for brokers that ask for one."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"{ca}: cannot load CA certificates: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"{cert}: cannot load client certificate/key: {exc}") from exc
    elif key is not None:
        raise TlsConfigError(f"{key}: a client key needs its certificate (cert) too")
    return ctx
