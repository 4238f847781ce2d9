"""Attacks on the JWS family and the trust core: issuer look-up, chains, revocation, caches.

Each attack is a genuinely signed licence (the attacker holds some key: a compromised issuer key,
an issuer's own end-entity key, a certificate the region's anchor issued) or a trust list as an
operator writes it; beside each, the genuine control stays valid. Every attack below was judged
``valid`` (or a genuine licence refused) before session 17's fixes in gateway/trust.py,
gateway/core.py and adapters/jws.py.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import tracemalloc

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from gateway.devtrust import make_issuer, to_pem
from gateway.trust import build_snapshot, load_certificate

from .conftest import NOW

REGION = "341100"        # 滁州 (Anhui), ES256
SAME_PROVINCE = "340100"  # 合肥 (Anhui), ES256: a provincial anchor may serve both
REVOKED_AT = NOW - dt.timedelta(days=10)


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


def b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def genuine_parts(world, region: str) -> tuple[dict, dict]:
    """The header and payload of a genuine licence of ``region`` (its payload is re-signed below)."""
    h64, p64, _ = world.simulator.issue(region, None, "valid", NOW).data.split(b".")
    pad = lambda x: x + b"=" * (-len(x) % 4)  # noqa: E731
    return orjson.loads(base64.urlsafe_b64decode(pad(h64))), orjson.loads(base64.urlsafe_b64decode(pad(p64)))


def es256(header: dict, payload: dict, key) -> bytes:
    signing_input = b64u(orjson.dumps(header)) + b"." + b64u(orjson.dumps(payload))
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input + b"." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def x5c_licence(world, region: str, key, chain: list[bytes], *, iss: bool = True) -> bytes:
    """A licence of ``region``, signed with ``key``, naming its signer by an embedded chain (leaf first)."""
    header, payload = genuine_parts(world, region)
    del header["kid"]
    if not iss:
        del header["iss"]
    header["x5c"] = [base64.b64encode(der).decode() for der in chain]
    return es256(header, payload, key)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"TEST attacks {REGION}"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject: x509.Name, public_key, issuer: x509.Name, issuer_key, serial: int, *, ca: bool,
                path_length: int | None = None) -> bytes:
    """An X.509 certificate as the issuing CAs of the test framework write them, pathLenConstraint chosen."""
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(serial).not_valid_before(NOW - dt.timedelta(days=30))
               .not_valid_after(NOW + dt.timedelta(days=300))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def verify(world, data: bytes, status, trust=None):
    return world.verifier.verify(data, trust or world.snapshot, status, NOW)


def with_revoked(world, entries: list[dict], region: str = REGION) -> dict:
    doc = copy.deepcopy(world.doc)
    doc["regions"][region]["revoked"] = entries
    return doc


# --- 1. a revoked issuer certificate, taken off the issuer list, presented in x5c ------------------------
@pytest.fixture(scope="module")
def delisted(world):
    """An issuer certificate of the region's own anchor that the trust list does not list (x5c names it)."""
    m = world.material[REGION]
    return make_issuer(REGION, "ES256", m.anchor_key, m.anchor, 777001, NOW - dt.timedelta(days=100),
                       NOW + dt.timedelta(days=100), "delisted")


@pytest.mark.parametrize("reason,signed_before_revocation,verdict", [
    ("keyCompromise", True, "invalid"),   # nothing a compromised key signed stands
    ("superseded", False, "invalid"),     # signed after the revocation time
    ("superseded", True, "valid"),        # signed before it: stands, as for a listed issuer
])
def test_revoked_issuer_certificate_off_the_issuer_list_but_presented_in_x5c_is_revoked(
        world, status, delisted, reason, signed_before_revocation, verdict) -> None:
    header, payload = genuine_parts(world, REGION)
    del header["kid"]
    header["x5c"] = [base64.b64encode(delisted.cert.der).decode()]
    payload["iat"] = int((REVOKED_AT + dt.timedelta(days=-1 if signed_before_revocation else 1)).timestamp())
    data = es256(header, payload, delisted.private_key)
    # control: the same licence while the certificate is not revoked
    assert verify(world, data, status).verdict.value == "valid"
    revoked = build_snapshot(with_revoked(world, [{"serial": delisted.cert.serial_hex,
                                                   "revoked_at": REVOKED_AT.isoformat(), "reason": reason}]),
                             world.regions)
    assert delisted.cert.key_id not in revoked.by_key_id  # revoked and not (or no longer) listed
    result = verify(world, data, status, revoked)
    assert result.verdict.value == verdict, result.reason_codes
    assert result.reason_codes == (() if verdict == "valid" else ("ISSUER_CERT_REVOKED",))


# --- 2. an issuer's end-entity key used as a CA ----------------------------------------------------------
def test_certificate_minted_by_an_issuers_end_entity_key_is_an_untrusted_chain(world, status) -> None:
    """An issuer signing key (basicConstraints cA=FALSE) may not issue certificates: otherwise the holder
    of a compromised, revoked issuer key mints a fresh leaf and every licence it signs is valid again."""
    issuer = world.material[REGION].issuers[-1]
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = certificate(name("rogue signer"), rogue_key.public_key(), issuer.cert._native.subject,
                        issuer.private_key, 4711, ca=False)
    data = x5c_licence(world, REGION, rogue_key, [rogue, issuer.cert.der])
    # control: the genuine issuer's own licence
    assert verify(world, world.simulator.issue(REGION, None, "valid", NOW).data, status).verdict.value == "valid"
    result = verify(world, data, status)
    assert result.verdict.value == "invalid" and result.reason_codes == ("UNTRUSTED_CHAIN",)
    # ... and still so once that issuer key is revoked for compromise
    revoked = build_snapshot(with_revoked(world, [{"serial": issuer.cert.serial_hex, "revoked_at": REVOKED_AT.isoformat(),
                                                   "reason": "keyCompromise"}]), world.regions)
    result = verify(world, data, status, revoked)
    assert result.verdict.value == "invalid" and result.reason_codes == ("UNTRUSTED_CHAIN",)


# --- 3. pathLenConstraint, and a revoked intermediate -------------------------------------------------------
@pytest.fixture(scope="module")
def hierarchy(world):
    """Two anchors for REGION (pathLen 0 and unlimited), each with an intermediate CA and a signer below it."""
    out = {}
    for label, path_length in (("pathlen-0", 0), ("unlimited", None)):
        root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        root_name, inter_name = name(f"root {label}"), name(f"intermediate {label}")
        root = certificate(root_name, root_key.public_key(), root_name, root_key, 10, ca=True, path_length=path_length)
        inter = certificate(inter_name, inter_key.public_key(), root_name, root_key, 11, ca=True, path_length=0)
        leaf = certificate(name(f"signer {label}"), leaf_key.public_key(), inter_name, inter_key, 12, ca=False)
        out[label] = (root, inter, leaf, leaf_key)
    return out


def hierarchy_doc(world, root: bytes, inter: bytes | None = None, issuer: bytes | None = None,
                  revoked: list[dict] | None = None) -> dict:
    doc = copy.deepcopy(world.doc)
    doc["regions"][REGION] = {"anchors": [to_pem(root)], "intermediates": [to_pem(inter)] if inter else [],
                              "issuers": [to_pem(issuer)] if issuer else [], "revoked": revoked or []}
    return doc


@pytest.mark.parametrize("label,verdict", [("unlimited", "valid"), ("pathlen-0", "invalid")])
def test_intermediate_ca_below_an_anchor_whose_path_length_is_zero_is_an_untrusted_chain(
        world, status, hierarchy, label, verdict) -> None:
    root, inter, leaf, leaf_key = hierarchy[label]
    trust = build_snapshot(hierarchy_doc(world, root), world.regions)
    result = verify(world, x5c_licence(world, REGION, leaf_key, [leaf, inter]), status, trust)
    assert result.verdict.value == verdict, result.reason_codes
    assert result.reason_codes == (() if verdict == "valid" else ("UNTRUSTED_CHAIN",))


@pytest.mark.parametrize("label,kept", [("unlimited", True), ("pathlen-0", False)])
def test_trust_list_issuer_below_an_intermediate_the_anchor_forbids_is_dropped(world, hierarchy, label, kept) -> None:
    root, inter, leaf, _ = hierarchy[label]
    trust = build_snapshot(hierarchy_doc(world, root, inter, leaf), world.regions)
    key_id = load_certificate(leaf).key_id
    assert (key_id in trust.by_key_id) is kept
    if not kept:
        assert [d.reason for d in trust.dropped if d.key_id == key_id] == ["does not chain to this region's trust anchor"]


@pytest.mark.parametrize("listed", [True, False])
def test_revoked_intermediate_revokes_the_signers_below_it(world, status, hierarchy, listed) -> None:
    root, inter, leaf, leaf_key = hierarchy["unlimited"]
    data = x5c_licence(world, REGION, leaf_key, [leaf, inter])
    doc = hierarchy_doc(world, root, inter, leaf if listed else None)
    assert verify(world, data, status, build_snapshot(doc, world.regions)).verdict.value == "valid"  # control
    doc["regions"][REGION]["revoked"] = [{"serial": load_certificate(inter).serial_hex,
                                          "revoked_at": REVOKED_AT.isoformat(), "reason": "keyCompromise"}]
    result = verify(world, data, status, build_snapshot(doc, world.regions))
    assert result.verdict.value == "invalid" and result.reason_codes == ("ISSUER_CERT_REVOKED",)


# --- 4. revoked serials written as OpenSSL prints them ------------------------------------------------------
@pytest.mark.parametrize("spelling", ["0BDB29", "0b:db:29", "0xBDB29", "00bdb29", 777001, "bdb29"])
def test_revoked_serial_written_with_a_leading_zero_colons_or_as_a_number_still_revokes(
        world, status, delisted, spelling) -> None:
    """777001 is 0xbdb29: ``openssl x509 -serial`` prints ``0BDB29`` (whole bytes), ``-text`` ``0b:db:29``.
    Such an entry matched no certificate, so a compromised key's licences stayed valid."""
    assert delisted.cert.serial_hex == "bdb29"
    doc = with_revoked(world, [])
    doc["regions"][REGION]["issuers"].append(to_pem(delisted.cert.der))
    header, payload = genuine_parts(world, REGION)
    header["kid"] = delisted.cert.key_id
    data = es256(header, payload, delisted.private_key)
    assert verify(world, data, status, build_snapshot(doc, world.regions)).verdict.value == "valid"  # control
    doc["regions"][REGION]["revoked"] = [{"serial": spelling, "revoked_at": REVOKED_AT.isoformat(),
                                          "reason": "keyCompromise"}]
    trust = build_snapshot(doc, world.regions)
    assert not trust.dropped
    result = verify(world, data, status, trust)
    assert result.verdict.value == "invalid" and result.reason_codes == ("ISSUER_CERT_REVOKED",)


@pytest.mark.parametrize("spelling", ["not-hex", "", "0", 0, -5, True, 1.5, None])
def test_unreadable_revoked_serial_is_dropped_with_its_reason_not_silently_unmatched(world, spelling) -> None:
    doc = with_revoked(world, [{"serial": spelling, "revoked_at": REVOKED_AT.isoformat(), "reason": "keyCompromise"}])
    trust = build_snapshot(doc, world.regions)
    assert [d.region for d in trust.dropped] == [REGION]
    assert trust.dropped[0].reason.startswith("revocation entry 0 unreadable")


@pytest.mark.parametrize("reason,verdict", [
    ("superseded", "valid"),              # control: signed before a non-compromise revocation, it stands
    ("Superseded", "valid"),
    ("cessation-of-operation", "valid"),
    ("keyCompromise", "invalid"),
    ("KeyCompromise", "invalid"),         # spellings of a compromise ...
    ("key_compromise", "invalid"),
    ("KEY COMPROMISE", "invalid"),
    ("cACompromise", "invalid"),          # ... a compromise of the CA above it
    ("stolen", "invalid"),                # ... and a reason the gateway does not know: fail closed
])
def test_revocation_reason_spelt_otherwise_or_unknown_is_not_taken_for_a_harmless_one(
        world, status, delisted, reason, verdict) -> None:
    """Before revocation time, only a compromise refuses what the key signed: a compromise spelt
    "KeyCompromise" or "key_compromise" was read as a superseded key, and the licences its thief
    backdated before the revocation time stayed valid."""
    doc = with_revoked(world, [{"serial": delisted.cert.serial_hex, "revoked_at": REVOKED_AT.isoformat(),
                                "reason": reason}])
    doc["regions"][REGION]["issuers"].append(to_pem(delisted.cert.der))
    header, payload = genuine_parts(world, REGION)
    header["kid"] = delisted.cert.key_id
    payload["iat"] = int((REVOKED_AT - dt.timedelta(days=1)).timestamp())   # backdated before the revocation
    result = verify(world, es256(header, payload, delisted.private_key), status, build_snapshot(doc, world.regions))
    assert result.verdict.value == verdict, result.reason_codes
    assert result.reason_codes == (() if verdict == "valid" else ("ISSUER_CERT_REVOKED",))


# --- 5. one provincial anchor for two regions ---------------------------------------------------------------
@pytest.fixture(scope="module")
def provincial(world):
    """REGION's anchor replaced by SAME_PROVINCE's (one provincial CA), and a signer of REGION it issued."""
    doc = copy.deepcopy(world.doc)
    doc["regions"][REGION]["anchors"] = list(doc["regions"][SAME_PROVINCE]["anchors"])
    doc["regions"][REGION]["issuers"] = []
    m = world.material[SAME_PROVINCE]
    signer = make_issuer(REGION, "ES256", m.anchor_key, m.anchor, 4243, NOW - dt.timedelta(days=1),
                         NOW + dt.timedelta(days=10), "provincial")
    return build_snapshot(doc, world.regions), signer


def test_x5c_licence_of_a_region_sharing_its_provincial_anchor_is_judged_for_the_region_it_names(
        world, status, provincial) -> None:
    trust, signer = provincial
    assert trust.regions[REGION].anchors[0].der == trust.regions[SAME_PROVINCE].anchors[0].der
    result = verify(world, x5c_licence(world, REGION, signer.private_key, [signer.cert.der]), status, trust)
    assert result.verdict.value == "valid", result.reason_codes
    assert result.region.code == REGION
    # control: the other region's licences through the same anchor still verify as that region's
    other = world.material[SAME_PROVINCE]
    fresh = make_issuer(SAME_PROVINCE, "ES256", other.anchor_key, other.anchor, 4244, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=10), "provincial-2")
    result = verify(world, x5c_licence(world, SAME_PROVINCE, fresh.private_key, [fresh.cert.der]), status, trust)
    assert result.verdict.value == "valid" and result.region.code == SAME_PROVINCE


def test_naming_a_region_that_shares_the_anchor_does_not_lift_the_area_binding(world, status, provincial) -> None:
    """The named region is the one judged: a licence whose area code belongs to the other region is refused."""
    trust, signer = provincial
    header, payload = genuine_parts(world, REGION)
    payload[world.specs[REGION].fields["area_code"]] = SAME_PROVINCE   # the other region's area code
    del header["kid"]
    header["x5c"] = [base64.b64encode(signer.cert.der).decode()]
    result = verify(world, es256(header, payload, signer.private_key), status, trust)
    assert result.verdict.value == "invalid"
    assert result.region.code == REGION and "ISSUER_REGION_MISMATCH" in result.reason_codes


# --- 6. the header and signer-certificate caches keep no large presented bytes --------------------------------
def test_distinct_large_headers_are_not_retained_by_the_caches(world, status) -> None:
    """A header is decoded and cached before any signature check; 1,024 distinct 256-KB headers (an x5c
    "certificate" of junk) were kept, with their x5c bytes, by the JWS header cache and the core's signer
    key-id cache: ~0.5 GB per worker for requests that were all refused."""
    genuine = world.simulator.issue(REGION, None, "valid", NOW).data
    _, p64, s64 = genuine.split(b".")
    assert verify(world, genuine, status).verdict.value == "valid"   # control
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            junk = base64.b64encode(i.to_bytes(4, "big") + bytes(60_000)).decode()
            header = {"alg": "ES256", "typ": "elicence+jwt", "iss": REGION, "x5c": [junk]}
            result = verify(world, b64u(orjson.dumps(header)) + b"." + p64 + b"." + s64, status)
            assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
        del result
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 4_000_000, f"{retained} bytes kept after 200 refused 80-KB licences"
    # control: a genuine licence naming its signer by x5c still verifies (and its small header is cached)
    m = world.material[REGION]
    fresh = make_issuer(REGION, "ES256", m.anchor_key, m.anchor, 4245, NOW - dt.timedelta(days=1),
                        NOW + dt.timedelta(days=10), "x5c-cache")
    data = x5c_licence(world, REGION, fresh.private_key, [fresh.cert.der])
    for _ in range(2):
        assert verify(world, data, status).verdict.value == "valid"
