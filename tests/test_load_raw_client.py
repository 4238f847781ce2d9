"""The load tool's lean HTTP/1.1 client (load/rawhttp.py): framing, keep-alive, limits, failures.

Each test runs a real server on loopback: aiohttp (what the gateway and the naive peer are) or,
for answers aiohttp would never send, a raw asyncio server writing the bytes under test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from load.rawhttp import MAX_HEAD_BYTES, Origin, ProtocolViolation, RawHttpPool
from load.runner import MaxConfig, OpenLoopConfig, run_max, run_open_loop
from load.scenarios import CorpusEntry, RequestPicker, get_scenario

PEERS = web.AppKey("peers", set)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    request.app[PEERS].add(request.transport.get_extra_info("peername"))
    return web.json_response({"method": request.method, "path": request.path, "len": len(body),
                              "auth": request.headers.get("Authorization"), "ctype": request.content_type,
                              "host": request.host, "body": body.decode()})


async def _chunked(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for part in (b'{"verdict":', b' "valid"', b"}"):
        await resp.write(part)
    await resp.write_eof()
    return resp


async def _close(request: web.Request) -> web.Response:
    request.app[PEERS].add(request.transport.get_extra_info("peername"))
    return web.Response(body=b"bye", headers={"Connection": "close"})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(body=b"late")


async def _empty(request: web.Request) -> web.Response:
    return web.Response(status=204)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app[PEERS] = set()
    app.router.add_post("/echo", _echo)
    app.router.add_get("/echo", _echo)
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/close", _close)
    app.router.add_get("/slow", _slow)
    app.router.add_delete("/empty", _empty)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


def _url(srv: TestServer) -> str:
    return f"http://127.0.0.1:{srv.port}"


async def raw_server(answer: Callable[[bytes], bytes | None], *, close_after: bool = True) -> tuple[asyncio.Server, str]:
    """A loopback server that reads one request head and writes ``answer(head)`` as it is."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            out = answer(head)
            if out:
                writer.write(out)
                await writer.drain()
            if close_after:
                writer.close()
            else:
                await asyncio.sleep(5)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


async def test_a_post_goes_out_with_its_headers_and_the_json_answer_comes_back(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 4) as pool:
        raw = pool.prepare("POST", "/echo", b'{"a": 1}', {"Content-Type": "application/json",
                                                            "Authorization": "Bearer t0k"})
        status, body = await pool.request(raw, 5.0)
    assert status == 200
    doc = orjson.loads(body)
    assert doc == {"method": "POST", "path": "/echo", "len": 8, "auth": "Bearer t0k", "ctype": "application/json",
                   "host": f"127.0.0.1:{server.port}", "body": '{"a": 1}'}


async def test_keep_alive_reuses_one_connection_for_sequential_requests(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 4) as pool:
        raw = pool.prepare("GET", "/echo", b"", {})
        for _ in range(20):
            assert (await pool.request(raw, 5.0))[0] == 200
        assert pool.open_connections == 1
    assert len(server.app[PEERS]) == 1


async def test_concurrent_requests_never_open_more_than_the_limit(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 3) as pool:
        raws = [pool.prepare("POST", "/echo", str(i).encode(), {}) for i in range(40)]
        got = await asyncio.gather(*(pool.request(r, 5.0) for r in raws))
        assert pool.open_connections <= 3
    assert sorted(orjson.loads(b)["body"] for _, b in got) == sorted(str(i) for i in range(40))
    assert 1 <= len(server.app[PEERS]) <= 3


async def test_a_chunked_answer_is_reassembled(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 1) as pool:
        status, body = await pool.request(pool.prepare("GET", "/chunked", b"", {}), 5.0)
        assert (status, body) == (200, b'{"verdict": "valid"}')
        # the connection is still in step: the next answer is the next request's
        status, body = await pool.request(pool.prepare("GET", "/echo", b"", {}), 5.0)
        assert status == 200 and orjson.loads(body)["path"] == "/echo"


async def test_connection_close_retires_the_connection_and_the_next_request_opens_a_new_one(
        server: TestServer) -> None:
    async with RawHttpPool(_url(server), 1) as pool:
        raw = pool.prepare("GET", "/close", b"", {})
        assert await pool.request(raw, 5.0) == (200, b"bye")
        assert await pool.request(raw, 5.0) == (200, b"bye")
    assert len(server.app[PEERS]) == 2


async def test_a_204_has_no_body_and_keeps_the_connection(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 1) as pool:
        assert await pool.request(pool.prepare("DELETE", "/empty", b"", {}), 5.0) == (204, b"")
        assert (await pool.request(pool.prepare("GET", "/echo", b"", {}), 5.0))[0] == 200
        assert pool.open_connections == 1


async def test_a_slow_answer_times_out_and_the_pool_recovers(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 1) as pool:
        with pytest.raises(asyncio.TimeoutError):
            await pool.request(pool.prepare("GET", "/slow?s=2", b"", {}), 0.2)
        # the late answer must not be read as the next request's: the connection was dropped
        status, body = await pool.request(pool.prepare("GET", "/echo", b"", {}), 5.0)
        assert status == 200 and orjson.loads(body)["path"] == "/echo"


async def test_waiting_for_a_free_connection_counts_against_the_timeout(server: TestServer) -> None:
    async with RawHttpPool(_url(server), 1) as pool:
        slow = asyncio.ensure_future(pool.request(pool.prepare("GET", "/slow?s=0.6", b"", {}), 5.0))
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await pool.request(pool.prepare("GET", "/echo", b"", {}), 0.2)
        assert (await slow) == (200, b"late")


async def test_a_refused_connection_is_a_connection_error() -> None:
    srv, url = await raw_server(lambda head: None)
    srv.close()
    await srv.wait_closed()
    async with RawHttpPool(url, 1) as pool:
        with pytest.raises(ConnectionError):
            await pool.request(pool.prepare("GET", "/", b"", {}), 2.0)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",           # closed before the body's end
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",  # closed inside a chunk
    b"HTTP/1.1 200 OK\r\nContent-Le",                                  # closed inside the head
    b"",                                                                # closed without a word
], ids=["truncated-body", "truncated-chunk", "truncated-head", "silent-close"])
async def test_an_answer_cut_short_by_the_server_is_a_connection_error(answer: bytes) -> None:
    srv, url = await raw_server(lambda head: answer)
    try:
        async with RawHttpPool(url, 1) as pool:
            with pytest.raises(ConnectionError):
                await pool.request(pool.prepare("GET", "/", b"", {}), 2.0)
    finally:
        srv.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n",
], ids=["status-not-a-number", "not-http", "negative-length", "conflicting-lengths", "length-and-chunked",
        "unknown-transfer-coding", "chunk-size-not-hex", "chunk-without-crlf", "header-without-colon",
        "bytes-after-body", "interim-answer", "header-block-over-limit"])
async def test_a_malformed_answer_is_a_protocol_violation_and_the_connection_is_dropped(answer: bytes) -> None:
    srv, url = await raw_server(lambda head: answer, close_after=False)
    try:
        async with RawHttpPool(url, 1) as pool:
            with pytest.raises(ProtocolViolation):
                await pool.request(pool.prepare("GET", "/", b"", {}), 2.0)
            await asyncio.sleep(0.05)
            assert pool.open_connections == 0
    finally:
        srv.close()


async def test_an_answer_framed_by_the_connection_closing_is_read_whole() -> None:
    srv, url = await raw_server(lambda head: b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
    try:
        async with RawHttpPool(url, 1) as pool:
            assert await pool.request(pool.prepare("GET", "/", b"", {}), 2.0) == (200, b"all of it")
    finally:
        srv.close()


def test_origins_other_than_plain_http_are_refused_and_ipv6_hosts_are_bracketed() -> None:
    with pytest.raises(ValueError):
        Origin.parse("https://127.0.0.1:8443")
    with pytest.raises(ValueError):
        Origin.parse("127.0.0.1:8080")
    assert Origin.parse("http://[::1]:8080").host_header == "[::1]:8080"
    assert Origin.parse("http://localhost").port == 80
    with pytest.raises(ValueError):
        RawHttpPool("http://127.0.0.1:1", 1).prepare("HEAD", "/", b"", {})


def _corpus(n: int) -> list[CorpusEntry]:
    return [CorpusEntry(kind="verify", method="POST", path="/echo", body={"licence": f"L{i}"}, expect=None, tag=None)
            for i in range(n)]


@pytest.mark.parametrize("client", ["raw", "aiohttp"])
async def test_both_engines_count_alike_with_either_client(server: TestServer, client: str) -> None:
    sc = get_scenario("verify")
    picker = RequestPicker.build(sc, _corpus(10), 1)
    r = await run_open_loop(OpenLoopConfig(target=_url(server), scenario=sc, rate=200, duration_s=0.5,
                                           client=client), picker, progress=None)
    c = r["counts"]
    assert c["scheduled"] == c["sent"] == c["responses"] == c["ok"] == 100 and c["errors"] == 0
    m = await run_max(MaxConfig(target=_url(server), scenario=sc, step_duration_s=0.3, concurrency_steps=(4,),
                                client=client), picker, progress=None)
    assert m["steps"][0]["counts"]["ok"] > 10 and m["steps"][0]["counts"]["errors"] == 0


class _Pool:
    def __init__(self) -> None:
        self.released: list[object] = []

    def _release(self, conn: object) -> None:
        self.released.append(conn)

    def _forget(self, conn: object) -> None:
        pass


class _Transport:
    def close(self) -> None:
        pass


def _conn_fed(answer: bytes, piece: int) -> tuple[asyncio.Future, "_Pool"]:
    from load.rawhttp import _Conn

    pool = _Pool()
    conn = _Conn(pool)  # type: ignore[arg-type]
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    waiter = conn.waiter = asyncio.get_running_loop().create_future()
    for k in range(0, len(answer), piece):
        conn.data_received(answer[k:k + piece])
        if waiter.done():
            break
    return waiter, pool


async def test_a_chunked_answer_arriving_a_byte_at_a_time_is_decoded_once_and_whole() -> None:
    chunks = [bytes([65 + i % 26]) * (i * 7 % 50 + 1) for i in range(40)]
    body = b"".join(chunks)
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n")
    for piece in (1, 3, 64, len(answer)):
        waiter, pool = _conn_fed(answer, piece)
        assert waiter.done() and waiter.result() == (200, body), piece
        assert len(pool.released) == 1                 # kept alive for the next request
    # the same answer with one chunk's CRLF broken is refused, however it arrives
    broken = answer.replace(b"\r\n" + chunks[5] + b"\r\n", b"\r\n" + chunks[5] + b"XX", 1)
    for piece in (1, 7):
        waiter, pool = _conn_fed(broken, piece)
        with pytest.raises(ProtocolViolation, match="chunk not followed by CRLF"):
            waiter.result()
        assert pool.released == []
