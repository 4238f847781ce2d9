"""SM2 / OFD throughput on this machine, in one run (a measurement script, not a test).

Prints, each on one core:
* the chosen backends' SM2 sign and verify rates (gateway.crypto.sm2);
* ``openssl speed -seconds N sm2`` verify rate (parsed) and our verify / OpenSSL ratio;
* ``verify_ofd_signatures`` rate for one built licence OFD vs the raw SM2 verify rate.

Every rate is per second of this process's CPU *user* time, as ``openssl speed`` divides unless
given ``-elapsed`` ("Use wall-clock time instead of CPU user time as divisor"): on a machine shared
with other work, a wall-clock rate counts the time the scheduler gave to others against us and not
against OpenSSL (until session 13 this script divided by wall time). Each side runs ``--seconds``
of wall time per round, interleaved over ``--rounds``; the best round of each is kept.

Usage: ``.venv/bin/python load/bench_sm2.py [--seconds 3] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.ofd import verify_ofd_signatures  # noqa: E402
from adapters.ofd.build import build_sealed_ofd  # noqa: E402
from gateway.crypto.sm2 import SIGN_BACKEND, VERIFY_BACKEND, SM2PrivateKey, sm2_sign, sm2_verify  # noqa: E402
from gateway.crypto.sm2cert import issue_sm2_certificate  # noqa: E402

_SPEED_RE = re.compile(r"^\s*256 bits SM2 \(CurveSM2\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)\s*$", re.M)


def user_cpu_seconds() -> float:
    """This process's CPU user time (``openssl speed``'s divisor)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def rate(fn: Callable[[], object], seconds: float, cpu: Callable[[], float] = user_cpu_seconds) -> float:
    """Calls per second of CPU user time, over ``seconds`` of wall time."""
    fn()  # warm-up
    n, deadline, c0 = 0, time.perf_counter() + seconds, cpu()
    while time.perf_counter() < deadline:
        for _ in range(20):
            fn()
        n += 20
    used = cpu() - c0
    return n / used if used > 0 else 0.0


def openssl_speed(seconds: int) -> tuple[float, float] | None:
    """(sign/s, verify/s) from ``openssl speed -seconds N sm2``; None if unavailable."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    out = subprocess.run([exe, "speed", "-seconds", str(seconds), "sm2"], capture_output=True, text=True,
                         timeout=seconds * 4 + 30, check=False).stdout
    m = _SPEED_RE.search(out)
    return (float(m[1]), float(m[2])) if m else None


def build_licence_ofd() -> bytes:
    """One licence-sized OFD sealed by a TEST key chain made on the spot."""
    utc = timezone.utc
    t0, t1 = datetime(2025, 1, 1, tzinfo=utc), datetime(2030, 1, 1, tzinfo=utc)
    root_key, signer_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    root = {"C": "CN", "CN": "Bench TEST Root"}
    signer = {"C": "CN", "CN": "Bench TEST Signer"}
    issue_sm2_certificate(root, root_key.public_key(), root, root_key, 1, t0, t1, True)
    signer_der = issue_sm2_certificate(signer, signer_key.public_key(), root, root_key, 2, t0, t1, False)
    licence = ('<?xml version="1.0" encoding="UTF-8"?><Licence>'
               + "".join(f"<Field{i}>测试字段值 {i}</Field{i}>" for i in range(40)) + "</Licence>").encode()
    page = (b'<?xml version="1.0" encoding="UTF-8"?><ofd:Page xmlns:ofd="http://www.ofdspec.org/2016">'
            b'<ofd:Content><ofd:Layer ID="3"/></ofd:Content></ofd:Page>')
    return build_sealed_ofd({"Doc_0/Attachs/licence.xml": licence, "Doc_0/Pages/Page_0/Content.xml": page},
                            signer_key, signer_der, "营业执照专用章（测试）", datetime(2026, 3, 1, tzinfo=utc))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    secs = args.seconds

    key = SM2PrivateKey.generate()
    pub = key.public_key()
    msg = b"m" * 200
    sig = sm2_sign(key, msg)
    assert sm2_verify(pub, msg, sig)
    print(f"backend: sign={SIGN_BACKEND} verify={VERIFY_BACKEND}  (machine shared: best of {args.rounds} rounds; "
          f"per second of CPU user time, as openssl speed)")
    sign_rate = verify_rate = 0.0
    speed: tuple[float, float] | None = None
    for i in range(args.rounds):  # interleaved, so load from other processes hits both sides alike
        s_rate = rate(lambda: sm2_sign(key, msg), secs)
        v_rate = rate(lambda: sm2_verify(pub, msg, sig), secs)
        sp = openssl_speed(secs)
        print(f"  round {i + 1}: sign {s_rate:,.0f}/s verify {v_rate:,.0f}/s"
              + (f" | openssl sign {sp[0]:,.0f}/s verify {sp[1]:,.0f}/s" if sp else " | openssl: unavailable"))
        sign_rate, verify_rate = max(sign_rate, s_rate), max(verify_rate, v_rate)
        if sp is not None:
            speed = sp if speed is None else (max(speed[0], sp[0]), max(speed[1], sp[1]))
    print(f"SM2 sign   {sign_rate:10,.0f} /s")
    print(f"SM2 verify {verify_rate:10,.0f} /s")
    if speed is None:
        print("openssl speed sm2: unavailable")
    else:
        print(f"openssl speed sm2: sign {speed[0]:,.0f} /s, verify {speed[1]:,.0f} /s")
        print(f"verify ratio (ours / openssl) = {verify_rate / speed[1]:.2f}  (target >= 0.85)")

    ofd = build_licence_ofd()
    result = verify_ofd_signatures(ofd)
    assert result.ok, result
    ofd_rate = rate(lambda: verify_ofd_signatures(ofd), secs)
    print(f"OFD licence ({len(ofd):,} bytes, {len(result.signatures[0].references)} references): "
          f"verify_ofd_signatures {ofd_rate:,.0f} /s")
    print(f"OFD verify / raw SM2 verify = {ofd_rate / verify_rate:.2f}  "
          f"(each OFD check runs 2 SM2 verifies, signer + seal maker, so 0.50 is the ceiling)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
