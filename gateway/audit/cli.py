"""``python -m gateway audit ...``: verify, search and prune an audit store.

    audit verify --store URL --key PUBKEY [--key PUBKEY...] [--anchor JWS|FILE...] [--batch N]
                 [--progress-every N]
    audit search --store URL [--holder-hmac H | --holder-type T --holder-code C]
                 [--partner P] [--item I] [--since ISO] [--until ISO] [--limit N]
    audit prune  --store URL --before ISO

URL: ``sqlite:PATH`` (or a path ending in .db/.sqlite) or ``postgresql://...`` (with
``--pg-schema``, default gateway_audit). PUBKEY: a PEM Ed25519 public key, or a JWKS / JWK
JSON file (kid -> key); repeat ``--key`` to give the keys a rotation retired (each PEM key is
taken for the checkpoints naming the kid it would be given: ``audit-<SPKI digest>``). ``--anchor``:
a checkpoint JWS kept outside the database, or a file of them (one a line, or the gateway's JSON
log lines "audit checkpoint signed", field ``checkpoint``): the chain must still hold its record --
the one way to notice the newest checkpoints and every record after them deleted. ``--holder-code``
needs the holder HMAC key in the environment variable GATEWAY_AUDIT_HMAC_KEY (hex), the same key
the gateway is configured with; ``--holder-code -`` reads the code from standard input (a citizen ID
number on the command line is visible to every local user in the process list). A search by holder
finds the records whose holder or applicant (``extra.applicant``: an item check's) is that person.
Exit codes: 0 ok, 1 chain broken, 2 usage or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.audit.chain import audit_key_id
from gateway.audit.jws import JwsError, key_from_jwk
from gateway.audit.model import AuditQuery, PruneResult, holder_hmac
from gateway.audit.sink import GroupCommitSink
from gateway.audit.verify import ChainReport, verify_chain
from gateway.errors import GatewayError

HMAC_ENV = "GATEWAY_AUDIT_HMAC_KEY"
_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


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
    # the gateway's key set (/v1/keys) also lists the receipt key and the access-token key, either of
    # which may be Ed25519: only its audit keys ("audit-..." kids) may sign checkpoints, or whoever holds
    # a receipt or token key could sign a checkpoint over a rewritten chain
    audit_kids = {kid: key for kid, key in out.items() if kid.startswith("audit-")}
    if audit_kids:
        out = audit_kids
    if not out:
        raise CliError(f"{path}: no Ed25519 key in the key set")
    return out


def _pem_kid(key: Ed25519PublicKey) -> str:
    """The kid the gateway gives an audit key (gateway.audit_wiring.key_id("audit", key))."""
    return audit_key_id(key)


def merge_public_keys(paths: Sequence[str]) -> dict[str, Ed25519PublicKey] | Ed25519PublicKey:
    """One ``--key``: as :func:`load_public_keys`. Several: kid -> key over all of them (a PEM key
    under the kid the gateway derives from it)."""
    if len(paths) == 1:
        return load_public_keys(paths[0])
    out: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        keys = load_public_keys(path)
        out.update({_pem_kid(keys): keys} if isinstance(keys, Ed25519PublicKey) else keys)
    return out


def load_anchors(values: Sequence[str]) -> list[str]:
    """Checkpoint JWS given on the command line or in files (one a line, or JSON log lines)."""
    out: list[str] = []
    for value in values:
        if _JWS.match(value.strip()):
            out.append(value.strip())
            continue
        try:
            lines = Path(value).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--anchor {value}: neither a checkpoint JWS nor a readable file: {exc}") from exc
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    doc = None
                if not isinstance(doc, dict):
                    raise CliError(f"{value}:{n}: not a JSON object")
                if "checkpoint" not in doc:
                    continue   # another log line
                line = doc["checkpoint"]
            if not isinstance(line, str) or not _JWS.match(line):
                raise CliError(f"{value}:{n}: not a checkpoint JWS")
            out.append(line)
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
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # argparse puts "argument --since: " (the option) before it; its own text said "invalid _time value"
        raise argparse.ArgumentTypeError(f"日期时间无效 / not a date-time: {text!r}; expected ISO 8601 such as "
                                         "2026-01-01T00:00:00Z or 2026-01-01 (UTC when no offset is given)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway audit", description="Audit trail tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("verify", "search", "prune"):
        sp = sub.add_parser(name)
        sp.add_argument("--store", required=True, help="sqlite:PATH or postgresql://...")
        sp.add_argument("--pg-schema", default="gateway_audit")
        if name == "verify":
            sp.add_argument("--key", required=True, action="append",
                            help="PEM Ed25519 public key or JWKS file (repeat for retired keys)")
            sp.add_argument("--anchor", action="append", default=[],
                            help="a checkpoint JWS kept outside the database, or a file of them")
            sp.add_argument("--batch", type=int, default=5000)
            sp.add_argument("--progress-every", type=int, default=100_000)
        elif name == "search":
            sp.add_argument("--holder-hmac")
            sp.add_argument("--holder-type", help="holder code type, e.g. 111 (citizen ID)")
            sp.add_argument("--holder-code", help=f"needs {HMAC_ENV}; - reads it from standard input (keeps it "
                                                  "out of the process list and the shell history)")
            sp.add_argument("--partner")
            sp.add_argument("--item")
            sp.add_argument("--since", type=_time)
            sp.add_argument("--until", type=_time)
            sp.add_argument("--limit", type=int, default=100)
        else:
            sp.add_argument("--before", type=_time, required=True)
    return p


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.cmd == "verify":   # the files first: a bad file is a usage error, before the store is opened
        keys = merge_public_keys(args.key)
        anchors = load_anchors(args.anchor)
    store = await open_store(args.store, args.pg_schema)
    try:
        if args.cmd == "verify":

            def progress(done: int, head: int) -> None:
                print(f"checked {done} of {head} records", file=err, flush=True)

            report = await verify_chain(store, keys, batch=args.batch, progress=progress,
                                        progress_every=args.progress_every, anchors=anchors)
            if report.ok:
                print(f"OK: {report.records_checked} records ({_seq_range(report)}), "
                      f"{report.checkpoints_checked} signed checkpoints", file=out)
                print(describe_extent(report), file=out)
                return 0
            where = f" at seq {report.first_bad_seq}" if report.first_bad_seq is not None else ""
            print(f"BROKEN{where}: {report.problem} "
                  f"({report.records_checked} records verified before it)", file=out)
            return 1
        if args.cmd == "search":
            h = args.holder_hmac
            if args.holder_code:
                key_hex = os.environ.get(HMAC_ENV, "")
                if not key_hex or not args.holder_type:
                    raise CliError(f"--holder-code needs --holder-type and {HMAC_ENV} (hex)")
                code = args.holder_code
                if code == "-":   # from standard input: not in the process list nor the shell's history
                    code = sys.stdin.readline().strip()
                    if not code:
                        raise CliError("--holder-code -: no holder code on standard input")
                else:
                    print(f"note: a holder code on the command line can be read by every user of this machine "
                          f"(ps, /proc) and stays in the shell's history; give --holder-code - and the code on "
                          f"standard input", file=err)
                h = holder_hmac(bytes.fromhex(key_hex), args.holder_type, code)
            q = AuditQuery(holder_hmac=h, partner=args.partner, item_code=args.item, since=args.since,
                           until=args.until, limit=args.limit)
            for rec in await store.search(q):
                out.write(orjson.dumps(rec.as_dict(), default=_unstored).decode() + "\n")
            return 0
        result = await store.prune(args.before)
        print(describe_prune(result, args.before), file=out)
        return 0
    finally:
        await store.close()


def _unstored(value: object) -> str:
    """A value no record holds (bytes written by hand into a column), shown rather than raised."""
    if isinstance(value, bytes | bytearray):
        return "hex:" + bytes(value).hex()
    raise TypeError(type(value).__name__)


def _seq_range(report: ChainReport) -> str:
    """The records an OK check covered; none at all read "seq 6..5" (after a full prune) or "seq 1..0"."""
    if report.head_seq > report.start_seq:
        return f"seq {report.start_seq + 1}..{report.head_seq}"
    if report.start_seq:
        return f"none after the checkpoint signed at seq {report.start_seq}: every earlier record was pruned"
    return "the trail holds none yet"


def describe_prune(result: PruneResult, before: datetime) -> str:
    """``audit prune``'s answer; with nothing deleted it said "starts after checkpoint 0" (no checkpoint 0 exists)."""
    if result.deleted:
        return f"pruned {result.deleted} records; the chain now starts after checkpoint {result.start_seq}"
    start = (f"the chain still starts after the checkpoint signed at seq {result.start_seq}" if result.start_seq
             else "the chain still starts at its first record")
    return (f"nothing pruned: no records up to a checkpoint signed before "
            f"{before.isoformat().replace('+00:00', 'Z')}; "
            f"{start}")


def describe_extent(report: ChainReport) -> str:
    """What an OK check proves, and what it cannot (tail truncation: see gateway/audit/verify.py)."""
    lines = []
    if report.start_seq:
        lines.append(f"pruned: the chain starts after the checkpoint signed at seq {report.start_seq} "
                     f"({report.start_time})")
    if report.signed_seq:
        lines.append(f"signed through seq {report.signed_seq} (checkpoint of {report.signed_time})"
                     + (f", {report.anchors_checked} anchor(s) found in the chain" if report.anchors_checked else ""))
    else:
        lines.append("no checkpoint signs any record yet")
    if report.anchors_pruned:
        lines.append(f"{report.anchors_pruned} anchor(s) name records before the pruned start: not checked "
                     "(their records were pruned)")
    tail = report.head_seq - report.signed_seq
    if tail > 0:
        lines.append(f"records {report.signed_seq + 1}..{report.head_seq} ({tail}) are chained but not yet signed")
    lines.append("records deleted after the last checkpoint kept in the database, with the newest checkpoints, "
                 "cannot be seen from the database alone: check against a checkpoint kept elsewhere (--anchor)")
    return "\n".join(lines)


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
        print(f"错误 / error: {exc}", file=err)
        return 2
    except Exception as exc:  # noqa: BLE001 - never a traceback: fail closed with what went wrong
        print(f"错误 / error: unexpected {type(exc).__name__}: {exc}", file=err)
        return 2
