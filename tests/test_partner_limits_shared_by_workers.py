"""``serve --workers N``: a partner's rate limit and the client-assertion replay check hold across the
workers (gateway/auth/shared.py), instead of once per worker.

Before: each worker built its own ``RateLimiter`` and ``ReplayCache``; the kernel spreads a partner's
connections over the workers (SO_REUSEPORT), so a partner registered for 5 requests/s got ~N x 5/s
and one client assertion was exchanged for a token once per worker. Each test below has a control
with the per-process classes that shows the weaker behaviour they replace.

* "workers" simulated in this process: two :class:`SharedRateLimiter` on one segment, two
  :class:`SharedReplayCache` on one database file, two apps from ``create_app``;
* one attach from a separately spawned process;
* the real ``python -m gateway serve --demo --workers 2`` on a loopback port.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.app import create_app
from gateway.auth import (TOKEN_SERVICE, OAuthError, RateLimiter, ReplayCache, TokenService, load_partners,
                          make_client_assertion, token_request_form)
from gateway.auth.shared import (SharedRateLimiter, SharedReplayCache, create_rate_segment, remove_stale_segments,
                                 replay_db_path, worker_limits)

from .conftest import NOW
from .test_auth_support import ENDPOINT, assertion, gateway_key, registry
from .test_auth_support import NOW as ASSERTION_NOW   # the assertions' iat (epoch seconds)

REPO = Path(__file__).resolve().parent.parent
PARTNERS = REPO / "certs" / "partners"
SPAWN = mp.get_context("spawn")


@pytest.fixture
def segment() -> Any:
    shm = create_rate_segment()
    try:
        yield shm
    finally:
        shm.close()
        shm.unlink()


@pytest.fixture
def lock() -> Any:
    return SPAWN.Lock()


def two_workers(shm: Any, lock: Any, **kw: Any) -> tuple[SharedRateLimiter, SharedRateLimiter]:
    return SharedRateLimiter(shm.name, lock, 2, **kw), SharedRateLimiter(shm.name, lock, 2, **kw)


def allowed(limiter: Any, client_id: str, n: int, now: float, rate: float = 2.0, burst: int = 6) -> list[bool]:
    return [limiter.check(client_id, rate, burst, now).allowed for _ in range(n)]


# --- the rate limiter, two workers in this process ---------------------------------------------------

def test_a_partners_burst_is_consumed_half_through_each_worker_then_refused_on_either(segment: Any, lock: Any) -> None:
    w1, w2 = two_workers(segment, lock)
    try:
        assert allowed(w1, "p", 3, 100.0) == [True] * 3
        assert allowed(w2, "p", 3, 100.0) == [True] * 3          # burst 6: half through each
        refused = [w.check("p", 2.0, 6, 100.0) for w in (w1, w2)]
        assert [d.allowed for d in refused] == [False, False]     # the next one, on either worker
        assert [d.retry_after_s for d in refused] == [1, 1]
        assert allowed(w2, "other", 6, 100.0) == [True] * 6       # another partner: its own full bucket
        assert (w1.allowed["p"], w1.refused["p"], w2.requests("p"), w2.requests("other")) == (3, 1, 4, 6)
    finally:
        w1.close()
        w2.close()
    # control, the per-process limiter each worker had: every worker allowed the whole burst
    before = [RateLimiter(), RateLimiter()]
    assert sum(allowed(w, "p", 6, 100.0).count(True) for w in before) == 12


def test_refill_is_shared_and_a_restarted_worker_finds_the_bucket_as_it_was(segment: Any, lock: Any) -> None:
    w1, w2 = two_workers(segment, lock)
    assert allowed(w1, "p", 6, 100.0).count(True) == 6
    assert allowed(w2, "p", 1, 100.0) == [False]
    # 0.5 s at 2/s: one token back, for the two workers together
    assert allowed(w2, "p", 1, 100.5) == [True]
    assert allowed(w1, "p", 1, 100.5) == [False]
    assert allowed(w1, "p", 2, 101.0) == [True, False]
    w1.close()
    restarted = SharedRateLimiter(segment.name, lock, 2)   # attached by a new worker: no fresh burst
    try:
        assert allowed(restarted, "p", 1, 101.0) == [False]
        assert allowed(restarted, "p", 2, 101.5) == [True, False]
    finally:
        restarted.close()
        w2.close()


def test_a_full_table_limits_each_worker_at_rate_over_n_never_unlimited(lock: Any,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    shm = create_rate_segment(slots=2)
    try:
        w1, w2 = two_workers(shm, lock)
        assert allowed(w1, "a", 1, 0.0) == [True] and allowed(w2, "b", 1, 0.0) == [True]  # both slots taken
        caplog.set_level(logging.ERROR, logger="gateway.auth")
        # rate 10/s, burst 10, 2 workers: each worker alone at 5/s, burst 5
        first = [allowed(w, "c", 20, 0.0, rate=10.0, burst=10).count(True) for w in (w1, w2)]
        assert first == [5, 5]
        assert [allowed(w, "c", 20, 1.0, rate=10.0, burst=10).count(True) for w in (w1, w2)] == [5, 5]
        full = [r for r in caplog.records if "slots are all taken" in r.getMessage()]
        assert len(full) == 2 and {r.process for r in full} == {os.getpid()}   # once per worker, not per request
        assert allowed(w1, "a", 1, 0.0) == [True]   # the partners in the table keep their shared bucket
        w1.close()
        w2.close()
    finally:
        shm.close()
        shm.unlink()


class SpyLock:
    """The parent's lock, counting the waits (``acquire`` with blocking) of the limiter."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.waits = lock, 0

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        self.waits += bool(block)
        return self.lock.acquire(block, timeout)

    def release(self) -> None:
        self.lock.release()


def test_a_lock_never_released_limits_the_worker_alone_at_rate_over_n_then_shares_again(segment: Any,
                                                                                         lock: Any) -> None:
    spy = SpyLock(lock)
    w = SharedRateLimiter(segment.name, spy, 2, lock_timeout_s=0.05, lock_retry_s=1.0)
    try:
        assert allowed(w, "p", 1, 0.0, rate=10.0, burst=10) == [True]
        lock.acquire()   # a worker killed while holding the lock
        waits = spy.waits
        assert allowed(w, "p", 20, 0.1, rate=10.0, burst=10).count(True) == 5   # burst 10 // 2, alone
        assert w.limiting_alone and spy.waits == waits + 1   # waited once (50 ms), not once per request
        assert allowed(w, "p", 20, 0.5, rate=10.0, burst=10).count(True) == 2   # 0.4 s at 5/s, not 10/s
        lock.release()
        assert allowed(w, "p", 1, 0.6, rate=10.0, burst=10) == [False]   # retry not due yet: still alone
        # after lock_retry_s a try without waiting finds it free: the shared bucket again (9 tokens at
        # t=0, full since), 10 at once, which the worker alone never allowed
        assert allowed(w, "p", 11, 1.2, rate=10.0, burst=10).count(True) == 10
        assert not w.limiting_alone
    finally:
        w.close()


def _charge_in_another_process(name: str, lock: Any, n: int, now: float, out: Any) -> None:
    limiter = SharedRateLimiter(name, lock, 2)
    out.put([limiter.check("p", 1.0, 4, now).allowed for _ in range(n)])
    limiter.close()


def test_a_spawned_process_attaches_the_segment_by_name_and_never_unlinks_it(segment: Any, lock: Any) -> None:
    results = SPAWN.Queue()
    proc = SPAWN.Process(target=_charge_in_another_process, args=(segment.name, lock, 3, 1000.0, results))
    proc.start()
    try:
        assert results.get(timeout=60) == [True, True, True]
    finally:
        proc.join(60)
    assert proc.exitcode == 0
    here = SharedRateLimiter(segment.name, lock, 2)   # still there after the other process ended
    try:
        assert allowed(here, "p", 2, 1000.0, rate=1.0, burst=4) == [True, False]   # 3 of 4 spent over there
    finally:
        here.close()


def test_the_parent_side_unlinks_the_segment_on_exit_and_on_an_error(tmp_path: Path) -> None:
    with worker_limits(tmp_path, 2, SPAWN) as limits:
        limiter = limits.rate_limiter()
        assert isinstance(limiter, SharedRateLimiter) and limiter.workers == 2
        assert limiter.check("p", 1.0, 1, 0.0).allowed
        limiter.close()
        assert Path(limits.replay_db) == replay_db_path(tmp_path) == tmp_path / "auth-replay.sqlite3"
        with sqlite3.connect(limits.replay_db) as conn:   # made by the parent, before any worker
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        name = limits.rate_segment
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
    with pytest.raises(RuntimeError), worker_limits(tmp_path, 2, SPAWN) as limits:
        name = limits.rate_segment
        raise RuntimeError("a worker could not start")
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
    # a worker that cannot attach (the segment removed meanwhile): rate/N on its own, never unlimited
    gone = limits.rate_limiter()
    assert [gone.check("p", 10.0, 10, 0.0).allowed for _ in range(10)].count(True) == 5


def test_tables_left_by_gateways_killed_with_sigkill_are_removed_not_those_of_running_ones(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()   # its pid: no process now
    for name in (f"gwrl_{ended.pid}_0badf00d", f"gwrl_{os.getpid()}_0badf00d", "gwrl_x_y", "psm_0badf00d"):
        (tmp_path / name).write_bytes(bytes(64))
    assert remove_stale_segments(tmp_path) == [f"gwrl_{ended.pid}_0badf00d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gwrl_{os.getpid()}_0badf00d", "gwrl_x_y", "psm_0badf00d"])


# --- the replay cache, two workers on one database file ---------------------------------------------

def test_one_client_assertion_is_exchanged_once_across_two_workers(tmp_path: Path) -> None:
    db = tmp_path / "auth-replay.sqlite3"
    workers = [TokenService(registry(), gateway_key(), token_endpoint=ENDPOINT, replay_cache=SharedReplayCache(db))
               for _ in range(2)]
    signed = assertion()
    assert workers[0].issue(token_request_form(signed), ASSERTION_NOW)["access_token"]
    for service in (workers[1], workers[0]):
        with pytest.raises(OAuthError) as info:
            service.issue(token_request_form(signed), ASSERTION_NOW + 1)
        assert (info.value.error, info.value.status, info.value.detail) == ("invalid_client", 401, "assertion replayed")
    restarted = TokenService(registry(), gateway_key(), token_endpoint=ENDPOINT, replay_cache=SharedReplayCache(db))
    with pytest.raises(OAuthError):
        restarted.issue(token_request_form(signed), ASSERTION_NOW + 2)
    assert workers[1].issue(token_request_form(assertion()), ASSERTION_NOW + 2)["access_token"]   # a fresh jti is fine
    # control, the per-process cache each worker had: the same assertion taken by both
    before = [TokenService(registry(), gateway_key(), token_endpoint=ENDPOINT) for _ in range(2)]
    replayed = assertion()
    assert all(s.issue(token_request_form(replayed), ASSERTION_NOW)["access_token"] for s in before)


def test_expired_entries_are_pruned_for_every_worker(tmp_path: Path) -> None:
    db = tmp_path / "replay.sqlite3"
    a, b = SharedReplayCache(db), SharedReplayCache(db)
    assert a.add("p", "1", 100.0, 0.0) and a.add("p", "2", 300.0, 0.0)
    assert not b.add("p", "1", 100.0, 50.0)          # seen by the other worker
    assert b.add("q", "1", 400.0, 150.0)             # prunes p/1 (expired at 100)
    assert (len(a), a.held_for("p"), a.held_for("q")) == (2, 1, 1)
    assert a.add("p", "1", 500.0, 150.0)             # expired and forgotten, as ReplayCache does
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute("SELECT client_id, jti FROM replay")) == [("p", "1"), ("p", "2"), ("q", "1")]
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN DELETE FROM replay WHERE expires_at <= 1"))
        assert "replay_expiry" in plan               # pruning uses the expiry index


def test_a_partners_share_and_the_global_bound_hold_across_workers(tmp_path: Path) -> None:
    db = tmp_path / "replay.sqlite3"
    a, b = SharedReplayCache(db, max_entries=3, max_per_client=2), SharedReplayCache(db, max_entries=3,
                                                                                    max_per_client=2)
    assert a.add("p", "1", 100.0, 0.0) and b.add("p", "2", 200.0, 0.0)
    with pytest.raises(OAuthError) as info:
        a.add("p", "3", 100.0, 0.0)                  # its share is full, through both workers
    assert (info.value.error, info.value.status, info.value.headers["Retry-After"]) == (
        "temporarily_unavailable", 429, "100")         # p/1, its oldest, is forgotten at 100
    assert "holds 2 unexpired client assertions" in info.value.detail
    assert not b.add("p", "1", 100.0, 10.0)          # a replay is still a replay, not a quota refusal
    assert b.add("q", "1", 100.0, 0.0)               # another partner is served ...
    with pytest.raises(OAuthError) as full:
        a.add("r", "1", 100.0, 0.0)                  # ... until the whole cache is full: fail closed
    assert (full.value.error, full.value.detail) == ("temporarily_unavailable", "replay cache full")
    assert a.add("p", "3", 300.0, 100.0)             # p/1 expired: its share is back
    # the same refusals as the per-process cache
    memory = ReplayCache(max_entries=3, max_per_client=2)
    assert memory.add("p", "1", 100.0, 0.0) and memory.add("p", "2", 200.0, 0.0)
    with pytest.raises(OAuthError) as same:
        memory.add("p", "3", 100.0, 0.0)
    assert (same.value.error, same.value.status, same.value.description_zh) == (
        info.value.error, info.value.status, info.value.description_zh)


@pytest.mark.parametrize("where", ["parent-is-a-file", "no-such-directory", "not-a-database"])
def test_an_unusable_database_refuses_the_token_never_accepts_unchecked(tmp_path: Path, where: str) -> None:
    if where == "parent-is-a-file":
        (tmp_path / "var").write_text("a file where the directory should be")
        db = tmp_path / "var" / "auth-replay.sqlite3"
    elif where == "no-such-directory":
        db = tmp_path / "var" / "auth-replay.sqlite3"
    else:
        db = tmp_path / "auth-replay.sqlite3"
        db.write_bytes(b"this is not a SQLite database at all, just some bytes" * 100)
    service = TokenService(registry(), gateway_key(), token_endpoint=ENDPOINT, replay_cache=SharedReplayCache(db))
    for _ in range(2):   # tried again each time, refused each time
        with pytest.raises(OAuthError) as info:
            service.issue(token_request_form(assertion()), ASSERTION_NOW)
        assert (info.value.error, info.value.status, info.value.headers["Retry-After"]) == (
            "temporarily_unavailable", 503, "60")
        assert "unusable" in info.value.detail
    if where == "no-such-directory":   # the next request after the cause is gone is served
        (tmp_path / "var").mkdir()
        assert service.issue(token_request_form(assertion()), ASSERTION_NOW)["access_token"]


def test_a_busy_database_refuses_after_a_short_wait(tmp_path: Path) -> None:
    db = tmp_path / "replay.sqlite3"
    cache = SharedReplayCache(db, busy_timeout_ms=50)
    assert cache.add("p", "1", 100.0, 0.0)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")   # another worker's write transaction, held
    try:
        started = time.monotonic()
        with pytest.raises(OAuthError) as info:
            cache.add("p", "2", 100.0, 0.0)
        assert (info.value.error, info.value.status) == ("temporarily_unavailable", 503)
        assert time.monotonic() - started < 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert cache.add("p", "2", 100.0, 0.0) and not cache.add("p", "1", 100.0, 0.0)


# --- two apps from create_app: the plumbing through Services -------------------------------------------

def slow_partner_dir(root: Path, rate: float, burst: int) -> Path:
    """A copy of the TEST registry plus ``slow-partner`` (demo-partner's key pair, the given rate)."""
    partners = root / "partners"
    shutil.copytree(PARTNERS, partners)
    (partners / "slow-partner.toml").write_text(
        'client_id = "slow-partner"\nname_zh = "慢速合作方（测试用）"\nscopes = ["licences:verify", "admin"]\n'
        'items = "*"\nregions = "*"\n\n[key]\npublic_key_pem = "demo-partner.test-public.pem"\n\n'
        f"[rate_limit]\nrequests_per_second = {rate}\nburst = {burst}\n", encoding="utf-8")
    shutil.copy(PARTNERS / "demo-partner.test-private.pem", partners / "slow-partner.test-private.pem")
    return partners


def slow_assertion(partners: Path, audience: str, now: float) -> str:
    key = serialization.load_pem_private_key((partners / "slow-partner.test-private.pem").read_bytes(), None)
    return make_client_assertion("slow-partner", key, load_partners(partners)["slow-partner"].alg, audience, now)


async def test_two_apps_given_the_shared_limits_through_services_share_them(world: Any, tmp_path: Path,
                                                                            aiohttp_client: Any) -> None:
    partners = slow_partner_dir(tmp_path, 0.01, 4)
    reg = load_partners(partners)
    with worker_limits(tmp_path / "var", 2, SPAWN) as limits:
        clients = [await aiohttp_client(create_app(limits.install(world.services(partners=reg)))) for _ in range(2)]
        assert all(isinstance(c.server.app[TOKEN_SERVICE].replay_cache, SharedReplayCache) for c in clients)
        signed = slow_assertion(partners, world.settings.token_endpoint_url, NOW.timestamp())
        first = await clients[0].post("/v1/oauth/token", data=token_request_form(signed, "admin"))
        assert first.status == 200, await first.text()
        token = (await first.json())["access_token"]
        again = await clients[1].post("/v1/oauth/token", data=token_request_form(signed, "admin"))
        assert again.status == 401 and (await again.json())["error"] == "invalid_client"
        bearer = {"Authorization": f"Bearer {token}"}
        statuses = [(await c.get("/v1/admin/worker", headers=bearer)).status for c in clients for _ in range(2)]
        assert statuses == [200, 200, 200, 200]   # burst 4: two through each app
        assert [(await c.get("/v1/admin/worker", headers=bearer)).status for c in clients] == [429, 429]
        for c in clients:
            await c.close()
    # control: apps built as before (one worker, tests) keep their own limiter and cache
    plain = [await aiohttp_client(create_app(world.services(partners=reg))) for _ in range(2)]
    assert all(type(c.server.app[TOKEN_SERVICE].replay_cache) is ReplayCache for c in plain)
    statuses = [(await c.get("/v1/admin/worker", headers=bearer)).status for c in plain for _ in range(4)]
    assert statuses == [200] * 8   # each app allowed the whole burst


# --- the real gateway: serve --demo --workers 2 -----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(err: Path) -> tuple[list[dict], list[str]]:
    docs, plain = [], []
    for line in err.read_text().splitlines():
        if line.strip():
            try:
                docs.append(json.loads(line))
            except ValueError:
                plain.append(line)
    return docs, plain


def _call(url: str, *, data: dict[str, str] | None = None, token: str | None = None) -> tuple[int, dict]:
    """One request on a fresh connection (urllib sends ``Connection: close``): the kernel picks the worker."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _segments_of(pid: int) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"gwrl_{pid}_*"))


def test_serve_with_two_workers_holds_a_partners_rate_and_refuses_a_replayed_assertion(tmp_path: Path) -> None:
    rate, burst = 5, 5
    partners = slow_partner_dir(tmp_path, rate, burst)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path / "var"), "GATEWAY_AUDIT_BACKEND": "memory",
           "GATEWAY_DEMO_REGIONS_PORT": str(_free_port()), "GATEWAY_LOG_LEVEL": "INFO",
           "GATEWAY_PARTNERS_DIR": str(partners)}
    err = tmp_path / "stderr.log"
    with err.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", "2", "--port",
                                 str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=out,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len({d["pid"] for d in _lines(err)[0] if "serving on" in d.get("message", "")}) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.3)
        assert len(_segments_of(proc.pid)) == 1   # the parent's bucket table

        def token(client_id: str) -> str:
            key = serialization.load_pem_private_key((partners / f"{client_id}.test-private.pem").read_bytes(), None)
            signed = make_client_assertion(client_id, key, load_partners(partners)[client_id].alg,
                                           f"{base}/v1/oauth/token", time.time())
            status, body = _call(f"{base}/v1/oauth/token", data=token_request_form(signed, "admin"))
            assert status == 200, body
            return body["access_token"]

        operator = token("load-operator")   # admin, 100/s: sees which worker answers
        seen: set[int] = set()
        for _ in range(200):
            status, body = _call(f"{base}/v1/admin/worker", token=operator)
            assert status == 200, body
            seen.add(body["pid"])
            if len(seen) == 2:
                break
        assert len(seen) == 2   # both workers answer on the port: fresh connections are spread over them

        # one client assertion, on 8 fresh connections: taken once, refused the 7 other times
        signed = slow_assertion(partners, f"{base}/v1/oauth/token", time.time())
        answers = [_call(f"{base}/v1/oauth/token", data=token_request_form(signed, "admin")) for _ in range(8)]
        assert sorted(s for s, _ in answers) == [200] + [401] * 7, answers
        assert {b.get("error") for s, b in answers if s == 401} == {"invalid_client"}
        slow = next(b["access_token"] for s, b in answers if s == 200)

        # ~40 requests over one second, each on a fresh connection
        results: list[tuple[int, dict]] = []
        started = time.monotonic()
        for i in range(40):
            time.sleep(max(0.0, started + i * 0.025 - time.monotonic()))
            results.append(_call(f"{base}/v1/admin/worker", token=slow))
        elapsed = time.monotonic() - started
        ok = [b["pid"] for s, b in results if s == 200]
        assert {s for s, _ in results} == {200, 429}
        print(f"\n{len(ok)} of {len(results)} allowed in {elapsed:.2f} s, by workers {sorted(set(ok))}")
        assert burst <= len(ok) <= burst + rate * elapsed + 2, (len(ok), elapsed, ok)
        # the other partner is not affected by the slow one's exhausted bucket
        assert _call(f"{base}/v1/admin/worker", token=operator)[0] == 200
        assert _call(f"{base}/v1/admin/worker", token=slow)[0] == 429

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert _segments_of(proc.pid) == []   # unlinked by the parent on its way out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    docs, plain = _lines(err)
    assert plain == [], plain[:10]   # no resource-tracker warning, no traceback
    assert not [d for d in docs if d.get("level") == "ERROR"], [d for d in docs if d.get("level") == "ERROR"]
