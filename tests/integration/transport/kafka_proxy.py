"""A Kafka-protocol TCP proxy that applies Apache Kafka's session-timeout check before tansu.

Apache Kafka's group coordinator answers a JoinGroup whose `session_timeout_ms` is below the
broker's `group.min.session.timeout.ms` (6000 by default) with INVALID_SESSION_TIMEOUT (26),
before anything else; tansu accepts any session. No Apache Kafka can run here, so this proxy
forwards every byte to a real tansu and only rewrites the error code of such JoinGroup
responses: the client, librdkafka and our transport run for real against that one rule.
tansu must advertise the proxy's address (`start_tansu(advertised_port=...)`) so that every
connection passes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading

JOIN_GROUP = 11
INVALID_SESSION_TIMEOUT = 26


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def join_group_session(body: bytes) -> tuple[int, int, int] | None:
    """(correlation id, api version, session_timeout_ms) of a JoinGroup request, else None."""
    key, version, correlation = struct.unpack(">hhi", body[:8])
    if key != JOIN_GROUP:
        return None
    (client_len,) = struct.unpack(">h", body[8:10])
    offset = 10 + max(client_len, 0)
    if version >= 6:  # flexible versions: tagged header fields, compact strings
        _, offset = _uvarint(body, offset)
        group_len, offset = _uvarint(body, offset)
        offset += group_len - 1
    else:
        (group_len,) = struct.unpack(">h", body[offset:offset + 2])
        offset += 2 + group_len
    (session,) = struct.unpack(">i", body[offset:offset + 4])
    return correlation, version, session


def refuse_join(body: bytearray, version: int) -> None:
    """Set the error code of a JoinGroup response to INVALID_SESSION_TIMEOUT."""
    offset = 4  # correlation id
    if version >= 6:
        _, offset = _uvarint(body, offset)  # response header tagged fields
    if version >= 2:
        offset += 4  # throttle_time_ms
    struct.pack_into(">h", body, offset, INVALID_SESSION_TIMEOUT)


class MinSessionProxy:
    """Runs in a thread: 127.0.0.1:`port` -> 127.0.0.1:`upstream`, refusing short sessions."""

    def __init__(self, port: int, upstream: int, min_session_ms: int = 6000) -> None:
        self.port, self.upstream, self.min_session_ms = port, upstream, min_session_ms
        self.refused: list[int] = []  # session timeouts refused
        self.accepted: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> MinSessionProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _connection(self, client_r: asyncio.StreamReader,
                          client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_w.close()
            return
        joins: dict[int, tuple[int, int]] = {}
        tasks = [asyncio.ensure_future(self._requests(client_r, broker_w, joins)),
                 asyncio.ensure_future(self._responses(broker_r, client_w, joins))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            client_w.close()
            broker_w.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        joins: dict[int, tuple[int, int]]) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">i", size)[0])
                join = join_group_session(body)
                if join is not None:
                    joins[join[0]] = (join[1], join[2])
                writer.write(size + body)
                await writer.drain()

    async def _responses(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         joins: dict[int, tuple[int, int]]) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = await reader.readexactly(4)
                body = bytearray(await reader.readexactly(struct.unpack(">i", size)[0]))
                (correlation,) = struct.unpack(">i", body[:4])
                if correlation in joins:
                    version, session = joins.pop(correlation)
                    if session < self.min_session_ms:
                        refuse_join(body, version)
                        self.refused.append(session)
                    else:
                        self.accepted.append(session)
                writer.write(size + bytes(body))
                await writer.drain()
