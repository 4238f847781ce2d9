"""Round-2 OFD fast paths equal their reference readers, and hostile shapes fall back to them.

* the one-pass zip reader (``_read_plain``) against ``zipfile`` (``_read_with_zipfile``);
* the plain OFD.xml reader (a regular expression) against the ElementTree reader;
* SM3 through hashlib's OpenSSL against pyca ``cryptography``;
* the seal maker key cache (by certificate bytes) stays bounded and answers like a fresh load.

Each is checked on simulator licences (a seal and a plain signature) and on the real ofdrw /
vendor vectors in shared/vectors/ofd/.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from adapters.ofd.container import DEFAULT_LIMITS, _read_plain, _read_with_zipfile, read_ofd_package
from adapters.ofd.errors import OfdError
from adapters.ofd.xmlparts import _find_signatures_xml_plain, _find_signatures_xml_tree, find_signatures_xml
from adapters.ofd_seal import _MakerKeys
from gateway.crypto.sm2 import SM3_BACKEND, _sm3_cryptography, sm3
from gateway.crypto.sm2cert import load_sm2_certificate
from tests.conftest import NOW

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")
VECTOR_NAMES = ("allprotected.ofd", "DigitalSign.ofd", "v4signed.ofd")


@pytest.fixture(scope="module")
def simulated(world) -> dict[str, bytes]:
    """Licence OFD files from the simulator: a seal (310000) and a plain signature (500102)."""
    return {region: world.simulator.issue(region, world.catalogue.types[0].key, "valid", NOW).data
            for region in ("310000", "500102")}


def _vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


# --- zip: one-pass reader == zipfile ----------------------------------------------------
@pytest.mark.parametrize("region", ["310000", "500102"])
def test_simulator_package_read_by_the_fast_zip_reader_equals_zipfile(simulated, region) -> None:
    data = simulated[region]
    fast = _read_plain(data, DEFAULT_LIMITS)
    assert fast is not None and len(fast) >= 10
    assert fast == dict(_read_with_zipfile(data, DEFAULT_LIMITS).files)


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_vector_package_read_by_either_zip_reader_gives_the_same_files(name) -> None:
    data = _vector(name)
    reference = dict(_read_with_zipfile(data, DEFAULT_LIMITS).files)
    fast = _read_plain(data, DEFAULT_LIMITS)
    assert fast is None or fast == reference  # a vendor zip may take the general reader
    assert dict(read_ofd_package(data).files) == reference


def _central_entry_offset(data: bytes, index: int) -> int:
    cd_off = struct.unpack_from("<L", data, len(data) - 22 + 16)[0]
    pos = cd_off
    for _ in range(index):
        nlen, xlen, clen = struct.unpack_from("<3H", data, pos + 28)
        pos += 46 + nlen + xlen + clen
    return pos


def test_crc_mismatch_in_a_deflated_entry_falls_back_and_is_refused(simulated) -> None:
    data = bytearray(simulated["310000"])
    pos = _central_entry_offset(bytes(data), 0)
    crc = struct.unpack_from("<L", data, pos + 16)[0]
    struct.pack_into("<L", data, pos + 16, crc ^ 1)  # central directory says another CRC
    assert _read_plain(bytes(data), DEFAULT_LIMITS) is None
    with pytest.raises(OfdError):
        read_ofd_package(bytes(data))


def test_entry_declaring_a_smaller_size_than_it_inflates_to_is_not_read_fast(simulated) -> None:
    data = bytearray(simulated["310000"])
    pos = _central_entry_offset(bytes(data), 1)
    usize = struct.unpack_from("<L", data, pos + 24)[0]
    struct.pack_into("<L", data, pos + 24, usize - 1)  # inflating stops at the cap: a size mismatch
    assert _read_plain(bytes(data), DEFAULT_LIMITS) is None
    with pytest.raises(OfdError):
        read_ofd_package(bytes(data))


def test_local_header_naming_another_file_than_the_central_directory_is_not_read_fast(simulated) -> None:
    data = simulated["310000"]
    first = read_ofd_package(data).files
    name = next(iter(first)).encode()
    swapped = bytearray(data)
    at = swapped.index(name)  # the first local header's name (local headers come first)
    swapped[at:at + 1] = b"X" if name[:1] != b"X" else b"Y"
    assert _read_plain(bytes(swapped), DEFAULT_LIMITS) is None


def test_names_differing_only_by_case_are_not_read_fast_and_are_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("OFD.xml", b"<a/>")
        zf.writestr("ofd.XML", b"<b/>")
    assert _read_plain(buf.getvalue(), DEFAULT_LIMITS) is None
    with pytest.raises(OfdError):
        read_ofd_package(buf.getvalue())


def test_deflate_stream_with_trailing_bytes_inside_the_entry_is_left_to_zipfile() -> None:
    body = b"<ofd:OFD/>" * 20
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = comp.compress(body) + comp.flush() + b"JUNK"  # data smuggled after the stream end
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("OFD.xml", stream)
    raw = bytearray(buf.getvalue())
    # mark the stored entry as deflated with the true inflated size and CRC, in both headers
    for sig, method_at, crc_at in ((b"PK\x03\x04", 8, 14), (b"PK\x01\x02", 10, 16)):
        at = raw.index(sig)
        struct.pack_into("<H", raw, at + method_at, 8)
        struct.pack_into("<LLL", raw, at + crc_at, zlib.crc32(body), len(stream), len(body))
    assert _read_plain(bytes(raw), DEFAULT_LIMITS) is None


def test_stored_entry_with_mismatched_sizes_is_not_read_fast() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("OFD.xml", b"<ofd:OFD/>")
    raw = bytearray(buf.getvalue())
    at = raw.index(b"PK\x01\x02")
    struct.pack_into("<L", raw, at + 24, 9)  # uncompressed size one short of the stored bytes
    assert _read_plain(bytes(raw), DEFAULT_LIMITS) is None


# --- OFD.xml: regular expression == ElementTree ----------------------------------------
@pytest.mark.parametrize("region", ["310000", "500102"])
def test_simulator_ofd_xml_read_by_the_fast_path_equals_the_tree(simulated, region) -> None:
    ofd_xml = read_ofd_package(simulated[region]).get("OFD.xml")
    fast = _find_signatures_xml_plain(ofd_xml)
    assert fast == ["Doc_0/Signs/Signatures.xml"]
    assert fast == _find_signatures_xml_tree(ofd_xml)


@pytest.mark.parametrize("name", ["allprotected.ofd", "DigitalSign.ofd"])
def test_ofdrw_ofd_xml_with_an_escaped_creator_is_read_fast_and_equals_the_tree(name) -> None:
    ofd_xml = read_ofd_package(_vector(name)).get("OFD.xml")
    assert b"&amp;" in ofd_xml
    fast = _find_signatures_xml_plain(ofd_xml)
    assert fast is not None and fast == _find_signatures_xml_tree(ofd_xml)


def test_vendor_ofd_xml_with_custom_data_goes_to_the_tree() -> None:
    ofd_xml = read_ofd_package(_vector("v4signed.ofd")).get("OFD.xml")
    assert _find_signatures_xml_plain(ofd_xml) is None
    assert find_signatures_xml(ofd_xml) == _find_signatures_xml_tree(ofd_xml) == ["Doc_0/Signs/Signatures.xml"]


@pytest.fixture(scope="module")
def plain_ofd_xml(simulated) -> bytes:
    return read_ofd_package(simulated["310000"]).get("OFD.xml")


def test_second_doc_body_smuggling_another_signatures_file_goes_to_the_tree(plain_ofd_xml) -> None:
    body = plain_ofd_xml[plain_ofd_xml.index(b"<ofd:DocBody>"):plain_ofd_xml.index(b"</ofd:OFD>")]
    data = plain_ofd_xml.replace(b"</ofd:OFD>", body.replace(b"Doc_0/Signs", b"Doc_1/Signs") + b"</ofd:OFD>")
    assert _find_signatures_xml_plain(data) is None
    assert find_signatures_xml(data) == ["Doc_0/Signs/Signatures.xml", "Doc_1/Signs/Signatures.xml"]


def test_doctype_with_entity_in_ofd_xml_is_not_read_fast_and_is_refused(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b"?>\n", b'?>\n<!DOCTYPE x [<!ENTITY e "Doc_9">]>\n', 1)
    assert _find_signatures_xml_plain(data) is None
    with pytest.raises(OfdError):
        find_signatures_xml(data)


def test_undefined_entity_in_doc_info_is_not_read_fast_and_is_refused(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b"simulator</ofd:Creator>", b"simulator&evil;</ofd:Creator>")
    assert data != plain_ofd_xml
    assert _find_signatures_xml_plain(data) is None
    with pytest.raises(OfdError):
        find_signatures_xml(data)


def test_duplicate_root_attribute_is_not_read_fast_and_is_refused(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b'DocType="OFD"', b'DocType="OFD" DocType="X"')
    assert _find_signatures_xml_plain(data) is None
    with pytest.raises(OfdError):
        find_signatures_xml(data)


def test_namespace_redeclared_on_the_root_goes_to_the_tree(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b'DocType="OFD"', b'DocType="OFD" xmlns:ofd="urn:other"')
    assert _find_signatures_xml_plain(data) is None


def test_mismatched_closing_tag_in_doc_info_is_not_read_fast_and_is_refused(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b"</ofd:Creator>", b"</ofd:Creatorx>")
    assert _find_signatures_xml_plain(data) is None
    with pytest.raises(OfdError):
        find_signatures_xml(data)


def test_comment_hiding_a_signatures_element_goes_to_the_tree(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b"<ofd:DocRoot>", b"<!-- <ofd:Signatures>/x.xml</ofd:Signatures> --><ofd:DocRoot>")
    assert _find_signatures_xml_plain(data) is None
    assert find_signatures_xml(data) == ["Doc_0/Signs/Signatures.xml"]


def test_signatures_location_escaping_the_package_is_refused_by_the_tree(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b"/Doc_0/Signs/Signatures.xml", b"../../etc/Signatures.xml")
    assert _find_signatures_xml_plain(data) is None
    with pytest.raises(OfdError):
        find_signatures_xml(data)


def test_ofd_xml_without_signatures_reads_as_no_signature_on_both_paths(plain_ofd_xml) -> None:
    start = plain_ofd_xml.index(b"<ofd:Signatures>")
    end = plain_ofd_xml.index(b"</ofd:Signatures>") + len(b"</ofd:Signatures>")
    data = plain_ofd_xml[:start] + plain_ofd_xml[end:]
    assert _find_signatures_xml_plain(data) == [] == _find_signatures_xml_tree(data)


def test_non_ascii_ofd_xml_goes_to_the_tree(plain_ofd_xml) -> None:
    data = plain_ofd_xml.replace(b"elicence-gateway-simulator", "模拟签发".encode())
    assert _find_signatures_xml_plain(data) is None
    assert find_signatures_xml(data) == ["Doc_0/Signs/Signatures.xml"]


# --- SM3 ------------------------------------------------------------------------------
def test_sm3_backend_is_hashlib_here_and_matches_the_standard_example() -> None:
    assert SM3_BACKEND == "hashlib"  # Debian's OpenSSL 3 provides SM3
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 1409, 70_000])
def test_sm3_through_hashlib_equals_cryptography_at_block_boundaries(size) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    assert sm3(data) == _sm3_cryptography(data)


def test_sm3_of_every_part_of_a_real_vector_equals_cryptography() -> None:
    for name in VECTOR_NAMES:
        for content in read_ofd_package(_vector(name)).files.values():
            assert sm3(content) == _sm3_cryptography(content)


# --- seal maker keys ------------------------------------------------------------------
def test_maker_key_cache_stays_bounded_and_answers_like_a_fresh_load(world) -> None:
    certs = [issuer.cert.der for region in ("310000", "500102", "320100")
             for issuer in world.snapshot.regions[region].issuers if issuer.cert.algorithm == "SM2"]
    assert len(certs) >= 2
    cache = _MakerKeys(size=1)
    for der in certs + certs:
        assert cache.get(der) == load_sm2_certificate(der).public_key
        assert len(cache._items) == 1
    with pytest.raises(ValueError):
        cache.get(b"\x30\x03\x02\x01\x00")  # not a certificate: refused, not cached
    assert len(cache._items) == 1
