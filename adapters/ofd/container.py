"""Safe reading (and deterministic writing) of the OFD zip container.

An OFD file comes from outside: it is read fully in memory under explicit limits, and
anything a zip can do to hurt a reader is refused before a byte is inflated:
oversized input, too many entries, long / traversing / absolute / backslashed names,
duplicate names (also case-insensitively), encrypted entries, compression methods other
than stored and deflate, a declared total size or an inflate ratio past the limit,
entries that inflate to more than they declared, entries whose data runs into another's,
and a zip64 end record that names another central directory than the end record (one
package that two zip readers would list differently).
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final

from adapters.ofd.errors import (
    AmbiguousZipError,
    DuplicateEntryError,
    EncryptedEntryError,
    NotAZipError,
    OfdError,
    PackageTooLargeError,
    TooManyEntriesError,
    TruncatedPackageError,
    UnsafeEntryNameError,
    UnsupportedOfdError,
    ZipBombError,
)

#: largest OFD file accepted, compressed (a licence OFD is tens of KB)
MAX_PACKAGE_BYTES: Final = 20 * 1024 * 1024
#: largest sum of the entries' uncompressed sizes
MAX_TOTAL_UNCOMPRESSED: Final = 64 * 1024 * 1024
#: largest uncompressed/compressed ratio of one entry (checked for entries >= RATIO_CHECK_MIN_BYTES)
MAX_COMPRESSION_RATIO: Final = 100
#: entries smaller than this are not ratio-checked (short XML compresses very well, harmlessly)
RATIO_CHECK_MIN_BYTES: Final = 64 * 1024
#: most entries (files and folders) in one package
MAX_ENTRIES: Final = 1000
#: longest entry name, in characters
MAX_ENTRY_NAME_LENGTH: Final = 255

_ALLOWED_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})


@dataclass(frozen=True)
class ZipLimits:
    max_package_bytes: int = MAX_PACKAGE_BYTES
    max_total_uncompressed: int = MAX_TOTAL_UNCOMPRESSED
    max_compression_ratio: int = MAX_COMPRESSION_RATIO
    ratio_check_min_bytes: int = RATIO_CHECK_MIN_BYTES
    max_entries: int = MAX_ENTRIES
    max_entry_name_length: int = MAX_ENTRY_NAME_LENGTH


DEFAULT_LIMITS: Final = ZipLimits()


@dataclass(frozen=True)
class OfdPackage:
    """The files of an OFD package: path (no leading slash) -> bytes."""

    files: Mapping[str, bytes]

    def get(self, path: str) -> bytes | None:
        return self.files.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self.files


def check_entry_name(name: str, max_len: int = MAX_ENTRY_NAME_LENGTH) -> None:
    """Refuse names that could escape or confuse: raises UnsafeEntryNameError."""
    if not name:
        raise UnsafeEntryNameError("empty entry name")
    if len(name) > max_len:
        raise UnsafeEntryNameError(f"entry name longer than {max_len} characters: {name[:40]!r}...")
    if "\\" in name:
        raise UnsafeEntryNameError(f"entry name contains a backslash: {name!r}")
    if name.startswith("/"):
        raise UnsafeEntryNameError(f"absolute entry name: {name!r}")
    if len(name) >= 2 and name[1] == ":":
        raise UnsafeEntryNameError(f"entry name with a drive letter: {name!r}")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise UnsafeEntryNameError(f"entry name contains control characters: {name!r}")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeEntryNameError(f"entry name with an empty, '.' or '..' segment: {name!r}")


def read_ofd_package(data: bytes, limits: ZipLimits = DEFAULT_LIMITS) -> OfdPackage:
    """Open an OFD zip from bytes under ``limits``; raises an :class:`OfdError` subclass."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NotAZipError("OFD input must be bytes")
    data = bytes(data)
    if len(data) > limits.max_package_bytes:
        raise PackageTooLargeError(f"package is {len(data)} bytes, more than {limits.max_package_bytes}")
    if not data.startswith(b"PK"):
        raise NotAZipError("not a zip file (no PK signature)")
    files = _read_plain(data, limits)
    if files is not None:
        return OfdPackage(MappingProxyType(files))
    return _read_with_zipfile(data, limits)


# --- the plain-package fast path ------------------------------------------------------
# A licence OFD is a handful of small deflated entries in a plain zip: no comment, no zip64,
# no extra fields, no encryption, ASCII names. For exactly that shape the central directory
# is read with struct and each entry inflated with zlib directly, under every check the
# general reader makes (and stricter ones: entries must lie before the central directory,
# the deflate stream must end exactly, CRC-32 must match). Anything else -- including every
# defect -- returns None and goes through zipfile, whose reading and errors are the reference.
_EOCD = struct.Struct("<4s4H2LH")
#: central directory header, only the fields read: signature, version needed (low byte), flags, method,
#: CRC-32, compressed and uncompressed size, name / extra / comment lengths, local header offset
_CDH = struct.Struct("<4s2xBxHH4xLLLHHH8xL")
#: local file header, only the fields read: signature, flags, name and extra lengths
_LFH = struct.Struct("<4s2xH18xHH")
#: a name the fast path accepts: ASCII segments that do not start with a dot (so no '', '.',
#: '..'), separated by single slashes, no leading slash, optional trailing slash (a folder)
_PLAIN_SEGMENTS = rb"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*/?"
#: every entry name of a package, joined by newlines (which no plain name contains)
_PLAIN_NAMES = re.compile(_PLAIN_SEGMENTS + rb"(?:\n" + _PLAIN_SEGMENTS + rb")*")
#: signature of the zip64 end of central directory locator (20 bytes, just before the end record)
_ZIP64_LOCATOR = b"PK\x06\x07"
_PLAIN_FLAGS = 0x0002 | 0x0004 | 0x0008 | 0x0800  # deflate options, data descriptor, UTF-8 names
_NOT_PLAIN_FLAGS = ~_PLAIN_FLAGS
_MAX_EXTRACT_VERSION = 63  # as zipfile


def _read_plain(data: bytes, limits: ZipLimits) -> dict[str, bytes] | None:
    """One pass over the central directory: each entry's header, sizes and local header are checked
    and it is inflated (under a max_length cap) and CRC-checked at once; the names are checked
    together at the end (one regular expression over all of them, one case-folded set)."""
    n = len(data)
    if n < 22:
        return None
    sig, disk, cd_disk, count_disk, count, cd_size, cd_off, comment_len = _EOCD.unpack_from(data, n - 22)
    cd_end = n - 22
    if (sig != b"PK\x05\x06" or disk or cd_disk or count_disk != count or comment_len
            or cd_off + cd_size != cd_end or count > limits.max_entries):
        return None
    if data.startswith(_ZIP64_LOCATOR, cd_end - 20):
        # the 20 bytes before the end record read as a zip64 locator (they may be the last entry's
        # comment): zipfile would then take the central directory the zip64 record names, another
        # list of files than this one -- zipfile decides
        return None
    max_name, max_total = limits.max_entry_name_length, limits.max_total_uncompressed
    ratio_min, max_ratio = limits.ratio_check_min_bytes, limits.max_compression_ratio
    unpack_cdh, unpack_lfh, starts_with, inflater_for, crc32 = (_CDH.unpack_from, _LFH.unpack_from, data.startswith,
                                                                zlib.decompressobj, zlib.crc32)
    names: list[bytes] = []
    contents: list[bytes] = []
    spans: list[tuple[int, int]] = []  # (local header offset, end of its data) of every entry
    folders = False
    total = 0
    pos = cd_off
    for _ in range(count):
        if pos + 46 > cd_end:
            return None
        sig, extract_version, flags, method, crc, csize, usize, nlen, xlen, clen, offset = unpack_cdh(data, pos)
        pos += 46
        raw_name = data[pos: pos + nlen]
        pos += nlen + xlen + clen
        total += usize
        if (sig != b"PK\x01\x02" or xlen or flags & _NOT_PLAIN_FLAGS or extract_version > _MAX_EXTRACT_VERSION
                or nlen > max_name or total > max_total or (usize >= ratio_min and usize > max_ratio * max(csize, 1))):
            return None
        names.append(raw_name)
        if raw_name[-1:] == b"/":  # a folder: its name is checked with the others, nothing is kept
            contents.append(b"")
            spans.append((offset, offset))  # never read, but zipfile bounds the entry before it by it
            folders = True
            continue
        if offset + 30 > cd_off:
            return None
        lsig, lflags, lnlen, lxlen = unpack_lfh(data, offset)
        start = offset + 30 + lnlen + lxlen
        end = start + csize
        if (lsig != b"PK\x03\x04" or (lflags ^ flags) & 0x0800 or end > cd_off or lnlen != nlen
                or not starts_with(raw_name, offset + 30)):
            return None
        if method == 8:
            inflater = inflater_for(-15)
            try:
                content = inflater.decompress(data[start:end], usize + 1)
            except zlib.error:
                return None
            if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail or len(content) != usize:
                return None
        elif method == 0 and csize == usize:
            content = data[start:end]
        else:
            return None
        if crc32(content) != crc:
            return None
        contents.append(content)
        spans.append((offset, end))
    if pos != cd_end:
        return None
    # no entry's data may run into the next local header (zipfile: "Overlapped entries", the quoted-
    # overlap zip bomb; one file's bytes read again as another's): by offset, each entry starts at
    # or after the end of the one before, and no two share a local header
    spans.sort()
    prev_offset, prev_end = -1, 0
    for offset, end in spans:
        if offset <= prev_offset or offset < prev_end:
            return None
        prev_offset, prev_end = offset, end
    # every name at once: as many pieces as names (so no name holds a newline, and the join splits
    # back exactly), each plain ASCII segments, no two alike once case-folded (ASCII: lower() is
    # casefold(); an exact duplicate folds alike too)
    joined = b"\n".join(names)
    folded = joined.lower().split(b"\n")
    if len(folded) != count or len(set(folded)) != count or not _plain_names(joined):
        return None
    files = dict(zip(joined.decode("ascii").split("\n"), contents))
    if folders:
        return {name: content for name, content in files.items() if name[-1] != "/"}
    return files


#: the bytes a plain name may hold, and the newline that joins names
_NAME_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/\n"


def _plain_names(joined: bytes) -> bool:
    """``_PLAIN_NAMES.fullmatch(joined)`` by byte searches: only name bytes; no empty name (no
    leading, trailing or doubled newline); no segment empty or starting with a dot (no leading
    "/" or ".", no "//", "/.", "\\n/", "\\n."). A trailing "/" (a folder) stays allowed."""
    return bool(joined) and not (joined.translate(None, _NAME_BYTES) or joined[0] in b"/.\n"
                                 or joined[-1] == 10 or b"//" in joined or b"/." in joined
                                 or b"\n/" in joined or b"\n." in joined or b"\n\n" in joined)


def _read_with_zipfile(data: bytes, limits: ZipLimits) -> OfdPackage:
    """The general reader (any zip the standard library reads), with the same limits."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.LargeZipFile as exc:
        raise PackageTooLargeError(f"zip64 package refused: {exc}") from exc
    except (zipfile.BadZipFile, EOFError, struct.error, ValueError, OverflowError) as exc:
        kind = TruncatedPackageError if b"PK\x05\x06" not in data[-65557:] else NotAZipError
        raise kind(f"not a readable zip: {exc}") from exc
    except NotImplementedError as exc:  # an entry needing a newer zip version than zipfile reads (> 6.3)
        raise UnsupportedOfdError(f"zip feature not supported: {exc}") from exc
    with zf:
        conflict = _zip64_end_conflict(data)
        if conflict is not None:
            raise AmbiguousZipError(conflict)
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise TooManyEntriesError(f"{len(infos)} entries, more than {limits.max_entries}")
        seen: set[str] = set()
        seen_folded: set[str] = set()
        total = 0
        for info in infos:
            check_entry_name(info.filename, limits.max_entry_name_length)
            if info.filename in seen:
                raise DuplicateEntryError(f"entry {info.filename!r} appears twice")
            if info.filename.casefold() in seen_folded:
                raise DuplicateEntryError(f"entry {info.filename!r} differs from another only by case")
            seen.add(info.filename)
            seen_folded.add(info.filename.casefold())
            if info.flag_bits & 0x1:
                raise EncryptedEntryError(f"entry {info.filename!r} is encrypted")
            if info.compress_type not in _ALLOWED_METHODS:
                raise UnsupportedOfdError(f"entry {info.filename!r} uses compression method {info.compress_type}")
            total += info.file_size
            if total > limits.max_total_uncompressed:
                raise ZipBombError(f"uncompressed total exceeds {limits.max_total_uncompressed} bytes")
            if info.file_size >= limits.ratio_check_min_bytes and \
                    info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
                raise ZipBombError(
                    f"entry {info.filename!r} inflates {info.compress_size} -> {info.file_size} bytes "
                    f"(ratio over {limits.max_compression_ratio})")
        files: dict[str, bytes] = {}
        for info in infos:
            if info.is_dir():
                continue
            try:
                with zf.open(info) as fh:
                    content = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, struct.error, ValueError, OSError) as exc:
                raise TruncatedPackageError(f"entry {info.filename!r} cannot be read: {exc}") from exc
            except (NotImplementedError, RuntimeError) as exc:
                raise UnsupportedOfdError(f"entry {info.filename!r}: {exc}") from exc
            if len(content) != info.file_size:
                raise ZipBombError(f"entry {info.filename!r} inflates to a size other than declared")
            files[info.filename] = content
    return OfdPackage(MappingProxyType(files))


def _zip64_end_conflict(data: bytes) -> str | None:
    """When zipfile reads a zip64 end record, how it contradicts the classic end record (None if it
    does not). A reader that ignores zip64 (it may: the classic record's values are not the 0xFFFF /
    0xFFFFFFFF placeholders that send a reader to zip64) would list another central directory than
    zipfile -- one package, two sets of files."""
    find_end = getattr(zipfile, "_EndRecData", None)  # what zipfile itself goes by (CPython 3.11-3.13)
    if find_end is None:  # fail closed: a package with a zip64 locator near its end cannot be checked
        return ("a zip64 end record may name another central directory, and this Python's zipfile "
                "cannot be asked which it reads") if _ZIP64_LOCATOR in data[-(65557 + 20):] else None
    try:
        endrec = find_end(io.BytesIO(data))
    except (OSError, struct.error, zipfile.BadZipFile):
        return None
    if not endrec or endrec[0] != b"PK\x06\x06":
        return None
    _, _, _, _, count, cd_size, cd_off, _ = _EOCD.unpack_from(data, endrec[9])
    for what, classic, zip64, placeholder in (("entry count", count, endrec[4], 0xFFFF),
                                              ("central directory size", cd_size, endrec[5], 0xFFFFFFFF),
                                              ("central directory offset", cd_off, endrec[6], 0xFFFFFFFF)):
        if classic != zip64 and classic != placeholder:
            return (f"the zip64 end record's {what} ({zip64}) contradicts the end record's ({classic}): "
                    "zip readers would list different files")
    return None


def write_ofd_package(files: Mapping[str, bytes], when: datetime) -> bytes:
    """Deterministic OFD zip: deflate, every entry stamped with ``when``, files in the given order."""
    for name in files:
        check_entry_name(name)
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, content)
    return buf.getvalue()


__all__ = [
    "DEFAULT_LIMITS",
    "MAX_COMPRESSION_RATIO",
    "MAX_ENTRIES",
    "MAX_ENTRY_NAME_LENGTH",
    "MAX_PACKAGE_BYTES",
    "MAX_TOTAL_UNCOMPRESSED",
    "OfdError",
    "OfdPackage",
    "RATIO_CHECK_MIN_BYTES",
    "ZipLimits",
    "check_entry_name",
    "read_ofd_package",
    "write_ofd_package",
]
