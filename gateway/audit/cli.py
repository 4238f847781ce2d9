"""``python -m gateway audit ...``: verify, search and prune an audit store.

    audit verify --store URL --key PUBKEY [--batch N] [--progress-every N]
    audit search --store URL [--holder-hmac H | --holder-type T --holder-code C]
                 [--partner P] [--item I] [--since ISO] [--until ISO] [--limit N]
    audit prune  --store URL --before ISO

URL: ``sqlite:PATH`` (or a path ending in .db/.sqlite) or ``postgresql://...`` (with
``--pg-schema``, default gateway_audit). PUBKEY: a PEM Ed25519 public key, or a JWKS / JWK
JSON file (kid -> key). ``--holder-code`` needs the holder HMAC key in the environment
variable GATEWAY_AUDIT_HMAC_KEY (hex), the same key the gateway is configured with.
Exit codes: 0 ok, 1 chain broken, 2 usage or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.audit.jws import JwsError, key_from_jwk
from gateway.audit.model import AuditQuery, holder_hmac
from gateway.audit.sink import GroupCommitSink
from gateway.audit.verify import verify_chain
from gateway.errors import GatewayError

HMAC_ENV = "GATEWAY_AUDIT_HMAC_KEY"


class CliError(Exception):
    pass


def load_public_keys(path: str) -> dict[str, Ed25519PublicKey] | Ed25519PublicKey:
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise CliError(f"{path}: the audit key is Ed25519")
        return key
    try:
        doc = orjson.loads(data)
        jwks = doc["keys"] if isinstance(doc, dict) and "keys" in doc else [doc]
        out = {}
        for jwk in jwks:
            key = key_from_jwk(jwk)
            if isinstance(key, Ed25519PublicKey):
                out[str(jwk.get("kid", ""))] = key
    except (orjson.JSONDecodeError, JwsError, TypeError, KeyError) as exc:
        raise CliError(f"{path}: not a PEM public key or a JWKS: {exc}") from exc
    if not out:
        raise CliError(f"{path}: no Ed25519 key in the key set")
    return out


async def open_store(url: str, pg_schema: str) -> GroupCommitSink:
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.audit.postgres import PostgresAuditSink
        return await PostgresAuditSink.open(url, schema=pg_schema)
    path = url.removeprefix("sqlite:")
    if path.startswith("//"):
        path = path[2:]
    if not Path(path).is_file():
        raise CliError(f"no audit database at {path}")
    from gateway.audit.sqlite import SqliteAuditSink
    return await SqliteAuditSink.open(path)


def _time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway audit", description="Audit trail tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("verify", "search", "prune"):
        sp = sub.add_parser(name)
        sp.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
        sp.add_argument("--pg-schema", default="gateway_audit")
        if name == "verify":
            sp.add_argument("--key", required=True, help="PEM Ed25519 public key or JWKS file")
            sp.add_argument("--batch", type=int, default=5000)
            sp.add_argument("--progress-every", type=int, default=100_000)
        elif name == "search":
            sp.add_argument("--holder-hmac")
            sp.add_argument("--holder-type", help="holder code type, e.g. 111 (citizen ID)")
            sp.add_argument("--holder-code", help=f"needs {HMAC_ENV}")
            sp.add_argument("--partner")
            sp.add_argument("--item")
            sp.add_argument("--since", type=_time)
            sp.add_argument("--until", type=_time)
            sp.add_argument("--limit", type=int, default=100)
        else:
            sp.add_argument("--before", type=_time, required=True)
    return p


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    store = await open_store(args.store, args.pg_schema)
    try:
        if args.cmd == "verify":
            keys = load_public_keys(args.key)

            def progress(done: int, head: int) -> None:
                print(f"checked {done} of {head} records", file=err, flush=True)

            report = await verify_chain(store, keys, batch=args.batch, progress=progress,
                                        progress_every=args.progress_every)
            if report.ok:
                print(f"OK: {report.records_checked} records (seq {report.start_seq + 1}..{report.head_seq}), "
                      f"{report.checkpoints_checked} signed checkpoints", file=out)
                return 0
            print(f"BROKEN at seq {report.first_bad_seq}: {report.problem} "
                  f"({report.records_checked} records verified before it)", file=out)
            return 1
        if args.cmd == "search":
            h = args.holder_hmac
            if args.holder_code:
                key_hex = os.environ.get(HMAC_ENV, "")
                if not key_hex or not args.holder_type:
                    raise CliError(f"--holder-code needs --holder-type and {HMAC_ENV} (hex)")
                h = holder_hmac(bytes.fromhex(key_hex), args.holder_type, args.holder_code)
            q = AuditQuery(holder_hmac=h, partner=args.partner, item_code=args.item, since=args.since,
                           until=args.until, limit=args.limit)
            for rec in await store.search(q):
                out.write(orjson.dumps(rec.as_dict()).decode() + "\n")
            return 0
        result = await store.prune(args.before)
        print(f"pruned {result.deleted} records; the chain now starts after checkpoint {result.start_seq}", file=out)
        return 0
    finally:
        await store.close()


def audit_cli(argv: Sequence[str], *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    try:
        return asyncio.run(_run(args, out, err))
    except (CliError, GatewayError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return 2
