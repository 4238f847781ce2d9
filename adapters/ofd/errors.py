"""Errors of the OFD reader: every one is a licence rejection with a stable reason code.

Each class names the attack or defect it models so callers and tests can tell them
apart; all carry :data:`gateway.errors.MALFORMED` (or ``UNSUPPORTED_FORMAT``) and a
human-readable ``detail``.
"""

from __future__ import annotations

from gateway.errors import MALFORMED, UNSUPPORTED_FORMAT, LicenceRejected, Reason


class OfdError(LicenceRejected):
    """The OFD package cannot be read safely. ``kind`` is a stable machine name."""

    kind = "malformed"
    default_reason: Reason = MALFORMED

    def __init__(self, detail: str) -> None:
        super().__init__(self.default_reason, detail, kind=self.kind)


class NotAZipError(OfdError):
    kind = "not_zip"


class TruncatedPackageError(OfdError):
    kind = "truncated"


class PackageTooLargeError(OfdError):
    kind = "too_large"


class ZipBombError(OfdError):
    kind = "zip_bomb"


class TooManyEntriesError(OfdError):
    kind = "too_many_entries"


class UnsafeEntryNameError(OfdError):
    kind = "unsafe_entry_name"


class DuplicateEntryError(OfdError):
    kind = "duplicate_entry"


class AmbiguousZipError(OfdError):
    """One zip, two readings: e.g. a zip64 end record naming another central directory than the end record."""

    kind = "ambiguous_zip"


class EncryptedEntryError(OfdError):
    kind = "encrypted_entry"


class OfdStructureError(OfdError):
    """OFD.xml / Signatures.xml / a referenced part is missing or not what OFD requires."""

    kind = "structure"


class UnsupportedOfdError(OfdError):
    kind = "unsupported"
    default_reason = UNSUPPORTED_FORMAT
