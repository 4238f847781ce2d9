"""Prometheus metrics for operators (gateway/metrics.py): ``GET /metrics`` on a listener of its own.

* one process: a scrape moves by exactly the requests made (verdicts by region, requests by route and
  status, the latency histogram, audit records, token refusals), and what a client sends cannot make a
  label (an unknown region, a made-up path);
* ``metrics_port = 0`` (the default): nothing more listens than the API port;
* the real ``python -m gateway serve --demo --workers 2``: requests spread over both workers appear summed
  in one scrape, whichever worker answers it; a worker killed and started again keeps its counts in the
  totals and is counted as a restart;
* the cost the request path pays (a micro-benchmark of the additions: printed with ``-s``);
* settings: every setting has its README row, a metrics port the gateway cannot use is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway import errors
from gateway.app import LIVE, create_app
from gateway.config import ConfigError, Settings, load_settings
from gateway.metrics import EXPORTER, LATENCY_BUCKETS, METRICS, WorkerCounts
from gateway.query_routes import UPSTREAMS

from .conftest import NOW

REPO = Path(__file__).resolve().parent.parent
REGION = "330100"   # 杭州


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text-format scrape: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def label_values(scrape: dict, label: str) -> set[str]:
    return {v for (_, labels), _ in scrape.items() for k, v in labels if k == label}


async def scrape(port: int) -> tuple[dict, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    return samples(text), text


@pytest.fixture
async def metered(world, aiohttp_client):
    """A gateway app in this process with metrics on a free port; fresh status lists."""
    port = _free_port()
    # a sharing-service URL (never called here) gives every region its upstream circuit breaker
    settings = dataclasses.replace(world.settings, metrics_port=port, upstream_base_url="http://127.0.0.1:9/{region}")
    client = await aiohttp_client(create_app(world.services(settings=settings)), headers=world.auth())
    client.app[LIVE].set_status(world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)))
    return client, port


def _licence(world, region: str, case: str = "valid") -> dict[str, str]:
    issued = world.simulator.issue(region, None, case, NOW)
    data = issued.data
    try:
        return {"licence": data.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        import base64

        return {"licence": base64.b64encode(data).decode(), "encoding": "base64"}


# --- one process ---------------------------------------------------------------------------------------------

async def test_a_scrape_moves_by_exactly_the_requests_made(world, metered) -> None:
    client, port = metered
    before, _ = await scrape(port)
    valid = _licence(world, REGION)
    for _ in range(3):
        resp = await client.post("/v1/licences/verify", json=valid)
        assert resp.status == 200 and (await resp.json())["verdict"] == "valid"
    resp = await client.post("/v1/licences/verify", json=_licence(world, REGION, "revoked"))
    assert (await resp.json())["reasons"][0]["code"] == "LICENCE_REVOKED"
    resp = await client.post("/v1/licences/verify-batch", json={"licences": [valid, {"licence": "not a licence"}]})
    assert [r["verdict"] for r in (await resp.json())["results"]] == ["valid", "invalid"]
    assert (await client.post("/v1/licences/verify", data=b"{", headers={"Content-Type": "application/json"})).status == 400
    resp = await client.post("/v1/oauth/token", data={"grant_type": "client_credentials"})   # no assertion
    assert resp.status in (400, 401)
    token_error = (await resp.json())["error"]
    after, text = await scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    p = "elicence_gateway_"
    assert moved(p + "verdicts_total", region=REGION, verdict="valid") == 4       # 3 verifies + 1 batch entry
    assert moved(p + "verdicts_total", region=REGION, verdict="invalid") == 1
    assert moved(p + "verdict_reasons_total", region=REGION, reason="LICENCE_REVOKED") == 1
    assert moved(p + "verdicts_total", region="none", verdict="invalid") == 1     # the entry nobody signed
    assert moved(p + "verdict_reasons_total", region="none", reason="UNSUPPORTED_FORMAT") == 1
    assert moved(p + "requests_total", route="/v1/licences/verify", status="200") == 4
    assert moved(p + "requests_total", route="/v1/licences/verify", status="400") == 1
    assert moved(p + "requests_total", route="/v1/licences/verify-batch", status="200") == 1
    assert moved(p + "requests_total", route="/v1/oauth/token", status=str(resp.status)) == 1
    assert moved(p + "tokens_total", outcome="refused", error=token_error) == 1
    # the latency histogram: every answer of the route counted once, in a bucket of 1 ms .. 10 s or above
    assert moved(p + "request_duration_seconds_count", route="/v1/licences/verify") == 5
    assert moved(p + "request_duration_seconds_bucket", route="/v1/licences/verify", le="+Inf") == 5
    assert moved(p + "request_duration_seconds_sum", route="/v1/licences/verify") > 0
    assert len([k for k in after if k[0] == p + "request_duration_seconds_bucket"
                and ("route", "/v1/licences/verify") in k[1]]) == len(LATENCY_BUCKETS) + 1
    # one audit record per licence judged: 4 verifies (the 400 left none) and the batch's 2 entries
    assert moved(p + "audit_records_total") == 6
    assert moved(p + "audit_commit_wait_seconds_count") >= 5 and moved(p + "audit_failed_batches_total") == 0
    assert moved(p + "result_cache_misses_total") == 3 and moved(p + "result_cache_hits_total") == 3
    # gauges read at the scrape
    assert 0 <= value(after, p + "status_list_age_seconds", region=REGION) < 3600
    assert value(after, p + "status_list_fresh", region=REGION) == 1
    assert label_values({k: v for k, v in after.items() if k[0] == p + "status_list_age_seconds"}, "region") \
        == set(world.regions)
    assert value(after, p + "workers") == 1 and value(after, p + "worker_restarts_total") == 0
    assert any(k[0] == p + "build_info" and v == 1 for k, v in after.items())
    states = {dict(k[1])["region"]: v for k, v in after.items() if k[0] == p + "upstream_breaker_state"}
    assert set(states) == set(world.regions) and set(states.values()) == {0}   # all closed
    breaker, upstreams = client.app[UPSTREAMS].breakers[REGION], client.app[UPSTREAMS]
    for _ in range(world.settings.breaker_min_requests):   # the region's sharing service fails: open
        breaker.record(False, upstreams.clock())
    opened, _ = await scrape(port)
    assert value(opened, p + "upstream_breaker_state", region=REGION) == 2
    assert value(opened, p + "upstream_breaker_opened_total", region=REGION) == 1
    assert value(opened, p + "upstream_breaker_state", region="320500") == 0
    # no personal data: the licence's holder and identifier, the partner's name appear nowhere
    assert "demo-partner" not in text and "测试" not in text


async def test_a_client_cannot_create_a_label_value(world, metered) -> None:
    client, port = metered
    await client.post("/v1/licences/verify", json=_licence(world, REGION))
    forged = json.dumps({"region": "999999", "issuer": "x", "sig": "y"})
    for path in ("/v1/licences/verify", "/v1/region-999999/verify", "/v1/licences/verify/%E6%B5%8B"):
        await client.post(path, json={"licence": forged, "encoding": "utf-8"})
    await client.get("/v1/regions/999999")
    await client.request("PATCH", "/v1/licences/verify", json={})
    after, text = await scrape(port)
    assert "999999" not in text and "%E6" not in text and "测" not in text
    assert label_values(after, "region") <= set(world.regions) | {"none"}
    routes = {r.resource.canonical for r in client.app.router.routes() if r.resource is not None}
    assert label_values(after, "route") <= routes | {"unmatched"}
    assert "unmatched" in label_values(after, "route")
    assert label_values(after, "reason") <= {r.code for r in errors.all_reasons()}
    # and a region the core names that is not one of the 45 (a trust list of another framework) is "other"
    exporter = client.app[EXPORTER]
    counts: WorkerCounts = client.app[METRICS]
    counts.verdicts[("990000", "valid", ("NOT_A_REASON",))] = 2
    counts.tokens[("refused", "made_up_error")] = 1
    exporter.flush()
    after, _ = await scrape(port)
    assert value(after, "elicence_gateway_verdicts_total", region="other", verdict="valid") == 2
    assert value(after, "elicence_gateway_verdict_reasons_total", region="other", reason="other") == 2
    assert value(after, "elicence_gateway_tokens_total", outcome="refused", error="other") == 1


def _listening_inodes() -> set[str]:
    """Socket inodes of this process's descriptors that are TCP sockets in LISTEN state."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    listening = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in mine:   # 0A: LISTEN
                    listening.add(parts[9])
    return listening


@pytest.mark.parametrize("metrics_on", [False, True])
async def test_metrics_port_off_nothing_more_listens(world, metrics_on: bool) -> None:
    settings = dataclasses.replace(world.settings, metrics_port=_free_port() if metrics_on else 0)
    assert Settings().metrics_port == 0   # off by default
    app = create_app(world.services(settings=settings))
    before = _listening_inodes()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        new = _listening_inodes() - before
        assert len(new) == (2 if metrics_on else 1)   # the API port (and the metrics port when on)
        assert (app.get(METRICS) is not None) is metrics_on   # off: the request path counts nothing either
    finally:
        await runner.cleanup()


# --- the cost on the request path ------------------------------------------------------------------------------

# --- settings --------------------------------------------------------------------------------------------------

def test_every_setting_has_its_readme_row_and_a_bad_metrics_port_is_refused() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    settings_part = readme[readme.index("## Settings"):readme.index("## Audit trail and receipts")]
    missing = [f.name for f in dataclasses.fields(Settings) if f"`{f.name}`" not in settings_part]
    assert missing == []
    env = {"GATEWAY_DEMO": "1"}
    assert load_settings(env={**env, "GATEWAY_METRICS_PORT": "9464"}).metrics_port == 9464
    for bad, why in (("70000", "metrics_port must be 0"), ("8080", "the gateway's own port"),
                     ("8081", "demo regions' port")):
        with pytest.raises(ConfigError, match=why):
            load_settings(env={**env, "GATEWAY_METRICS_PORT": bad})


# --- the real gateway: serve --demo --workers 2 -------------------------------------------------------------

def _get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, dict, bytes]:
    """One request on a fresh connection (urllib sends ``Connection: close``): the kernel picks the worker."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _json_lines(err: Path) -> list[dict]:
    out = []
    for line in err.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_serve_two_workers_one_scrape_shows_the_whole_gateway(tmp_path: Path) -> None:
    port, regions_port, mport = _free_port(), _free_port(), _free_port()
    var = tmp_path / "var"
    stale = var / "metrics" / str(port) / "counter_1.db"   # a previous run's file: cleared at start
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a metrics file")
    base, metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}/metrics"
    env = {**os.environ, "GATEWAY_VAR_DIR": str(var), "GATEWAY_AUDIT_BACKEND": "memory",
           "GATEWAY_DEMO_REGIONS_PORT": str(regions_port), "GATEWAY_METRICS_PORT": str(mport)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    err = tmp_path / "stderr.log"
    with err.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", "2", "--port",
                                 str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=out,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len({d["pid"] for d in _json_lines(err) if "serving on" in d.get("message", "")}) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.3)
        assert not stale.exists()
        token = subprocess.run([sys.executable, "-m", "gateway", "demo", "token"], cwd=REPO, env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        status, _, body = _get(f"http://127.0.0.1:{regions_port}/issue?region={REGION}&state=valid")
        assert status == 200, body
        licence = body
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def scrape_all() -> tuple[dict, str]:
            status, headers, text = _get(metrics_url)
            assert status == 200
            return samples(text.decode()), headers.get("X-Gateway-Worker", "")

        def wait_for(check, what: str, limit: float = 10.0) -> dict:
            until = time.monotonic() + limit
            while True:
                try:
                    got, _ = scrape_all()
                except (ConnectionError, urllib.error.URLError):
                    # a connection the kernel had queued on a worker just killed is reset (SO_REUSEPORT: each
                    # worker has its own accept queue); Prometheus would count one failed scrape and go on
                    assert time.monotonic() < until, what
                    time.sleep(0.2)
                    continue
                if check(got):
                    return got
                assert time.monotonic() < until, (what, {k: v for k, v in got.items() if "verdicts" in k[0]})
                time.sleep(0.2)

        verdicts = "elicence_gateway_verdicts_total"
        first = wait_for(lambda s: value(s, "elicence_gateway_workers") == 2, "both workers' gauges")
        assert value(first, verdicts, region=REGION, verdict="valid") == 0
        n = 24
        for _ in range(n):   # each on a fresh connection: the kernel spreads them over the workers
            status, _, answer = _get(f"{base}/v1/licences/verify", auth, licence)
            assert status == 200 and json.loads(answer)["verdict"] == "valid", answer
        # which worker served how many: each worker's own result cache (admin endpoint, fresh connections)
        operator = subprocess.run([sys.executable, "-m", "gateway", "demo", "token", "--client-id", "load-operator"],
                                  cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout.strip()
        per_worker: dict[int, int] = {}
        for _ in range(60):
            s, _, w = _get(f"{base}/v1/admin/worker", {"Authorization": f"Bearer {operator}"})
            assert s == 200, w
            info = json.loads(w)
            per_worker[info["worker_index"]] = info["result_cache"]["hits"] + info["result_cache"]["misses"]
            if len(per_worker) == 2:
                break
        print(f"\n{n} verifies served per worker: {per_worker}")
        assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values()) and sum(per_worker.values()) == n
        # one scrape, from either worker, sums both (the other's counts as of its last flush: at most 1 s)
        summed = wait_for(lambda s: value(s, verdicts, region=REGION, verdict="valid") == n, "the sum of both")
        assert value(summed, "elicence_gateway_requests_total", route="/v1/licences/verify", status="200") == n
        assert value(summed, "elicence_gateway_request_duration_seconds_count", route="/v1/licences/verify") == n
        answered_by = set()
        for _ in range(40):   # every worker answers scrapes with the same totals
            got, worker = scrape_all()
            assert value(got, verdicts, region=REGION, verdict="valid") == n
            answered_by.add(worker)
            if len(answered_by) == 2:
                break
        assert answered_by == {"0", "1"}
        # a worker killed: started again, counted; its counts stay in the totals, its gauges go
        pids = {d["pid"] for d in _json_lines(err) if "serving on" in d.get("message", "")}
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        after = wait_for(lambda s: value(s, "elicence_gateway_worker_restarts_total") == 1
                         and value(s, "elicence_gateway_workers") == 2
                         and len({d["pid"] for d in _json_lines(err) if "serving on" in d.get("message", "")}) == 3,
                         "the restart", limit=60)
        assert value(after, verdicts, region=REGION, verdict="valid") == n
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not (var / "metrics" / str(port)).exists()   # removed by the supervisor on its way out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    logged = [d for d in _json_lines(err) if d.get("level") == "ERROR"]
    assert [d for d in logged if "ended while serving" not in d.get("message", "")] == [], logged


def test_a_metrics_port_in_use_refuses_start_up_before_any_worker(tmp_path: Path) -> None:
    """Every worker binds the metrics port with SO_REUSEPORT, which the kernel grants to any process of the
    same user asking for it: without the check a second gateway on the same metrics port would share it
    silently, and each scrape would show one or the other gateway."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        mport = held.getsockname()[1]
        env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path / "var"), "GATEWAY_AUDIT_BACKEND": "memory",
               "GATEWAY_DEMO_REGIONS_PORT": str(_free_port()), "GATEWAY_METRICS_PORT": str(mport)}
        done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--demo", "--workers", "2", "--port",
                               str(_free_port())], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{mport}" in done.stderr
    assert not (tmp_path / "var" / "metrics").exists()   # refused before anything was made
