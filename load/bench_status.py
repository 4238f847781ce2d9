"""Status lookup cost against list size: ``python -m load.bench_status``.

Builds 2-bit status lists of 10^4 and 10^7 entries (about 1 % revoked, 0.1 % suspended),
signs each as a ``statuslist+jwt`` with a throw-away TEST key, verifies and decompresses it
the way the fetcher does (reported once per size: that cost is paid off the request path),
then times ``StatusList.get`` at random indexes: the per-verification cost, which must not
grow with the list.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.status import REVOKED, SUSPENDED, StatusList, build_status_list
from gateway.trustlist import b64u, b64u_decode, jws_sign, jws_verify


def build(size: int, rng: random.Random) -> StatusList:
    values = {i: REVOKED for i in rng.sample(range(size), size // 100)}
    values.update({i: SUSPENDED for i in rng.sample(range(size), size // 1000)})
    return build_status_list(size, 2, values)


def time_lookups(sl: StatusList, n: int, rng: random.Random) -> float:
    """Mean nanoseconds per lookup over ``n`` random indexes (index generation excluded)."""
    indexes = [rng.randrange(sl.size) for _ in range(n)]
    get = sl.get
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for i in indexes:
            get(i)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def decode_cost(sl: StatusList) -> tuple[int, float]:
    """(token bytes, ms to verify + decompress) through the real signed-list path."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    claims = {"sub": "bench", "iat": int(now.timestamp()), "ttl": 300,
              "status_list": {"bits": sl.bits, "lst": b64u(sl.compressed())}}
    header = {"alg": "ES256", "kid": "bench", "typ": "statuslist+jwt"}
    si = f"{b64u(orjson.dumps(header))}.{b64u(orjson.dumps(claims))}".encode()
    token = si + b"." + b64u(jws_sign("ES256", key, si)).encode()
    t0 = time.perf_counter()
    h, p, s = token.split(b".")
    assert jws_verify("ES256", key.public_key(), h + b"." + p, b64u_decode(s.decode()))
    c = orjson.loads(b64u_decode(p.decode()))
    decoded = StatusList.from_compressed(c["status_list"]["bits"], b64u_decode(c["status_list"]["lst"]))
    ms = (time.perf_counter() - t0) * 1000
    assert decoded.data == sl.data
    return len(token), ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,10000000", help="comma-separated list sizes")
    ap.add_argument("--lookups", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    print(f"{'entries':>12} {'raw bytes':>11} {'token bytes':>12} {'decode ms':>10} {'lookup ns':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        sl = build(size, rng)
        token_bytes, ms = decode_cost(sl)
        ns = time_lookups(sl, args.lookups, rng)
        print(f"{size:>12,} {len(sl.data):>11,} {token_bytes:>12,} {ms:>10.1f} {ns:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
