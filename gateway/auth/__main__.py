"""``python -m gateway.auth token [--scope S] [--registry DIR] [--endpoint URL]`` | ``bench``."""

from __future__ import annotations

import argparse

import orjson

from . import bench
from .demo import DEMO_CLIENT_ID, demo_token
from .tokens import DEFAULT_TOKEN_ENDPOINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.auth")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tok = sub.add_parser("token", help="print an access token of a TEST partner (in-process exchange)")
    tok.add_argument("--registry", default="certs/partners")
    tok.add_argument("--client-id", default=DEMO_CLIENT_ID)
    tok.add_argument("--scope", default=None)
    tok.add_argument("--endpoint", default=DEFAULT_TOKEN_ENDPOINT)
    b = sub.add_parser("bench", help="measure access-token verification cost")
    b.add_argument("--registry", default="certs/partners")
    args = parser.parse_args(argv)
    if args.cmd == "token":
        body = demo_token(args.registry, client_id=args.client_id, scope=args.scope, token_endpoint=args.endpoint)
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        bench.main(args.registry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
