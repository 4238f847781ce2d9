"""The printable receipt's signature and QR code.

The receipt is the gateway's own signed receipt (:class:`gateway.receipts.ReceiptSigner`,
typ ``elicence-receipt+jws``) signed with the gateway key published at ``/v1/keys``; its
``request_digest`` is the SHA-256 of the case's check result
(:func:`gateway.console.cases.result_body`), so :func:`gateway.receipts.verify_receipt`
checks a printed receipt offline. The QR code is drawn server-side by segno as inline SVG
(no script, works offline).
"""

from __future__ import annotations

import segno

from ..auth.jose import SigningKey
from ..catalogue import Catalogue
from ..receipts import ReceiptSigner, request_digest
from .cases import Case, result_body

GATEWAY_ID = "elicence-gateway/console"


def signer_for(key: SigningKey) -> ReceiptSigner:
    return ReceiptSigner(key.private_key, key.kid, GATEWAY_ID)


def case_receipt(signer: ReceiptSigner, case: Case, catalogue: Catalogue) -> tuple[str, str]:
    """(compact JWS receipt, b64url SHA-256 of the result it vouches for) for ``case``."""
    body = result_body(case, catalogue)
    outcome = case.outcome(catalogue)
    reasons = sorted({f.reason.code for lo in outcome.licences for f in lo.findings})
    ids = [p.identifier for p in case.presented if p.identifier]
    assert case.checked_at is not None  # a receipt exists only once a licence was checked
    token = signer.sign(request_body=body, verdict=outcome.outcome, reasons=reasons, item=case.item.code,
                        time=case.checked_at, licence_ids=ids)
    return token, request_digest(body)


def qr_svg(text: str, title: str) -> str:
    """Inline SVG of ``text`` as a QR code (error correction M, quiet zone kept)."""
    return segno.make(text, error="m", micro=False).svg_inline(scale=3, title=title, svgclass="qr",
                                                                lineclass="qrline")
