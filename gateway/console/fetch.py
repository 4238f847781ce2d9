"""Fetching an applicant's missing licences from the issuing regions at the window.

When the applicant has not brought a licence the item needs, the clerk, with the applicant's consent,
asks the regions that issue it (the federated query of ``POST /v1/licences/query``: the same routing,
deadline, retries, breakers, verification and judgement, :func:`gateway.query_routes.ask_regions`).
Only the types the case still lacks are asked for; every licence a region returns for the applicant
(right holder, region and type, valid or not) joins the case as a presented one would, so the
checklist, the cards and the receipt treat it alike, and its fields are disclosed under the same
rules. Licences of another holder, region or type are refused and only counted.

Imported by the console's handler when first used (it needs :mod:`gateway.query_routes`, which
``gateway.app`` imports after the console).

Audit: the query (its record and one per licence judged, the partner being ``console/<window>``) and a
``check`` record per licence added (its ``extra.source`` ``console.fetch``, where a scanned one says
``console.verify``), all before the clerk sees anything of them. A licence already a card of the case,
judged alike (asked again because it is expired, say), is not added twice; a valid one is added before
unusable ones, so a region returning many cannot crowd it out of a case near MAX_LICENCES_PER_CASE.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import errors
from ..app import SERVICES
from ..catalogue import Catalogue, LicenceType
from ..core import VerificationResult
from ..errors import RequestRejected
from ..query_routes import MAX_USE_CAUSE, QueryRequest, ask_regions, check_use_cause, record_query
from ..upstream.routing import route
from .cases import MAX_LICENCES_PER_CASE, Case

#: what a fetch request may hold
FIELDS = frozenset({"use_cause", "consent"})
#: the detail of a refused use_cause, written for the clerk (console.js shows it: Chinese / English)
USE_CAUSE_INVALID = (f"用证事由须为 1-{MAX_USE_CAUSE} 个字，不含控制字符，也不得含身份证号码（事由明文记入核验记录） / "
                     f"the purpose of use must be 1-{MAX_USE_CAUSE} characters, without control characters or an "
                     f"ID number (it is recorded in clear)")


def missing_types(case: Case, catalogue: Catalogue) -> tuple[LicenceType, ...]:
    """The licence types of the item's unmet requirements on the applicant themself that an applicant of
    this code type can hold (a requirement on a role, e.g. a legal representative's ID, is not asked of
    the applicant's regions)."""
    code_type = case.applicant.code_type
    types: list[LicenceType] = []
    for ro in case.outcome(catalogue).requirements:
        if ro.satisfied or ro.requirement.binding != "holder":
            continue
        types += [t for t in ro.accepted_types if code_type in t.holder_code_types]
    return tuple(dict.fromkeys(types))


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """A checked fetch request: the query to run, or ``None`` when the case lacks nothing to fetch."""

    query: QueryRequest | None


def plan(app: web.Application, case: Case, body: Any) -> FetchPlan:
    """Check the clerk's request against the case; RequestRejected (nothing asked) when it is wrong."""
    if not isinstance(body, dict) or set(body) - FIELDS:
        raise RequestRejected(errors.BAD_REQUEST, "expected {use_cause, consent}")
    if body.get("consent") is not True:
        raise RequestRejected(errors.CONSENT_REQUIRED, "the clerk has not confirmed the applicant's consent")
    try:
        use_cause = check_use_cause(body.get("use_cause"))
    except RequestRejected:  # the title alone ("请求格式错误") would not tell the clerk what to change
        raise RequestRejected(errors.BAD_REQUEST, USE_CAUSE_INVALID) from None
    services = app[SERVICES]
    types = missing_types(case, services.catalogue)
    if not types:
        return FetchPlan(None)
    if len(case.presented) >= MAX_LICENCES_PER_CASE:
        raise RequestRejected(errors.BATCH_TOO_LARGE, f"at most {MAX_LICENCES_PER_CASE} licences per case")
    item, settings = case.item, services.settings
    regions = route(case.applicant.code_type, case.applicant.code, item.all_regions, item.regions, None,
                    tuple(services.specs))
    if not regions:
        raise RequestRejected(errors.BAD_REQUEST, "the applicant's code names no region and the item none to ask")
    regions = regions[:settings.query_max_regions]
    return FetchPlan(QueryRequest(case.applicant.code_type, case.applicant.code, None, item, types, tuple(regions), (),
                                  use_cause, settings.query_deadline_ms))


async def fetch(app: web.Application, q: QueryRequest, *, request_id: str, window: str, operator: str
                ) -> tuple[list[dict[str, Any]], list[tuple[str, VerificationResult]], bool]:
    """Ask the regions and audit the query (its records name the window and the clerk who asked).
    (per-region answers, accepted (region, result) pairs, complete)."""
    from ..audit_wiring import console_partner

    started = asyncio.get_running_loop().time()
    gathered = await ask_regions(app, q, started, shortened=False)
    await record_query(app, q, gathered, request_id=request_id, partner=console_partner(window), operator=operator)
    complete = all(a["status"] in ("ok", "not_found") for a in gathered.answers)
    return gathered.answers, gathered.accepted, complete
