"""OFD (zip + GB/T 38540 seal / Type=Sign): attacks on what is read, what is hashed and what is kept.

* one zip, two readings: a zip64 end record hidden in the last central directory entry's comment sent
  zipfile (the reference reader) to a second central directory -- another licence -- while the fast
  reader read the first: the gateway said ``valid`` for a package whose reference reading is a tampered
  licence; entries whose data runs into the next entry's local header ("Overlapped entries", which
  zipfile refuses) were read by the fast path;
* the References are checked before the signature: 1,980 References naming one 7-MB part hashed it
  1,980 times (54 s of CPU for a 400-KB request);
* caches keyed by bytes the presenter chose, read before any signature is checked (Signatures.xml, an
  element name, the Provider attributes, the seal), kept megabyte keys: 256 (4,096 for names) of them;
* a seal that binds no signer certificate at all passed the check that the signer is one the seal binds.

Each attack stands beside its genuine control, which stays valid.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import struct
import zipfile

import pytest
from asn1crypto import core as asn1

import adapters.ofd.verify as ofd_verify
import adapters.ofd_seal as ofd_seal
from adapters.ofd import ses, verify_ofd_signatures, xmlparts
from adapters.ofd.build import build_sealed_ofd
from adapters.ofd.container import DEFAULT_LIMITS, _read_plain, _read_with_zipfile, read_ofd_package
from adapters.ofd.errors import OfdError
from adapters.ofd.ses import CERT_LIST_CERTS, CertInfoList, SESeal, SESSealInfo
from adapters.ofd_seal import DATA_PART, OfdSealFamily
from gateway.crypto.sm2 import OID_SM2_WITH_SM3, sm2_sign, sm3
from tests.conftest import NOW

FAMILY = OfdSealFamily()
SEAL_REGION, SIGN_REGION = "310000", "500102"
SIGNATURE_XML = "Doc_0/Signs/Sign_0/Signature.xml"
SIGNATURES_XML = "Doc_0/Signs/Signatures.xml"
MB = 1 << 20


@pytest.fixture(scope="module")
def sealed(world) -> bytes:
    return world.simulator.issue(SEAL_REGION, "business_licence", "valid", NOW).data


@pytest.fixture(scope="module")
def signed(world) -> bytes:
    return world.simulator.issue(SIGN_REGION, "business_licence", "valid", NOW).data


def _verify(world, data: bytes):
    return world.verifier.verify(data, world.snapshot, world.simulator.status_snapshot(NOW, dt.timedelta(hours=1)),
                                 NOW)


def _entries(data: bytes) -> list[tuple[str, bytes]]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _pack(files: dict[str, bytes], stored: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content, compress_type=zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# --- hand-made zip records (stored entries) --------------------------------------------------
def _local(name: str, content: bytes) -> bytes:
    nb = name.encode()
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zipfile.crc32(content), len(content),
                       len(content), len(nb), 0) + nb + content


def _central(name: str, content: bytes, offset: int, comment: bytes = b"") -> bytes:
    nb = name.encode()
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, zipfile.crc32(content), len(content),
                       len(content), len(nb), 0, len(comment), 0, 0, 0, offset) + nb + comment


def _eocd(count: int, cd_size: int, cd_off: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_off, 0)


def _zip64_end(count: int, cd_size: int, cd_off: int, end_record_at: int) -> bytes:
    """zip64 end of central directory record (56 bytes) and its locator (20 bytes)."""
    record = struct.pack("<4sQ2H2L2Q2Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_off)
    return record + struct.pack("<4sLQL", b"PK\x06\x07", 0, end_record_at - 76, 1)


def _two_views(view_a: list[tuple[str, bytes]], view_b: list[tuple[str, bytes]]) -> bytes:
    """One zip: its end record lists ``view_a``; a zip64 end record, hidden with a second central
    directory in the comment of view_a's last entry, lists ``view_b``."""
    body, offs_a, offs_b = b"", [], []
    for name, content in view_a:
        offs_a.append(len(body))
        body += _local(name, content)
    for name, content in view_b:
        offs_b.append(len(body))
        body += _local(name, content)
    cd2 = b"".join(_central(n, c, o) for (n, c), o in zip(view_b, offs_b))
    head = b"".join(_central(n, c, o) for (n, c), o in zip(view_a[:-1], offs_a[:-1]))
    last_name, last_content = view_a[-1]
    cd1_off = len(body)
    cd1_size = len(head) + 46 + len(last_name.encode()) + len(cd2) + 76
    end_at = cd1_off + cd1_size
    comment = cd2 + _zip64_end(len(view_b), len(cd2), end_at - 76 - len(cd2), end_at)
    cd1 = head + _central(last_name, last_content, offs_a[-1], comment)
    assert len(cd1) == cd1_size
    return body + cd1 + _eocd(len(view_a), len(cd1), cd1_off)


def _plain_zip(entries: list[tuple[str, bytes]], zip64_end: bool = False) -> bytes:
    """Stored entries in order; with ``zip64_end``, a consistent zip64 end record (the end record
    holding the 0xFFFF / 0xFFFFFFFF placeholders that send a reader to it)."""
    body, cds = b"", []
    for name, content in entries:
        cds.append(_central(name, content, len(body)))
        body += _local(name, content)
    cd = b"".join(cds)
    if not zip64_end:
        return body + cd + _eocd(len(cds), len(cd), len(body))
    end_at = len(body) + len(cd) + 76
    return (body + cd + _zip64_end(len(cds), len(cd), len(body), end_at)
            + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))


def test_zip64_end_record_hidden_in_a_comment_cannot_show_zipfile_another_licence(world, sealed) -> None:
    genuine = _entries(sealed)
    tampered = _entries(FAMILY.tamper(sealed))
    assert dict(genuine)[DATA_PART] != dict(tampered)[DATA_PART]
    two = _two_views(genuine, tampered)
    # zipfile, the reference, reads the second central directory: the tampered licence
    with zipfile.ZipFile(io.BytesIO(two)) as zf:
        assert zf.read(DATA_PART) == dict(tampered)[DATA_PART]
    # the fast reader leaves such a package to zipfile (it read the first: the genuine licence)
    assert _read_plain(two, DEFAULT_LIMITS) is None
    # and a package two readers list differently is refused (it was valid)
    with pytest.raises(OfdError) as exc:
        read_ofd_package(two)
    assert exc.value.reason.code == "MALFORMED" and "zip64" in exc.value.detail
    result = _verify(world, two)
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
    assert "zip readers would list different files" in result.reasons[0].detail


def test_zip64_end_record_control_genuine_layouts_stay_valid(world, sealed) -> None:
    genuine = _entries(sealed)
    assert _verify(world, sealed).verdict.value == "valid"
    assert _verify(world, _plain_zip(genuine)).verdict.value == "valid"
    # a writer that always adds a (consistent) zip64 end record: zipfile reads it, the licence is valid
    with_zip64 = _plain_zip(genuine, zip64_end=True)
    assert _read_plain(with_zip64, DEFAULT_LIMITS) is None
    assert dict(_read_with_zipfile(with_zip64, DEFAULT_LIMITS).files) == dict(genuine)
    assert _verify(world, with_zip64).verdict.value == "valid"


def _overlapping(entries: list[tuple[str, bytes]], folder: bool) -> bytes:
    """The last entry's local header and data lie inside a stored junk entry's data (``folder``: a
    folder entry's offset points into the junk entry's data instead)."""
    body, cds = b"", []
    for name, content in entries[:-1]:
        cds.append(_central(name, content, len(body)))
        body += _local(name, content)
    last_name, last_content = entries[-1]
    inner = _local(last_name, last_content)
    junk_at = len(body)
    junk_name = "Doc_0/Res/junk.bin"
    body += _local(junk_name, inner)
    cds.append(_central(junk_name, inner, junk_at))
    if folder:
        cds.append(_central("Doc_0/Res/", b"", junk_at + 30 + len(junk_name) + 5))
        body += _local(last_name, last_content)
        cds.append(_central(last_name, last_content, len(body) - len(_local(last_name, last_content))))
    else:
        cds.append(_central(last_name, last_content, junk_at + 30 + len(junk_name)))
    cd = b"".join(cds)
    return body + cd + _eocd(len(cds), len(cd), len(body))


@pytest.mark.parametrize("folder", [False, True], ids=["entry-inside-entry", "folder-offset-inside-entry"])
def test_overlapping_zip_entries_are_refused_on_the_fast_path_as_by_zipfile(world, sealed, folder) -> None:
    pkg = _overlapping(_entries(sealed), folder)
    with pytest.raises(OfdError, match="Overlapped entries"):
        _read_with_zipfile(pkg, DEFAULT_LIMITS)
    assert _read_plain(pkg, DEFAULT_LIMITS) is None  # it was read (and the licence judged valid)
    result = _verify(world, pkg)
    assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)


def test_overlapping_zip_entries_control_the_same_junk_entry_beside_the_others_is_valid(world, sealed) -> None:
    entries = _entries(sealed)
    pkg = _plain_zip([*entries, ("Doc_0/Res/junk.bin", _local(*entries[-1]))])
    assert _read_plain(pkg, DEFAULT_LIMITS) is not None
    assert _verify(world, pkg).verdict.value == "valid"


# --- References hashed once per part ------------------------------------------------------------
def _many_references_to_one_big_part(data: bytes, count: int, size: int) -> tuple[bytes, int]:
    files = dict(_entries(data))
    big = b"".join(bytes([i % 251]) * 7 + bytes(4089) for i in range(size // 4096))
    files["Doc_0/Res/big.bin"] = big
    ref = (f'<ofd:Reference FileRef="/Doc_0/Res/big.bin"><ofd:CheckValue>'
           f'{base64.b64encode(sm3(big)).decode()}</ofd:CheckValue></ofd:Reference>').encode()
    sig = files[SIGNATURE_XML]
    at = sig.index(b"<ofd:Reference ")
    files[SIGNATURE_XML] = sig[:at] + ref * count + sig[at:]
    return _pack(files, stored=(SIGNATURE_XML, "Doc_0/Res/big.bin")), sum(len(v) for v in files.values())


@pytest.mark.parametrize("region", [SEAL_REGION, SIGN_REGION])
def test_thousands_of_references_to_one_large_part_hash_it_once(world, sealed, signed, region, monkeypatch) -> None:
    data = sealed if region == SEAL_REGION else signed
    pkg, total = _many_references_to_one_big_part(data, count=1000, size=256 * 1024)
    hashed = []
    real = ofd_seal.sm3
    monkeypatch.setattr(ofd_seal, "sm3", lambda b: (hashed.append(len(b)), real(b))[1])
    result = _verify(world, pkg)
    # Signature.xml is not the one signed: refused, after the References (which all match)
    assert result.verdict.value == "invalid" and result.reason_codes == ("SIGNATURE_INVALID",)
    # each part once (was: the 256-KB part 1,000 times, 256 MB; 7 MB x 1,980 took 54 s of CPU)
    assert sum(hashed) <= total + 2 * len(read_ofd_package(pkg).get(SIGNATURE_XML))


def test_thousands_of_references_library_hashes_each_file_once(sealed, monkeypatch) -> None:
    pkg, total = _many_references_to_one_big_part(sealed, count=1000, size=256 * 1024)
    hashed = []
    real = ofd_verify.sm3
    monkeypatch.setattr(ofd_verify, "sm3", lambda b: (hashed.append(len(b)), real(b))[1])
    check = verify_ofd_signatures(pkg).signatures[0]
    assert check.references_ok and not check.data_hash_ok and not check.ok
    assert sum(hashed) <= total + 2 * len(read_ofd_package(pkg).get(SIGNATURE_XML))


def test_references_control_genuine_licences_stay_valid(world, sealed, signed) -> None:
    assert _verify(world, sealed).verdict.value == "valid"
    assert _verify(world, signed).verdict.value == "valid"
    assert verify_ofd_signatures(sealed).ok


# --- caches keyed by the presenter's bytes ------------------------------------------------------
def _with_big_signatures_xml(files: dict[str, bytes], n: int) -> None:
    files[SIGNATURES_XML] = files[SIGNATURES_XML].replace(b"</ofd:Signatures>", b" " * (MB + n) + b"</ofd:Signatures>")


def _with_big_element_name(files: dict[str, bytes], n: int) -> None:
    files["OFD.xml"] = files["OFD.xml"].replace(b"</ofd:DocBody>", b"</ofd:DocBody><" + b"x" * (MB + n) + b"/>")


def _with_big_provider(files: dict[str, bytes], n: int) -> None:
    files[SIGNATURE_XML] = files[SIGNATURE_XML].replace(b'Version="1.0"', b'Version="1.0" Note="' + b"y" * (MB + n)
                                                        + b'"')


def _with_big_seal(files: dict[str, bytes], n: int, world=None) -> None:
    issuer = world.material[SEAL_REGION].issuers[-1]
    seal = ses.build_seal(name="big", es_id="1", signer_cert_der=issuer.cert.der, maker_key=issuer.private_key,
                          maker_cert_der=issuer.cert.der, created=NOW, valid_start=NOW - dt.timedelta(days=1),
                          valid_end=NOW + dt.timedelta(days=1), picture=bytes(MB + n))
    files["Doc_0/Signs/Sign_0/SignedValue.dat"] = ses.build_ses_signature(
        seal_der=seal, signing_time=NOW, data_hash=bytes(32), property_info="/x", signer_key=issuer.private_key,
        signer_cert_der=issuer.cert.der)


CACHES = {
    "signatures-xml": (_with_big_signatures_xml, lambda: sum(len(k[0]) for k in xmlparts._SIGNATURES)),
    "element-name": (_with_big_element_name, lambda: sum(len(k) for k in xmlparts._LOCAL_NAMES)),
    "provider": (_with_big_provider, lambda: sum(len(k) for k in xmlparts._PROVIDERS)),
    "seal": (_with_big_seal, lambda: sum(len(k) for k in ses._SEALS)),
}


@pytest.mark.parametrize("cache", sorted(CACHES))
def test_megabyte_keys_from_the_presenter_are_not_kept_in_the_parse_caches(world, sealed, cache) -> None:
    change, kept = CACHES[cache]
    before = kept()
    for n in range(3):  # three distinct packages, each refused
        files = dict(_entries(sealed))
        change(files, n, world=world) if change is _with_big_seal else change(files, n)
        result = _verify(world, _pack(files, stored=tuple(files)))
        assert result.verdict.value == "invalid" and result.reason_codes == ("SIGNATURE_INVALID",)
    # was: each refused request left its megabyte key behind (3 MB here; 256 such keys per cache, 4,096
    # element names, 2 GB and more per worker)
    assert kept() - before < 64 * 1024


def test_parse_caches_control_a_genuine_licence_is_still_cached_and_valid(world, sealed) -> None:
    assert _verify(world, sealed).verdict.value == "valid"
    pkg = read_ofd_package(sealed)
    assert (pkg.get(SIGNATURES_XML), SIGNATURES_XML) in xmlparts._SIGNATURES
    assert pkg.get("Doc_0/Signs/Sign_0/Seal.esl") in ses._SEALS
    assert _verify(world, sealed).verdict.value == "valid"


# --- a seal binding no signer certificate ----------------------------------------------------
def _seal_binding(world, certs: list[bytes]) -> bytes:
    issuer = world.material[SEAL_REGION].issuers[-1]
    info = SESSealInfo({
        "header": {"id": "ES", "version": 4, "vid": "ELG-TEST"},
        "es_id": "no-signer",
        "property": {
            "type": 1, "name": "test seal", "cert_list_type": CERT_LIST_CERTS,
            "cert_list": asn1.Any.load(CertInfoList(certs).dump()),
            "create_date": asn1.GeneralizedTime(issuer.cert.not_before),
            "valid_start": asn1.GeneralizedTime(issuer.cert.not_before),
            "valid_end": asn1.GeneralizedTime(issuer.cert.not_after),
        },
        "picture": {"type": "SVG", "data": b"<svg/>", "width": 40, "height": 40},
    }).dump()
    return SESeal({"eseal_info": SESSealInfo.load(info), "cert": issuer.cert.der, "sign_alg_id": OID_SM2_WITH_SM3,
                   "signed_value": sm2_sign(issuer.private_key, info)}).dump()


def _sealed_with(world, sealed: bytes, seal_der: bytes) -> bytes:
    issuer = world.material[SEAL_REGION].issuers[-1]
    files = dict(_entries(sealed))
    mine = {k: v for k, v in files.items() if k in (DATA_PART, "Doc_0/Pages/Page_0/Content.xml")}
    return build_sealed_ofd(mine, issuer.private_key, issuer.cert.der, "test seal", NOW, seal_der=seal_der)


def test_seal_binding_no_signer_certificate_is_refused(world, sealed) -> None:
    pkg = _sealed_with(world, sealed, _seal_binding(world, []))
    assert FAMILY.open(pkg, ofd_seal.Limits()).extra["ses"].seal.certs == ()
    result = _verify(world, pkg)  # was: valid
    assert result.verdict.value == "invalid" and result.reason_codes == ("SIGNATURE_INVALID",)
    assert "binds no signer certificate" in result.reasons[0].detail
    check = verify_ofd_signatures(pkg).signatures[0]
    assert check.signer_bound_to_seal is not True and not check.ok


def test_seal_binding_control_a_seal_binding_the_signer_is_valid(world, sealed) -> None:
    issuer = world.material[SEAL_REGION].issuers[-1]
    pkg = _sealed_with(world, sealed, _seal_binding(world, [issuer.cert.der]))
    assert _verify(world, pkg).verdict.value == "valid"
    assert verify_ofd_signatures(pkg).signatures[0].ok
