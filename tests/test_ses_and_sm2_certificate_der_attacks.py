"""A second adversarial pass over the DER / ASN.1 layer: SES signatures and seals, SM2 certificates, SM2 keys.

Each attack is judged through ``Verifier.verify`` (and once through the HTTP API), beside a genuine control
that stays valid. What the gateway answered before the fix (measured with the fix reverted):

* a SignedValue.dat of ``SEQUENCE { SEQUENCE { INTEGER of 2,000 bytes } }`` -- no signature needed: the
  version check printed the number, past Python's int -> str limit: ``indeterminate`` / INTERNAL;
* the SES_Signature's signature BIT STRING (outside TBS_Sign: anyone can re-encode it) declaring unused
  bits: asn1crypto dropped them, so a second SignedValue.dat for one signature was ``valid``; the same for
  the timeStamp, and for TBS_Sign.dataHash as an issuer wrote it;
* a GeneralizedTime without "Z" (a local time of no stated zone) or with an offset, in TBS_Sign.timeInfo or
  a seal's validity: DER forbids both; the first was read as UTC (eight hours off for a Beijing signer):
  ``valid``;
* data appended inside the SES_Signature's outer SEQUENCE (an OCTET STRING, a [1] element, a second timeStamp:
  outside TBS_Sign, so anyone can): asn1crypto keeps elements past a SEQUENCE's last field aside, unread:
  ``valid``; the same inside TBS_Sign, the SESeal, SES_SealInfo and its picture, as an issuer would sign them;
* TBS_Sign.extDatas holding BER (an indefinite length), or no ExtensionDatas at all (a SEQUENCE of INTEGERs,
  a primitive [0]): the fast walk did not look inside, asn1crypto never read it: ``valid``;
* an SM2 certificate re-encoded outside its signed part -- its SM2 signature as raw ``r || s``, its outer
  AlgorithmIdentifier with parameters the TBS does not name, its signature BIT STRING with an unused bit:
  the same certificate (TBS and signature unchanged) as another byte string, another key id: ``valid``;
* an SM2 certificate with data after its signature (not signed; as a seal maker's certificate, which only the
  SM2 reader reads), or an extension value read here followed by more (a keyUsage BIT STRING, then a second
  one naming keyCertSign; a basicConstraints with an extra element): read without it: ``valid``;
* an SM2 certificate naming an extension twice (asn1crypto kept the last; RFC 5280 4.2 allows one):
  ``valid`` (keyUsage: keyCertSign first, digitalSignature last);
* an SM2 key whose SubjectPublicKeyInfo names the SM2 algorithm with the P-256 curve as parameters, or whose
  BIT STRING declares an unused bit: read as the SM2 key anyway: ``valid``;
* an SM2 certificate whose validity is a GeneralizedTime without "Z": asn1crypto gave a naive time, which
  ``astimezone`` read in the *server's* time zone -- as a seal maker's certificate (the one certificate
  only the SM2 reader reads) ``valid`` under UTC and ``indeterminate`` / INTERNAL (OverflowError) for
  9999-12-31 on a server west of UTC.

What was tried and held (``test_what_held_stays_so``): r or s = 0, = n, > n, n - 1, n - s, raw and DER;
lengths claiming 4 GB, 2^63, a 1-GB OCTET STRING; 10,000 indefinite and 200 definite nested SEQUENCEs;
empty and one-byte SignedValue; a GM/T 0031 v1 layout with version 4 (MALFORMED) and 1 (UNSUPPORTED_FORMAT);
v4 with version 1 or 3; keys compressed, hybrid, at infinity, off the curve, a P-256 point, P-256 parameters
under id-ecPublicKey; UTCTime 1950 / 2049, GeneralizedTime 2050. All TEST keys."""

from __future__ import annotations

import base64
import datetime as dt
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.ofd.build import build_sealed_ofd
from adapters.ofd.container import read_ofd_package, write_ofd_package
from adapters.ofd.ses import SesFormatError, _parse_asn1, _parse_plain, parse_ses_signature
from adapters.ofd_seal import DATA_PART
from gateway.crypto.der import der_problem
from gateway.crypto.sm2 import SM2_N, SM2PrivateKey, _der_int, der_to_raw_signature, sm2_sign, sm3
from gateway.crypto.sm2cert import _to_der, load_sm2_certificate, verify_issued_by
from tests.conftest import NOW
from tests.test_hostile_input_never_internal import (
    Tlv, _extension, _validity, certificate_variants, der_dump, der_length, der_parse, oid, ofd_resigned,
    rereferenced)
from tests.test_ofd_vectors import VECTORS as VECTOR_DIR

SEAL_REGION, SIGN_REGION = "310000", "500102"   # an OFD Type=Seal region, an OFD Type=Sign region (SM2 both)
SIGN_DIR = "Doc_0/Signs/Sign_0"
SIGNED_VALUE, SEAL_ESL = f"{SIGN_DIR}/SignedValue.dat", f"{SIGN_DIR}/Seal.esl"
SIG_XML, SIGNER_CERT = f"{SIGN_DIR}/Signature.xml", f"{SIGN_DIR}/SignerCert.der"
OID_EC, OID_SM2_CURVE, OID_P256 = oid("1.2.840.10045.2.1"), oid("1.2.156.10197.1.301"), oid("1.2.840.10045.3.1.7")

#: hostile certificates make cryptography warn (negative serials...): expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


def _verify(world, status, data: bytes) -> tuple[str, tuple[str, ...], str]:
    result = world.verifier.verify(data, world.snapshot, status, NOW)
    return result.verdict.value, result.reason_codes, "; ".join(r.detail or "" for r in result.reasons)


def _seal_files(world) -> dict[str, bytes]:
    return dict(read_ofd_package(world.simulator.issue(SEAL_REGION, None, "valid", NOW).data).files)


def _resealed(world, files: dict[str, bytes], tbs_change=None, seal_info_change=None, seal_change=None) -> bytes:
    """The Type=Seal package with TBS_Sign (children: version, eseal, timeInfo, dataHash, propertyInfo[, extDatas]),
    SES_SealInfo (header, esID, property, picture) and / or the SESeal itself (esealInfo, cert, signAlgID,
    signedValue) changed, then made consistent and signed again by the region's TEST issuer key, as an issuer
    would: the maker's signature (the simulator's maker is the issuer), Seal.esl, the References, dataHash and
    the signature over TBS_Sign."""
    key = world.material[SEAL_REGION].issuers[-1]
    files = dict(files)
    tree = der_parse(files[SIGNED_VALUE])
    ses = tree[0].content
    tbs = ses[0].content
    eseal = tbs[1].content
    if seal_info_change is not None or seal_change is not None:
        if seal_info_change is not None:
            seal_info_change(eseal[0].content)
        eseal[3] = Tlv(0x03, b"\0" + sm2_sign(key.private_key, der_dump(eseal[:1])))
        if seal_change is not None:
            seal_change(eseal)
        files[SEAL_ESL] = der_dump([tbs[1]])
        files[SIG_XML] = rereferenced(files, SIG_XML)
        tbs[3] = Tlv(0x03, b"\0" + sm3(files[SIG_XML]))
    if tbs_change is not None:
        tbs_change(tbs)
    ses[3] = Tlv(0x03, b"\0" + sm2_sign(key.private_key, der_dump([ses[0]])))
    files[SIGNED_VALUE] = der_dump(tree)
    return write_ofd_package(files, NOW)


def _with_signed_value(files: dict[str, bytes], signed_value: bytes) -> bytes:
    return write_ofd_package({**files, SIGNED_VALUE: signed_value}, NOW)


def _type_sign(world, cert_der: bytes, signer: SM2PrivateKey | None = None) -> bytes:
    """A Type=Sign licence carrying ``cert_der`` as its signer certificate, its References and SignedValue made
    again (by the region's TEST issuer key, or ``signer``), so only the certificate differs."""
    files = dict(read_ofd_package(world.simulator.issue(SIGN_REGION, None, "valid", NOW).data).files)
    files[SIGNER_CERT] = cert_der
    files[SIG_XML] = rereferenced(files, SIG_XML)
    if signer is None:
        return ofd_resigned(world, SIGN_REGION, files)
    return write_ofd_package({**files, SIGNED_VALUE: sm2_sign(signer, files[SIG_XML])}, NOW)


# --- SES_Signature ------------------------------------------------------------------------------------------
def test_ses_version_integer_of_thousands_of_digits_is_malformed_not_internal(world, status) -> None:
    files = _seal_files(world)
    assert _verify(world, status, _with_signed_value(files, files[SIGNED_VALUE]))[0] == "valid"   # control
    hostile = der_dump([Tlv(0x30, [Tlv(0x30, [Tlv(0x02, b"\x01" * 2000)])])])
    verdict, reasons, detail = _verify(world, status, _with_signed_value(files, hostile))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "INTEGER of 2000 bytes" in detail


async def test_ses_version_integer_of_thousands_of_digits_through_the_http_api(api, world) -> None:
    files = _seal_files(world)
    for signed_value, verdict, codes in ((files[SIGNED_VALUE], "valid", []),
                                         (der_dump([Tlv(0x30, [Tlv(0x30, [Tlv(0x02, b"\x7f" * 3000)])])]),
                                          "invalid", ["MALFORMED"])):
        body = {"licence": base64.b64encode(_with_signed_value(files, signed_value)).decode(), "encoding": "base64"}
        resp = await api.post("/v1/licences/verify", json=body)
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        assert (answer["verdict"], [r["code"] for r in answer["reasons"]]) == (verdict, codes), answer["reasons"]


def _even_signature_package(world, files: dict[str, bytes]) -> tuple[dict[str, bytes], bytes]:
    """The package re-signed until the SM2 signature's last octet is even (one unused bit then drops a 0)."""
    for _ in range(64):
        data = _resealed(world, files)
        package = dict(read_ofd_package(data).files)
        signature = der_parse(package[SIGNED_VALUE])[0].content[3].content[1:]
        if signature[-1] & 1 == 0:
            return package, signature
    raise AssertionError("64 signatures with an odd last octet")


def _bit_string_variants(world, files: dict[str, bytes]) -> dict[str, bytes]:
    package, signature = _even_signature_package(world, files)
    tree = lambda: der_parse(package[SIGNED_VALUE])   # noqa: E731

    def outer(change) -> bytes:
        t = tree()
        change(t[0].content)
        return _with_signed_value(package, der_dump(t))

    return {
        "control": _with_signed_value(package, package[SIGNED_VALUE]),
        "SES signature with one unused bit, zero": outer(
            lambda ses: ses.__setitem__(3, Tlv(0x03, b"\x01" + signature))),
        "SES signature with one unused bit, set": outer(lambda ses: ses.__setitem__(
            3, Tlv(0x03, b"\x01" + signature[:-1] + bytes([signature[-1] | 1])))),
        "SES timeStamp with seven unused bits": outer(lambda ses: ses.append(Tlv(0xA0, [Tlv(0x03, b"\x07\x80")]))),
        "TBS_Sign dataHash with one unused bit (issuer-signed)": _resealed(
            world, files, tbs_change=lambda tbs: tbs.__setitem__(3, Tlv(0x03, b"\x01" + tbs[3].content[1:]))),
    }


@pytest.mark.parametrize("attack", [
    "SES signature with one unused bit, zero", "SES signature with one unused bit, set",
    "SES timeStamp with seven unused bits", "TBS_Sign dataHash with one unused bit (issuer-signed)"])
def test_ses_bit_string_with_unused_bits_is_malformed_not_a_second_valid_encoding(world, status, attack) -> None:
    files = next(f for f in (_seal_files(world) for _ in range(64)) if sm3(f[SIG_XML])[-1] & 1 == 0)
    variants = _bit_string_variants(world, files)   # (an even dataHash: one unused bit drops only a zero)
    assert _verify(world, status, variants["control"])[0] == "valid"
    verdict, reasons, detail = _verify(world, status, variants[attack])
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "unused bits" in detail


def test_a_timestamp_without_unused_bits_stays_valid(world, status) -> None:
    """The timeStamp is outside TBS_Sign and not judged (by design): a whole-octet one changes nothing."""
    files = _seal_files(world)
    tree = der_parse(files[SIGNED_VALUE])
    tree[0].content.append(Tlv(0xA0, [Tlv(0x03, b"\x00" + b"TEST timestamp")]))
    assert _verify(world, status, _with_signed_value(files, der_dump(tree)))[0] == "valid"


GENERALIZED_TIME_ATTACKS = {
    "TBS_Sign timeInfo without Z": (lambda tbs: tbs.__setitem__(2, Tlv(0x18, b"20261127030000")), None),
    "TBS_Sign timeInfo with +0800": (lambda tbs: tbs.__setitem__(2, Tlv(0x18, b"20261127110000+0800")), None),
    "seal validEnd without Z": (None, lambda info: info[2].content.__setitem__(6, Tlv(0x18, b"20271231000000"))),
    "seal validStart with -0000": (
        None, lambda info: info[2].content.__setitem__(5, Tlv(0x18, b"20260101000000-0000"))),
}


@pytest.mark.parametrize("attack", sorted(GENERALIZED_TIME_ATTACKS))
def test_ses_generalized_time_without_z_is_malformed_not_read_as_utc(world, status, attack) -> None:
    files = _seal_files(world)
    assert _verify(world, status, _resealed(world, files, tbs_change=lambda tbs: None,
                                            seal_info_change=lambda info: None))[0] == "valid"   # control
    # DER's fraction form (no trailing zero) is a DER GeneralizedTime: it stays valid
    assert _verify(world, status, _resealed(world, files, tbs_change=lambda tbs: tbs.__setitem__(
        2, Tlv(0x18, b"20261127030000.5Z"))))[0] == "valid"
    tbs_change, seal_change = GENERALIZED_TIME_ATTACKS[attack]
    verdict, reasons, detail = _verify(world, status, _resealed(world, files, tbs_change, seal_change))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "not a DER GeneralizedTime" in detail


def _with_ext_datas(world, files: dict[str, bytes], ext_datas: bytes) -> bytes:
    """The package whose TBS_Sign ends with ``ext_datas`` (the bytes of ``[0] { ExtensionDatas }``), signed again."""
    key = world.material[SEAL_REGION].issuers[-1]
    ses = der_parse(files[SIGNED_VALUE])[0].content
    body = der_dump(ses[0].content) + ext_datas
    tbs = b"\x30" + der_length(len(body)) + body
    rest = der_dump([ses[1], ses[2], Tlv(0x03, b"\0" + sm2_sign(key.private_key, tbs))])
    return _with_signed_value(files, b"\x30" + der_length(len(tbs) + len(rest)) + tbs + rest)


_EXT = b"\x06\x03" + oid("1.2.3.4") + b"\x04\x04TEST"   # ExtData { extnID 1.2.3.4, extnValue "TEST" }
EXT_DATAS_ATTACKS = {
    # the reference reader refuses it; the fast walk did not look inside
    "extDatas holding BER": b"\xa0" + der_length(len(_EXT) + 6) + b"\x30" + der_length(len(_EXT) + 4) + b"\x30\x80"
                            + _EXT + b"\x00\x00",
    # SEQUENCE OF ExtData holding an INTEGER: the fast walk took any SEQUENCE
    "extDatas of INTEGERs": b"\xa0\x05\x30\x03\x02\x01\x05",
    # [0] IMPLICIT, primitive: asn1crypto kept it in the extDatas place and never read it
    "extDatas primitive": b"\x80\x04TEST",
}


@pytest.mark.parametrize("attack", sorted(EXT_DATAS_ATTACKS))
def test_ses_ext_datas_not_der_or_of_the_wrong_shape_is_malformed(world, status, attack) -> None:
    files = _seal_files(world)
    der = b"\xa0" + der_length(len(_EXT) + 4) + b"\x30" + der_length(len(_EXT) + 2) + b"\x30" + der_length(len(_EXT)) \
        + _EXT
    assert _verify(world, status, _with_ext_datas(world, files, der))[0] == "valid"   # DER extDatas: read as before
    data = _with_ext_datas(world, files, EXT_DATAS_ATTACKS[attack])
    signed_value = read_ofd_package(data).files[SIGNED_VALUE]
    assert _parse_plain(signed_value) is None                        # the fast walk leaves extDatas to the reference
    with pytest.raises(SesFormatError):
        _parse_asn1(signed_value)
    verdict, reasons, detail = _verify(world, status, data)
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail


APPENDED_TO_SES = {
    # outside TBS_Sign: anyone can write these into a genuine SignedValue.dat
    "an OCTET STRING after the signature": lambda ses: ses.append(Tlv(0x04, b"hidden TEST data " * 64)),
    "a [1] element after the signature": lambda ses: ses.append(Tlv(0xA1, [Tlv(0x04, b"hidden")])),
    "a second timeStamp": lambda ses: ses.extend([Tlv(0xA0, [Tlv(0x03, b"\0TEST")])] * 2),
}


@pytest.mark.parametrize("attack", sorted(APPENDED_TO_SES))
def test_ses_signature_with_data_appended_inside_its_outer_sequence_is_malformed(world, status, attack) -> None:
    files = _seal_files(world)
    assert _verify(world, status, _with_signed_value(files, files[SIGNED_VALUE]))[0] == "valid"   # control
    tree = der_parse(files[SIGNED_VALUE])
    APPENDED_TO_SES[attack](tree[0].content)
    hostile = der_dump(tree)
    assert der_problem(hostile) is None and parse_ses_signature(files[SIGNED_VALUE]).tbs_der in hostile
    verdict, reasons, detail = _verify(world, status, _with_signed_value(files, hostile))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "no place for" in detail


APPENDED_INSIDE_TBS = {   # as an issuer would sign it
    "an element after the seal's signedValue": (None, None, lambda eseal: eseal.append(Tlv(0x04, b"hidden"))),
    "an element after SES_SealInfo's picture": (None, lambda info: info.append(Tlv(0x04, b"hidden")), None),
    "an element after the seal picture's height": (
        None, lambda info: info[3].content.append(Tlv(0x02, b"\x01")), None),
    "an element after TBS_Sign's propertyInfo": (lambda tbs: tbs.append(Tlv(0x04, b"hidden")), None, None),
}


@pytest.mark.parametrize("attack", sorted(APPENDED_INSIDE_TBS))
def test_ses_signed_structures_with_data_appended_are_malformed(world, status, attack) -> None:
    files = _seal_files(world)
    assert _verify(world, status, _resealed(world, files, lambda tbs: None, lambda info: None,
                                            lambda eseal: None))[0] == "valid"   # control: all signed again
    verdict, reasons, detail = _verify(world, status, _resealed(world, files, *APPENDED_INSIDE_TBS[attack]))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "no place for" in detail


# --- SM2 certificates -------------------------------------------------------------------------------------------
def _reencoded(cert_der: bytes, algorithm=None, signature_bits: bytes | None = None) -> bytes:
    """``cert_der`` with its outer AlgorithmIdentifier and / or signature BIT STRING contents replaced: the
    TBSCertificate -- all the issuer signed -- byte for byte the same."""
    tbs, alg, signature = der_parse(cert_der)[0].content
    return der_dump([Tlv(0x30, [tbs, alg if algorithm is None else algorithm(alg),
                                signature if signature_bits is None else Tlv(0x03, signature_bits)])])


def _outside_the_signed_part(cert_der: bytes) -> dict[str, bytes]:
    der_signature = der_parse(cert_der)[0].content[2].content[1:]
    return {
        "SM2 signature as raw r||s": _reencoded(cert_der, signature_bits=b"\0" + der_to_raw_signature(der_signature)),
        "outer AlgorithmIdentifier with NULL parameters": _reencoded(
            cert_der, algorithm=lambda a: Tlv(0x30, [a.content[0], Tlv(0x05, b"")])),
        "outer AlgorithmIdentifier with other parameters": _reencoded(
            cert_der, algorithm=lambda a: Tlv(0x30, [a.content[0], Tlv(0x04, b"TEST")])),
        # one zero unused bit: valid DER for a bit string one bit shorter, which asn1crypto padded back
        "signature BIT STRING with one unused bit": _reencoded(cert_der, signature_bits=b"\x01" + der_signature),
    }


def _issuer_certificate_with_an_even_signature(world) -> bytes:
    """The region's issuer certificate, signed again by its anchor (same content) until the signature's last
    octet is even, so that one unused bit drops only a zero."""
    material = world.material[SIGN_REGION]
    for _ in range(64):
        der = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key,
                                        {"control": lambda tbs: None}))["certificate control"]
        if der[-1] & 1 == 0:   # the DER signature ends the certificate
            return der
    raise AssertionError("64 signatures with an odd last octet")


@pytest.mark.parametrize("attack", ["SM2 signature as raw r||s", "outer AlgorithmIdentifier with NULL parameters",
                                    "outer AlgorithmIdentifier with other parameters",
                                    "signature BIT STRING with one unused bit"])
def test_sm2_certificate_re_encoded_outside_its_signed_part_is_malformed(world, status, attack) -> None:
    genuine = _issuer_certificate_with_an_even_signature(world)
    assert _verify(world, status, _type_sign(world, genuine))[0] == "valid"   # control
    hostile = _outside_the_signed_part(genuine)[attack]
    assert hostile != genuine and load_sm2_certificate(genuine).tbs_der in hostile   # the signed part unchanged
    with pytest.raises(ValueError, match="signature"):
        load_sm2_certificate(hostile)
    verdict, reasons, detail = _verify(world, status, _type_sign(world, hostile))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail


def test_each_re_encoding_is_the_same_certificate_to_a_lenient_reader(world) -> None:
    """Why these are one certificate: the TBS is unchanged and the anchor's signature verifies over it."""
    from asn1crypto import x509 as asn1x509

    material = world.material[SIGN_REGION]
    genuine = load_sm2_certificate(_issuer_certificate_with_an_even_signature(world))
    assert verify_issued_by(genuine, load_sm2_certificate(material.anchor.der))
    for label, hostile in _outside_the_signed_part(genuine.der).items():
        lenient = asn1x509.Certificate.load(hostile)
        assert lenient["tbs_certificate"].dump() == genuine.tbs_der, label
        assert lenient["signature_algorithm"]["algorithm"].dotted == genuine.signature_algorithm, label
        assert material.anchor_key.public_key().verify(genuine.tbs_der, bytes(lenient["signature_value"].native)), label


def _key_usage(bits: bytes) -> Tlv:
    return _extension("2.5.29.15", Tlv(0x03, bits), critical=True)


def _added(*extensions: Tlv, first: bool = False):
    def change(tbs: list[Tlv]) -> None:
        present = tbs[-1].content[0].content
        present[:] = [*extensions, *present] if first else [*present, *extensions]
    return change


EXTENSION_TWICE = {
    "keyUsage twice, keyCertSign first": _added(_key_usage(b"\x01\x06"), first=True),
    "keyUsage twice, keyCertSign last": _added(_key_usage(b"\x01\x06")),
    "basicConstraints twice, a CA last": _added(
        _extension("2.5.29.19", Tlv(0x30, [Tlv(0x01, b"\xff")]), critical=True)),
    "subjectKeyIdentifier twice": _added(_extension("2.5.29.14", Tlv(0x04, b"\x01" * 20))),
}


@pytest.mark.parametrize("attack", sorted(EXTENSION_TWICE))
def test_sm2_certificate_naming_an_extension_twice_is_malformed(world, status, attack) -> None:
    material = world.material[SIGN_REGION]
    variants = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key,
                                         {"control": lambda tbs: None, attack: EXTENSION_TWICE[attack]}))
    assert _verify(world, status, _type_sign(world, variants["certificate control"]))[0] == "valid"
    hostile = variants[f"certificate {attack}"]
    assert der_problem(hostile) is None
    with pytest.raises(ValueError, match="more than once"):
        load_sm2_certificate(hostile)
    verdict, reasons, detail = _verify(world, status, _type_sign(world, hostile))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "more than once" in detail


def _key_with_even_point() -> SM2PrivateKey:
    while True:
        key = SM2PrivateKey.generate()
        if key.public_key().point[-1] & 1 == 0:
            return key


def _spki(algorithm: list[Tlv], bits: bytes):
    return lambda tbs: tbs.__setitem__(6, Tlv(0x30, [Tlv(0x30, algorithm), Tlv(0x03, bits)]))


@pytest.mark.parametrize("attack", ["SM2 algorithm with P-256 curve parameters", "key BIT STRING with one unused bit"])
def test_sm2_key_with_contradictory_parameters_or_unused_bits_is_malformed(world, status, attack) -> None:
    """A signer key of the region's anchor (a TEST key made here, even last octet), in a certificate the anchor
    signs; the licence is signed with it."""
    material = world.material[SIGN_REGION]
    key = _key_with_even_point()
    point = key.public_key().point
    changes = {
        "control": _spki([Tlv(0x06, OID_EC), Tlv(0x06, OID_SM2_CURVE)], b"\0" + point),
        "control, the bare SM2 algorithm": _spki([Tlv(0x06, OID_SM2_CURVE)], b"\0" + point),
        "control, the SM2 algorithm with NULL": _spki([Tlv(0x06, OID_SM2_CURVE), Tlv(0x05, b"")], b"\0" + point),
        "SM2 algorithm with P-256 curve parameters": _spki([Tlv(0x06, OID_SM2_CURVE), Tlv(0x06, OID_P256)],
                                                           b"\0" + point),
        "key BIT STRING with one unused bit": _spki([Tlv(0x06, OID_EC), Tlv(0x06, OID_SM2_CURVE)], b"\x01" + point),
    }
    variants = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key, changes))
    for label in ("control", "control, the bare SM2 algorithm", "control, the SM2 algorithm with NULL"):
        assert _verify(world, status, _type_sign(world, variants[f"certificate {label}"], key))[0] == "valid", label
    hostile = variants[f"certificate {attack}"]
    with pytest.raises(ValueError, match="not an SM2 key"):
        load_sm2_certificate(hostile)
    verdict, reasons, detail = _verify(world, status, _type_sign(world, hostile, key))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail


def _sealed_with_maker(world, maker_cert: bytes) -> bytes:
    """A genuine Type=Seal licence whose seal names ``maker_cert`` as its maker's certificate (the maker's key
    is the region's TEST issuer key, as in the simulator's seals)."""
    key = world.material[SEAL_REGION].issuers[-1]
    files = _seal_files(world)
    content = {p: files[p] for p in (DATA_PART, "Doc_0/Pages/Page_0/Content.xml")}
    return build_sealed_ofd(content, key.private_key, key.cert.der, "测试专用章（TEST）",
                            NOW - dt.timedelta(hours=1), maker_key=key.private_key, maker_cert_der=maker_cert)


def _with_extension_value(oid_hex: str, value: Tlv):
    def change(tbs: list[Tlv]) -> None:
        extension = next(e for e in tbs[-1].content[0].content if e.content[0].content == bytes.fromhex(oid_hex))
        extension.content[-1] = Tlv(0x04, [value], True) if not isinstance(value, list) else Tlv(0x04, value, True)
    return change


def test_seal_maker_certificate_with_data_appended_after_its_signature_is_malformed(world, status) -> None:
    """The maker's certificate is read by the SM2 reader alone (a signer's goes through cryptography's strict
    reader first, which refused this already): what follows its signature is signed by no one."""
    genuine = world.material[SEAL_REGION].issuers[-1].cert.der
    assert _verify(world, status, _sealed_with_maker(world, genuine))[0] == "valid"   # control
    tree = der_parse(genuine)
    tree[0].content.append(Tlv(0x04, b"hidden TEST data"))
    hostile = der_dump(tree)
    with pytest.raises(ValueError, match="no place for"):
        load_sm2_certificate(hostile)
    verdict, reasons, detail = _verify(world, status, _sealed_with_maker(world, hostile))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "seal maker certificate unreadable" in detail


EXTENSION_VALUE_ATTACKS = {
    # keyUsage {digitalSignature, nonRepudiation} then a second BIT STRING {keyCertSign, cRLSign}: the first was read
    "keyUsage value followed by a second BIT STRING": (
        _with_extension_value("551d0f", [Tlv(0x03, b"\x06\xc0"), Tlv(0x03, b"\x01\x06")]), "not one DER element"),
    "basicConstraints value with an element after its fields": (
        _with_extension_value("551d13", Tlv(0x30, [Tlv(0x04, b"hidden")])), "no place for"),
}


@pytest.mark.parametrize("attack", sorted(EXTENSION_VALUE_ATTACKS))
def test_sm2_certificate_extension_value_with_data_after_it_is_malformed(world, status, attack) -> None:
    material = world.material[SIGN_REGION]
    change, named = EXTENSION_VALUE_ATTACKS[attack]
    variants = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key,
                                         {"control": lambda tbs: None, attack: change}))
    assert _verify(world, status, _type_sign(world, variants["certificate control"]))[0] == "valid"
    with pytest.raises(ValueError, match=named):
        load_sm2_certificate(variants[f"certificate {attack}"])
    verdict, reasons, detail = _verify(world, status, _type_sign(world, variants[f"certificate {attack}"]))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert named in detail


@pytest.fixture
def server_time_zone(monkeypatch):
    """Set the process's local time zone (TZ + tzset) for one test, and put it back."""
    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_seal_maker_certificate_time_without_z_is_malformed_whatever_the_servers_time_zone(
        world, status, server_time_zone, zone) -> None:
    server_time_zone(zone)
    material = world.material[SEAL_REGION]
    generalized = lambda text: Tlv(0x18, text)   # noqa: E731
    variants = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key, {
        "control": lambda tbs: None,
        "no Z": _validity(generalized(b"20200101000000"), generalized(b"99991231235959"))}))
    assert _verify(world, status, _sealed_with_maker(world, variants["certificate control"]))[0] == "valid"
    with pytest.raises(ValueError, match="RFC 5280 form"):
        load_sm2_certificate(variants["certificate no Z"])
    verdict, reasons, detail = _verify(world, status, _sealed_with_maker(world, variants["certificate no Z"]))
    assert (verdict, reasons) == ("invalid", ("MALFORMED",)), detail
    assert "seal maker certificate unreadable" in detail and "RFC 5280 form" in detail


@pytest.mark.parametrize(("label", "not_before", "not_after", "years"), [
    ("UTCTime 1950 and 2049", Tlv(0x17, b"500101000000Z"), Tlv(0x17, b"491231235959Z"), (1950, 2049)),
    ("GeneralizedTime 2050", Tlv(0x17, b"261001000000Z"), Tlv(0x18, b"20500101000000Z"), (2026, 2050)),
])
def test_rfc5280_time_edges_still_read(world, label, not_before, not_after, years) -> None:
    material = world.material[SIGN_REGION]
    der = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key,
                                    {label: _validity(not_before, not_after)}))[f"certificate {label}"]
    cert = load_sm2_certificate(der)
    assert (cert.not_before.year, cert.not_after.year) == years and cert.not_before.tzinfo is not None


# --- the real-world controls ---------------------------------------------------------------------------------
def test_real_world_certificates_and_seals_pass_the_new_rules() -> None:
    """The independent implementations' files (tests/test_ofd_vectors.py) pass every rule added here, on the
    reference reader (the fast walk would not reach the new checks)."""
    checked = 0
    for pem in sorted(Path(VECTOR_DIR).glob("*.pem")):
        load_sm2_certificate(_to_der(pem.read_bytes()))
        checked += 1
    for ofd in sorted(Path(VECTOR_DIR).glob("*.ofd")):
        if ofd.name == "DigitalSign.ofd":   # Type=Sign: a bare SM2 signature, no SES_Signature
            continue
        with zipfile.ZipFile(ofd) as z:
            for name in (n for n in z.namelist() if n.endswith("SignedValue.dat")):
                ses = _parse_asn1(z.read(name))
                assert ses == parse_ses_signature(z.read(name)), ofd.name
                load_sm2_certificate(ses.cert_der)
                load_sm2_certificate(ses.seal.maker_cert_der)
                checked += 3
    assert checked >= 8


# --- what held ---------------------------------------------------------------------------------------------------
def _rs(r: int, s: int) -> dict[str, bytes | None]:
    body = _der_int(r) + _der_int(s)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big") if r < 2 ** 256 and s < 2 ** 256 else None
    return {"DER": b"\x30" + bytes([len(body)]) + body, "raw": raw}


def _nested(depth: int) -> bytes:
    out = b"\x30\x00"
    for _ in range(depth):
        out = b"\x30" + der_length(len(out)) + out
    return out


def test_what_held_stays_so(world, status) -> None:
    """Tried in this review, never valid and never an internal error before the fixes either."""
    files = _seal_files(world)
    genuine = files[SIGNED_VALUE]
    ses = der_parse(genuine)[0].content
    raw = der_to_raw_signature(ses[3].content[1:])
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    cases: dict[str, tuple[bytes, str]] = {}
    for label, (rr, ss) in {"r = 0": (0, s), "s = 0": (r, 0), "r = n": (SM2_N, s), "s = n": (r, SM2_N),
                            "r + n": (r + SM2_N, s), "s + n": (r, s + SM2_N), "r = s = n - 1": (SM2_N - 1, SM2_N - 1),
                            "s = n - s": (r, SM2_N - s)}.items():
        for form, value in _rs(rr, ss).items():
            if value is not None:
                tree = der_parse(genuine)
                tree[0].content[3] = Tlv(0x03, b"\0" + value)
                cases[f"SES signature {label}, {form}"] = (der_dump(tree), "SIGNATURE_INVALID")
    tbs = ses[0].content
    def v1_tbs(version: bytes) -> Tlv:   # GM/T 0031: timeInfo a BIT STRING, then the cert and algorithm inside
        return Tlv(0x30, [Tlv(0x02, version), tbs[1], Tlv(0x03, b"\0" + b"20261127030000Z"), tbs[3], tbs[4],
                          ses[1], ses[2]])
    cases |= {
        "outer length of 4 GB": (b"\x30\x84\xff\xff\xff\xff" + genuine[4:], "MALFORMED"),
        "outer length of 2^63": (b"\x30\x88\x7f" + b"\xff" * 7 + genuine[4:], "MALFORMED"),
        "a 1-GB OCTET STRING claimed": (b"\x30\x84\x40\x00\x00\x00\x04\x84\x3f\xff\xff\xfa" + b"x" * 100, "MALFORMED"),
        "10,000 indefinite SEQUENCEs": (b"\x30\x80" * 10_000 + b"\x00\x00" * 10_000, "MALFORMED"),
        "200 nested SEQUENCEs": (_nested(200), "MALFORMED"),
        "empty": (b"", "MALFORMED"),
        "one byte": (b"\x30", "MALFORMED"),
        "GM/T 0031 v1 layout, version 4": (der_dump([Tlv(0x30, [v1_tbs(b"\x04"), ses[3]])]), "MALFORMED"),
        "GM/T 0031 v1 layout, version 1": (der_dump([Tlv(0x30, [v1_tbs(b"\x01"), ses[3]])]), "UNSUPPORTED_FORMAT"),
    }
    for label, (signed_value, code) in cases.items():
        verdict, reasons, detail = _verify(world, status, _with_signed_value(files, signed_value))
        assert (verdict, reasons) == ("invalid", (code,)), (label, detail)
    # v4 layouts naming another version, signed by the issuer: unsupported, never read as v4
    for version in (b"\x01", b"\x03"):
        data = _resealed(world, files, tbs_change=lambda t: t.__setitem__(0, Tlv(0x02, version)))
        assert _verify(world, status, data)[:2] == ("invalid", ("UNSUPPORTED_FORMAT",)), version
    # keys the SM2 reader refuses (in a certificate the anchor signs): never valid
    material = world.material[SIGN_REGION]
    point = load_sm2_certificate(material.issuers[-1].cert.der).public_key.point
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    sm2 = [Tlv(0x06, OID_EC), Tlv(0x06, OID_SM2_CURVE)]
    keys = {
        "compressed": _spki(sm2, b"\0" + bytes([2 + (point[-1] & 1)]) + point[1:33]),
        "hybrid": _spki(sm2, b"\0" + bytes([6 + (point[-1] & 1)]) + point[1:]),
        "at infinity": _spki(sm2, b"\0\x00"),
        "off the curve": _spki(sm2, b"\0" + point[:-1] + bytes([point[-1] ^ 1])),
        "a P-256 point with the SM2 curve": _spki(sm2, b"\0" + p256),
        "the SM2 point with P-256 parameters": _spki([Tlv(0x06, OID_EC), Tlv(0x06, OID_P256)], b"\0" + point),
    }
    for label, der in certificate_variants(material.issuers[-1].cert.der, material.anchor_key, keys):
        verdict, reasons, detail = _verify(world, status, _type_sign(world, der))
        assert (verdict, reasons) == ("invalid", ("MALFORMED",)), (label, detail)
