"""Command line: ``python -m gateway <command>`` (also installed as ``elicence-gateway``).

Commands:
  serve [--demo] [--port N] [--host H] [--config FILE]   run the gateway
  demo issue --region CODE [--type T] [--state S]         print a simulated licence to POST
  demo cases                                              list simulator cases and their expected verdicts
  specs check                                             validate region specs and catalogues
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys

import orjson


def _serve(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_settings
    from .serve import run_worker, run_workers

    try:
        settings = load_settings(args.config, demo=True if args.demo else None, port=args.port, host=args.host)
    except ConfigError as exc:
        print(f"配置错误 / configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    workers = max(1, args.workers or 1)
    mode = "DEMO (TEST keys, simulated issuers for 45 regions)" if settings.demo else "operator"
    print(f"e-licence gateway on http://{settings.host}:{settings.port}  mode: {mode}  workers: {workers}", flush=True)
    if settings.demo:
        print("  try: TOKEN=$(python -m gateway demo token); python -m gateway demo issue --region 330500 | "
              "curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
              f"-d @- http://{settings.host}:{settings.port}/v1/licences/verify", flush=True)
    if workers == 1:
        run_worker(settings, reuse_port=False)
        return 0
    return run_workers(settings, workers)


def _demo(args: argparse.Namespace) -> int:
    from .bootstrap import build_services
    from .config import load_settings
    from .simulator import CASES, EXPECTED

    if args.demo_cmd == "cases":
        for case in CASES:
            verdict, reason = EXPECTED[case]
            print(f"{case:15} -> {verdict:13} {reason or ''}")
        return 0
    if args.demo_cmd == "issue":
        services = build_services(load_settings(demo=True))
        sim = services.simulator
        try:
            issued = sim.issue(args.region, args.type, args.state, dt.datetime.now(dt.timezone.utc))
        except ValueError as exc:
            print(f"错误 / error: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(orjson.dumps(issued.body()).decode() + "\n")
        return 0
    return 2


def _specs(args: argparse.Namespace) -> int:
    from .bootstrap import load_static
    from .config import load_settings

    regions, specs, catalogue = load_static(load_settings(demo=True))
    print(f"ok: {len(specs)} region specs, {len(catalogue.types)} licence types, {len(catalogue.items)} items")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description="Cross-region e-licence gateway (电子证照互认网关)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--demo", action="store_true", help="TEST trust framework and simulated issuers")
    s.add_argument("--port", type=int)
    s.add_argument("--host")
    s.add_argument("--config", help="TOML settings file")
    s.add_argument("--workers", type=int, default=1, help="serving processes sharing the port (SO_REUSEPORT)")
    s.set_defaults(func=_serve)
    d = sub.add_parser("demo", help="issuer simulator")
    dsub = d.add_subparsers(dest="demo_cmd", required=True)
    di = dsub.add_parser("issue", help="print a simulated licence as {licence, encoding}")
    di.add_argument("--region", required=True, help="GB/T 2260 region code, e.g. 330500")
    di.add_argument("--type", help="licence type key, e.g. id_card (default: the region's first)")
    di.add_argument("--state", default="valid", help="valid|expired|not-yet-valid|revoked|suspended|tampered|"
                                                     "wrong-issuer|unknown-issuer|malformed")
    dsub.add_parser("cases", help="list the simulator's cases")
    d.set_defaults(func=_demo)
    sp = sub.add_parser("specs", help="region specs and catalogues")
    spsub = sp.add_subparsers(dest="specs_cmd", required=True)
    spsub.add_parser("check", help="validate every spec and catalogue")
    sp.set_defaults(func=_specs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
