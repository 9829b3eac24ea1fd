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

A connection that drops (the broker restarted, the network blinked) is opened again with capped
backoff, as seal firmware does; a publish that failed with it is sent again once it is back (so
the broker may see it twice, as QoS 1 allows), and counts as failed only if no connection comes
back within ``give_up_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
from collections.abc import Callable

import aiomqtt

MAX_DEFAULT_CONNECTIONS = 1000
CONNECT_CONCURRENCY = 32
RECONNECT_S = (0.1, 5.0)  # backoff between attempts to open a dropped connection
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
        give_up_s: float = 120.0,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be >= 1")
        self.host, self.port = host, port
        self.count = connections
        self.client_id_prefix = client_id_prefix
        self.keepalive = keepalive
        self._clients: list[aiomqtt.Client] = []
        self._up: list[asyncio.Event] = []  # set while connection i is usable
        self._reopening: dict[int, asyncio.Task[None]] = {}
        self._names: list[str] | None = None
        self.give_up_s = give_up_s
        self.reconnects = 0
        self._closing = False
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

    def _client(self, i: int) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id(i, self._names[i] if self._names else None),
            clean_session=True,
            keepalive=self.keepalive,
            max_inflight_messages=100,
            timeout=30,
        )
        # aiomqtt warns above 10 unacked publishes per client; our bound is global.
        client.pending_calls_threshold = self.max_outstanding
        return client

    async def connect(self, names: list[str] | None = None) -> None:
        """Open every connection (``names[i]`` = the device owning connection i, if any)."""
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self._names = names

        async def one(i: int) -> aiomqtt.Client:
            client = self._client(i)
            async with gate:
                await client.__aenter__()
            return client

        tasks = [asyncio.ensure_future(one(i)) for i in range(self.count)]
        try:
            self._clients = list(await asyncio.gather(*tasks))
            self._up = [asyncio.Event() for _ in self._clients]
            for up in self._up:
                up.set()
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
        task = asyncio.create_task(self._publish(conn % self.count, topic, payload, on_done))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(
        self, conn: int, topic: str, payload: bytes, on_done: Callable[[bool], None]
    ) -> None:
        deadline = asyncio.get_running_loop().time() + self.give_up_s
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._up[conn].wait()
                    client = self._clients[conn]
                    await _publish_or_drop(client, topic, payload)
                except (aiomqtt.MqttError, TimeoutError) as exc:
                    if isinstance(exc, aiomqtt.MqttError):
                        self._lost(conn, client)
                    if self._closing or asyncio.get_running_loop().time() >= deadline:
                        self.failed += 1
                        if len(self.errors) < 20:
                            self.errors.append(str(exc) or type(exc).__name__)
                        on_done(False)
                        return
                    continue  # sent again on the connection that replaces this one
                self.acked += 1
                on_done(True)
                return
        finally:
            self._room.release()

    def _lost(self, conn: int, client: aiomqtt.Client) -> None:
        """Connection ``conn`` failed under ``client``: open a new one (once)."""
        if self._closing or client is not self._clients[conn] or conn in self._reopening:
            return
        self._up[conn].clear()
        self._reopening[conn] = asyncio.create_task(self._reopen(conn, client))

    async def _reopen(self, conn: int, old: aiomqtt.Client) -> None:
        await _quiet_close(old)
        delay = RECONNECT_S[0]
        try:
            while not self._closing:
                client = self._client(conn)
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError:
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, RECONNECT_S[1])
                    continue
                self._clients[conn] = client
                self.reconnects += 1
                self._up[conn].set()
                return
        finally:
            self._reopening.pop(conn, None)

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait for every publish queued so far to be acknowledged or to fail."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        self._closing = True
        for task in list(self._reopening.values()):
            task.cancel()
        await asyncio.gather(*self._reopening.values(), return_exceptions=True)
        await asyncio.gather(*(_quiet_close(c) for c in self._clients))
        self._clients = []


async def _publish_or_drop(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
    """A QoS 1 publish that fails as soon as the connection does: aiomqtt would wait out its
    timeout for a PUBACK that can no longer come. ``_disconnected`` is aiomqtt's own future
    for the end of the connection (private, like the other reaches into it here)."""
    sent = asyncio.ensure_future(client.publish(topic, payload, qos=1, timeout=60))
    gone = client._disconnected
    done, _ = await asyncio.wait({sent, gone}, return_when=asyncio.FIRST_COMPLETED)
    if sent in done:
        sent.result()
        return
    sent.cancel()
    await asyncio.gather(sent, return_exceptions=True)
    raise aiomqtt.MqttError("the connection ended before the PUBACK")


async def _quiet_close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)
