"""Core verify rate per format family versus the family's raw signature rate, in one run.

    .venv/bin/python -m load.bench_core [--n 300] [--repeats 5] [--only LABEL ...] [--clock cpu|wall]

For each family it issues ``n`` valid licences (TEST framework, issuer simulator, one
representative region each) and measures, on one core, median over ``repeats``:

* raw: the signature primitive alone over the *same* licences' signing inputs
  (``cryptography`` ES256 / Ed25519 verify for jws; the SM2 backend's ``sm2_verify``
  for the SM2 families, with the already loaded public key). For ofd-seal the format
  needs two SM2 verifications per licence (the signer's over TBS_Sign and the seal
  maker's over the seal), so the table shows both the per-verify rate (raw sig/s) and the
  per-licence rate it implies (raw lic/s = raw sig/s / 2), and the ratio uses the latter.
  Since session 13 the core does not verify the maker's signature again on a seal it has already
  verified (an issuer's licences share one seal: ``adapters.ofd_seal._VERIFIED_SEALS``), so on
  the request path a Type=Seal licence costs ONE SM2 verification; the row is therefore followed by
  the same core with every seal new (the set emptied before each licence: the first licence of
  each seal) and by the ratio per SM2 verification the core actually ran (counted);
  an ofd-seal row is followed by the per-licence split: SM2 time versus everything else
  (the package is parsed and every Reference hashed on each request; nothing is cached by
  licence bytes), and "everything else" split again: the same core run with the family's SM2
  verification stubbed out (the parsing, hashing and checks alone; a diagnostic run, its
  licences are not judged) and the remainder, what SM2 and that work cost each other when
  interleaved on one core (cold caches), which the raw loop, verifying back to back, does not pay;
* core: ``Verifier.verify(data, trust, status, now)`` -- everything: sniff, parse,
  issuer lookup, signature, normalisation, identifier and check digits, issuer
  certificate, validity and status list.

Both sides are timed alike: the same clock, results not kept (the raw loop keeps none, so the
core loop does not collect 300 results either). The default clock is the thread's CPU time
(``time.thread_time``): on a machine shared with other work, wall time also counts the time
the benchmark was preempted, which swings the ratio by several hundredths from run to run;
``--clock wall`` uses ``time.perf_counter`` instead (the same on an idle machine).

Target: core >= 0.7 x raw for each family. Exit status 0 always (a measurement, not a gate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from adapters import FAMILIES, Limits
from gateway.bootstrap import load_static, policy_from, type_names
from gateway.config import Settings
from gateway.core import Verifier
from gateway.crypto.sm2 import VERIFY_BACKEND, sm2_verify
from gateway.devtrust import make_dev_framework
from gateway.simulator import IssuerSimulator
from gateway.trust import build_snapshot

NOW = dt.datetime(2026, 11, 27, 4, 0, 0, tzinfo=dt.timezone.utc)
#: one representative region per family / algorithm
REGIONS = {"jws ES256": "341100", "jws EdDSA": "652929", "sm2-json": "330100", "sm2-xml": "320100",
           "ofd-seal": "310000", "ofd-seal (Type=Sign)": "500102"}
TARGET = 0.7


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}


def rates(fns: list[Callable[[], None]], count: int, repeats: int,
          clock: Callable[[], float] = time.thread_time) -> list[float]:
    """Median rate (items/s) of each ``fn`` (which handles ``count`` items) over ``repeats``
    runs; the functions' runs are interleaved, so a busy machine slows them alike."""
    for fn in fns:
        fn()  # warm-up
    seen: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, seen):
            t0 = clock()
            fn()
            out.append(count / (clock() - t0))
    return [statistics.median(r) for r in seen]


def core_verify_all(verifier: Verifier, data: list[bytes], trust, status) -> None:
    verify = verifier.verify
    for d in data:
        verify(d, trust, status, NOW)


@contextmanager
def _ofd_sm2_verify(replace: Callable[[Callable[..., bool]], Callable[..., bool]]) -> Iterator[None]:
    """The ofd-seal family's ``sm2_verify`` replaced by ``replace(real)`` inside the block."""
    from adapters import ofd_seal

    real = ofd_seal.sm2_verify
    ofd_seal.sm2_verify = replace(real)
    try:
        yield
    finally:
        ofd_seal.sm2_verify = real


def core_verify_all_sm2_stubbed(verifier: Verifier, data: list[bytes], trust, status) -> None:
    """Diagnostic only (ofd-seal rows): the core with the family's SM2 verification answering True
    at once, i.e. the parsing, hashing and checks alone; restored before returning."""
    with _ofd_sm2_verify(lambda real: lambda *args: True):
        core_verify_all(verifier, data, trust, status)


def core_verify_all_seals_new(verifier: Verifier, data: list[bytes], trust, status) -> None:
    """ofd-seal rows: the core with every licence's seal new to it (the verified-seal set emptied
    before each licence), i.e. both SM2 verifications on every licence."""
    from adapters.ofd_seal import _VERIFIED_SEALS

    verify, forget = verifier.verify, _VERIFIED_SEALS.clear
    for d in data:
        forget()
        verify(d, trust, status, NOW)


def sm2_verifies_per_licence(verifier: Verifier, data: list[bytes], trust, status) -> float:
    """How many SM2 verifications the ofd-seal family runs per licence, counted over one pass of
    the core in its steady state (what the per-licence split is made of)."""
    calls = [0]

    def counting(real: Callable[..., bool]) -> Callable[..., bool]:
        def count(*args: object) -> bool:
            calls[0] += 1
            return real(*args)
        return count

    with _ofd_sm2_verify(counting):
        core_verify_all(verifier, data, trust, status)
    return calls[0] / len(data)


def raw_inputs(family: str, data: list[bytes], trust) -> list[tuple[object, bytes, bytes, str]]:
    """(public key, message, signature, kind) for each licence, as the family opens it."""
    fam = FAMILIES[family]
    out = []
    for d in data:
        env = fam.open(d, Limits(max_licence_bytes=1 << 22))
        if env.key_ref.kid:
            cert = trust.by_key_id[env.key_ref.kid].cert
        elif env.key_ref.serial_hex:
            cert = next(i.cert for i in trust.regions[env.key_ref.region_hint].issuers
                        if i.cert.serial_hex == env.key_ref.serial_hex)
        else:
            from gateway.trust import key_id_of
            cert = trust.by_key_id[key_id_of(env.key_ref.chain[0])].cert
        out.append((cert.public_key, env.signed_bytes, env.signature, env.algorithm))
        if family == "ofd-seal" and "ses" in env.extra:  # the seal maker's signature: the format needs it too
            from gateway.trust import load_certificate
            seal = env.extra["ses"].seal
            out.append((load_certificate(seal.maker_cert_der).public_key, seal.sealinfo_der, seal.maker_signature,
                        "SM2"))
    return out


def raw_verify_all(items: list[tuple[object, bytes, bytes, str]]) -> None:
    ecdsa = ec.ECDSA(hashes.SHA256())
    for key, msg, sig, alg in items:
        if alg == "ES256":
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, msg, ecdsa)  # type: ignore[attr-defined]
        elif alg == "EdDSA":
            key.verify(sig, msg)  # type: ignore[attr-defined]
        elif not sm2_verify(key, msg, sig):  # type: ignore[arg-type]
            raise AssertionError("raw SM2 verify failed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="licences per family")
    ap.add_argument("--repeats", type=int, default=5, help="runs per figure (the median is reported)")
    ap.add_argument("--only", action="append", default=[], metavar="LABEL",
                    help="measure only this family label (repeatable), e.g. --only sm2-xml")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                    help="cpu: the thread's CPU time (default); wall: elapsed time")
    args = ap.parse_args(argv)

    settings = Settings(demo=True)
    regions, specs, catalogue = load_static(settings)
    doc, material = make_dev_framework(specs, regions, NOW - dt.timedelta(days=30), valid_days=365)
    trust = build_snapshot(doc, regions)
    sim = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types})
    verifier = Verifier(policy_from(settings), specs, type_names(catalogue))
    types = sorted(t.key for t in catalogue.types)

    print(f"SM2 verify backend: {VERIFY_BACKEND}; {args.n} licences per family, median of {args.repeats} runs, "
          f"{args.clock} clock")
    print("raw sig/s: signature verifications per second; raw lic/s: the same divided by the signatures a "
          "licence needs\n(2 for an OFD seal: signer + seal maker), which is what the core's licences/s is "
          "compared with")
    print(f"{'family':<22}{'raw sig/s':>11}{'raw lic/s':>11}{'core lic/s':>12}{'ratio':>8}  target >= {TARGET}")
    worst = 1.0
    for label, region in REGIONS.items():
        if args.only and label not in args.only:
            continue
        family = specs[region].family
        data = [sim.issue(region, types[i % len(types)], "valid", NOW).data for i in range(args.n)]
        status = sim.status_snapshot(NOW, dt.timedelta(hours=1))
        for d in data[:3]:  # every licence must be valid, or the figure means nothing
            result = verifier.verify(d, trust, status, NOW)
            if result.verdict.value != "valid":
                print(f"{label}: licence not valid: {result.reason_codes}", file=sys.stderr)
                return 1
        items = raw_inputs(family, data, trust)
        fns = [lambda: raw_verify_all(items), lambda: core_verify_all(verifier, data, trust, status)]
        if family == "ofd-seal":
            fns.append(lambda: core_verify_all_sm2_stubbed(verifier, data, trust, status))
            fns.append(lambda: core_verify_all_seals_new(verifier, data, trust, status))
        raw, core, *extra = rates(fns, len(data), args.repeats, CLOCKS[args.clock])
        ratio = core / raw
        worst = min(worst, ratio)
        note = "" if ratio >= TARGET else "  BELOW TARGET"
        sigs = len(items) / len(data)
        per = f"  ({sigs:g} SM2 verifies per licence: raw lic/s = raw sig/s / {sigs:g})" if sigs != 1 else ""
        print(f"{label:<22}{raw * sigs:>11,.0f}{raw:>11,.0f}{core:>12,.0f}{ratio:>8.2f}{note}{per}")
        if family == "ofd-seal":  # where an OFD licence's time goes: the signatures vs everything else
            done = sm2_verifies_per_licence(verifier, data, trust, status)
            sig_us = 1e6 / (raw * sigs)        # one SM2 verification
            if sigs != 1:
                cold = extra[1]
                print(f"{'':<22}with every seal new (both signatures verified on each licence): core {cold:,.0f} "
                      f"lic/s, ratio {cold / raw:.2f}; the core above ran {done:g} SM2 verification(s) per licence "
                      f"(the seal's maker signature remembered): per verification run, core / raw sig/s = "
                      f"{core / (raw * sigs) * done:.2f}")
            sm2_us = done * sig_us
            print(f"{'':<22}per licence: core {1e6 / core:,.0f} us = SM2 {sm2_us:,.0f} us ({done:g} verification(s)) + "
                  f"{1e6 / core - sm2_us:,.0f} us other (zip inflate + CRC, OFD.xml / Signature.xml / licence data "
                  "parsing, SM3 of every Reference, SES parsing, core checks)")
            # the same core with SM2 stubbed out: the work itself; the rest of "other" is what running
            # SM2 between the parsing costs both sides (caches and branch predictors cold), which the
            # raw loop, verifying back to back, does not pay
            work = 1e6 / extra[0]
            print(f"{'':<22}  of which {work:,.0f} us parsing, hashing and checks (measured with SM2 stubbed out) "
                  f"+ {1e6 / core - sm2_us - work:,.0f} us remainder: SM2 and that work slowing each other when "
                  "interleaved (cold caches; the raw loop verifies back to back)")
    print(f"worst ratio {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
