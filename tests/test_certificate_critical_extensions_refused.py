"""A certificate marking critical an extension the gateway does not process is never trusted.

RFC 5280, 4.2: a certificate-using system MUST reject a certificate with a critical extension it does
not recognise or cannot process. The gateway processes basicConstraints and keyUsage; a critical name
constraint, policy constraint or vendor extension would restrict the certificate in ways it does not
check. Each certificate below is the genuine issuer certificate with one extension added, signed
again by the region's own anchor -- same key, same chain -- so only the critical flag can refuse it:
before session 16 every one was accepted."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest

from adapters.ofd.container import read_ofd_package, write_ofd_package
from gateway.trust import PROCESSED_CRITICAL, build_snapshot, load_certificate
from tests.conftest import NOW
from tests.test_hostile_input_never_internal import (
    Tlv, _extension, _with_extension, b64u_decode, certificate_variants, jws_token, ofd_resigned,
    oid, rereferenced)

JWS_ES256, OFD_SIGN = "341100", "500102"   # an ES256 region (x5c chains), an OFD Type=Sign region (SM2)
SIGNER_CERT = "Doc_0/Signs/Sign_0/SignerCert.der"

#: each the attack of a certificate whose restriction the gateway would otherwise ignore
CRITICAL_ATTACKS = {
    "unknown critical extension": None,                      # as the fuzzer's table has it
    "critical name constraints (permitted: example.test)": _with_extension(_extension(
        "2.5.29.30", Tlv(0x30, [Tlv(0xA0, [Tlv(0x30, [Tlv(0x82, b"example.test")])])]), critical=True)),
    "critical extended key usage (serverAuth only)": _with_extension(_extension(
        "2.5.29.37", Tlv(0x30, [Tlv(0x06, oid("1.3.6.1.5.5.7.3.1"))]), critical=True)),
}


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


def variant(world, region: str, attack: str) -> bytes:
    material = world.material[region]
    change = CRITICAL_ATTACKS[attack]
    if change is None:
        return dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key))[f"certificate {attack}"]
    return dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key,
                                     {attack: change}))[f"certificate {attack}"]


@pytest.mark.parametrize("attack", sorted(CRITICAL_ATTACKS))
@pytest.mark.parametrize("region", [JWS_ES256, OFD_SIGN])
def test_the_certificate_is_read_and_its_unprocessed_critical_extensions_named(world, region, attack) -> None:
    cert = load_certificate(variant(world, region, attack))
    assert cert.unprocessed_critical and not set(cert.unprocessed_critical) & PROCESSED_CRITICAL
    genuine = world.material[region].issuers[-1].cert
    assert genuine.unprocessed_critical == ()            # basicConstraints and keyUsage critical: processed
    assert cert.issued_by(world.snapshot.regions[region].anchors[0])   # still chains: only the flag refuses it


@pytest.mark.parametrize("attack", sorted(CRITICAL_ATTACKS))
def test_x5c_signer_certificate_with_an_unprocessed_critical_extension_is_an_untrusted_chain(world, status,
                                                                                            attack) -> None:
    header = orjson.loads(b64u_decode(world.simulator.issue(JWS_ES256, None, "valid", NOW).data.split(b".")[0]))
    header = {k: v for k, v in header.items() if k != "kid"}
    genuine = world.material[JWS_ES256].issuers[-1].cert.der
    control = world.verifier.verify(jws_token(world, JWS_ES256, {**header, "x5c": [base64.b64encode(genuine).decode()]}),
                                    world.snapshot, status, NOW)
    assert control.verdict.value == "valid"           # the same token with the genuine certificate
    cert = variant(world, JWS_ES256, attack)
    result = world.verifier.verify(jws_token(world, JWS_ES256, {**header, "x5c": [base64.b64encode(cert).decode()]}),
                                   world.snapshot, status, NOW)
    assert result.verdict.value == "invalid" and result.reason_codes == ("UNTRUSTED_CHAIN",)
    assert "critical" in result.reasons[0].detail and "RFC 5280" in result.reasons[0].detail


@pytest.mark.parametrize("attack", sorted(CRITICAL_ATTACKS))
def test_ofd_signer_certificate_with_an_unprocessed_critical_extension_is_an_untrusted_chain(world, status,
                                                                                            attack) -> None:
    files = dict(read_ofd_package(world.simulator.issue(OFD_SIGN, None, "valid", NOW).data).files)
    sig_xml = "Doc_0/Signs/Sign_0/Signature.xml"
    control = world.verifier.verify(ofd_resigned(world, OFD_SIGN, {**files, sig_xml: rereferenced(files, sig_xml)}),
                                    world.snapshot, status, NOW)
    assert control.verdict.value == "valid"           # re-signed with the genuine certificate
    files[SIGNER_CERT] = variant(world, OFD_SIGN, attack)
    data = ofd_resigned(world, OFD_SIGN, {**files, sig_xml: rereferenced(files, sig_xml)})
    result = world.verifier.verify(data, world.snapshot, status, NOW)
    assert result.verdict.value == "invalid" and result.reason_codes == ("UNTRUSTED_CHAIN",)
    assert "critical" in result.reasons[0].detail


@pytest.mark.parametrize("region", [JWS_ES256, OFD_SIGN])
def test_trust_list_issuer_with_an_unprocessed_critical_extension_is_dropped_with_its_reason(world, region) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = variant(world, region, "unknown critical extension")
    try:
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
    except ValueError:   # an SM2 certificate: cryptography cannot load its key, so PEM by hand
        pem = ("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n")
    doc = orjson.loads(orjson.dumps(world.doc))
    doc["regions"][region]["issuers"] = [pem]
    snapshot = build_snapshot(doc, world.regions)
    assert snapshot.regions[region].issuers == ()
    assert any(d.region == region and "critical" in d.reason for d in snapshot.dropped), snapshot.dropped
    assert load_certificate(der).key_id not in snapshot.by_key_id
