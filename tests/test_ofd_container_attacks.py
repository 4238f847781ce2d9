"""Hostile OFD containers: each fixture is named after the attack it models."""

from __future__ import annotations

import io
import random
import warnings
import zipfile
from pathlib import Path

import pytest

from adapters.ofd import OfdError, ZipLimits, read_ofd_package, verify_ofd_signatures
from adapters.ofd.errors import (
    DuplicateEntryError,
    EncryptedEntryError,
    NotAZipError,
    OfdStructureError,
    PackageTooLargeError,
    TooManyEntriesError,
    TruncatedPackageError,
    UnsafeEntryNameError,
    UnsupportedOfdError,
    ZipBombError,
)
from gateway.errors import LicenceRejected

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")


def _zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, content in entries:
                zf.writestr(zipfile.ZipInfo(name), content, compress_type=method)
    return buf.getvalue()


def zip_bomb_by_ratio() -> bytes:
    return _zip([("OFD.xml", b"<ofd:OFD/>"), ("Doc_0/bomb.xml", b"\x00" * (8 * 1024 * 1024))])


def zip_bomb_by_total_size() -> bytes:
    # 1 MiB entries of incompressible data: each far under the ratio, the total over the limit
    chunk = random.Random(38540).randbytes(1024 * 1024)
    return _zip([(f"Doc_0/part_{i}.bin", chunk) for i in range(5)], method=zipfile.ZIP_STORED)


def path_traversal_entry() -> bytes:
    return _zip([("OFD.xml", b"<x/>"), ("../../etc/cron.d/evil", b"* * * * * root sh")])


def absolute_path_entry() -> bytes:
    return _zip([("/etc/passwd", b"root:x:0:0")])


def backslash_path_entry() -> bytes:
    return _zip([("Doc_0\\..\\..\\evil.xml", b"<x/>")])


def too_many_entries() -> bytes:
    return _zip([(f"Doc_0/Res/r{i}.xml", b"<r/>") for i in range(1001)])


def over_long_entry_name() -> bytes:
    return _zip([("Doc_0/" + "a" * 300 + ".xml", b"<x/>")])


def duplicate_entry_names() -> bytes:
    return _zip([("OFD.xml", b"<first/>"), ("OFD.xml", b"<second/>")])


def case_folded_duplicate_names() -> bytes:
    return _zip([("OFD.xml", b"<first/>"), ("ofd.XML", b"<second/>")])


def encrypted_entry() -> bytes:
    data = bytearray(_zip([("OFD.xml", b"\x00" * 12 + b"ciphertext")], method=zipfile.ZIP_STORED))
    # set bit 0 (traditional PKWARE encryption) of the general purpose flags, local + central
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(sig) + off] |= 0x01
    return bytes(data)


def bzip2_compressed_entry() -> bytes:
    return _zip([("OFD.xml", b"<x/>")], method=zipfile.ZIP_BZIP2)


def truncated_zip() -> bytes:
    data = (VECTORS / "allprotected.ofd").read_bytes()
    return data[: len(data) // 2]


def non_zip_pdf() -> bytes:
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"


def billion_laughs_in_ofd_xml() -> bytes:
    dtd = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
           b"<OFD>&lol2;</OFD>")
    return _zip([("OFD.xml", dtd)])


def doctype_behind_a_long_comment_in_ofd_xml() -> bytes:
    """An external DTD after 8 KB of comment: the DTD check read only the first 4 KB before session 16
    (and expat, not fetching the DTD, parsed the rest: a DTD the gateway says it refuses, let through)."""
    ofd = (b'<?xml version="1.0" encoding="UTF-8"?><!--' + b"x" * 8192 + b'-->'
           b'<!DOCTYPE ofd:OFD SYSTEM "http://attacker.example/ofd.dtd">'
           b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"><ofd:DocBody>'
           b"<ofd:Signatures>Doc_0/Signs/Signatures.xml</ofd:Signatures></ofd:DocBody></ofd:OFD>")
    return _zip([("OFD.xml", ofd)])


def signatures_path_escaping_the_package() -> bytes:
    ofd = (b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"><ofd:DocBody>'
           b"<ofd:Signatures>/../../outside/Signatures.xml</ofd:Signatures></ofd:DocBody></ofd:OFD>")
    return _zip([("OFD.xml", ofd)])


def zip_without_ofd_xml() -> bytes:
    return _zip([("Doc_0/Document.xml", b"<x/>")])


@pytest.mark.parametrize("fixture,error", [
    (zip_bomb_by_ratio, ZipBombError),
    (path_traversal_entry, UnsafeEntryNameError),
    (absolute_path_entry, UnsafeEntryNameError),
    (backslash_path_entry, UnsafeEntryNameError),
    (too_many_entries, TooManyEntriesError),
    (over_long_entry_name, UnsafeEntryNameError),
    (duplicate_entry_names, DuplicateEntryError),
    (case_folded_duplicate_names, DuplicateEntryError),
    (encrypted_entry, EncryptedEntryError),
    (bzip2_compressed_entry, UnsupportedOfdError),
    (truncated_zip, TruncatedPackageError),
    (non_zip_pdf, NotAZipError),
    (billion_laughs_in_ofd_xml, OfdStructureError),
    (doctype_behind_a_long_comment_in_ofd_xml, OfdStructureError),
    (signatures_path_escaping_the_package, UnsafeEntryNameError),
    (zip_without_ofd_xml, OfdStructureError),
], ids=lambda v: getattr(v, "__name__", ""))
def test_hostile_package_is_rejected_with_a_specific_error(fixture, error) -> None:
    with pytest.raises(error) as info:
        verify_ofd_signatures(fixture())
    exc = info.value
    if fixture is doctype_behind_a_long_comment_in_ofd_xml:
        assert "DTDs" in exc.detail
    assert isinstance(exc, LicenceRejected) and isinstance(exc, OfdError)
    assert exc.code in ("MALFORMED", "UNSUPPORTED_FORMAT")
    assert exc.detail and exc.extra["kind"] == error.kind


def test_total_uncompressed_limit_is_enforced() -> None:
    limits = ZipLimits(max_total_uncompressed=3 * 1024 * 1024)
    with pytest.raises(ZipBombError, match="uncompressed total"):
        read_ofd_package(zip_bomb_by_total_size(), limits)


def test_package_size_limit_is_enforced() -> None:
    with pytest.raises(PackageTooLargeError):
        read_ofd_package(b"PK" + b"\x00" * 2000, ZipLimits(max_package_bytes=1000))


def test_entry_inflating_past_its_declared_size_is_refused() -> None:
    data = bytearray(_zip([("OFD.xml", b"<x>" + b"a" * 500 + b"</x>")]))
    # lower the declared uncompressed size in the central directory and the local header
    for sig, off in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        pos = data.index(sig) + off
        data[pos:pos + 4] = (10).to_bytes(4, "little")
    with pytest.raises(OfdError):
        read_ofd_package(bytes(data))


def test_small_highly_compressible_xml_is_not_mistaken_for_a_bomb() -> None:
    pkg = read_ofd_package(_zip([("OFD.xml", b" " * 60_000)]))
    assert len(pkg.files["OFD.xml"]) == 60_000


def test_non_bytes_input_is_rejected() -> None:
    with pytest.raises(NotAZipError):
        read_ofd_package("PK not bytes")  # type: ignore[arg-type]


def test_directory_entries_are_skipped_and_files_kept() -> None:
    pkg = read_ofd_package((VECTORS / "allprotected.ofd").read_bytes())
    assert "Doc_0/Pages/" not in pkg.files
    assert pkg.get("OFD.xml").startswith(b"<?xml")
