"""MQTT connections for many simulated seals, all on one asyncio event loop (aiomqtt).

aiomqtt hooks each paho client's socket into the event loop (no network thread per client), so
1,000 connections cost 1,000 sockets and small client objects, not 1,000 threads.

How many connections: by default one per device, capped at ``MAX_DEFAULT_CONNECTIONS``. One per
device is what a broker sees in production (a client id, a session and a keep-alive per seal, and
per-device ACLs), so that is what a load test should show it. The cap exists because every
connection is a file descriptor here and a session on the broker, and a Pi-class test machine
runs out of both long before the simulator runs out of CPU. Fewer connections can be asked for;
seals are then spread over them round-robin, each seal always on the same connection, so its
messages keep their order (MQTT orders messages per connection, not across connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Callable

import aiomqtt

MAX_DEFAULT_CONNECTIONS = 1000
CONNECT_CONCURRENCY = 32
"""Connections opened at once: a burst of 1,000 SYNs overflows the broker's listen backlog."""

FD_RESERVE = 64
"""Descriptors left for ptys, log files and the like when sizing connections to RLIMIT_NOFILE."""


def default_connections(devices: int) -> int:
    """One per device, capped by ``MAX_DEFAULT_CONNECTIONS`` and by the file descriptor limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd_room = max(1, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else devices
    return max(1, min(devices, MAX_DEFAULT_CONNECTIONS, fd_room))


class MqttPool:
    """``connections`` MQTT clients; ``publish`` keeps at most ``max_outstanding`` unacked.

    ``publish`` returns as soon as the message is handed to its client (in call order, which
    is also the order on the wire); ``on_done(ok)`` runs when the broker's PUBACK arrives or
    the publish fails. ``drain`` waits for all of them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        connections: int,
        *,
        client_id_prefix: str,
        max_outstanding: int = 4000,
        keepalive: int = 60,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self.host, self.port = host, port
        self.count = connections
        self.client_id_prefix = client_id_prefix
        self.keepalive = keepalive
        self._clients: list[aiomqtt.Client] = []
        self._stack = contextlib.AsyncExitStack()
        self.max_outstanding = max_outstanding
        self._room = asyncio.Semaphore(max_outstanding)
        self._pending: set[asyncio.Task[None]] = set()
        self.acked = 0
        self.failed = 0
        self.errors: list[str] = []

    def client_id(self, index: int, device_id: str | None = None) -> str:
        """A device's own id when it has its own connection, else a numbered shared one."""
        if device_id is not None:
            return f"{self.client_id_prefix}-{device_id}"
        return f"{self.client_id_prefix}-c{index:04d}"

    async def connect(self, names: list[str] | None = None) -> None:
        """Open every connection (``names[i]`` = the device owning connection i, if any)."""
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(i: int) -> aiomqtt.Client:
            client = aiomqtt.Client(
                self.host,
                self.port,
                identifier=self.client_id(i, names[i] if names else None),
                clean_session=True,
                keepalive=self.keepalive,
                max_inflight_messages=100,
                timeout=30,
            )
            # aiomqtt warns above 10 unacked publishes per client; our bound is global.
            client.pending_calls_threshold = self.max_outstanding
            async with gate:
                await client.__aenter__()
            return client

        tasks = [asyncio.ensure_future(one(i)) for i in range(self.count)]
        try:
            self._clients = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is None:
                    await _quiet_close(task.result())
                else:
                    task.cancel()
            raise

    async def publish(
        self, conn: int, topic: str, payload: bytes, on_done: Callable[[bool], None]
    ) -> None:
        """Queue a QoS 1 publish on connection ``conn``; waits only while too many are unacked."""
        await self._room.acquire()
        client = self._clients[conn % self.count]
        task = asyncio.create_task(self._publish(client, topic, payload, on_done))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, on_done: Callable[[bool], None]
    ) -> None:
        try:
            await client.publish(topic, payload, qos=1, timeout=60)
        except aiomqtt.MqttError as exc:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(str(exc))
            on_done(False)
        else:
            self.acked += 1
            on_done(True)
        finally:
            self._room.release()

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait for every publish queued so far to be acknowledged or to fail."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        await asyncio.gather(*(_quiet_close(c) for c in self._clients))
        self._clients = []


async def _quiet_close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)
