"""``POST /v1/licences/query``: fetch an applicant's licences from the issuing regions.

The clerk enters the applicant's code; the gateway routes the query
(:mod:`gateway.upstream.routing`), asks every region concurrently through
:class:`~gateway.upstream.Upstreams` (deadline, retries, breaker, concurrency limit), verifies
every returned licence through the same core as a presented one (:func:`gateway.app.verify_now`:
signature, chain, status), binds it to the holder asked about, and answers per region:
``ok`` / ``not_found`` / ``timeout`` / ``error`` / ``circuit_open``. Licence data leaves only as
:func:`gateway.catalogue.disclose` of the item's requirements, and only for a valid licence (an
expired, revoked or undecidable one is listed with its verdict and reasons, no fields); a licence that fails its
signature, names another holder, comes from another region or is of a type not asked for is
*rejected* and reported without any of its data.

The whole answer is bounded by the request's deadline (``deadline_ms``, at most the
``query_deadline_ms`` setting): regions still running when it expires, fetching or having their
licences verified, are cancelled and answered ``timeout``. A deadline the partner shortened is its
own choice: an attempt it cuts short is not counted against the region's circuit breaker.

Every query is audited through the :data:`QUERY_AUDIT` hook (partner, item, use cause,
regions asked and the outcome of each, every licence judged with its identifier, verdict, reason
codes and whether its fields were disclosed; the holder only as a keyed hash) before the answer
is sent; if the hook fails, no answer is given (AUDIT_UNAVAILABLE). A query refused before any region
is asked (400 bad input, 403 an item or region the partner may not use, 404 an unknown item, 408/413/415
a body that cannot be read) is recorded too, through the hook's ``record_refusal`` (:class:`QueryRefusal`:
who asked, about whom as a keyed hash, for which item and regions, why), before the refusal is sent; if
that fails, the answer is 503 AUDIT_UNAVAILABLE, as for a verify refused for a licence's region.

``GET /v1/admin/upstreams`` (scope ``admin``): per-region flavour, breaker state and counters.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import orjson
from aiohttp import web

from . import errors
from .app import FEATURES, REQUEST_ID, SERVICES, read_json, verify_now
from .auth import ADMIN, AUTH_PRINCIPAL, LICENCES_QUERY, requires_scope
from .catalogue import Catalogue, Item, LicenceType, Requirement, disclose
from .config import Settings
from .core import PASS, Verdict, VerificationResult
from .errors import GatewayError, InfrastructureError, RequestRejected
from .identifiers import HOLDER_CODE_TYPES, contains_citizen_id, holder_code_valid, mask_holder_code
from .upstream import (BreakerPolicy, HolderQuery, RegionFetch, ResiliencePolicy, RetryPolicy, Upstreams,
                       build_configs)
from .upstream.routing import route

log = logging.getLogger("gateway.query")

MAX_USE_CAUSE = 200
MAX_NAME = 64
MAX_TYPES = 16
_MAX_CODE = 64   # a refused query's holder code is hashed up to this length (the longest valid one is 18)
_CASE_FOLDED = frozenset({"111", "001"})
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

UPSTREAMS = web.AppKey("upstreams", Upstreams)
#: optional, set before start-up: the breakers' clock (tests inject a fake one)
UPSTREAM_CLOCK = web.AppKey("upstream_clock", object)


# --- audit hook -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LicenceOutcome:
    """What the audit keeps of one licence a region returned: never its data, only what it was and
    what became of it (``disclosed``: the item's fields of it went to the partner)."""

    region: str
    index: int
    licence_id: str | None
    verdict: str
    reasons: tuple[str, ...]
    disclosed: bool


@dataclass(frozen=True, slots=True)
class QueryAuditRecord:
    """What is audited of one query. No holder code: only ``holder_hmac``; no licence data."""

    request_id: str
    partner: str
    item_code: str
    use_cause: str
    holder_hmac: str
    regions: tuple[tuple[str, str], ...]  # (region, outcome) for every region asked
    rejected: int  # licences rejected (wrong holder, bad signature, ...)
    elapsed_ms: int
    #: every licence judged: its region, index, identifier (if signed by its issuer), verdict, reason codes and
    #: whether its fields were disclosed (an audit store may keep one entry per licence; see as_audit_fields)
    licences: tuple[LicenceOutcome, ...] = ()
    #: who asked where a person did (the console's clerk); None for a partner system's own query
    operator: str | None = None

    def as_audit_fields(self) -> dict[str, Any]:
        """The fields of a ``gateway.audit`` event of kind ``query`` (extra holds JSON scalars)."""
        return {"kind": "query", "request_id": self.request_id, "partner": self.partner, "operator": self.operator,
                "item_code": self.item_code, "holder_hmac": self.holder_hmac,
                "verdict": "answered" if any(o == "ok" for _, o in self.regions) else "no-licence",
                "extra": {"use_cause": self.use_cause, "rejected": self.rejected, "elapsed_ms": self.elapsed_ms,
                          "regions": ";".join(f"{r}:{o}" for r, o in self.regions),
                          # counts (bounded size): how many licences were judged and whose fields the partner got
                          "judged": len(self.licences), "disclosed": sum(o.disclosed for o in self.licences)}}


@dataclass(frozen=True, slots=True)
class QueryRefusal:
    """What is audited of a query refused before any region was asked. Nothing left the gateway, but
    the attempt -- a partner asking about someone outside the items or regions it was granted, or with
    a body the gateway would not act on -- is what an auditor looks for. Only what the gateway itself
    can vouch for is kept: the holder as ``holder_hmac`` (when the body named a code of a known type),
    an item only if the catalogue has it, region codes only of the 45, the use cause only if it would
    have been accepted (it is kept in clear)."""

    request_id: str
    partner: str
    reason: str                      # the refusal's reason code
    status: int                      # its HTTP status
    holder_hmac: str | None = None
    item_code: str | None = None
    regions: tuple[str, ...] = ()    # regions the body named
    use_cause: str | None = None
    operator: str | None = None

    def as_audit_fields(self) -> dict[str, Any]:
        """The fields of a ``gateway.audit`` event of kind ``query``, verdict ``refused``."""
        extra: dict[str, Any] = {"refused": "request", "status": self.status}
        if self.use_cause is not None:
            extra["use_cause"] = self.use_cause
        if self.regions:
            extra["regions"] = ";".join(self.regions)
        return {"kind": "query", "request_id": self.request_id, "partner": self.partner, "operator": self.operator,
                "item_code": self.item_code, "holder_hmac": self.holder_hmac, "verdict": "refused",
                "reasons": (self.reason,), "extra": extra}


class QueryAuditHook(Protocol):
    async def record_query(self, record: QueryAuditRecord) -> None: ...

    # and optionally ``async def record_refusal(self, refusal: QueryRefusal) -> None`` (a hook without it
    # records answered queries only)


class LogQueryAudit:
    """Default hook until an audit store is wired: one JSON log line per query."""

    async def record_query(self, record: QueryAuditRecord) -> None:
        log.info("query audit %s", orjson.dumps(record.as_audit_fields()).decode("utf-8"))

    async def record_refusal(self, refusal: QueryRefusal) -> None:
        log.info("query audit %s", orjson.dumps(refusal.as_audit_fields()).decode("utf-8"))


#: the audit hook of the query route (replace before start-up to send records elsewhere)
QUERY_AUDIT = web.AppKey("query_audit", object)


def holder_hmac(key: bytes, code_type: str, code: str) -> str:
    """Keyed HMAC-SHA256 of a holder code, in the same form as ``gateway.audit`` records
    (type and upper-cased code joined by U+001F), so a supervisor's search finds both."""
    return hmac.new(key, f"{code_type.strip()}\x1f{code.strip().upper()}".encode(), hashlib.sha256).hexdigest()


# --- request ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueryRequest:
    code_type: str
    code: str
    name: str | None
    item: Item
    types: tuple[LicenceType, ...]
    regions: tuple[str, ...]
    skipped: tuple[str, ...]  # routed by default but not allowed for this partner
    use_cause: str
    deadline_ms: int


def _bad(detail: str) -> RequestRejected:
    return RequestRejected(errors.BAD_REQUEST, detail)


def parse_query(body: Any, catalogue: Catalogue, region_codes: Sequence[str], settings: Settings,
                may_use_item: Callable[[str], bool], may_use_region: Callable[[str], bool]) -> QueryRequest:
    """Validate the body into a :class:`QueryRequest` (RequestRejected on anything wrong)."""
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    unknown = set(body) - {"holder", "licence_types", "regions", "item", "use_cause", "deadline_ms"}
    if unknown:
        raise _bad(f"unknown field(s) {sorted(unknown)}")
    holder = body.get("holder")
    if not isinstance(holder, dict) or set(holder) - {"code_type", "code", "name"}:
        raise _bad("'holder' must be an object with code_type, code and optionally name")
    code_type, code, name = holder.get("code_type"), holder.get("code"), holder.get("name")
    if not isinstance(code_type, str) or code_type not in HOLDER_CODE_TYPES or not isinstance(code, str):
        raise RequestRejected(errors.APPLICANT_INVALID, "holder.code_type must be a GB/T 36903 holder code type")
    # ASCII letters only: str.upper() turns "ﬀ" into "FF", a check-valid USCC of a code nobody wrote
    code = code.strip().translate(_ASCII_UPPER) if code_type in _CASE_FOLDED else code.strip()
    if not holder_code_valid(code_type, code):
        raise RequestRejected(errors.APPLICANT_INVALID, f"holder.code is not a valid code of type {code_type}")
    if name is not None and (not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_NAME):
        raise _bad(f"holder.name must be 1-{MAX_NAME} characters")
    if name is not None and not name.strip().isprintable():
        # a control character (NUL, ESC, U+FFFE ...) makes the XML query unreadable to the region: its 400
        # counted against the region's breaker, so a few such queries opened it for every partner
        raise _bad("holder.name must hold printable characters only (no control characters)")
    item_code = body.get("item")
    if not isinstance(item_code, str) or not item_code:
        raise _bad("'item' must be an item code")
    item = catalogue.item(item_code)
    if item is None:
        raise RequestRejected(errors.NOT_FOUND, f"no item {item_code!r}")
    if not may_use_item(item_code):
        raise RequestRejected(errors.FORBIDDEN, f"the partner may not use item {item_code}")
    use_cause = check_use_cause(body.get("use_cause"))
    types = _types(body.get("licence_types"), item, catalogue, code_type)
    explicit = body.get("regions")
    if explicit is not None:
        if not isinstance(explicit, list) or not explicit or not all(isinstance(r, str) for r in explicit):
            raise _bad("'regions' must be a non-empty list of region codes")
        unknown_regions = [r for r in explicit if r not in region_codes]
        if unknown_regions:
            raise _bad(f"unknown region(s) {unknown_regions}")
        forbidden = [r for r in explicit if not may_use_region(r)]
        if forbidden:
            raise RequestRejected(errors.FORBIDDEN, f"the partner may not query region(s) {forbidden}")
    routed = route(code_type, code, item.all_regions, item.regions, explicit, region_codes)
    allowed = tuple(r for r in routed if may_use_region(r))
    skipped = tuple(r for r in routed if not may_use_region(r))
    if not routed:
        raise _bad("no region to ask: the holder code encodes no region and the item names none; give 'regions'")
    if not allowed:
        raise RequestRejected(errors.FORBIDDEN, f"the partner may not query region(s) {list(skipped)}")
    if len(allowed) > settings.query_max_regions:
        raise _bad(f"{len(allowed)} regions > query_max_regions {settings.query_max_regions}")
    deadline = body.get("deadline_ms", settings.query_deadline_ms)
    if isinstance(deadline, bool) or not isinstance(deadline, int) or deadline < 1:
        raise _bad("'deadline_ms' must be a positive integer")
    return QueryRequest(code_type, code, name.strip() if name else None, item, types, allowed, skipped,
                        use_cause, min(deadline, settings.query_deadline_ms))


def check_use_cause(use_cause: Any) -> str:
    """The 用证事由 of a query, stripped; RequestRejected when it is missing, too long, holds control
    characters or an ID number (it is audited in clear)."""
    if not isinstance(use_cause, str) or not use_cause.strip() or len(use_cause) > MAX_USE_CAUSE:
        raise _bad(f"'use_cause' (用证事由) must be 1-{MAX_USE_CAUSE} characters")
    if any(c < " " for c in use_cause):  # not isprintable(): the full-width space U+3000 is Chinese text
        raise _bad("'use_cause' (用证事由) must hold no control characters")
    if contains_citizen_id(use_cause):
        raise _bad("'use_cause' must not contain an ID number (it is audited in clear)")
    return use_cause.strip()


def _types(raw: Any, item: Item, catalogue: Catalogue, code_type: str) -> tuple[LicenceType, ...]:
    if raw is None:  # default: what the item asks of the holder themself
        keys = [k for r in item.requirements if r.binding == "holder" for k in r.accept]
        out = [t for k in dict.fromkeys(keys) if (t := catalogue.type_by_key(k)) and code_type in t.holder_code_types]
        if not out:
            raise RequestRejected(errors.TYPE_NOT_ACCEPTED, "the item asks for no licence this holder could hold; "
                                                            "give 'licence_types'")
        return tuple(out)
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TYPES or not all(isinstance(k, str) for k in raw):
        raise _bad(f"'licence_types' must be a list of 1-{MAX_TYPES} licence type keys or codes")
    out = []
    for k in dict.fromkeys(raw):
        t = catalogue.type_by_key(k) or catalogue.type_by_code(k)
        if t is None:
            raise _bad(f"unknown licence type {k!r}")
        if t.key not in item.licence_types:
            raise RequestRejected(errors.TYPE_NOT_ACCEPTED, f"item {item.code} does not ask for {t.key}")
        out.append(t)
    return tuple(out)


# --- per-region answer ----------------------------------------------------------------
def _reasons(result: VerificationResult) -> list[dict[str, str]]:
    # codes and messages only: details may quote licence values
    return [r.reason.as_dict() for r in result.reasons]


def _rejection(index: int, reason: errors.Reason) -> dict[str, Any]:
    return {"index": index, "verdict": Verdict.INVALID.value, "reasons": [reason.as_dict()]}


def judge(q: QueryRequest, region: str, index: int, result: VerificationResult, catalogue: Catalogue
          ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One returned licence -> (disclosed entry, None) or (None, rejection). Pure."""
    lic = result.licence
    if lic is None or result.checks.get("signature") != PASS:
        reasons = _reasons(result) or [errors.MALFORMED.as_dict()]
        return None, {"index": index, "verdict": result.verdict.value, "reasons": reasons}
    if result.region is None or result.region.code != region:
        return None, _rejection(index, errors.ISSUER_REGION_MISMATCH)
    if not q.item.covers_region(region):   # as the item check: the item is not handled across this region
        return None, _rejection(index, errors.UNKNOWN_REGION)
    folded = lic.holder_code.translate(_ASCII_UPPER) if lic.holder_code_type in _CASE_FOLDED else lic.holder_code
    if lic.holder_code_type != q.code_type or folded != q.code:
        return None, _rejection(index, errors.HOLDER_MISMATCH)
    ltype = catalogue.type_by_code(lic.type_code)
    if ltype is None or ltype not in q.types:
        return None, _rejection(index, errors.TYPE_NOT_ACCEPTED)
    reqs: list[Requirement] = [r for r in q.item.requirements if r.binding == "holder" and ltype.key in r.accept]
    disclosed: dict[str, Any] = {}
    # only a valid licence's fields leave (as the item check: an expired, revoked or undecidable licence
    # satisfies nothing, so its data serves nothing); the entry still says what it is and why it fails
    for req in reqs if result.verdict is Verdict.VALID else ():
        part = disclose(req, lic, ltype)   # only the surface fields the licence's own type declares
        surface = part.pop("surface", None)
        disclosed.update(part)
        if surface is not None:
            disclosed.setdefault("surface", {}).update(surface)
    entry = {"type": ltype.key, "type_name": ltype.name_zh, "verdict": result.verdict.value,
             "reasons": _reasons(result), "requirements": [r.id for r in reqs], "licence": disclosed,
             "notes": [n.as_dict() for n in result.notes]}
    return entry, None


def region_answer(q: QueryRequest, fetch: RegionFetch, verify: Callable[[bytes], VerificationResult],
                  catalogue: Catalogue, region_name: str, *, deadline: float = math.inf,
                  clock: Callable[[], float] = time.monotonic, kept: list[VerificationResult] | None = None
                  ) -> tuple[dict[str, Any], list[LicenceOutcome]]:
    """The region's answer and the audit's outcome of every licence judged. Verification stops at
    ``deadline`` (``clock`` time): a region whose licences are not all judged by then is answered
    ``timeout`` without any of them, so regions answering just before the deadline with many licences
    cannot hold the answer past it (verification does not yield to the event loop). A licence repeated
    byte for byte in one answer is judged and listed once. ``kept``: receives the verification result of every
    licence accepted (listed, not rejected), when the whole region is judged in time."""
    accepted: list[VerificationResult] = []
    licences: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    outcomes: list[LicenceOutcome] = []
    status = fetch.outcome
    seen: set[bytes] = set()
    repeated = 0
    for i, data in enumerate(fetch.licences):
        if data in seen:
            repeated += 1
            continue
        seen.add(data)
        if clock() >= deadline:
            return ({"region": fetch.region, "name": region_name, "status": "timeout", "licences": [],
                     "rejected": [], "detail": "deadline reached while verifying the region's licences",
                     "attempts": fetch.attempts, "latency_ms": fetch.latency_ms}, [])
        try:
            result = verify(data)
        except GatewayError as exc:  # e.g. trust not loaded: nothing can be judged
            rejected.append({"index": i, "verdict": Verdict.INDETERMINATE.value, "reasons": [exc.reason.as_dict()]})
            outcomes.append(LicenceOutcome(fetch.region, i, None, Verdict.INDETERMINATE.value, (exc.reason.code,),
                                           False))
            continue
        entry, rejection = judge(q, fetch.region, i, result, catalogue)
        # the identifier only of a licence its issuer signed (a tampered one's is anyone's text)
        lic_id = (result.licence.identifier[:128] if result.licence is not None
                  and result.checks.get("signature") == PASS else None)
        if entry is not None:
            licences.append(entry)
            accepted.append(result)
            outcomes.append(LicenceOutcome(fetch.region, i, lic_id, entry["verdict"],
                                           tuple(r["code"] for r in entry["reasons"]), bool(entry["licence"])))
        else:
            rejected.append(rejection)
            outcomes.append(LicenceOutcome(fetch.region, i, lic_id, rejection["verdict"],
                                           tuple(r["code"] for r in rejection["reasons"]), False))
    detail = fetch.detail
    if status == "ok" and not licences:
        status = "error"
        detail = "every licence the region returned was rejected"
    elif repeated:
        detail = f"{repeated} licence(s) returned more than once, listed once"
    if kept is not None:
        kept.extend(accepted)
    return ({"region": fetch.region, "name": region_name, "status": status, "licences": licences,
             "rejected": rejected, "detail": detail, "attempts": fetch.attempts, "latency_ms": fetch.latency_ms},
            outcomes)


# --- handlers -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Gathered:
    """Every region's answer to one query (the API's per-region shape), the audit's outcome of every
    licence judged, and the verification result of every licence accepted (right holder, region and
    type: valid or not), by region, in the order the regions were asked."""

    answers: list[dict[str, Any]]
    outcomes: list[LicenceOutcome]
    accepted: list[tuple[str, VerificationResult]]
    elapsed_ms: int


async def ask_regions(app: web.Application, q: QueryRequest, started: float, *, shortened: bool) -> Gathered:
    """Ask every region of ``q`` at once, verify what they return and judge it, all within ``q``'s deadline
    from ``started`` (loop time); stragglers are cancelled and answered ``timeout``. ``shortened``: the caller
    chose a deadline shorter than the gateway's own (see :meth:`Upstreams.fetch`). Used by the API and by the
    service-window console (gateway/console/fetch.py)."""
    loop = asyncio.get_running_loop()
    services, upstreams = app[SERVICES], app[UPSTREAMS]
    settings, catalogue = services.settings, services.catalogue
    ready = getattr(app.get(QUERY_AUDIT), "check_ready", None)
    if ready is not None:  # a store known to be down: no region hears of this holder (AUDIT_UNAVAILABLE)
        ready()
    deadline = started + q.deadline_ms / 1000
    fetch_deadline = deadline - min(settings.query_reserve_ms, q.deadline_ms // 4) / 1000
    hq = HolderQuery(q.code_type, q.code, q.name, tuple(t.type_code for t in q.types))
    verify = lambda data: verify_now(app, data)  # noqa: E731 - the current trust snapshot at verify time

    async def ask(region: str) -> tuple[dict[str, Any], list[LicenceOutcome], list[VerificationResult]]:
        fetch = await upstreams.fetch(region, hq, fetch_deadline, caller_deadline=shortened)
        kept: list[VerificationResult] = []
        answer, judged = region_answer(q, fetch, verify, catalogue, services.regions[region].name, deadline=deadline,
                                       clock=loop.time, kept=kept)
        return answer, judged, kept

    tasks = {region: asyncio.create_task(ask(region)) for region in q.regions}
    _, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline - loop.time() - 0.005))
    for task in pending:  # stragglers: cancelled, answered "timeout"
        task.cancel()
    answers: list[dict[str, Any]] = []
    outcomes: list[LicenceOutcome] = []
    accepted: list[tuple[str, VerificationResult]] = []
    for region, task in tasks.items():
        if task in pending or task.cancelled():
            answers.append({"region": region, "name": services.regions[region].name, "status": "timeout",
                            "licences": [], "rejected": [], "detail": "deadline reached", "attempts": None,
                            "latency_ms": None})
        elif task.exception() is not None:
            exc = task.exception()
            log.error("query of region %s failed: %r", region, exc)
            answers.append({"region": region, "name": services.regions[region].name, "status": "error",
                            "licences": [], "rejected": [], "detail": "internal error", "attempts": None,
                            "latency_ms": None})
        else:
            answer, judged, kept = task.result()
            answers.append(answer)
            outcomes.extend(judged)
            accepted.extend((region, result) for result in kept)
    return Gathered(answers, outcomes, accepted, int((loop.time() - started) * 1000))


async def record_query(app: web.Application, q: QueryRequest, gathered: Gathered, *, request_id: str,
                       partner: str, operator: str | None = None) -> None:
    """Audit the query through :data:`QUERY_AUDIT` before anything of it is answered; AUDIT_UNAVAILABLE
    (nothing answered) when the hook fails."""
    settings = app[SERVICES].settings
    hook = app.get(QUERY_AUDIT) or LogQueryAudit()
    answers = gathered.answers
    record = QueryAuditRecord(
        request_id=request_id, partner=partner, item_code=q.item.code, use_cause=q.use_cause,
        holder_hmac=holder_hmac(getattr(hook, "holder_key", None) or settings.query_holder_hash_key.encode("utf-8"),
                                q.code_type, q.code),  # the audit trail's key when it is wired
        regions=tuple((a["region"], a["status"]) for a in answers),
        rejected=sum(len(a["rejected"]) for a in answers), elapsed_ms=gathered.elapsed_ms,
        licences=tuple(gathered.outcomes), operator=operator)
    try:
        await hook.record_query(record)  # type: ignore[attr-defined]
    except Exception as exc:
        log.error("query audit failed: %r", exc)
        raise InfrastructureError(errors.AUDIT_UNAVAILABLE, "the query was not answered") from None


def refusal_of(body: Any, reason: errors.Reason, key: bytes, catalogue: Catalogue, region_codes: Sequence[str], *,
               request_id: str, partner: str, operator: str | None = None) -> QueryRefusal:
    """The :class:`QueryRefusal` of a refused query body (``None`` when it could not be read), taking
    from it only what the gateway can vouch for (see the class). Pure; never raises on any body."""
    holder = body.get("holder") if isinstance(body, dict) else None
    code_type = holder.get("code_type") if isinstance(holder, dict) else None
    code = holder.get("code") if isinstance(holder, dict) else None
    hashed = None
    if isinstance(code_type, str) and code_type in HOLDER_CODE_TYPES and isinstance(code, str):
        code = code.strip().translate(_ASCII_UPPER) if code_type in _CASE_FOLDED else code.strip()
        if 0 < len(code) <= _MAX_CODE and code.isascii() and code.isprintable():
            hashed = holder_hmac(key, code_type, code)   # as an answered query's record: one search finds both
    item_code = body.get("item") if isinstance(body, dict) else None
    item_code = item_code if isinstance(item_code, str) and catalogue.item(item_code) is not None else None
    raw = body.get("regions") if isinstance(body, dict) else None
    known = set(region_codes)
    regions = tuple(dict.fromkeys(r for r in raw if isinstance(r, str) and r in known)) if isinstance(raw, list) else ()
    try:
        use_cause = check_use_cause(body.get("use_cause")) if isinstance(body, dict) else None
    except RequestRejected:
        use_cause = None
    return QueryRefusal(request_id, partner, reason.code, reason.status, hashed, item_code, regions, use_cause,
                        operator)


async def record_refusal(app: web.Application, reason: errors.Reason, body: Any, *, request_id: str, partner: str,
                         operator: str | None = None) -> None:
    """Audit a query refused before any region was asked, before the refusal is sent; AUDIT_UNAVAILABLE
    (503 instead of the refusal) when the hook fails. A hook without ``record_refusal`` is skipped."""
    services = app[SERVICES]
    hook = app.get(QUERY_AUDIT) or LogQueryAudit()
    record = getattr(hook, "record_refusal", None)
    if record is None:
        return
    key = getattr(hook, "holder_key", None) or services.settings.query_holder_hash_key.encode("utf-8")
    try:
        await record(refusal_of(body, reason, key, services.catalogue, tuple(services.specs), request_id=request_id,
                                partner=partner, operator=operator))
    except Exception as exc:
        log.error("query refusal audit failed: %r", exc)
        raise InfrastructureError(errors.AUDIT_UNAVAILABLE, "the query was refused, and the refusal could not be "
                                                            "recorded") from None


@requires_scope(LICENCES_QUERY)
async def query_handler(request: web.Request) -> web.Response:
    started = asyncio.get_running_loop().time()
    app = request.app
    services, upstreams = app[SERVICES], app[UPSTREAMS]
    settings = services.settings
    principal = request[AUTH_PRINCIPAL]
    body: Any = None
    try:
        body = await read_json(request)
        q = parse_query(body, services.catalogue, tuple(services.specs), settings,
                        principal.may_use_item, principal.may_use_region)
    except RequestRejected as exc:   # refused before any region is asked: recorded all the same
        await record_refusal(app, exc.reason, body, request_id=request[REQUEST_ID], partner=principal.client_id)
        raise
    except web.HTTPRequestEntityTooLarge:
        await record_refusal(app, errors.BODY_TOO_LARGE, None, request_id=request[REQUEST_ID],
                             partner=principal.client_id)
        raise
    # the partner's own deadline, not the gateway's
    gathered = await ask_regions(app, q, started, shortened=q.deadline_ms < settings.query_deadline_ms)
    await record_query(app, q, gathered, request_id=request[REQUEST_ID], partner=principal.client_id)
    answers = gathered.answers
    return web.Response(body=orjson.dumps({
        "request_id": request[REQUEST_ID],
        "item": {"code": q.item.code, "name_zh": q.item.name_zh},
        "holder": {"code_type": q.code_type, "code_masked": mask_holder_code(q.code)},
        "licence_types": [t.key for t in q.types],
        "deadline_ms": q.deadline_ms, "elapsed_ms": gathered.elapsed_ms,
        "complete": all(a["status"] in ("ok", "not_found") for a in answers),
        "regions": answers,
        "skipped_regions": [{"region": r, "reason": errors.FORBIDDEN.as_dict()} for r in q.skipped],
        "meta": {"upstreams": {a["region"]: _meta(upstreams, a["region"]) for a in answers}},
    }), content_type="application/json", headers={"Cache-Control": "no-store"})


def _meta(upstreams: Upstreams, region: str) -> dict[str, Any] | None:
    """The region's circuit-breaker state only: the worker's counters add up every partner's and
    every window's queries, which are the operator's to see (``GET /v1/admin/upstreams``, scope admin)."""
    breaker = upstreams.breakers.get(region)
    if breaker is None:
        return None
    return {"breaker": breaker.current(upstreams.clock()).value}


@requires_scope(ADMIN)
async def upstreams_handler(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"upstreams": request.app[UPSTREAMS].status()}),
                        content_type="application/json")


# --- lifecycle ----------------------------------------------------------------------------
def policy_from(settings: Settings) -> ResiliencePolicy:
    """The federated query's policy from settings (their limits are checked once, at start-up, by
    ``Settings.validate``)."""
    return ResiliencePolicy(
        retry=RetryPolicy(settings.upstream_retries, settings.upstream_backoff_ms / 1000,
                          max(settings.upstream_backoff_ms / 1000, 0.5)),
        breaker=BreakerPolicy(settings.breaker_window_seconds, settings.breaker_min_requests,
                              settings.breaker_error_percent / 100, settings.breaker_cool_down_seconds),
        max_body_bytes=settings.upstream_max_body_bytes, max_connections=settings.upstream_max_connections)


async def upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
    upstreams = app[UPSTREAMS]
    upstreams.clock = app.get(UPSTREAM_CLOCK) or time.monotonic  # type: ignore[assignment]
    await upstreams.open()
    try:
        yield
    finally:
        await upstreams.close()


def setup(app: web.Application) -> None:
    services = app[SERVICES]  # bad settings refuse start-up here
    app[UPSTREAMS] = Upstreams(build_configs(services.settings, services.specs), policy_from(services.settings))
    app.router.add_post("/v1/licences/query", query_handler)
    app.router.add_get("/v1/admin/upstreams", upstreams_handler)
    app.cleanup_ctx.append(upstreams_ctx)


FEATURES.append(setup)
