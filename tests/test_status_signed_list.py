"""Signed status list tokens (IETF Token Status List model): what the gateway accepts and refuses."""

from __future__ import annotations

import copy
import datetime as dt
import zlib

import orjson
import pytest

from gateway.devtrust import make_anchor, make_issuer
from gateway.status import REVOKED, SUSPENDED, VALID, build_status_list
from gateway.status_source import StatusListError, encode_status_list_jwt, verify_status_list_jwt
from gateway.trust import build_snapshot
from gateway.trustlist import b64u, b64u_decode

from .conftest import NOW

REGION = "341100"  # ES256
EDDSA_REGION = "652929"
SUB = f"http://127.0.0.1:9/status/{REGION}"


def token(world, region=REGION, *, values=None, iat=NOW, exp=None, sub=SUB, key=None, size=1024) -> bytes:
    sl = build_status_list(size, 2, values or {})
    return encode_status_list_jwt(sl, key or world.material[region].issuers[-1], sub=sub, iat=iat,
                                  exp=exp or iat + dt.timedelta(days=1), ttl=300)


def check(world, data: bytes, region=REGION, sub=SUB, now=NOW, trust=None, held=None):
    return verify_status_list_jwt(data, region=region, expected_sub=sub, trust=trust or world.snapshot, now=now,
                                  held=held)


def refused(world, data: bytes, **kw) -> str:
    with pytest.raises(StatusListError) as exc:
        check(world, data, **kw)
    return exc.value.kind


@pytest.mark.parametrize("region", [REGION, EDDSA_REGION])
def test_signed_list_verifies_and_looks_up_each_state(world, region):
    sub = f"http://127.0.0.1:9/status/{region}"
    v = check(world, token(world, region, values={5: REVOKED, 6: SUSPENDED}, sub=sub), region=region, sub=sub)
    assert [v.status_list.get(i) for i in (4, 5, 6)] == [VALID, REVOKED, SUSPENDED]
    assert v.key_id == world.material[region].issuers[-1].cert.key_id and v.ttl == 300 and v.iat == NOW


def test_header_and_claims_follow_the_token_status_list_shape(world):
    h, p, _ = token(world).split(b".")
    header, claims = orjson.loads(b64u_decode(h.decode())), orjson.loads(b64u_decode(p.decode()))
    assert header["typ"] == "statuslist+jwt" and header["alg"] == "ES256"
    assert set(claims) == {"sub", "iat", "exp", "ttl", "status_list"}
    assert claims["status_list"]["bits"] == 2
    assert zlib.decompress(b64u_decode(claims["status_list"]["lst"])) == bytes(256)


def test_flipped_signature_is_refused(world):
    h, p, s = token(world).split(b".")
    sig = bytearray(b64u_decode(s.decode()))
    sig[10] ^= 1
    assert refused(world, h + b"." + p + b"." + b64u(bytes(sig)).encode()) == "bad-signature"


def test_attacker_clears_a_revocation_bit_and_keeps_the_signature(world):
    h, p, s = token(world, values={7: REVOKED}).split(b".")
    claims = orjson.loads(b64u_decode(p.decode()))
    claims["status_list"]["lst"] = b64u(zlib.compress(bytes(256)))
    assert refused(world, h + b"." + b64u(orjson.dumps(claims)).encode() + b"." + s) == "bad-signature"


def test_list_signed_by_another_regions_issuer_is_refused(world):
    """Substitution: a validly signed list of region B served as region A's."""
    other = token(world, EDDSA_REGION)
    assert refused(world, other) == "signer-region-mismatch"


def test_list_for_another_uri_is_refused(world):
    data = token(world, sub="http://127.0.0.1:9/status/330500")
    assert refused(world, data) == "wrong-subject"


def test_list_signed_by_a_key_outside_the_trust_list_is_refused(world):
    rogue_anchor_key, rogue_anchor = make_anchor(REGION, "ES256", NOW)
    rogue = make_issuer(REGION, "ES256", rogue_anchor_key, rogue_anchor, 77, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=9))
    assert refused(world, token(world, key=rogue)) == "unknown-signer"


def test_expired_list_is_refused(world):
    data = token(world, iat=NOW - dt.timedelta(days=2), exp=NOW - dt.timedelta(seconds=1))
    assert refused(world, data) == "expired"


def test_list_from_the_future_is_refused(world):
    assert refused(world, token(world, iat=NOW + dt.timedelta(hours=1))) == "not-yet-valid"


def test_replayed_older_list_is_refused_as_rollback(world):
    """An old list in which a now-revoked licence was still valid must not replace a newer one."""
    newer = check(world, token(world, values={9: REVOKED}))
    older = token(world, iat=NOW - dt.timedelta(minutes=10))
    assert refused(world, older, held=newer) == "rollback"


def test_list_signed_by_a_revoked_issuer_key_is_refused(world):
    doc = copy.deepcopy(world.doc)
    serial = world.material[REGION].issuers[-1].cert.serial_hex
    doc["regions"][REGION]["revoked"] = [{"serial": serial, "revoked_at": (NOW - dt.timedelta(days=1)).isoformat(),
                                          "reason": "keyCompromise"}]
    assert refused(world, token(world), trust=build_snapshot(doc, world.regions)) == "signer-invalid"


def test_decompression_bomb_list_is_refused(world):
    import gateway.status_source as ss

    key = world.material[REGION].issuers[-1]
    bomb = zlib.compress(bytes(ss.MAX_LIST_BYTES + 1024), 9)
    header = {"alg": "ES256", "kid": key.cert.key_id, "typ": "statuslist+jwt"}
    claims = {"sub": SUB, "iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 60, "ttl": 60,
              "status_list": {"bits": 2, "lst": b64u(bomb)}}
    from gateway.trustlist import jws_sign

    si = f"{b64u(orjson.dumps(header))}.{b64u(orjson.dumps(claims))}".encode()
    data = si + b"." + b64u(jws_sign("ES256", key.private_key, si)).encode()
    assert refused(world, data) == "malformed"


@pytest.mark.parametrize("garbage", [b"", b"not-a-jwt", b"a.b.c", b"e30.e30.", b"." * 2])
def test_garbage_tokens_are_refused_not_crashing(world, garbage):
    assert refused(world, garbage) in ("malformed", "bad-signature", "unknown-signer")


def test_status_benchmark_prints_lookup_time_per_list_size(capsys):
    from load.bench_status import main

    assert main(["--sizes", "10000,100000", "--lookups", "2000"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert "lookup ns" in rows[0] and [r.split()[0] for r in rows[1:]] == ["10,000", "100,000"]
    assert all(float(r.split()[-1]) > 0 for r in rows[1:])
