"""The records and receipt drafts of one verify / verify-batch answer, in a compact form.

A verify answer needs one audit record and one receipt draft per licence. Building them is
pure and mechanical; :class:`VerificationGroup` carries only what varies per licence (region,
identifier, verdict, reasons, holder HMAC) plus what the answer's entries share, and
:func:`expand` turns it into the record bodies (exactly :meth:`AuditEvent.body` of the events
the same fields would make; tests/test_audit_verification_groups.py holds them equal) and the
drafts. Sinks expand a group where they commit it: the SQLite writer process expands it in its
own interpreter, so a batch of n licences costs the worker one small message, not n records
and n drafts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.receipts import batch_claims

#: one licence: (region, licence id, verdict, reason codes, holder HMAC, licence ids named in its
#: receipt: the licence's identifier, or none when it has none)
Entry = tuple[str | None, str | None, str, tuple[str, ...], str | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class VerificationGroup:
    """What one verify / verify-batch answer records: its entries and what they share."""

    time_text: str            # gateway.audit.model.format_time of the answer time
    iat: int                  # the answer time, epoch seconds (receipt claim)
    request_id: str           # as made safe by gateway.audit_wiring.safe_request_id
    partner: str | None
    request_digest: str       # gateway.receipts.request_digest of the request body
    batch: bool               # a verify-batch answer: records and receipts name their entry
    entries: tuple[Entry, ...]

    def as_wire(self) -> list[Any]:
        return [self.time_text, self.iat, self.request_id, self.partner, self.request_digest, self.batch,
                [list(e) for e in self.entries]]

    @classmethod
    def from_wire(cls, doc: Sequence[Any]) -> VerificationGroup:
        t, iat, rid, partner, digest, batch, entries = doc
        return cls(t, iat, rid, partner, digest, bool(batch),
                   tuple((e[0], e[1], e[2], tuple(e[3]), e[4], tuple(e[5])) for e in entries))


def expand(group: VerificationGroup, drafter: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """The record bodies (kind ``verify``, one per entry) and, when ``drafter`` (a
    :class:`gateway.receipts.ReceiptSigner`) is given, the answer's one receipt draft: a single
    verify's claims, or a verify-batch answer's with every entry listed
    (:func:`gateway.receipts.batch_claims`). Each record's ``extra.receipt`` names that draft, and
    in a batch ``extra.entry`` / ``extra.entries`` its place in the answer."""
    bodies: list[dict[str, Any]] = []
    drafts: list[Any] = []
    n = len(group.entries)
    ref = None
    if drafter is not None:
        if group.batch:
            verdict, reasons, ids, docs = batch_claims([(e[2], e[3], e[5][0] if e[5] else None)
                                                        for e in group.entries])
        else:
            (_, _, verdict, reasons, _, ids), docs = group.entries[0], None
        d = drafter.draft(request_digest=group.request_digest, request_id=group.request_id, verdict=verdict,
                          reasons=reasons, item=None, time_text=group.time_text, iat=group.iat, licence_ids=ids,
                          entries=docs)
        drafts.append(d)
        ref = d.ref
    for i, (region, licence_id, verdict, reasons, holder, ids) in enumerate(group.entries):
        extra: dict[str, Any] = {"receipt": ref, "entry": i, "entries": n} if group.batch else {"receipt": ref}
        bodies.append({
            "kind": "verify", "time": group.time_text, "request_id": group.request_id, "partner": group.partner,
            "operator": None, "item_code": None, "region": region, "licence_id": licence_id, "verdict": verdict,
            "reasons": list(reasons), "holder_hmac": holder, "extra": extra,
        })
    return bodies, drafts


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record body already built (by :func:`expand`), appended like an ``AuditEvent``."""

    record: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return self.record
