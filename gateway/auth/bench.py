"""Micro-benchmark of access-token verification: ``python -m gateway.auth bench``.

Compares, per gateway algorithm: PyJWT ``jwt.decode`` (signature + exp/aud/iss), the
hand-rolled :class:`TokenVerifier` with its cache disabled, the verifier on a cache hit,
and the bare signature check (the floor of any uncached verification).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from .jose import EDDSA, ES256, SigningKey, b64url_decode, make_verify_fn
from .partners import PartnerRegistry, load_partners
from .tokens import TokenService
from .verifier import ACCESS_AUDIENCE, ISSUER, TokenVerifier


@dataclass(frozen=True)
class Figure:
    alg: str
    method: str
    best_us: float
    median_us: float


def _time_us(fn: Callable[[], object], loops: int, repeats: int) -> tuple[float, float]:
    per_op = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        per_op.append((time.perf_counter_ns() - t0) / loops / 1000)
    return min(per_op), statistics.median(per_op)


def run(registry: PartnerRegistry, loops: int = 2000, repeats: int = 7) -> list[Figure]:
    now = time.time()
    figures = []
    for alg in (EDDSA, ES256):
        key = SigningKey.generate(alg)
        client_id = next(iter(registry))
        token = TokenService(registry, key).signing_key.sign({
            "iss": ISSUER, "sub": client_id, "client_id": client_id, "aud": ACCESS_AUDIENCE,
            "scope": " ".join(sorted(registry[client_id].scopes)), "iat": int(now), "exp": int(now) + 600,
            "jti": "bench"})
        header = "Bearer " + token
        uncached = TokenVerifier(registry, [key], cache_size=0)
        cached = TokenVerifier(registry, [key])
        cached.verify(header, now)
        pub = key.public_key
        signing_input, _, sig = token.rpartition(".")
        raw_sig, data, verify_sig = b64url_decode(sig), signing_input.encode(), make_verify_fn(pub)
        cases: dict[str, Callable[[], object]] = {
            "pyjwt.decode": lambda: jwt.decode(token, pub, algorithms=[alg], audience=ACCESS_AUDIENCE,
                                               issuer=ISSUER),
            "hand-rolled, uncached": lambda: uncached.verify(header, now),
            "hand-rolled, cached": lambda: cached.verify(header, now),
            "signature only": lambda: verify_sig(raw_sig, data),
        }
        for method, fn in cases.items():
            n = loops * 20 if "cached" in method and "un" not in method else loops
            best, median = _time_us(fn, n, repeats)
            figures.append(Figure(alg, method, best, median))
    return figures


def main(registry_dir: str = "certs/partners") -> None:
    registry = load_partners(registry_dir)
    print(f"{'alg':6} {'method':24} {'best µs':>9} {'median µs':>10}")
    for f in run(registry):
        print(f"{f.alg:6} {f.method:24} {f.best_us:9.2f} {f.median_us:10.2f}")
