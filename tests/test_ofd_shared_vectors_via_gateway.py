"""The shared OFD vectors (signed by two independent SM2 seal implementations) through the gateway.

How a signed OFD that is not an e-licence is reported (decided in adapters/ofd_seal.py):
through the licence verifier, container, issuer, algorithm and signature checks run as for
any licence, then ``normalise`` fails with FIELD_INVALID naming the missing licence data
part; ``gateway.core.SIGNATURE_ONLY_CHECKS`` judges the document as signed (trust, format,
issuer, algorithm, signature, issuer certificate) and is what "valid as signed" means here.

Signing time versus now: under the default policy ("signing-time") the signer certificate
must have been valid when the seal was applied (TBS_Sign.timeInfo; SignatureDateTime for a
Type=Sign signature) and its later expiry is a note, ISSUER_CERT_EXPIRED_SINCE_SIGNING;
under policy "now" it must be valid now as well, so the vectors are ISSUER_CERT_EXPIRED.

DigitalSign.ofd is a bare Type=Sign signature that names no certificate; its producer
hands the certificate over separately. The gateway reads a Type=Sign signer certificate
from ``<signature folder>/SignerCert.der`` in the package, so the test adds the published
certificate there (no signed byte changes) -- and without it the file is UNKNOWN_ISSUER.
"""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from adapters import Limits
from adapters.ofd_seal import OfdSealFamily
from gateway.core import SIGNATURE_ONLY_CHECKS, Verifier
from gateway.edges import MemoryTrustSource
from gateway.trust import build_snapshot, load_certificate


VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.exists():  # the work tree may live elsewhere; the shared folder is beside it
    VECTORS = Path("/work/shared/vectors/ofd")
TEST_REGION = "500102"  # an ofd-seal region; its test trust adds the ofdrw TEST root as an anchor
FAMILY = OfdSealFamily()


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def rezip(data: bytes, changes: dict[str, bytes]) -> bytes:
    """Same entries in the same order, some contents replaced or added."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info, changes.get(info.filename, src.read(info)))
        for name, content in changes.items():
            if name not in src.namelist():
                out.writestr(name, content)
    return buf.getvalue()


def digital_sign_with_cert() -> bytes:
    return rezip(vector("DigitalSign.ofd"), {"Doc_0/Signs/Sign_0/SignerCert.der": vector("ofdrw-test-signer-2020.pem")})


VECTOR_FILES = {"allprotected.ofd": lambda: vector("allprotected.ofd"), "v4signed.ofd": lambda: vector("v4signed.ofd"),
                "DigitalSign.ofd": digital_sign_with_cert}


@pytest.fixture(scope="module")
def test_trust(world):
    doc = dict(world.doc)
    regions = dict(doc["regions"])
    region = dict(regions[TEST_REGION])
    region["anchors"] = [*region["anchors"], vector("ofdrw-test-root.pem").decode()]
    regions[TEST_REGION] = region
    doc["regions"] = regions
    snap = build_snapshot(doc, world.regions)
    assert snap.dropped == ()
    return snap


def body(data: bytes) -> dict:
    return {"licence": base64.b64encode(data).decode(), "encoding": "base64"}


async def post(client, data: bytes) -> dict:
    resp = await client.post("/v1/licences/verify", json=body(data))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def signature_only(world, **policy) -> Verifier:
    return Verifier(replace(world.verifier.policy, **policy), world.specs, world.verifier.type_names,
                    checks=SIGNATURE_ONLY_CHECKS)


@pytest.mark.parametrize("name", sorted(VECTOR_FILES))
def test_vector_integrity_and_signature_verify_with_its_own_certificate(name):
    env = FAMILY.open(VECTOR_FILES[name](), Limits())
    assert env.family == "ofd-seal" and env.algorithm == "SM2" and len(env.key_ref.chain) == 1
    assert FAMILY.verify(env, load_certificate(env.key_ref.chain[0])) is True
    assert env.extra["no_licence_data"]  # signed documents, not licences


@pytest.mark.parametrize("name", sorted(VECTOR_FILES))
async def test_vector_chain_is_untrusted_while_its_root_is_not_an_anchor(api, name):
    result = await post(api, VECTOR_FILES[name]())
    assert result["verdict"] == "invalid"
    assert [r["code"] for r in result["reasons"]] == ["UNTRUSTED_CHAIN"]
    assert result["checks"]["format"] == "pass" and result["format"] == "ofd-seal"


@pytest.mark.parametrize("name", ["allprotected.ofd", "DigitalSign.ofd"])
async def test_vector_is_valid_as_signed_with_the_test_root_as_anchor_and_notes_expiry(client_for, world, test_trust,
                                                                                         name):
    client = await client_for(trust_source=MemoryTrustSource(test_trust), verifier=signature_only(world))
    result = await post(client, VECTOR_FILES[name]())
    assert result["verdict"] == "valid", result["reasons"]
    assert result["checks"] == {"trust": "pass", "format": "pass", "issuer": "pass", "algorithm": "pass",
                                "signature": "pass", "issuer_certificate": "pass"}
    assert result["region"]["code"] == TEST_REGION
    assert [n["code"] for n in result["notes"]] == ["ISSUER_CERT_EXPIRED_SINCE_SIGNING"]
    assert "2022-04-21" in result["notes"][0]["message"]
    assert result["signing_time"].startswith("2020-")


@pytest.mark.parametrize("name", ["allprotected.ofd", "DigitalSign.ofd"])
async def test_vector_under_policy_now_is_issuer_cert_expired(client_for, world, test_trust, name):
    client = await client_for(trust_source=MemoryTrustSource(test_trust),
                              verifier=signature_only(world, issuer_time_policy="now"))
    result = await post(client, VECTOR_FILES[name]())
    assert result["verdict"] == "invalid"
    assert [r["code"] for r in result["reasons"]] == ["ISSUER_CERT_EXPIRED"]
    assert result["checks"]["signature"] == "pass"


async def test_vector_through_the_licence_verifier_passes_signature_then_reports_no_licence_data(client_for,
                                                                                               test_trust):
    client = await client_for(trust_source=MemoryTrustSource(test_trust))
    result = await post(client, vector("allprotected.ofd"))
    assert result["verdict"] == "invalid"
    assert result["checks"]["signature"] == "pass" and result["checks"]["normalise"] == "fail"
    assert [r["code"] for r in result["reasons"]] == ["FIELD_INVALID"]
    assert "licence data part" in result["reasons"][0]["detail"]


async def test_v4signed_stays_untrusted_even_with_the_ofdrw_root_as_anchor(client_for, world, test_trust):
    client = await client_for(trust_source=MemoryTrustSource(test_trust), verifier=signature_only(world))
    result = await post(client, vector("v4signed.ofd"))
    assert [r["code"] for r in result["reasons"]] == ["UNTRUSTED_CHAIN"]  # a tax-authority test CA, not ofdrw's


async def test_digital_sign_without_its_certificate_is_unknown_issuer(client_for, world, test_trust):
    client = await client_for(trust_source=MemoryTrustSource(test_trust), verifier=signature_only(world))
    result = await post(client, vector("DigitalSign.ofd"))
    assert [r["code"] for r in result["reasons"]] == ["UNKNOWN_ISSUER"]
    assert "SignerCert.der" in result["reasons"][0]["detail"]


def protected_parts(data: bytes) -> list[str]:
    env = FAMILY.open(data, Limits())
    sx = env.extra["sx"]
    parts = [r.path for r in sx.references] + [env.extra["signature_path"], sx.signed_value_path]
    return sorted(set(parts + ([sx.seal_path] if sx.seal_path else [])))


#: parts the reader itself parses: a flipped byte there may already break the syntax
STRUCTURAL = ("OFD.xml", "Signatures.xml", "Signature.xml", "SignedValue.dat")


@pytest.mark.parametrize("name", ["allprotected.ofd", "DigitalSign.ofd"])
async def test_one_byte_change_anywhere_in_a_protected_part_is_caught(client_for, world, test_trust, name):
    original = VECTOR_FILES[name]()
    src = zipfile.ZipFile(io.BytesIO(original))
    client = await client_for(trust_source=MemoryTrustSource(test_trust), verifier=signature_only(world))
    parts = protected_parts(original)
    assert len(parts) >= 5
    bodies, labels = [], []
    for part in parts:
        content = src.read(part)
        for pos in sorted({0, len(content) // 3, len(content) // 2, len(content) - 1}):
            altered = content[:pos] + bytes([content[pos] ^ 0x01]) + content[pos + 1:]
            bodies.append(body(rezip(original, {part: altered})))
            labels.append((part, pos))
    resp = await client.post("/v1/licences/verify-batch", json={"licences": bodies})
    results = (await resp.json())["results"]
    for (part, pos), result in zip(labels, results, strict=True):
        codes = [r["code"] for r in result["reasons"]]
        assert result["verdict"] == "invalid", (part, pos)
        if part.endswith(STRUCTURAL):
            assert codes[0] in ("SIGNATURE_INVALID", "MALFORMED", "UNKNOWN_ISSUER", "UNTRUSTED_CHAIN"), (part, pos)
        else:
            assert codes == ["SIGNATURE_INVALID"], (part, pos, codes)
            assert part in result["reasons"][0]["detail"], (part, pos)
