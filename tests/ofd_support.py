"""Helpers shared by the OFD tests."""

from __future__ import annotations

import io
import zipfile


def rezip(files: dict[str, bytes]) -> bytes:
    """An OFD package (deflated zip) holding ``files`` in the given order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()
