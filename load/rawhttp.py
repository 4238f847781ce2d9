"""A lean HTTP/1.1 keep-alive client for the load engines (``--http-client raw``, the default).

Why not aiohttp's client here: the generator shares this 2-core machine with the server it
measures, and every microsecond it spends is taken from the server. aiohttp's ``ClientSession``
builds request and response objects, header multidicts, timers and tracing hooks per request;
this client writes one prepared byte string and parses the status line and framing headers of
the answer. Measured against the naive peer (closed loop at 8, 32 and 128 in flight, both
clients in one run, the whole generator's CPU per request: engine, recorder and kernel time
included): 106-128 us with this client, 233-258 us with aiohttp's. The server sees the same bytes on the
wire as from any HTTP/1.1 client: a request line, ``Host``, ``User-Agent``, ``Content-Type``,
``Content-Length``, ``Authorization``.

What it supports, and what it refuses (a load target is the gateway or the naive peer, both
aiohttp, but any HTTP/1.1 server must be measured correctly or refused with a clear error):

* keep-alive connections, at most ``limit`` open; a request waits for a free one (FIFO);
* responses framed by ``Content-Length`` or ``Transfer-Encoding: chunked`` (trailers skipped),
  or by the connection closing (HTTP/1.0 style); ``Connection: close`` retires the connection;
* a total timeout per request (connect included): the connection is closed, ``TimeoutError``;
* ``ConnectionError`` when the connection fails or closes before the answer is complete;
* :class:`ProtocolViolation` for a malformed status line, header block or chunk, or a header
  block over :data:`MAX_HEAD_BYTES` / body over :data:`MAX_BODY_BYTES` (the connection is closed).

No redirects, no cookies, no decompression, no proxy, no TLS: none of them is wanted in a
loopback load test, and each would cost every request.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from urllib.parse import urlsplit

#: the longest status line + header block accepted (bytes)
MAX_HEAD_BYTES = 64 * 1024
#: the largest response body accepted (bytes)
MAX_BODY_BYTES = 64 * 1024 * 1024


class ProtocolViolation(Exception):
    """The server's answer is not well-formed HTTP/1.1 (or is over the client's limits)."""


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    host_header: str

    @classmethod
    def parse(cls, target: str) -> "Origin":
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the raw client speaks plain http:// to a host, got {target!r}")
        port = parts.port or 80
        host = parts.hostname
        host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls(host, port, host_header)


class _Conn(asyncio.Protocol):
    """One connection; at most one request outstanding on it."""

    __slots__ = ("pool", "transport", "buf", "waiter", "closed", "head_done", "status", "body_start",
                 "length", "chunked", "until_close", "keep_alive", "chunk_pos", "chunk_out")

    def __init__(self, pool: "RawHttpPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.head_done = False
        self.status = 0
        self.body_start = 0
        self.length = -1
        self.chunked = False
        self.until_close = False
        self.keep_alive = True
        self.chunk_pos = 0              # chunked body: where the next chunk's size line starts (0: not yet)
        self.chunk_out = bytearray()    # chunked body: the chunks decoded so far

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if self.until_close and self.head_done and exc is None:
                waiter.set_result((self.status, bytes(self.buf[self.body_start:])))
            else:
                waiter.set_exception(ConnectionError("connection closed before the answer was complete"
                                                     + (f": {exc}" if exc else "")))
        self.pool._forget(self)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None:   # bytes nobody asked for: the connection cannot be trusted
            self._fail(ProtocolViolation("unsolicited bytes from the server"))
            return
        buf = self.buf
        buf += data
        try:
            if not self.head_done:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolViolation(f"header block over {MAX_HEAD_BYTES} bytes")
                    return
                self._parse_head(bytes(buf[:end]))
                self.body_start = end + 4
            body = self._body()
        except ProtocolViolation as exc:
            self._fail(exc)
            return
        if body is None:
            return
        status, keep = self.status, self.keep_alive
        self.waiter = None
        del buf[:]
        self._reset()
        if not keep:
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        if not waiter.done():
            waiter.set_result((status, body))
        if keep:
            self.pool._release(self)

    # -- parsing --------------------------------------------------------------------------------
    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if (not status_line.startswith(b"HTTP/1.") or len(status_line) < 12 or status_line[8:9] != b" "
                or status_line[12:13] not in (b"", b" ") or not status_line[9:12].isdigit()):
            raise ProtocolViolation(f"bad status line {status_line[:80]!r}")
        status = int(status_line[9:12])
        if not 200 <= status <= 599:
            raise ProtocolViolation(f"status {status} not supported (interim or out of range)")
        keep_alive = status_line[7:8] == b"1"   # HTTP/1.1 keeps the connection by default
        length, chunked = -1, False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t"):
                raise ProtocolViolation(f"bad header line {line[:80]!r}")
            lname = name.lower()
            if lname == b"content-length":
                text = value.strip()
                if not text.isdigit() or (length >= 0 and int(text) != length):
                    raise ProtocolViolation(f"bad Content-Length {value[:40]!r}")
                length = int(text)
            elif lname == b"transfer-encoding":
                if value.split(b",")[-1].strip().lower() != b"chunked":
                    raise ProtocolViolation(f"unsupported Transfer-Encoding {value[:40]!r}")
                chunked = True
            elif lname == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if chunked and length >= 0:
            raise ProtocolViolation("both Content-Length and chunked framing")
        if length > MAX_BODY_BYTES:
            raise ProtocolViolation(f"body over {MAX_BODY_BYTES} bytes")
        if status in (204, 304):
            length, chunked = 0, False
        self.head_done = True
        self.status = status
        self.length = length
        self.chunked = chunked
        self.until_close = length < 0 and not chunked
        self.keep_alive = keep_alive and not self.until_close

    def _body(self) -> bytes | None:
        """The whole body once it is here, else None (more bytes needed)."""
        buf, start = self.buf, self.body_start
        if self.length >= 0:
            have = len(buf) - start
            if have < self.length:
                return None
            if have > self.length:
                raise ProtocolViolation("bytes after the answer's body")
            return bytes(buf[start:])
        if self.chunked:
            return self._chunked()
        if len(buf) - start > MAX_BODY_BYTES:
            raise ProtocolViolation(f"body over {MAX_BODY_BYTES} bytes")
        return None   # framed by the connection's end: connection_lost answers

    def _chunked(self) -> bytes | None:
        """Decode the chunks that have arrived, resuming after the last complete one (each byte is
        parsed once, however many packets the body comes in)."""
        buf, pos, out = self.buf, self.chunk_pos or self.body_start, self.chunk_out
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                self.chunk_pos = pos
                return None
            size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolViolation(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0 or len(out) + size > MAX_BODY_BYTES:
                raise ProtocolViolation("bad chunk size")
            if size == 0:   # the last chunk, then trailers (skipped) and an empty line
                if buf[eol:eol + 4] == b"\r\n\r\n":
                    end = eol
                else:
                    end = buf.find(b"\r\n\r\n", eol)
                    if end < 0:
                        self.chunk_pos = pos
                        return None
                if len(buf) > end + 4:
                    raise ProtocolViolation("bytes after the answer's body")
                return bytes(out)
            if len(buf) < eol + 4 + size:
                self.chunk_pos = pos
                return None
            if buf[eol + 2 + size:eol + 4 + size] != b"\r\n":
                raise ProtocolViolation("chunk not followed by CRLF")
            out += buf[eol + 2:eol + 2 + size]
            pos = eol + 4 + size

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self.closed = True
        self.waiter = None
        if self.transport is not None:
            self.transport.abort()


class RawHttpPool:
    """Keep-alive connections to one origin, at most ``limit`` of them."""

    def __init__(self, target: str, limit: int, *, user_agent: str = "elicence-load") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.origin = Origin.parse(target)
        self.limit = limit
        self._idle: collections.deque[_Conn] = collections.deque()
        self._open = 0
        self._waiting: collections.deque[asyncio.Future[_Conn | None]] = collections.deque()
        self._fixed = f"Host: {self.origin.host_header}\r\nUser-Agent: {user_agent}\r\n".encode("latin-1")
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    # -- connections ----------------------------------------------------------------------------
    def _forget(self, conn: _Conn) -> None:
        """A connection closed (either side): it no longer counts against the limit."""
        self._open -= 1
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        self._hand_over(None)   # a waiter may now open a connection of its own

    def _release(self, conn: _Conn) -> None:
        if self._closed:
            conn.abort()
        elif not self._hand_over(conn):
            self._idle.append(conn)

    def _hand_over(self, conn: _Conn | None) -> bool:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    def _pop_idle(self) -> _Conn | None:
        """The most recently used idle connection still open, or None."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _acquire(self) -> _Conn:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise ConnectionError("client closed")
            conn = self._pop_idle()
            if conn is not None:
                return conn
            if self._open < self.limit:
                self._open += 1
                try:
                    _, conn = await loop.create_connection(lambda: _Conn(self), self.origin.host, self.origin.port)
                except BaseException:
                    self._open -= 1
                    self._hand_over(None)
                    raise
                return conn
            fut: asyncio.Future[_Conn | None] = loop.create_future()
            self._waiting.append(fut)
            try:
                got = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() is not None:
                    self._release(fut.result())   # handed over just as we gave up: pass it on
                raise
            if got is not None and not got.closed:
                return got

    # -- requests -------------------------------------------------------------------------------
    def prepare(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The request's bytes: request line, Host, User-Agent, ``headers``, Content-Length, body."""
        if method not in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            raise ValueError(f"method {method!r} is not sent by the raw client")
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._fixed + extra.encode("latin-1")
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        """Send prepared bytes, return ``(status, body)``. Raises TimeoutError (the whole request,
        waiting for a connection included, took over ``timeout`` s), ConnectionError or
        ProtocolViolation (the connection is then closed)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        conn = self._pop_idle()   # the fast path: a warm keep-alive connection, no await
        if conn is None:
            async with asyncio.timeout(timeout):
                conn = await self._acquire()
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        conn.waiter = fut
        assert conn.transport is not None
        conn.transport.write(raw)
        timer = loop.call_at(start + timeout, _expire, fut)
        try:
            return await fut
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if conn.waiter is fut:
                conn.abort()   # the answer may still come: this connection is out of step
            raise
        finally:
            timer.cancel()

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._idle):
            conn.abort()
        self._idle.clear()
        while self._hand_over(None):
            pass
        await asyncio.sleep(0)

    async def __aenter__(self) -> "RawHttpPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _expire(fut: asyncio.Future[tuple[int, bytes]]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())
