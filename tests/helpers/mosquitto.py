"""A real Mosquitto broker on a free loopback port, for integration tests.

    from helpers.mosquitto import running_mosquitto

    def test_something(tmp_path):
        with running_mosquitto(tmp_path) as broker:
            client.connect(broker.host, broker.port)
            broker.stop()    # the broker goes away (SIGTERM), e.g. to test reconnects
            broker.start()   # and comes back on the same port, with an empty state
            broker.kill()    # or dies hard (SIGKILL)

    with running_secure_mosquitto(tmp_path, make_test_ca(tmp_path / "pki"),
                                  users=("gw-a", "customs")) as broker:
        # deploy/mosquitto/mosquitto.conf: TLS only, password file, ACL; broker.tls() trusts
        # the test CA, broker.passwords["gw-a"] is that account's password

Readiness is "the port accepts a TCP connection", checked by connecting: Mosquitto has no
readiness notification, and its log format is not an interface. The broker logs to
``broker.log_path`` (not a pipe: 1,000 clients would fill a pipe and stall the broker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    """One Mosquitto process; ``start``/``stop``/``kill`` keep the same host, port and config."""

    host: str
    port: int
    conf_path: Path
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Launch the broker and return once it accepts connections."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        delay = 0.005
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_tail()}")
            time.sleep(delay)  # polling the port: no event exists for "now listening"
            delay = min(delay * 2, 0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Hard stop (SIGKILL), like a crash or power loss of the broker host."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def broker_config(port: int, log_path: Path, extra_conf: str = "", host: str = "127.0.0.1") -> str:
    """The config used by ``running_mosquitto``: anonymous, no persistence, loopback only."""
    lines = [
        f"listener {port} {host}",
        "allow_anonymous true",
        "persistence false",
        f"log_dest file {log_path}",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to 'mosquitto' and cannot write the log
    return "\n".join(lines) + "\n" + extra_conf + ("\n" if extra_conf else "")


@contextlib.contextmanager
def running_mosquitto(
    tmp_path: Path, *, extra_conf: str = "", port: int | None = None, name: str = "mosquitto"
) -> Iterator[Broker]:
    """A started broker; stopped (and its files left in ``tmp_path`` for post-mortems) on exit.

    ``extra_conf`` is appended to the config, e.g. ``"max_queued_messages 100000"``.
    """
    if not os.path.exists(MOSQUITTO):
        raise RuntimeError(f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto)")
    port = port or free_port()
    conf = tmp_path / f"{name}.conf"
    log = tmp_path / f"{name}.log"
    conf.write_text(broker_config(port, log, extra_conf))
    broker = Broker("127.0.0.1", port, conf, log)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# -- the deployed TLS + password + ACL configuration ----------------------------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
MAKE_CA = DEPLOY / "make-test-ca.sh"
PASSWD = DEPLOY / "passwd.sh"
_PATHS = ("cafile", "certfile", "keyfile", "password_file", "acl_file", "persistence_location",
          "pid_file", "log_dest")


def make_test_ca(out: Path, *clients: str) -> Path:
    """Run deploy/mosquitto/make-test-ca.sh: ca.crt, server.crt/.key (localhost, 127.0.0.1) and
    <client>.crt/.key in ``out``."""
    done = subprocess.run([str(MAKE_CA), str(out), *clients], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{MAKE_CA.name} failed ({done.returncode}): {done.stderr.strip()}")
    return out


def secure_broker_config(deploy_conf: str, *, port: int, pki: Path, passwd: Path, acl: Path,
                         state_dir: Path, log_path: Path) -> str:
    """The deployed config with its paths and port moved into a test directory, every other
    line kept. Fails if the deployed file no longer has a line this expects, so a test never
    silently runs some other configuration."""
    values = {"cafile": pki / "ca.crt", "certfile": pki / "server.crt",
              "keyfile": pki / "server.key", "password_file": passwd, "acl_file": acl,
              "persistence_location": f"{state_dir}/", "pid_file": state_dir / "mosquitto.pid",
              "log_dest": f"file {log_path}"}
    seen: list[str] = []
    out = []
    for line in deploy_conf.splitlines():
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else ""
        if key == "listener":
            if "listener" in seen:
                raise ValueError("deploy config has more than one listener")
            line = f"listener {port} 127.0.0.1"
        elif key in _PATHS:
            line = f"{key} {values[key]}"
        elif key == "user":
            continue
        if key:
            seen.append(key)
        out.append(line)
    missing = {"listener", *_PATHS} - set(seen)
    if missing:
        raise ValueError(f"deploy/mosquitto/mosquitto.conf has no {sorted(missing)} line: "
                         "update tests/helpers/mosquitto.py with it")
    if os.geteuid() == 0:
        out.append("user root")  # else it drops to 'mosquitto' and cannot read the test files
    return "\n".join(out) + "\n"


@dataclass
class SecureBroker(Broker):
    """A broker running deploy/mosquitto/mosquitto.conf (TLS only, passwords, ACL)."""

    ca_path: Path = Path()
    passwords: dict[str, str] = field(default_factory=dict)

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (hostname checked: connect to 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def add_user(self, name: str) -> str:
        """Add an account with deploy/mosquitto/passwd.sh, before start (a running broker
        re-reads the file on SIGHUP, but with no signal that it has, so tests would race)."""
        if self.running:
            raise RuntimeError("add users before starting the broker")
        secret = self.conf_path.parent / f"{name}.secret"
        secret.unlink(missing_ok=True)
        done = subprocess.run([str(PASSWD), str(self.conf_path.parent / "passwd"), name,
                               str(secret)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{PASSWD.name} failed ({done.returncode}): {done.stderr.strip()}")
        self.passwords[name] = secret.read_text().strip()
        return self.passwords[name]


    def add_users_bulk(self, names: list[str]) -> dict[str, str]:
        """Accounts for many gateways at once (a load test's thousands): random passwords
        written as ``user:password`` lines and hashed in one ``mosquitto_passwd -U`` run, the
        bulk form Mosquitto documents. Before start, as ``add_user``."""
        if self.running:
            raise RuntimeError("add users before starting the broker")
        import secrets
        fresh = {name: secrets.token_urlsafe(18) for name in names}
        plain = self.conf_path.parent / "bulk.plain"
        plain.write_text("".join(f"{n}:{p}\n" for n, p in fresh.items()))
        plain.chmod(0o600)
        done = subprocess.run(["mosquitto_passwd", "-U", str(plain)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mosquitto_passwd -U failed: {done.stderr.strip()}")
        with (self.conf_path.parent / "passwd").open("a") as passwd:
            passwd.write(plain.read_text())
        plain.unlink()
        self.passwords.update(fresh)
        return fresh


@contextlib.contextmanager
def running_secure_mosquitto(tmp_path: Path, pki: Path, *, users: tuple[str, ...] = (),
                             port: int | None = None, name: str = "secure",
                             start: bool = True) -> Iterator[SecureBroker]:
    """The deployed broker config on a free loopback port, with accounts for ``users``
    (passwords in ``broker.passwords``) and certificates from ``pki`` (see make_test_ca).
    With ``start=False`` it is configured but not started (a gateway that boots first)."""
    if not os.path.exists(MOSQUITTO):
        raise RuntimeError(f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto)")
    port = port or free_port()
    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "mosquitto.log"
    conf = workdir / "mosquitto.conf"
    conf.write_text(secure_broker_config(
        (DEPLOY / "mosquitto.conf").read_text(), port=port, pki=pki, passwd=workdir / "passwd",
        acl=DEPLOY / "sealtrail.acl", state_dir=workdir, log_path=log))
    (workdir / "passwd").touch(mode=0o600)
    broker = SecureBroker("127.0.0.1", port, conf, log, ca_path=pki / "ca.crt")
    for user in users:
        broker.add_user(user)
    if start:
        broker.start()
    try:
        yield broker
    finally:
        broker.stop()
