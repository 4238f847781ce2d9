"""Audit-trail and receipt micro-benchmarks.

    .venv/bin/python -m load.bench_audit [--records 5000] [--concurrency 200] [--pg DSN] [--no-pg]

* appends/second through group commit for SQLite (WAL, synchronous=FULL) and PostgreSQL
  (synchronous_commit on), with ``concurrency`` appenders in flight, and the mean batch size;
* the same with concurrency 1 (one fsync per record: what group commit saves);
* the per-receipt signing cost (EdDSA and ES256; hand-rolled vs pyjwt) and verify cost.

The PostgreSQL DSN comes from --pg, GATEWAY_TEST_PG_DSN or ``scripts/pg.sh start``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditEvent, CheckpointSigner, GroupCommitConfig, SqliteAuditSink, holder_hmac
from gateway.receipts import ReceiptSigner, request_digest, verify_receipt

REPO = Path(__file__).resolve().parent.parent
T = datetime(2025, 3, 1, tzinfo=timezone.utc)
HOLDER = holder_hmac(b"bench-hmac-key-0123456789", "111", "330502199001010014")  # synthetic holder


def event(i: int) -> AuditEvent:
    return AuditEvent(kind="verify", time=T, request_id=f"bench-{i}", partner="partner-bench", operator="window-1",
                      item_code="330000-ITEM-001", region="330500", licence_id=f"lic-{i}", verdict="valid",
                      reasons=(), holder_hmac=HOLDER, extra={"ms": 1.5})


async def drive(sink: Any, records: int, concurrency: int) -> float:
    queue = iter(range(records))

    async def worker() -> None:
        for i in queue:
            await sink.append(event(i))

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t


async def bench_store(name: str, open_sink: Any, records: int, concurrency: int) -> None:
    for conc, n in ((concurrency, records), (1, min(records, 500))):
        sink = await open_sink()
        elapsed = await drive(sink, n, conc)
        stats = sink.stats
        await sink.close()
        print(f"{name:8s} concurrency {conc:4d}: {n / elapsed:9.0f} appends/s   "
              f"{stats.transactions:5d} transactions, mean batch {stats.records / max(stats.transactions, 1):6.1f}")


def pg_dsn(arg: str | None) -> str:
    if arg:
        return arg
    if os.environ.get("GATEWAY_TEST_PG_DSN"):
        return os.environ["GATEWAY_TEST_PG_DSN"]
    return subprocess.run([str(REPO / "scripts" / "pg.sh"), "start"], check=True, capture_output=True,
                          text=True).stdout.strip().splitlines()[-1]


def per_call_us(fn: Any, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def bench_receipts(n: int) -> None:
    body = b'{"licence":"' + b"x" * 2000 + b'","item":"330000-ITEM-001"}'
    claims_args = dict(request_body=body, verdict="valid", reasons=[], item="330000-ITEM-001", time=T,
                       licence_ids=["1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0"])
    for alg, key in (("EdDSA", Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)),
                     ("ES256", ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1()))):
        signer = ReceiptSigner(key, f"bench-{alg}", "gw-bench")
        sign_us = per_call_us(lambda s=signer: s.sign(**claims_args), n)   # type: ignore[arg-type]
        token = signer.sign(**claims_args)  # type: ignore[arg-type]
        ks = signer.jwks()
        verify_us = per_call_us(lambda t=token, k=ks: verify_receipt(t, k), n)

        def with_pyjwt(k: Any = key, a: str = alg) -> str:
            payload = {"gateway": "gw-bench", "request_digest": request_digest(body), "verdict": "valid",
                       "reasons": [], "item": "330000-ITEM-001", "licence_ids": claims_args["licence_ids"],
                       "time": "2025-03-01T00:00:00.000000Z", "iat": int(T.timestamp())}
            return jwt.encode(payload, k, algorithm=a, headers={"kid": f"bench-{a}", "typ": "elicence-receipt+jws"})

        pyjwt_us = per_call_us(with_pyjwt, n)
        print(f"receipt {alg}: sign {sign_us:6.1f} us (pyjwt {pyjwt_us:6.1f} us), verify {verify_us:6.1f} us")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--pg")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--receipts", type=int, default=2000)
    args = ap.parse_args()
    signer = CheckpointSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "bench-audit")
    config = GroupCommitConfig(max_batch=256, window=0.001, checkpoint_every=1000)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))
        await bench_store("sqlite", lambda: SqliteAuditSink.open(Path(tmp) / f"a{next(counter)}.db", signer=signer,
                                                                   config=config), args.records, args.concurrency)
    if not args.no_pg:
        import asyncpg

        from gateway.audit.postgres import PostgresAuditSink
        dsn = pg_dsn(args.pg)
        schemas: list[str] = []

        def open_pg() -> Any:
            schemas.append(f"bench_{uuid.uuid4().hex[:10]}")
            return PostgresAuditSink.open(dsn, schema=schemas[-1], signer=signer, config=config)

        try:
            await bench_store("postgres", open_pg, args.records, args.concurrency)
        finally:
            conn = await asyncpg.connect(dsn)
            for s in schemas:
                await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
            await conn.close()
    bench_receipts(args.receipts)


if __name__ == "__main__":
    asyncio.run(main())
