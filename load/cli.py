"""Command line of the load tool (``python -m load ...``).

Exit codes: 0 done (every SLO met), 1 the tool itself failed, 2 refused before starting, 3 an SLO
was missed, 4 the target never answered (token endpoint unreachable, or not one HTTP answer)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Coroutine, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO, TypeVar

import orjson

from load.errors import (
    CONNECTIONS_INVALID,
    CORPUS_INVALID,
    EXIT_REFUSED,
    EXIT_TARGET_DOWN,
    EXIT_TOOL_FAILED,
    OUTPUT_INVALID,
    RESULT_INVALID,
    TARGET_INVALID,
    TARGET_NOT_LOOPBACK,
    TOKEN_UNAVAILABLE,
    LoadRefused,
    TargetUnreachable,
)
from load.report import render_html
from load.runner import CLIENTS, MaxConfig, OpenLoopConfig, run_max, run_open_loop
from load.safety import (
    LIMITS,
    check_connections,
    check_duration,
    check_rate,
    check_target,
    is_loopback_host,
    parse_duration,
    parse_timeout,
)
from load.scenarios import SCENARIOS, RequestPicker, Scenario, get_scenario, load_corpus
from load.schedule import ARRIVALS
from load.slo import EXIT_SLO_MISSED, all_passed, evaluate, load_slo, render_table, slo_block
from load.tokens import DEFAULT_CLIENT_ID, TokenProvider, file_token, no_token, oauth_token, static_token

DEFAULT_TARGET = "http://127.0.0.1:8080"
DEFAULT_OUT_ROOT = Path("var/load")
DEFAULT_STEPS = "1,2,4,8,16,32,64"
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from load.runner import run_loop

    return run_loop(coro)


def _add_common(p: argparse.ArgumentParser, *, scenario_required: bool = True) -> None:
    p.add_argument("--scenario", required=scenario_required, default="verify",
                   help=f"one of: {', '.join(SCENARIOS)}")
    p.add_argument("--duration", help="REQUIRED, e.g. 10s, 500ms, 2m (hard cap "
                                      f"{LIMITS.max_duration_s:g}s)")
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"base URL (default {DEFAULT_TARGET}); loopback only")
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="allow a target outside 127.0.0.0/8, ::1, localhost (you must own it)")
    p.add_argument("--corpus", help="JSONL corpus of request bodies (see load/README.md); default: made on the "
                                    "fly by the issuer simulator on the demo TEST framework (var/demo)")
    p.add_argument("--token", help="static bearer token (default: a real OAuth token, see --client-id)")
    p.add_argument("--token-file", help="file holding the bearer token (re-read on a 401)")
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID,
                   help=f"TEST partner whose key signs the OAuth client assertion (default {DEFAULT_CLIENT_ID})")
    p.add_argument("--no-token", action="store_true", help="send no Authorization header")
    p.add_argument("--timeout", default="5s", help=f"per-request timeout (default 5s, at most "
                                                   f"{LIMITS.max_timeout_s:g}s)")
    p.add_argument("--seed", type=int, default=1, help="RNG seed for arrivals and the request mix")
    p.add_argument("--out", help="output directory for result.json and report.html "
                                 f"(default {DEFAULT_OUT_ROOT}/<time>-<mode>-<scenario>)")
    p.add_argument("--slo", help="SLO TOML file, e.g. load/slo/verify.toml; exit 3 when missed")
    p.add_argument("--quiet", action="store_true", help="no per-second progress on stderr")
    p.add_argument("--http-client", choices=CLIENTS, default="raw",
                   help="the generator's HTTP client: raw (default; load/rawhttp.py, ~half the CPU per request, "
                        "CPU left to the server on a shared machine) or aiohttp")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m load", description="Load tests for the e-licence gateway.")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="open-loop run at a target rate (latency from intended send time)")
    _add_common(run)
    run.add_argument("--rate", type=float, help="requests per second (default: the scenario's)")
    run.add_argument("--arrivals", choices=ARRIVALS, default="constant")
    run.add_argument("--connections", type=int, default=64, help="HTTP connection pool size (default 64)")
    run.add_argument("--max-in-flight", type=int, default=256,
                     help="outstanding requests cap; arrivals beyond it are dropped and counted (default 256)")
    mx = sub.add_parser("max", help="closed-loop search for the maximum throughput")
    _add_common(mx)
    mx.add_argument("--concurrency", default=DEFAULT_STEPS, help=f"worker counts to step through ({DEFAULT_STEPS})")
    peer = sub.add_parser("peer", help="run the naive peer (jwt.decode only) on loopback")
    peer.add_argument("--port", type=int, required=True)
    peer.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    peer.add_argument("--corpus-out", default=str(DEFAULT_OUT_ROOT / "peer-corpus.jsonl"),
                      help="where to write the signed-JWT corpus for this run")
    peer.add_argument("--corpus-size", type=int, default=500)
    peer.add_argument("--require-token", help="answer 401 unless this bearer token is sent")
    cmp_ = sub.add_parser("compare", help="closed-loop max against the naive peer and the gateway, with the ratio")
    _add_common(cmp_, scenario_required=False)
    cmp_.add_argument("--concurrency", default="1,4,16,32", help="worker counts to step through (1,4,16,32)")
    cmp_.add_argument("--peer-port", type=int, default=0, help="port for the peer (default: a free one)")
    slo = sub.add_parser("slo", help="check an existing result.json against an SLO file (exit 3 when missed)")
    slo.add_argument("result", help="result.json written by run or max")
    slo.add_argument("--slo", required=True, help="SLO TOML file")
    return ap


def _token_provider(args: argparse.Namespace, scenario: Scenario) -> TokenProvider:
    if sum(map(bool, (args.token, args.token_file, args.no_token))) > 1:
        raise LoadRefused(TOKEN_UNAVAILABLE, "give one of --token, --token-file, --no-token")
    if args.token:
        return static_token(args.token)
    if args.token_file:
        return file_token(args.token_file)
    if args.no_token:
        return no_token()
    # exactly the scopes the scenario's requests need: a partner lacking one is refused by the token
    # endpoint before the run (not a run of 403s), and the token carries no other right (admin, query)
    return oauth_token(args.target, client_id=args.client_id, scope=" ".join(scenario.scopes))


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise LoadRefused(CONNECTIONS_INVALID, f"--concurrency must be a comma-separated list of ints: {text!r}") \
            from None
    if not steps or any(not 1 <= s <= LIMITS.max_connections for s in steps):
        raise LoadRefused(CONNECTIONS_INVALID, f"--concurrency values must be 1..{LIMITS.max_connections}")
    return steps


def _out_dir(args: argparse.Namespace, mode: str, scenario: str) -> Path:
    if args.out:
        return Path(args.out)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return DEFAULT_OUT_ROOT / f"{stamp}-{mode}-{scenario}"


def _prepare_out(args: argparse.Namespace, mode: str, scenario: str) -> tuple[Path, bool]:
    """The output directory, made and checked writable BEFORE the run (a run is never lost to a
    --out it cannot write at the end), and whether this call made it."""
    out = _out_dir(args, mode, scenario)
    fresh = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoadRefused(OUTPUT_INVALID, f"cannot create output directory {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise LoadRefused(OUTPUT_INVALID, f"output directory {out} is not writable")
    return out, fresh


def _run_into(out: tuple[Path, bool], coro: Coroutine[Any, Any, T]) -> T:
    """:func:`_run`, leaving no empty output directory behind when the run does not finish (a token
    refused, the target down, an interrupt)."""
    try:
        return _run(coro)
    except BaseException:
        path, fresh = out
        if fresh:
            with contextlib.suppress(OSError):
                path.rmdir()            # only ever an empty directory this run made
        raise


def write_outputs(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "result.json", out / "report.html"
    json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    html_path.write_text(render_html(result), encoding="utf-8")
    return json_path, html_path


def _wrong_verdicts(expectation: dict[str, Any] | None) -> str:
    """The answers whose verdict differs from the corpus' expect: shown without --slo too (a run of
    wrong answers used to read "errors none" and exit 0 with nothing said)."""
    exp = expectation or {}
    checked, wrong = exp.get("checked", 0), exp.get("mismatched", 0)
    if not checked:
        return "wrong verdicts: none checked"
    return f"wrong verdicts {wrong} of {checked} checked" + (" (错误判定 / WRONG VERDICTS)" if wrong else "")


def _summary(result: dict[str, Any]) -> str:
    if result["mode"] == "closed-loop-max":
        p = result["peak"]
        return (f"peak {p['throughput_rps']:.1f} req/s at concurrency {p['concurrency']} "
                f"(p50 {p['latency_ms']['p50']:g} ms, p99 {p['latency_ms']['p99']:g} ms); "
                f"{_wrong_verdicts(p.get('expectation'))}; "
                f"load tool CPU {result['cpu']['percent_of_one_core']:g}% of one core")
    lat, c = result["latency_ms"], result["counts"]
    return (f"{c['scheduled']} scheduled, {c['sent']} sent, {c['responses']} answered, {c['dropped']} dropped, "
            f"{c['late']} late; {result['throughput_rps']:g} req/s; latency ms p50 {lat['p50']:g} p90 {lat['p90']:g} "
            f"p99 {lat['p99']:g} p99.9 {lat['p99_9']:g} max {lat['max']:g}; errors {result['errors'] or 'none'}; "
            f"verdicts {result['verdicts'] or 'none'}; {_wrong_verdicts(result.get('expectation'))}; "
            f"load tool CPU {result['cpu']['percent_of_one_core']:g}% of one core")


def _check_target(args: argparse.Namespace, err: TextIO) -> None:
    for w in check_target(args.target, args.allow_non_loopback):
        print(w, file=err)
    if args.http_client == "raw" and args.target.lower().startswith("https:"):
        raise LoadRefused(TARGET_INVALID, "the raw HTTP client speaks plain http:// only; use an http:// target or "
                                          "--http-client aiohttp")


def _responses(result: dict[str, Any]) -> tuple[int, int]:
    """(requests sent, HTTP answers received) over a whole run or max search."""
    if result["mode"] == "closed-loop-max":
        return (sum(s["counts"]["sent"] for s in result["steps"]),
                sum(s["counts"]["responses"] for s in result["steps"]))
    return result["counts"]["sent"], result["counts"]["responses"]


def _target_down(result: dict[str, Any], err: TextIO) -> bool:
    """True (and says so) when requests were sent and not one HTTP answer came back."""
    sent, answered = _responses(result)
    if sent and not answered:
        print(f"load: 目标无应答 / target down: not one HTTP answer from {result['target']} to {sent} requests "
              f"({result.get('errors') or 'see the steps'}); is it running there?", file=err)
        return True
    return False


async def _first_token(provider: TokenProvider) -> None:
    await provider()


def _picker_and_token(args: argparse.Namespace, scenario: Scenario, err: TextIO) -> tuple[RequestPicker,
                                                                                           TokenProvider]:
    """The cheap checks first: a --corpus file, then the token once, and only then the default corpus
    (~3 s), which used to come first: a token file that cannot be read (exit 2), or a target whose
    token endpoint does not answer (exit 4), was said only after it. The runner asks the provider
    again when it starts (the OAuth token is cached, a token file re-read)."""
    picker = RequestPicker.build(scenario, load_corpus(args.corpus), args.seed) if args.corpus else None
    tokens = _token_provider(args, scenario)
    _run(_first_token(tokens))
    if picker is None:
        picker = RequestPicker.build(scenario, _require_corpus(args, err), args.seed)
    return picker, tokens


#: the corpus made when --corpus is not given: every region and family, the default case mix
DEFAULT_CORPUS_COUNT = 450


def _require_corpus(args: argparse.Namespace, err: TextIO | None = None) -> Any:
    if args.corpus:
        return load_corpus(args.corpus)
    path = DEFAULT_OUT_ROOT / "corpus-default.jsonl"
    try:
        n = make_default_corpus(path)
    except Exception as exc:  # the simulator or the demo framework is unusable here
        raise LoadRefused(CORPUS_INVALID, f"no --corpus given and none could be made: {type(exc).__name__}: "
                                          f"{exc}") from None
    if err is not None:
        print(f"[load] no --corpus: made {n} lines with the issuer simulator (demo TEST framework) -> {path}",
              file=err, flush=True)
    return load_corpus(path)


def make_default_corpus(path: Path, count: int = DEFAULT_CORPUS_COUNT) -> int:
    """A corpus made on the fly by ``gateway.corpus`` (the simulator on var/demo's TEST framework)."""
    from gateway.config import load_settings
    from gateway.corpus import CorpusPlan, demo_builder, write_jsonl

    now = datetime.now(timezone.utc)
    lines = demo_builder(load_settings(demo=True), now).build(
        CorpusPlan(count=count, batches=max(1, count // 10), checks=max(1, count // 10)))
    return write_jsonl(path, lines)


def _finish(result: dict[str, Any], args: argparse.Namespace, out_dir: Path, out: TextIO, err: TextIO) -> int:
    code = 0
    if args.slo:
        spec = load_slo(args.slo)
        _warn_scenario(spec, result, err)
        checks = evaluate(spec, result)
        result["slo"] = slo_block(spec, checks)
        print(render_table(spec, checks), file=out)
        code = 0 if all_passed(checks) else EXIT_SLO_MISSED
    json_path, html_path = write_outputs(result, out_dir)
    print(_summary(result), file=out)
    print(f"result: {json_path}\nreport: {html_path}", file=out)
    if _target_down(result, err):   # before "SLO missed": a dead target is not a slow one
        return EXIT_TARGET_DOWN
    return code


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    duration = parse_duration(args.duration)
    scenario = get_scenario(args.scenario)
    rate = check_rate(args.rate if args.rate is not None else scenario.default_rate, duration)
    check_connections(args.connections, args.max_in_flight)
    timeout = parse_timeout(args.timeout)
    _check_target(args, err)
    if args.slo:
        load_slo(args.slo)  # refuse a bad SLO file before the run, not after it
    picker, tokens = _picker_and_token(args, scenario, err)
    out_dir = _prepare_out(args, "open-loop", scenario.name)
    config = OpenLoopConfig(target=args.target, scenario=scenario, rate=rate, duration_s=duration,
                            arrivals=args.arrivals, connections=args.connections, max_in_flight=args.max_in_flight,
                            timeout_s=timeout, seed=args.seed, max_requests=LIMITS.max_requests,
                            client=args.http_client)
    result = _run_into(out_dir, run_open_loop(config, picker, tokens, progress=None if args.quiet else err))
    return _finish(result, args, out_dir[0], out, err)


def cmd_max(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    step = parse_duration(args.duration)
    steps = _steps(args.concurrency)
    check_duration(step * len(steps))
    scenario = get_scenario(args.scenario)
    timeout = parse_timeout(args.timeout)
    _check_target(args, err)
    if args.slo:
        load_slo(args.slo)
    picker, tokens = _picker_and_token(args, scenario, err)
    out_dir = _prepare_out(args, "closed-loop-max", scenario.name)
    config = MaxConfig(target=args.target, scenario=scenario, step_duration_s=step, concurrency_steps=steps,
                       timeout_s=timeout, seed=args.seed, client=args.http_client, max_requests=LIMITS.max_requests)
    result = _run_into(out_dir, run_max(config, picker, tokens, progress=None if args.quiet else err))
    return _finish(result, args, out_dir[0], out, err)


def cmd_peer(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from aiohttp import web

    from load.peer import generate_keys, make_app, make_corpus, utc_now
    from load.scenarios import write_corpus

    if not is_loopback_host(args.host):
        raise LoadRefused(TARGET_NOT_LOOPBACK, f"the peer binds loopback only, not {args.host!r}")
    if not 1 <= args.port <= 65535:
        raise LoadRefused(TARGET_INVALID, f"--port must be 1..65535, got {args.port}")
    if not 1 <= args.corpus_size <= 100_000:
        raise LoadRefused(CORPUS_INVALID, "--corpus-size must be 1..100000")
    keys = generate_keys()
    n = write_corpus(args.corpus_out, make_corpus(keys, args.corpus_size, utc_now()))
    print(f"[peer] wrote {n} signed JWTs to {args.corpus_out}; listening on http://{args.host}:{args.port}",
          file=err, flush=True)
    app = make_app(keys.public_key, require_token=args.require_token)
    try:
        import uvloop
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, loop=loop)
    return 0


def cmd_compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from load.compare import compare, render_ratio

    step = parse_duration(args.duration)
    steps = _steps(args.concurrency)
    check_duration(2 * step * len(steps))
    scenario = get_scenario(args.scenario)
    timeout = parse_timeout(args.timeout)
    _check_target(args, err)
    corpus = load_corpus(args.corpus) if args.corpus else None
    if corpus is None:
        print("WARNING: no --corpus for the gateway: sending the peer's JWTs, which the gateway will reject "
              "(its keys differ); the ratio then compares the rejection path", file=err)
    prepared = _prepare_out(args, "compare", scenario.name)
    out_dir = prepared[0]
    result = _run_into(prepared, compare(scenario, args.target, corpus, step, steps, timeout, args.seed,
                                         _token_provider(args, scenario), out_dir, peer_port=args.peer_port,
                                         progress=None if args.quiet else err, client=args.http_client))
    write_outputs(result["peer"], out_dir / "peer")
    write_outputs(result["gateway"], out_dir / "gateway")
    (out_dir / "compare.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(render_ratio(result["summary"]), file=out)
    print(f"results: {out_dir}", file=out)
    return EXIT_TARGET_DOWN if _target_down(result["gateway"], err) else 0


def _warn_scenario(spec: Any, result: dict[str, Any], err: TextIO) -> None:
    """load/README.md: "a warning is printed when the run's scenario differs" (run --slo and slo alike)."""
    if spec.scenario and spec.scenario != result.get("scenario"):
        print(f"WARNING: SLO file {spec.name} is for scenario {spec.scenario!r}, this run is "
              f"{result.get('scenario')!r}", file=err)


def cmd_slo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    spec = load_slo(args.slo)
    try:
        result = orjson.loads(Path(args.result).read_bytes())
        checks = evaluate(spec, result)
    except OSError as exc:
        raise LoadRefused(RESULT_INVALID, f"cannot read result {args.result}: {exc.strerror}") from None
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise LoadRefused(RESULT_INVALID, f"{args.result} is not a result.json of this tool ({exc!r})") from None
    _warn_scenario(spec, result, err)
    print(render_table(spec, checks), file=out)
    return 0 if all_passed(checks) else EXIT_SLO_MISSED


COMMANDS = {"run": cmd_run, "max": cmd_max, "peer": cmd_peer, "compare": cmd_compare, "slo": cmd_slo}


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, out, err)
    except TargetUnreachable as exc:
        print(f"load: 目标无法连接 / target down: {exc}", file=err)
        return EXIT_TARGET_DOWN
    except LoadRefused as exc:
        print(f"load: 拒绝 / refused: {exc}", file=err)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("load: 已中断 / interrupted", file=err)
        return 130
    except Exception as exc:  # a bug or an unwritable result: one clear line and its own exit code
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        at = f" (at {Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno})" if where else ""
        print(f"load: 工具出错 / the tool failed: {type(exc).__name__}: {exc}{at}", file=err)
        return EXIT_TOOL_FAILED
