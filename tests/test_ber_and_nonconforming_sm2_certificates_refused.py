"""SM2 certificates and GB/T 38540 signatures must be DER and conform, or the licence is MALFORMED.

asn1crypto, which reads both, also reads BER. Before session 17 (measured on the commit before):

* a genuine SES_Signature with only its outer SEQUENCE re-encoded (indefinite length, or a length
  in more bytes than needed): its TBS_Sign unchanged, so the licence was *valid*;
* a Type=Sign licence whose SM2 signer certificate, signed by the region's own anchor, had a negative
  serial number (RFC 5280 4.1.2.2: positive), was version 1 yet carried extensions (4.1.2.9: v3
  only), or had a UTF8String name that is not UTF-8 (shown as hex): *valid*;
* the SM2 certificate reader itself read the genuine certificate re-encoded in BER (the TBS bytes
  unchanged, so the anchor's signature still verifies: one certificate, a second key id). A
  licence's signer certificate first passes cryptography's strict DER reader, which refused it
  already; the seal maker's certificate goes to the SM2 reader directly.

Each attack below is applied to the genuine TEST material, re-signed by the region's own anchor or
issuer key where its content changes, so that only the rule under test can refuse it; every test has
the genuine control beside it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adapters.ofd.container import read_ofd_package
from adapters.ofd.ses import SesFormatError, parse_ses_signature
from gateway.crypto.der import der_problem
from gateway.crypto.sm2cert import _to_der, load_sm2_certificate
from tests.conftest import NOW
from tests.test_hostile_input_never_internal import (
    Tlv, certificate_variants, ofd_resigned, oid, rereferenced)
from tests.test_ofd_vectors import VECTORS as VECTOR_DIR

OFD_SIGN, OFD_SEAL = "500102", "310000"   # an OFD Type=Sign region, an OFD Type=Seal region (SM2 both)
SIGN_DIR = "Doc_0/Signs/Sign_0"
SIGNER_CERT, SIG_XML, SIGNED_VALUE = f"{SIGN_DIR}/SignerCert.der", f"{SIGN_DIR}/Signature.xml", f"{SIGN_DIR}/SignedValue.dat"


# --- the re-encodings: same content, another (BER) encoding ----------------------------------
def _outer(der: bytes) -> tuple[int, bytes]:
    """(header length, contents) of a DER element with a long-form length."""
    assert der[0] == 0x30 and der[1] & 0x80, der[:4].hex()
    k = der[1] & 0x7F
    return 2 + k, der[2 + k:]


def indefinite_length_outer_sequence(der: bytes) -> bytes:
    _, body = _outer(der)
    return b"\x30\x80" + body + b"\x00\x00"


def length_padded_with_a_zero_byte(der: bytes) -> bytes:
    _, body = _outer(der)
    n = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | (len(n) + 1)]) + b"\x00" + n + body


BER_REENCODINGS = {f.__name__: f for f in (indefinite_length_outer_sequence, length_padded_with_a_zero_byte)}


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


def _verify(world, status, data: bytes):
    return world.verifier.verify(data, world.snapshot, status, NOW)


def _type_sign_with_signer_cert(world, cert_der: bytes) -> bytes:
    """An OFD Type=Sign licence carrying ``cert_der`` as its signer certificate, its References and
    SignedValue made again (by the region's TEST issuer key), so only the certificate differs."""
    files = dict(read_ofd_package(world.simulator.issue(OFD_SIGN, None, "valid", NOW).data).files)
    files[SIGNER_CERT] = cert_der
    files[SIG_XML] = rereferenced(files, SIG_XML)
    return ofd_resigned(world, OFD_SIGN, files)


# --- the DER rules themselves ------------------------------------------------------------------
def test_every_real_world_certificate_and_signature_is_der() -> None:
    """The independent implementation's files (tests/test_ofd_shared_vectors.py) pass the DER rules."""
    import zipfile

    checked = 0
    for pem in sorted(Path(VECTOR_DIR).glob("*.pem")):
        assert der_problem(_to_der(pem.read_bytes())) is None, pem.name
        checked += 1
    for ofd in sorted(Path(VECTOR_DIR).glob("*.ofd")):
        with zipfile.ZipFile(ofd) as z:
            for name in z.namelist():
                if name.endswith(("SignedValue.dat", ".esl")):
                    assert der_problem(z.read(name)) is None, (ofd.name, name)
                    checked += 1
    assert checked >= 6


@pytest.mark.parametrize(("attack", "encoding", "named"), [
    ("indefinite length", "3080020101" "0000", "indefinite length at offset 0"),
    ("end-of-contents inside a definite element", "30040000" "0000", "end-of-contents octets at offset 2"),
    ("long form for a 3-byte length", "308103020101", "length 3 not in its shortest form"),
    ("length padded with a zero byte", "30820003020101", "not in its shortest form"),
    ("five length bytes", "30850000000003020101", "length of 5 bytes"),
    ("constructed OCTET STRING pieces", "2406" "040161" "040162", "constructed universal type 4"),
    ("constructed UTF8String pieces", "2c03" "0c0161", "constructed universal type 12"),
    ("bytes after the element", "3003020101" "ff", "1 bytes after the element"),
    ("two elements", "3000" "3000", "bytes after the element"),
    ("inner element running past its container", "3003020201", "runs past its container"),
    ("truncated header", "30", "truncated"),
    ("multi-byte tag", "1f8101" "00", "multi-byte tag"),
    ("empty", "", "empty input"),
])
def test_each_ber_form_is_named(attack, encoding, named) -> None:
    problem = der_problem(bytes.fromhex(encoding))
    assert problem is not None and named in problem, (attack, problem)


def test_der_forms_pass_and_nesting_is_bounded() -> None:
    assert der_problem(bytes.fromhex("3000")) is None
    assert der_problem(bytes.fromhex("3106" "020101" "020102")) is None              # SET: constructed allowed
    assert der_problem(bytes.fromhex("a003" "020102")) is None                      # context [0] constructed
    assert der_problem(b"\x04\x81\x80" + b"a" * 128) is None                       # long form where needed
    nested = b"\x30\x00"
    for _ in range(70):
        nested = b"\x30" + bytes([len(nested)]) + nested if len(nested) < 0x80 else \
            b"\x30\x81" + bytes([len(nested)]) + nested
    assert "nested deeper than 64" in der_problem(nested)


# --- certificates ------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", sorted(BER_REENCODINGS))
def test_the_genuine_sm2_certificate_in_ber_is_malformed(world, attack) -> None:
    genuine = world.material[OFD_SIGN].issuers[-1].cert.der
    ber = BER_REENCODINGS[attack](genuine)
    assert ber != genuine and load_sm2_certificate(genuine).tbs_der in ber   # the signed part unchanged
    with pytest.raises(ValueError, match="malformed") as caught:
        load_sm2_certificate(ber)
    assert "not in its shortest form" in str(caught.value) or "indefinite length" in str(caught.value)


@pytest.mark.parametrize("attack", sorted(BER_REENCODINGS))
def test_a_type_sign_licence_whose_signer_certificate_is_in_ber_is_malformed_not_valid(world, status, attack) -> None:
    # (already so before session 17, by cryptography's reader: kept as the licence-level regression test)
    genuine = world.material[OFD_SIGN].issuers[-1].cert.der
    assert _verify(world, status, _type_sign_with_signer_cert(world, genuine)).verdict.value == "valid"   # control
    result = _verify(world, status, _type_sign_with_signer_cert(world, BER_REENCODINGS[attack](genuine)))
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",), result.reason_codes
    assert "certificate" in result.reasons[0].detail


def _conformance_variant(world, change) -> bytes:
    """The genuine OFD_SIGN issuer certificate with ``change`` made to its TBS, signed again by the
    region's anchor (tests/test_hostile_input_never_internal.certificate_variants)."""
    material = world.material[OFD_SIGN]
    return dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key,
                                     {"attack": change}))["certificate attack"]


def _subject_cn(tbs: list[Tlv], value: Tlv) -> None:
    subject = tbs[5]   # version, serial, signature, issuer, validity, subject
    for rdn in subject.content:
        for attr in rdn.content:
            if attr.content[0].content == oid("2.5.4.3"):
                attr.content[1] = value
                return
    raise AssertionError("no CN in the subject")


#: each a certificate a conforming issuer never makes, which asn1crypto reads without complaint
NONCONFORMING = {
    "negative_serial_number": (lambda tbs: tbs.__setitem__(1, Tlv(0x02, b"\xff\x01")), "serial number is negative"),
    "version_1_certificate_carrying_extensions": (lambda tbs: tbs.pop(0), "carries extensions"),
    "utf8string_common_name_that_is_not_utf8": (lambda tbs: _subject_cn(tbs, Tlv(0x0C, b"\xff\xfe\x41")),
                                               "not valid UTF8String"),
}


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")   # cryptography's, expected
@pytest.mark.parametrize("attack", sorted(NONCONFORMING))
def test_a_nonconforming_sm2_certificate_is_malformed(world, status, attack) -> None:
    change, named = NONCONFORMING[attack]
    der = _conformance_variant(world, change)
    assert der_problem(der) is None                          # DER all right: the content is what is wrong
    with pytest.raises(ValueError, match=named):
        load_sm2_certificate(der)
    result = _verify(world, status, _type_sign_with_signer_cert(world, der))
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",), result.reason_codes
    assert named in result.reasons[0].detail


def test_the_anchor_re_signed_control_certificate_is_valid(world, status) -> None:
    """The re-signing itself (no change) keeps a licence valid: the tests above fail on their change only."""
    der = _conformance_variant(world, lambda tbs: None)
    assert format(load_sm2_certificate(der).serial, "x") == world.material[OFD_SIGN].issuers[-1].cert.serial_hex
    assert _verify(world, status, _type_sign_with_signer_cert(world, der)).verdict.value == "valid"


# --- GB/T 38540 signatures ---------------------------------------------------------------------
@pytest.mark.parametrize("attack", sorted(BER_REENCODINGS))
def test_a_seal_licence_whose_ses_signature_is_in_ber_is_malformed_not_valid(world, status, attack) -> None:
    files = dict(read_ofd_package(world.simulator.issue(OFD_SEAL, None, "valid", NOW).data).files)
    genuine = files[SIGNED_VALUE]
    assert _verify(world, status, ofd_resigned(world, OFD_SEAL, files)).verdict.value == "valid"   # control
    ber = BER_REENCODINGS[attack](genuine)
    assert parse_ses_signature(genuine).tbs_der in ber      # the signed TBS_Sign unchanged
    with pytest.raises(SesFormatError, match="not DER"):
        parse_ses_signature(ber)
    from adapters.ofd.container import write_ofd_package

    result = _verify(world, status, write_ofd_package({**files, SIGNED_VALUE: ber}, NOW))
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",), result.reason_codes
    assert "not DER" in result.reasons[0].detail


def test_an_x5c_es256_certificate_with_a_negative_serial_is_malformed_too(world, status) -> None:
    """The same rule for the certificates cryptography reads (it only warns, for now)."""
    import base64
    import warnings

    import orjson

    from tests.test_hostile_input_never_internal import b64u_decode, jws_token

    region = "341100"
    material = world.material[region]
    header = orjson.loads(b64u_decode(world.simulator.issue(region, None, "valid", NOW).data.split(b".")[0]))
    header = {k: v for k, v in header.items() if k != "kid"}
    variants = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key, {
        "attack": NONCONFORMING["negative_serial_number"][0], "control": lambda tbs: None}))
    for label, verdict, reasons in (("certificate control", "valid", ()), ("certificate attack", "invalid", ("MALFORMED",))):
        token = jws_token(world, region, {**header, "x5c": [base64.b64encode(variants[label]).decode()]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # cryptography's deprecation warning on the negative serial
            result = _verify(world, status, token)
        assert (result.verdict.value, result.reason_codes) == (verdict, reasons), (label, result.reasons)
    assert "serial number is negative" in result.reasons[0].detail
