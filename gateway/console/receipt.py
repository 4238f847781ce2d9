"""The printable receipt's signature and QR code.

The receipt vouches for the check result by its SHA-256 digest (``cases.result_digest``):
a compact JWS signed with the gateway's own key (:class:`gateway.auth.jose.SigningKey`, the
key published at ``/v1/keys``), so anyone holding the JWKS can check a printed receipt.
The QR code is drawn server-side by segno as inline SVG (no script, works offline).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import segno

from ..auth.jose import SigningKey

RECEIPT_TYPE = "elicence-console-receipt"


def receipt_claims(case_id: str, item_code: str, complete: bool, digest: str, operator: str, window: str,
                   issued_at: dt.datetime) -> dict[str, Any]:
    return {"typ": RECEIPT_TYPE, "rid": case_id, "item": item_code, "complete": complete,
            "sha256": digest, "op": operator, "win": window, "iat": int(issued_at.timestamp())}


def sign_receipt(key: SigningKey, claims: dict[str, Any]) -> str:
    return key.sign(claims)


def qr_svg(text: str, title: str) -> str:
    """Inline SVG of ``text`` as a QR code (error correction M, quiet zone kept)."""
    return segno.make(text, error="m", micro=False).svg_inline(scale=3, title=title, svgclass="qr",
                                                                lineclass="qrline")
