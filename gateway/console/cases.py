"""A case (办件) at the window: one item, one applicant, the licences presented so far.

The judgement is the API's own: each licence is verified by the core (``gateway.app.verify_now``)
and the set is judged by :func:`gateway.checking.check_item`, exactly as
``POST /v1/items/{code}/check`` does. This module only keeps the case and turns the outcome
into what the clerk reads (:func:`case_view`, pure, in the clerk's language).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..catalogue import Catalogue, Item
from ..checking import Applicant, CheckOutcome, Finding, Presented, check_item
from ..identifiers import HOLDER_CODE_TYPES, mask_holder_code
from ..model import FIELD_LABELS_ZH
from .i18n import ADVICE_EN, FIELD_LABELS_EN, t

#: most licences one case holds (a window rarely sees more than a handful)
MAX_LICENCES_PER_CASE = 30
_MASKED_FIELDS = frozenset({"holder_code"})
#: how a licence reached the case -> its label's key
_SOURCES = {"scan": "source_scan", "upload": "source_upload", "fetch": "source_fetch"}


@dataclass(slots=True)
class Case:
    id: str
    item: Item
    applicant: Applicant
    operator: str
    window: str
    opened_at: dt.datetime
    presented: list[Presented] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "scan" | "upload" | "fetch", per presented licence
    checked_at: dt.datetime | None = None
    #: held while a licence is added: two scans in flight at once (a scanner is fast) each get
    #: their own number and card, in the order they arrived
    adding: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    def add(self, presented: Presented, source: str, now: dt.datetime) -> None:
        self.presented.append(presented)
        self.sources.append(source)
        self.checked_at = now

    def outcome(self, catalogue: Catalogue) -> CheckOutcome:
        return check_item(catalogue, self.item, self.applicant, self.presented)


def _label(catalogue: Catalogue, type_code: str | None, name: str, lang: str) -> str:
    if name in FIELD_LABELS_ZH:
        return FIELD_LABELS_ZH[name] if lang == "zh" else FIELD_LABELS_EN.get(name, name)
    ltype = catalogue.type_by_code(type_code or "")
    sf = ltype.surface_field(name) if ltype else None
    if sf is None:
        return name
    return sf.label_zh if lang == "zh" else sf.label_en


def _fields(catalogue: Catalogue, type_code: str | None, disclosed: dict[str, Any], lang: str) -> list[dict[str, str]]:
    out = []
    flat = [(k, v) for k, v in disclosed.items() if k != "surface"]
    flat += list((disclosed.get("surface") or {}).items())
    for name, value in flat:
        if value is None:
            value = "长期" if lang == "zh" and name == "valid_until" else ("long-term" if name == "valid_until" else "")
        text = str(value)
        if name in _MASKED_FIELDS:
            text = mask_holder_code(text)
        elif name == "holder_code_type" and text in HOLDER_CODE_TYPES and lang == "zh":
            text = f"{text} {HOLDER_CODE_TYPES[text]}"
        out.append({"name": name, "label": _label(catalogue, type_code, name, lang), "value": text})
    return out


def _finding(f: Finding, lang: str) -> dict[str, str]:
    r = f.reason
    return {"code": r.code, "message": r.message_zh if lang == "zh" else r.message,
            "advice": r.advice_zh if lang == "zh" else ADVICE_EN.get(r.code, "")}


def case_view(case: Case, catalogue: Catalogue, lang: str) -> dict[str, Any]:
    """Everything the page shows for ``case``, in ``lang``; holder codes masked."""
    outcome = case.outcome(catalogue)
    cards = []
    for lo, source in zip(outcome.licences, case.sources, strict=True):
        p = lo.presented
        lic = p.licence
        ltype = catalogue.type_by_code(lic.type_code) if lic else None
        codes = {f.reason.code for f in lo.findings}
        # a genuine licence that satisfies nothing here (another person's, a type or region the item does
        # not take) must not greet the clerk with the same green banner as one that counts
        banner = "unusable" if p.verdict == "valid" and not lo.satisfies else p.verdict
        cards.append({
            "n": p.index + 1,
            "verdict": p.verdict,
            "banner": banner,
            "verdict_text": t(lang, f"verdict_{banner}"),
            "usable": bool(lo.satisfies),
            "region": {"code": p.region[0], "name": p.region[1]} if p.region else None,
            "issuer": lic.issuer_name if lic else None,
            "type_name": (ltype.name_zh if lang == "zh" else ltype.name_en) if ltype else (lic.type_name if lic else None),
            "source": t(lang, _SOURCES.get(source, "source_scan")),
            "satisfies": list(lo.satisfies),
            "fields": _fields(catalogue, lic.type_code if lic else None, dict(lo.disclosed), lang)
            if lo.disclosed is not None else [],
            "reasons": [_finding(f, lang) for f in lo.findings],
            "note": t(lang, "not_applicant") if "HOLDER_MISMATCH" in codes else (
                t(lang, "not_needed") if "TYPE_NOT_ACCEPTED" in codes else ""),
        })
    checklist = []
    for ro in outcome.requirements:
        names = [(tp.name_zh if lang == "zh" else tp.name_en) for tp in ro.accepted_types]
        checklist.append({
            "id": ro.requirement.id,
            "label": ro.requirement.description_zh if lang == "zh" else " / ".join(names),
            "accepts": names,
            "mandatory": ro.requirement.mandatory,
            "satisfied": ro.satisfied,
            "by": [p.index + 1 for p in ro.satisfied_by],
        })
    return {
        "id": case.id,
        "item": {"code": case.item.code, "name": case.item.name_zh if lang == "zh" else case.item.name_en,
                 "name_zh": case.item.name_zh, "department": case.item.department},
        "applicant": {"code_type": case.applicant.code_type, "masked": mask_holder_code(case.applicant.code)},
        "operator": case.operator,
        "window": case.window,
        "complete": outcome.complete,
        "outcome": outcome.outcome,
        "summary": t(lang, "complete" if outcome.complete else "incomplete"),
        "checklist": checklist,
        "cards": cards,
        "checked_at": case.checked_at.isoformat().replace("+00:00", "Z") if case.checked_at else None,
    }


def result_body(case: Case, catalogue: Catalogue) -> bytes:
    """The check result as the API renders it (masked applicant, disclosed fields only) plus
    the case metadata (with how each licence reached the case, in the order of ``licences``),
    as canonical JSON bytes: what the receipt's signature vouches for."""
    body = case.outcome(catalogue).to_dict()
    body["case"] = {"id": case.id, "operator": case.operator, "window": case.window,
                    "checked_at": case.checked_at.isoformat() if case.checked_at else None,
                    # how each licence reached the case (scan | upload | fetch: fetched from its issuing region)
                    "sources": list(case.sources)}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
