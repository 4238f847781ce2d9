"""Audit record model: what one audited action says, and what the store keeps of it.

An :class:`AuditEvent` is built by the caller (verify handler, console, token endpoint)
with the time passed in. It never carries a holder code in clear: the holder is recorded
as :func:`holder_hmac`, a keyed HMAC-SHA256, so the supervisor can search "every check of
this person" (by computing the same HMAC) while a copy of the database reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from gateway.errors import INTERNAL, InfrastructureError
from gateway.identifiers import ID_NUMBER_TOKEN, contains_citizen_id

#: kinds of audited actions; a new kind is added here, never invented at a call site
KINDS = frozenset({"verify", "check", "query", "token", "trust", "login", "logout", "prune", "admin"})

GENESIS_HASH = "0" * 64
HMAC_MIN_KEY_BYTES = 16
MAX_EXTRA_BYTES = 2048
MAX_TEXT = 256
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
#: an 18-character token standing alone (a citizen ID has digits and a final X)
_CODE_LEN = 18   # a holder code cannot hide in a shorter text


def _bad(detail: str) -> InfrastructureError:
    # An invalid audit event is a programming error on our side (HTTP 500), never the client's.
    return InfrastructureError(INTERNAL, f"audit event: {detail}")


def holder_hmac(key: bytes, code_type: str, code: str) -> str:
    """Keyed HMAC-SHA256 (hex) of a holder code, the only form a holder code is audited in.

    ``code_type`` is the GB/T 36903 holder code type (``111`` citizen ID, ``001`` USCC...),
    so the same digits under two types never collide. The code is normalised (trimmed,
    upper case: a citizen ID check character ``x`` equals ``X``).
    """
    _check_key(key)
    return hmac.digest(key, _holder_message(code_type, code), "sha256").hex()   # one C call for a one-off


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) < HMAC_MIN_KEY_BYTES:
        raise _bad(f"holder HMAC key must be at least {HMAC_MIN_KEY_BYTES} bytes")


def _holder_message(code_type: str, code: str) -> bytes:
    if not code_type or not code:
        raise _bad("holder code type and code are required")
    return f"{code_type.strip()}\x1f{code.strip().upper()}".encode()


class HolderHasher:
    """:func:`holder_hmac` with its key set once: the keyed SHA-256 state is computed at start-up and
    copied per holder (1.6 vs 2.5 us a call here: ``hmac.digest`` looks the digest up by name and
    keys it again on every call; a verify-batch answer hashes one holder per entry)."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._keyed = hmac.new(bytes(key), digestmod=hashlib.sha256)

    def __call__(self, code_type: str, code: str) -> str:
        h = self._keyed.copy()
        h.update(_holder_message(code_type, code))
        return h.hexdigest()


#: the last (instant, text) of format_time: one request formats the same instant for its receipt
#: drafts and each of its records (a batch request: 2 x entries times); datetimes are immutable
_last_time: tuple[datetime | None, str] = (None, "")
#: the last (second, "YYYY-MM-DDTHH:MM:SS.") of format_time: instants of one second share it, so the
#: common case formats only the microseconds (~0.6 µs against 1.3-2.3 µs for isoformat each time)
_last_second: tuple[tuple[int, ...] | None, str] = (None, "")


def format_time(t: datetime) -> str:
    """Canonical text of an instant: UTC, microseconds, ``Z`` (sorts as text)."""
    global _last_time, _last_second
    last = _last_time
    if t is last[0]:
        return last[1]
    if t.tzinfo is timezone.utc and t.year >= 1000:   # the common case, ~3x cheaper than strftime
        second = (t.second, t.minute, t.hour, t.day, t.month, t.year)
        prefix = _last_second
        if prefix[0] != second:
            prefix = _last_second = (second, t.isoformat(timespec="seconds")[:19] + ".")
        text = "%s%06dZ" % (prefix[1], t.microsecond)
        _last_time = (t, text)
        return text
    if t.tzinfo is None or t.utcoffset() is None:
        raise _bad("time must be timezone-aware")
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _looks_like_holder_code(value: str) -> bool:
    """A defence in depth: a valid citizen ID number standing alone in a free-text field.

    Only citizen IDs (personal data) are looked for: a USCC is also the issuer part of every
    licence identifier and of item codes, so it cannot be told from a holder code by shape.
    """
    return contains_citizen_id(value, ID_NUMBER_TOKEN)


def _check_text(name: str, value: str | None, *, required: bool = False, scan: bool = True) -> None:
    if value is None:
        if required:
            raise _bad(f"{name} is required")
        return
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    if required and not value:
        raise _bad(f"{name} is required")
    if len(value) > MAX_TEXT:
        raise _bad(f"{name} longer than {MAX_TEXT} characters")
    if scan and len(value) >= _CODE_LEN and _looks_like_holder_code(value):
        raise _bad(f"{name} contains what looks like a holder code in clear")


def _check_extra(extra: dict[str, Any]) -> None:
    if not isinstance(extra, dict):
        raise _bad("extra must be a dict")
    for k, v in extra.items():
        if not isinstance(k, str):
            raise _bad("extra keys must be strings")
        if not (v is None or isinstance(v, str | int | float | bool)):
            raise _bad(f"extra[{k!r}] must be a JSON scalar")
        if isinstance(v, str) and len(v) >= _CODE_LEN and _looks_like_holder_code(v):
            raise _bad(f"extra[{k!r}] contains what looks like a holder code in clear")
    if len(orjson.dumps(extra)) > MAX_EXTRA_BYTES:
        raise _bad(f"extra larger than {MAX_EXTRA_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited action. ``time`` is passed in (aware; stored as UTC, microseconds)."""

    kind: str
    time: datetime
    request_id: str
    partner: str | None = None       # client id of the partner system
    operator: str | None = None      # window / clerk id, or None for machine calls
    item_code: str | None = None     # 事项编码 the check was made for
    region: str | None = None        # GB/T 2260 code of the issuing region
    licence_id: str | None = None    # GB/T 36904 identifier
    verdict: str | None = None       # valid / invalid / indeterminate, or an action outcome
    reasons: tuple[str, ...] = ()
    holder_hmac: str | None = None   # holder_hmac(key, type, code); never the code itself
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise _bad(f"unknown kind {self.kind!r}")
        if not isinstance(self.time, datetime):
            raise _bad("time must be a datetime")
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise _bad("time must be timezone-aware")
        _check_text("request_id", self.request_id, required=True)
        for name in ("partner", "operator", "item_code", "region", "verdict"):
            _check_text(name, getattr(self, name))
        _check_text("licence_id", self.licence_id, scan=False)
        if not isinstance(self.reasons, tuple) or not all(isinstance(r, str) and r for r in self.reasons):
            raise _bad("reasons must be a tuple of reason codes")
        if self.holder_hmac is not None and not _HEX64.match(self.holder_hmac):
            raise _bad("holder_hmac must be a lower-case hex HMAC-SHA256 (use holder_hmac())")
        _check_extra(self.extra)

    @classmethod
    def of_verification(cls, kind: str, time: datetime, request_id: str, partner: str | None,
                        operator: str | None, item_code: str | None, region: str | None, licence_id: str | None,
                        verdict: str, reasons: tuple[str, ...], holder_hmac: str | None,
                        extra: dict[str, Any]) -> AuditEvent:
        """The hot path's constructor (one per verified licence): every field comes from the gateway's
        own typed values -- a verification result (region code, identifier, verdict, reason codes),
        a request id already made safe (``gateway.audit_wiring.safe_request_id``), the authenticated
        partner's configured id, a holder HMAC from :func:`holder_hmac`, an ``extra`` of receipt
        reference and entry numbers. It keeps the structural checks that cost nothing (kind, aware
        time, text lengths) and skips the free-text holder-code scans of ``__post_init__``, which
        guard hand-written call sites; tests/test_audit_model.py checks both constructors agree."""
        if kind not in KINDS or time.tzinfo is None or not request_id:
            raise _bad("of_verification: kind, aware time and request id are required")
        for v in (request_id, partner, operator, item_code, region, verdict):
            if v is not None and len(v) > MAX_TEXT:
                raise _bad("of_verification: text longer than the limit")
        if licence_id is not None and len(licence_id) > MAX_TEXT:
            raise _bad("of_verification: licence id longer than the limit")
        ev = object.__new__(cls)
        put = object.__setattr__
        put(ev, "kind", kind)
        put(ev, "time", time)
        put(ev, "request_id", request_id)
        put(ev, "partner", partner)
        put(ev, "operator", operator)
        put(ev, "item_code", item_code)
        put(ev, "region", region)
        put(ev, "licence_id", licence_id)
        put(ev, "verdict", verdict)
        put(ev, "reasons", reasons)
        put(ev, "holder_hmac", holder_hmac)
        put(ev, "extra", extra)
        return ev

    def body(self) -> dict[str, Any]:
        """The record fields as hashed and stored (without seq / prev_hash)."""
        return {
            "kind": self.kind,
            "time": format_time(self.time),
            "request_id": self.request_id,
            "partner": self.partner,
            "operator": self.operator,
            "item_code": self.item_code,
            "region": self.region,
            "licence_id": self.licence_id,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "holder_hmac": self.holder_hmac,
            "extra": dict(self.extra),
        }


def stored_json(value: Any) -> Any:
    """A JSON column as read back: its value, or the stored value itself when it is not the one text
    the gateway writes for it (only a hand edit writes anything else; the record then fails its hash
    check, named by ``audit verify``, rather than making every read of the chain raise).

    The one text: ``orjson.dumps(value, OPT_SORT_KEYS)`` (``reasons`` holds no object, so sorting
    changes nothing there). Another text of the same value would pass the hash check while other
    readers take it differently: a member named twice is the last one to orjson and PostgreSQL's
    jsonb but the first to SQLite's ``json_extract`` (a record's ``extra.receipt`` or
    ``extra.applicant``, as an SQL query finds it, would then differ from what was hashed and
    signed); a BLOB holding JSON is read by SQLite's JSON functions as its binary JSONB form."""
    if not isinstance(value, str):
        return value
    try:
        parsed = orjson.loads(value)
        if orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS) != value.encode():
            return value
    except (orjson.JSONDecodeError, TypeError, ValueError):   # ValueError: UnicodeEncodeError too
        return value
    return parsed


#: the stored columns of a record besides seq / prev_hash / hash, in table order
BODY_FIELDS = ("kind", "time", "request_id", "partner", "operator", "item_code", "region",
               "licence_id", "verdict", "reasons", "holder_hmac", "extra")


@dataclass(frozen=True, slots=True)
class AppendReceipt:
    """Returned by ``append`` once the record is durably committed."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as read back from a store (``body`` as in :meth:`AuditEvent.body`)."""

    seq: int
    prev_hash: str
    hash: str
    body: dict[str, Any]

    @property
    def time(self) -> datetime:
        return parse_time(self.body["time"])

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev_hash": self.prev_hash, "hash": self.hash, **self.body}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the chain had head ``hash`` at ``seq`` at ``time``."""

    seq: int
    hash: str
    time: str   # canonical text (format_time)
    kid: str
    jws: str


@dataclass(frozen=True, slots=True)
class ChainState:
    """The store's own view: head of the chain and the verifiable start after pruning."""

    head_seq: int
    head_hash: str
    start_seq: int        # records 1..start_seq were pruned (0: nothing pruned)
    start_hash: str       # hash of record start_seq (GENESIS_HASH when start_seq == 0)
    commits: int          # number of append transactions committed (group-commit evidence)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Search filters; all given filters must match (AND). Times: [since, until)."""

    holder_hmac: str | None = None   # the record's holder, or its applicant (``extra.applicant``, an item check's)
    partner: str | None = None
    item_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 10_000:
            raise _bad("search limit must be 1..10000")


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int
    start_seq: int        # the checkpoint that is now the verifiable start (0: nothing pruned)
