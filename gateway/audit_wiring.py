"""The audit trail at the edge: one record per audited action, committed before the answer.

The library (:mod:`gateway.audit`, :mod:`gateway.receipts`) knows chains, sinks and receipts;
this module knows requests. For every

* ``POST /v1/licences/verify`` -- one record (kind ``verify``) and one receipt;
* ``POST /v1/licences/verify-batch`` -- one record **per entry** (kind ``verify``, ``extra.entry``
  = its index, ``extra.entries`` = the batch size), appended as ONE group (one queue item, one
  future, always in the same transaction), and one receipt per entry (each names its own licence
  id, verdict and entry index). Per-licence records are kept (rather than one record per request)
  so that a search by holder HMAC finds every licence check of a person; they are cheap to build;
* ``POST /v1/items/{code}/check`` -- one record per presented licence (kind ``check``, the item
  code, ``extra.outcome`` = the check's outcome, ``extra.applicant`` = the applicant's holder
  HMAC) and one receipt over the whole answer;
* ``POST /v1/licences/query`` -- one record (kind ``query``) through the query route's hook, and one
  per licence judged; a query refused before any region is asked (400, 403, 404, 408, 413, 415) one
  record, verdict ``refused``, with the refusal's reason code (``TrailQueryAudit.record_refusal``);
* ``POST /v1/oauth/token`` -- one record (kind ``token``) per token issued;
* ``POST /v1/admin/...`` -- one record (kind ``admin``) per call, and every trust list change
  (admin reload or file change, kind ``trust``);
* console verifications -- one record (kind ``check``) with the clerk as ``operator`` and
  ``console/<window>`` as ``partner``;

the handler awaits :meth:`AuditTrail.append` / :meth:`AuditTrail.append_group` before it answers. If the store fails the
append raises ``InfrastructureError(AUDIT_UNAVAILABLE)``: the answer is a 503 problem, never
an answer without its record. Holder codes appear only as :func:`gateway.audit.holder_hmac`.
Each record names the request id (``X-Request-Id``) and, for verify and check answers, the
receipt's leaf hash (``extra.receipt``, :func:`gateway.receipts.receipt_ref`), so a receipt shown
later finds its record. Receipts are batch-signed (:mod:`gateway.receipts`): the handler builds a
cheap draft (claims + leaf hash) per answer, the audit writer seals every draft of a committed
batch with ONE signature over their Merkle root, and the receipt exists only once the record is
committed.

The sink is opened once per worker in a cleanup context (retried in the background while the
store is down) and closed on shutdown after a last checkpoint; a periodic task signs a
checkpoint every ``audit_checkpoint_seconds`` and prunes records older than
``audit_retention_days``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from . import errors
from .app import REQUEST_ID, SERVICES
from .audit import AppendReceipt, AuditEvent, AuditQuery, Checkpoint, CheckpointSigner, GroupCommitConfig
from .audit.deadline import CommitDeadlines
from .audit.jws import public_jwk
from .audit.model import HolderHasher, format_time
from .audit.sqlite import WRITER_AUTOCHECKPOINT_PAGES
from .audit.sink import Appended
from .audit.verifications import VerificationGroup
from .auth import AUTH_PRINCIPAL, TOKEN_SERVICE
from .auth.middleware import SCOPE_REFUSED
from .config import ROOT, ConfigError, Settings
from .core import VerificationResult
from .errors import GatewayError, InfrastructureError, RequestRejected
from .identifiers import contains_citizen_id
from .latency import LATENCY
from .logging_setup import note_personal, request_context_middleware
from .receipts import ReceiptDraft, ReceiptSigner, receipt_ref, request_digest

log = logging.getLogger("gateway.audit")

#: TEST holder-HMAC key of demo mode (public, committed on purpose: never use it in production)
TEST_AUDIT_HMAC_KEY_HEX = b"TEST-ONLY audit holder HMAC key (public)".hex()
TEST_KEYS = ROOT / "certs" / "audit"
TEST_CHECKPOINT_KEY = TEST_KEYS / "checkpoint.test-private.pem"
TEST_RECEIPT_KEY = TEST_KEYS / "receipt.test-private.pem"
GATEWAY_ID = "elicence-gateway"
TOKEN_PATH = "/v1/oauth/token"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,64}\Z")
_RETRY_OPEN_SECONDS = 2.0
_WATCH_SECONDS = 0.5   # how soon a sink whose writer died is noticed and reopened
#: WAL pages a background checkpoint could not copy (readers hold them) from which it is logged
WAL_WARN_PAGES = WRITER_AUTOCHECKPOINT_PAGES // 4
_PRUNE_EVERY_SECONDS = 3600.0


# --- configuration ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuditSetup:
    backend: str                       # sqlite | postgres | memory | off
    path: str
    dsn: str
    schema: str
    hmac_key: bytes
    checkpoints: CheckpointSigner | None
    receipts: ReceiptSigner | None
    group: GroupCommitConfig
    checkpoint_seconds: float
    retention: timedelta | None
    index_seconds: float = 60.0
    writer: str = "inline"             # SQLite appends: inline (event loop + commit thread), process or thread
    commit_timeout: float = 10.0       # seconds an answer waits for its record (gateway/audit/deadline.py)


def key_id(prefix: str, public_key: Any) -> str:
    """A stable kid: the prefix and the first 16 hex digits of SHA-256 of the SPKI."""
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"{prefix}-{hashlib.sha256(spki).hexdigest()[:16]}"


def _load_private(path: str, what: str) -> Any:
    try:
        return load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None


def audit_setup_from(settings: Settings) -> AuditSetup:
    """Resolve keys and paths; outside demo mode every key must be configured (and not a TEST key)."""
    if settings.audit_backend == "off":
        return AuditSetup("off", "", "", "", b"", None, None, GroupCommitConfig(), 0, None)
    demo = settings.demo
    missing = [name for name in ("audit_hmac_key", "audit_checkpoint_key", "receipt_key")
               if not demo and not getattr(settings, name)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required outside demo mode (the audit trail and receipts)")
    cp_path = settings.audit_checkpoint_key or str(TEST_CHECKPOINT_KEY)
    rc_path = settings.receipt_key or str(TEST_RECEIPT_KEY)
    if not demo and any(Path(p).resolve().parent == TEST_KEYS.resolve() for p in (cp_path, rc_path)):
        raise ConfigError("the TEST keys of certs/audit/ are refused outside demo mode")
    try:
        hmac_key = bytes.fromhex(settings.audit_hmac_key or TEST_AUDIT_HMAC_KEY_HEX)
    except ValueError:
        raise ConfigError("audit_hmac_key must be hex") from None
    if len(hmac_key) < 16:
        raise ConfigError("audit_hmac_key must be at least 16 bytes (32 hex digits)")
    cp_key = _load_private(cp_path, "audit_checkpoint_key")
    if not isinstance(cp_key, Ed25519PrivateKey):
        raise ConfigError("audit_checkpoint_key must be an Ed25519 private key")
    rc_key = _load_private(rc_path, "receipt_key")
    try:
        receipts = ReceiptSigner(rc_key, key_id("receipt", rc_key.public_key()), GATEWAY_ID)
    except TypeError as exc:
        raise ConfigError(f"receipt_key: {exc}") from None
    return AuditSetup(
        backend=settings.audit_backend,
        path=settings.audit_path or str(Path(settings.var_dir) / "audit.sqlite3"),
        dsn=settings.audit_dsn, schema=settings.audit_pg_schema, hmac_key=hmac_key,
        checkpoints=CheckpointSigner(cp_key, key_id("audit", cp_key.public_key())),
        receipts=receipts,
        group=GroupCommitConfig(max_batch=settings.audit_batch_max, window=settings.audit_batch_window_us / 1e6,
                                checkpoint_every=settings.audit_checkpoint_every,
                                commit_interval=settings.audit_commit_interval_us / 1e6,
                                commit_interval_busy=settings.audit_commit_interval_busy_us / 1e6,
                                inline_commit_max=settings.audit_inline_commit_max,
                                fsync_after_commit=settings.audit_fsync_after_commit,
                                async_fsync=settings.audit_async_fsync),
        checkpoint_seconds=float(settings.audit_checkpoint_seconds),
        retention=timedelta(days=settings.audit_retention_days) if settings.audit_retention_days else None,
        index_seconds=float(settings.audit_index_seconds),
        writer=settings.resolved_audit_writer(),
        commit_timeout=settings.audit_commit_timeout_ms / 1000,
    )


async def open_sink(setup: AuditSetup, clock: Callable[[], datetime]) -> Any:
    """Open the configured sink (raises InfrastructureError(AUDIT_UNAVAILABLE) when it cannot)."""
    kw: dict[str, Any] = {"signer": setup.checkpoints, "clock": clock, "config": setup.group,
                          "sealer": setup.receipts}
    if setup.backend == "memory":
        from .audit import MemoryAuditSink

        return await MemoryAuditSink.open(**kw)
    if setup.backend == "postgres":
        from .audit.postgres import PostgresAuditSink

        return await PostgresAuditSink.open(setup.dsn, schema=setup.schema, **kw)
    from .audit import SqliteAuditSink
    from .audit.sqlite_inline import SqliteInlineAuditSink
    from .audit.sqlite_process import SqliteProcessAuditSink

    Path(setup.path).parent.mkdir(parents=True, exist_ok=True)
    cls = {"process": SqliteProcessAuditSink, "inline": SqliteInlineAuditSink}.get(setup.writer, SqliteAuditSink)
    return await cls.open(setup.path, **kw)


def prepare_audit_store(settings: Settings) -> None:
    """Create the audit tables once (the parent of several workers calls it before they start)."""
    setup = audit_setup_from(settings)

    async def run() -> None:
        sink = await open_sink(setup, lambda: datetime.now(timezone.utc))
        await sink.close()

    try:
        asyncio.run(run())
    except GatewayError as exc:  # the workers retry; their audited routes answer 503 meanwhile
        log.error("audit store not ready before the workers start: %s", exc.detail)


# --- the trail ---------------------------------------------------------------------------
def safe_request_id(request_id: str) -> str:
    """The request id as recorded: the caller's ``X-Request-Id`` when it is a plain token, else
    a digest of it (a header must not be able to refuse the record or smuggle data into it)."""
    if _SAFE_ID.match(request_id) and not contains_citizen_id(request_id):
        return request_id
    return "sha256:" + hashlib.sha256(request_id.encode("utf-8", "replace")).hexdigest()[:32]


def _text(value: str | None, limit: int = 128) -> str | None:
    return None if value is None else value[:limit]


def receipt_hash(receipt: str | None) -> str | None:
    """What the audit record of an answer keeps of its receipt (``extra.receipt``)."""
    return receipt_ref(receipt) if receipt else None


def not_audited(exc: BaseException) -> InfrastructureError:
    """What an answer gets when its record could not be built or stored for any reason other than
    the store's own AUDIT_UNAVAILABLE (a value the record model refuses, a receipt draft that cannot
    be made, a sink bug): ``503 AUDIT_UNAVAILABLE`` like any audit failure -- never the answer, and
    never a ``500 INTERNAL`` that reads as a crash."""
    if isinstance(exc, GatewayError) and exc.reason is errors.AUDIT_UNAVAILABLE:
        return exc   # type: ignore[return-value]
    log.error("audit record not written (%s: %s); the answer is withheld", type(exc).__name__,
              getattr(exc, "detail", None) or exc)
    return InfrastructureError(errors.AUDIT_UNAVAILABLE, "the audit record could not be written; "
                                                         "no answer is given without it")


def safe_text(value: str, limit: int = 128) -> str:
    """A name typed by people (a clerk's user name, a window) as recorded: itself when it holds no
    citizen ID number, else a digest of it (the record model refuses an ID number in clear)."""
    if not contains_citizen_id(value):
        return value[:limit]
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def log_checkpoint(cp: Checkpoint | None) -> None:
    """Log a checkpoint just signed, its JWS in full: a copy outside the database, which is what
    ``audit verify --anchor`` needs to notice the newest checkpoints deleted with every record after
    them (the database alone cannot show that)."""
    if cp is not None:
        log.info("audit checkpoint signed at seq %d", cp.seq,
                 extra={"checkpoint": cp.jws, "checkpoint_seq": cp.seq, "checkpoint_hash": cp.hash})


class AuditTrail:
    """Per worker: the sink, the holder HMAC key and the receipt signer."""

    def __init__(self, setup: AuditSetup, clock: Callable[[], datetime]) -> None:
        self.setup = setup
        self.clock = clock
        self.sink: Any = None
        self.last_error: str | None = None
        self.holder_key = setup.hmac_key   # read by the query route (gateway.query_routes)
        # the key is checked at start-up (audit_setup_from); with the trail off there is none
        self._holder = HolderHasher(setup.hmac_key) if setup.backend != "off" else None
        self.deadlines = CommitDeadlines(setup.commit_timeout)

    @property
    def enabled(self) -> bool:
        return self.setup.backend != "off"

    @property
    def receipts(self) -> ReceiptSigner | None:
        return self.setup.receipts

    def holder(self, code_type: str | None, code: str | None) -> str | None:
        if self._holder is None or not code or not code_type:
            return None
        return self._holder(code_type, code)

    async def append(self, event: AuditEvent) -> AppendReceipt:
        if self.sink is None:
            raise InfrastructureError(errors.AUDIT_UNAVAILABLE, self.last_error or "the audit store is not open")
        try:
            return await self.deadlines.wait(self.sink.append(event))
        except Exception as exc:  # noqa: BLE001 - anything but a stored record means "not audited"
            raise not_audited(exc) from None

    async def append_group(self, events: Sequence[AuditEvent], drafts: Sequence[ReceiptDraft] = ()) -> Appended:
        """Append several events as one unit (one transaction) and seal ``drafts`` with their batch."""
        if self.sink is None:
            raise InfrastructureError(errors.AUDIT_UNAVAILABLE, self.last_error or "the audit store is not open")
        try:
            return await self.deadlines.wait(self.sink.append_group(events, drafts))
        except Exception as exc:  # noqa: BLE001 - anything but a stored record means "not audited"
            raise not_audited(exc) from None

    async def append_verifications(self, group: VerificationGroup) -> Appended:
        """The records and receipts of one verify answer (compact; expanded where it is committed)."""
        if self.sink is None:
            raise InfrastructureError(errors.AUDIT_UNAVAILABLE, self.last_error or "the audit store is not open")
        try:   # the memory and thread sinks expand the group (records and receipt draft) right here
            return await self.deadlines.wait(self.sink.append_verifications(group))
        except Exception as exc:  # noqa: BLE001 - anything but a stored record means "not audited"
            raise not_audited(exc) from None

    async def append_all(self, events: Sequence[AuditEvent]) -> list[AppendReceipt]:
        """Append several events at once (one transaction); all must be stored."""
        return list((await self.append_group(events)).records)

    def jwks(self) -> list[dict[str, str]]:
        """The receipt key and the checkpoint key, as published at ``/v1/keys``."""
        out = []
        if self.setup.receipts is not None:
            out.append(self.setup.receipts.jwk())
        if self.setup.checkpoints is not None:
            out.append(public_jwk(self.setup.checkpoints.public_key(), self.setup.checkpoints.kid))
        return out

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self.sink = await open_sink(self.setup, self.clock)
        self.last_error = None

    async def close(self) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        try:
            log_checkpoint(await sink.checkpoint())  # seal the tail written by this worker
        except GatewayError as exc:
            log.warning("closing checkpoint failed: %s", exc.detail)
        await sink.close()

    async def maintain(self) -> None:
        """Periodic: open the sink while it is not open, index holders (SQLite), sign checkpoints,
        prune by retention."""
        next_prune = 0.0
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self.setup.checkpoint_seconds
        next_index = loop.time() + self.setup.index_seconds
        while True:
            if self.sink is not None and not self.sink.alive:   # its writer died: reopen
                log.error("audit sink lost its writer; reopening")
                sink, self.sink = self.sink, None
                try:
                    await sink.close()
                except Exception as exc:  # noqa: BLE001 - already broken; the reopen matters
                    log.warning("closing the broken audit sink: %s", exc)
            if self.sink is None:
                try:
                    await self.open()
                    log.info("audit store %s open", self.setup.backend)
                except Exception as exc:  # noqa: BLE001 - whatever it is, the store is not open: try again
                    self.last_error = exc.detail if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(_RETRY_OPEN_SECONDS)
                    continue
            await asyncio.sleep(_WATCH_SECONDS)
            if self.sink is None or not self.sink.alive:
                continue
            try:
                wal = getattr(self.sink, "checkpoint_wal", None)
                if wal is not None:
                    t0 = loop.time()
                    _busy, pages, copied = await wal()
                    if pages - copied >= WAL_WARN_PAGES:
                        log.warning("audit WAL checkpoints fall behind: %d of %d pages not yet copied into the "
                                    "database (%.0f ms); past %d a COMMIT runs SQLite's own checkpoint on the event "
                                    "loop", pages - copied, pages, (loop.time() - t0) * 1000,
                                    WRITER_AUTOCHECKPOINT_PAGES, extra={"wal_pages": pages, "wal_copied": copied})
                index = getattr(self.sink, "index_holders", None)
                if index is not None and loop.time() >= next_index:
                    next_index = loop.time() + self.setup.index_seconds
                    t0 = loop.time()
                    indexed = await index()
                    if indexed:
                        took = loop.time() - t0
                        log.info("audit holder index: %d records indexed in %.1f s", indexed, took,
                                 extra={"indexed": indexed, "took_ms": round(took * 1000)})
                if loop.time() < next_checkpoint:
                    continue
                next_checkpoint = loop.time() + self.setup.checkpoint_seconds
                log_checkpoint(await self.sink.checkpoint())
                if self.setup.retention is not None and loop.time() >= next_prune:
                    result = await self.sink.prune(self.clock() - self.setup.retention)
                    next_prune = loop.time() + _PRUNE_EVERY_SECONDS
                    if result.deleted:
                        log.info("audit retention: pruned %d records; the chain starts after checkpoint %d",
                                 result.deleted, result.start_seq)
            except GatewayError as exc:
                log.error("audit maintenance failed: %s", exc.detail)
            except Exception as exc:  # noqa: BLE001 - the task must outlive any failure of the store: it
                # reopens a dead sink and signs the checkpoints (and their logged anchors); before session 21
                # one unexpected exception (asyncpg's InternalClientError) ended it until the next restart
                log.error("audit maintenance failed: %s: %s", type(exc).__name__, exc)


AUDIT = web.AppKey("audit_trail", AuditTrail)


# --- event builders (pure) ---------------------------------------------------------------
def _checked_event(kind: str, time: datetime, request_id: str, partner: str | None, operator: str | None,
                   item_code: str | None, region: str | None, licence_id: str | None, verdict: str,
                   reasons: tuple[str, ...], holder_hmac: str | None, extra: dict[str, Any]) -> AuditEvent:
    return AuditEvent(kind=kind, time=time, request_id=request_id, partner=partner, operator=operator,
                      item_code=item_code, region=region, licence_id=licence_id, verdict=verdict, reasons=reasons,
                      holder_hmac=holder_hmac, extra=extra)


def licence_event(trail: AuditTrail, kind: str, *, time: datetime, request_id: str, partner: str | None,
                  operator: str | None, result: VerificationResult | None, item: str | None = None,
                  extra: dict[str, Any] | None = None, reasons: tuple[str, ...] | None = None) -> AuditEvent:
    """One record of one licence's verification (``result`` None: an undecodable entry).

    Every field is the gateway's own typed value (``request_id`` must come from
    :func:`safe_request_id`), so the record is built by :meth:`AuditEvent.of_verification`; with an
    ``operator`` (a clerk id typed by people) the fully checked constructor is used."""
    lic = result.licence if result is not None else None
    if lic is not None:
        note_personal(lic.holder_name, lic.holder_code)
    if reasons is None:
        reasons = result.reason_codes if result is not None else (errors.MALFORMED.code,)
    build = AuditEvent.of_verification if operator is None else _checked_event
    return build(
        kind, time, request_id, partner, operator, item,
        result.region.code if result is not None and result.region is not None else None,
        lic.identifier[:256] if lic is not None and lic.identifier is not None else None,
        result.verdict.value if result is not None else "invalid",
        reasons,
        trail.holder(lic.holder_code_type, lic.holder_code) if lic is not None else None,
        extra if extra is not None else {},
    )


def _partner(request: web.Request) -> str | None:
    principal = request.get(AUTH_PRINCIPAL)
    return principal.client_id if principal is not None else None


def _rid(request: web.Request) -> str:
    return safe_request_id(request.get(REQUEST_ID) or uuid.uuid4().hex)


# --- call sites ----------------------------------------------------------------------------
async def audit_verifications(request: web.Request, results: Sequence[VerificationResult | None]) -> str | None:
    """Record each verification of a verify / verify-batch request (one record per entry); return
    the answer's receipt (a verify-batch answer's one receipt lists every entry).

    ``results[i]`` None stands for an entry that could not be decoded (answered MALFORMED)."""
    trail = request.app[AUDIT]
    if not trail.enabled:
        return None
    body = await request.read()  # already read by the handler: cached
    try:
        now = trail.clock()
        entries = []
        for result in results:
            lic = result.licence if result is not None else None
            if lic is None:
                entries.append((result.region.code if result is not None and result.region is not None else None, None,
                                result.verdict.value if result is not None else "invalid",
                                result.reason_codes if result is not None else (errors.MALFORMED.code,), None, ()))
                continue
            note_personal(lic.holder_name, lic.holder_code)
            ident = lic.identifier
            entries.append((result.region.code if result.region is not None else None,
                            ident[:256] if ident is not None else None, result.verdict.value, result.reason_codes,
                            trail.holder(lic.holder_code_type, lic.holder_code), (ident,) if ident is not None else ()))
        group = VerificationGroup(format_time(now), int(now.timestamp()), _rid(request), _partner(request),
                                  request_digest(body), len(results) > 1 or request.path.endswith("verify-batch"),
                                  tuple(entries))
    except Exception as exc:  # noqa: BLE001 - a record that cannot be built: no answer (503), not a 500
        raise not_audited(exc) from None
    appended = await trail.append_verifications(group)
    return appended.sealed[0] if trail.receipts is not None and appended.sealed else None


async def audit_check(request: web.Request, item_code: str, applicant: Any, presented: Sequence[Any],
                      outcome: Any) -> str | None:
    """Record an item check (one record per presented licence); return the answer's receipt."""
    trail = request.app[AUDIT]
    if not trail.enabled:
        return None
    body = await request.read()
    try:
        now = trail.clock()
        rid, partner = _rid(request), _partner(request)
        note_personal(getattr(applicant, "name", None), applicant.code)
        reasons: list[str] = []
        for lo in outcome.licences:
            for f in lo.findings:
                if f.reason.code not in reasons:
                    reasons.append(f.reason.code)
        ids = [p.identifier for p in presented if p.identifier]
        signer = trail.receipts
        draft = None if signer is None else signer.draft(
            request_digest=request_digest(body), request_id=rid, verdict=outcome.outcome, reasons=reasons,
            item=item_code, time_text=format_time(now), iat=int(now.timestamp()), licence_ids=ids)
        applicant_hmac = trail.holder(applicant.code_type, applicant.code)
        events = []
        for p in presented or [None]:
            lic = p.licence if p is not None else None
            if lic is not None:
                note_personal(lic.holder_name, lic.holder_code)
            extra = {"outcome": outcome.outcome, "applicant": applicant_hmac, "receipt": draft.ref if draft else None,
                     "entry": p.index if p is not None else None, "entries": len(presented)}
            events.append(AuditEvent(
                kind="check", time=now, request_id=rid, partner=partner, item_code=item_code,
                region=p.region[0] if p is not None and p.region else None,
                licence_id=_text(lic.identifier, 256) if lic is not None else None,
                verdict=p.verdict if p is not None else outcome.outcome,
                reasons=tuple(r.code for r in p.reasons) if p is not None else (),
                holder_hmac=trail.holder(lic.holder_code_type, lic.holder_code) if lic is not None else applicant_hmac,
                extra=extra))
    except Exception as exc:  # noqa: BLE001 - a record that cannot be built: no answer (503), not a 500
        raise not_audited(exc) from None
    appended = await trail.append_group(events, [draft] if draft is not None else [])
    return appended.sealed[0] if draft is not None else None


class TrailQueryAudit:
    """The federated query's audit hook (``gateway.query_routes.QUERY_AUDIT``)."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self.holder_key = trail.setup.hmac_key

    def check_ready(self) -> None:
        """AUDIT_UNAVAILABLE when the store is known to be down (not open, or its writer dead): asking the
        regions would tell them of this holder's query while nothing of it can be recorded."""
        sink = self.trail.sink
        if sink is None or not sink.alive:
            raise InfrastructureError(errors.AUDIT_UNAVAILABLE, f"{self.trail.last_error or 'the audit store is not open'}"
                                                                "; no region was asked")

    async def record_query(self, record: Any) -> None:
        """The query's record and one record per licence a region returned (its identifier only when its
        issuer signed it, verdict, reason codes, whether its fields were disclosed), committed together."""
        fields = record.as_audit_fields()
        fields["request_id"] = safe_request_id(fields["request_id"])
        fields["operator"] = safe_text(fields["operator"]) if fields.get("operator") else None
        now = self.trail.clock()
        events = [AuditEvent(time=now, **fields)]
        events += [AuditEvent(kind="query", time=now, request_id=fields["request_id"], partner=fields["partner"],
                              operator=fields["operator"],
                              item_code=fields["item_code"], region=o.region, licence_id=_text(o.licence_id, 256),
                              verdict=o.verdict, reasons=o.reasons, holder_hmac=fields["holder_hmac"],
                              extra={"entry": o.index, "disclosed": o.disclosed})
                   for o in getattr(record, "licences", ())]
        await self.trail.append_group(events)

    async def record_refusal(self, refusal: Any) -> None:
        """A query refused before any region was asked (:class:`gateway.query_routes.QueryRefusal`): one
        record, verdict ``refused``, the refusal's reason code, the holder as its HMAC."""
        try:
            fields = refusal.as_audit_fields()
            fields["request_id"] = safe_request_id(fields["request_id"])
            fields["operator"] = safe_text(fields["operator"]) if fields.get("operator") else None
            event = AuditEvent(time=self.trail.clock(), **fields)
        except Exception as exc:  # noqa: BLE001 - a record that cannot be built: no answer (503), not a 500
            raise not_audited(exc) from None
        await self.trail.append(event)


def console_partner(window: str) -> str:
    """The ``partner`` of a console record: ``console/<window>`` (a window named by an ID number as a digest)."""
    return safe_text(f"console/{window}")


class ConsoleAudit:
    """The console's hooks: a record per console verification; the window's record search."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    async def verified(self, event: str, *, operator: str, window: str, item: str, result: VerificationResult | None,
                       request_id: str, applicant: Any = None) -> None:
        try:
            # the case's applicant as its HMAC (``extra.applicant``, as the API's item check records it): the
            # record's holder is the licence's, and a search by person must find the checks they applied for
            # with another's licence (a child's, a company's as its legal representative)
            extra: dict[str, Any] = {"source": event}
            if applicant is not None:
                extra["applicant"] = self.trail.holder(applicant.code_type, applicant.code)
            # a clerk's user name or window may be an ID number (身份证号 as the login name): the record
            # model refuses one in clear, which made every verification of that clerk a 500
            built = licence_event(
                self.trail, "check", time=self.trail.clock(),
                request_id=safe_request_id(request_id or uuid.uuid4().hex), partner=console_partner(window),
                operator=safe_text(operator), result=result, item=item, extra=extra)
        except Exception as exc:  # noqa: BLE001 - a record that cannot be built: no answer (503), not a 500
            raise not_audited(exc) from None
        await self.trail.append(built)

    async def search(self, *, window: str, item: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if self.trail.sink is None:
            raise InfrastructureError(errors.AUDIT_UNAVAILABLE, "the audit store is not open")
        records = await self.trail.sink.search(AuditQuery(partner=console_partner(window), item_code=item,
                                                          limit=limit))
        return [{"time": r.body["time"], "operator": r.body["operator"], "item": r.body["item_code"],
                 "verdict": r.body["verdict"], "licence": r.body["licence_id"]} for r in records]


def _token_claims(body: bytes) -> dict[str, Any]:
    try:
        token = orjson.loads(body)["access_token"]
        payload = token.split(".")[1]
        return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {}


async def audit_region_refusal(request: web.Request, kind: str, region: str, licence: Any,
                               item: str | None = None) -> None:
    """Record a verify or item check refused because a presented licence comes from a region the
    partner may not act for: the 403 names that region, so it leaves a record like an answer would
    (verdict ``refused``, reason FORBIDDEN, the region, the licence's identifier and holder HMAC).
    Called where the refusal is raised, with the licence the handler verified; a failure to record
    is 503 AUDIT_UNAVAILABLE instead of the 403."""
    trail = request.app[AUDIT]
    if not trail.enabled:
        return
    try:
        event = AuditEvent(
            kind=kind, time=trail.clock(), request_id=_rid(request), partner=_partner(request), item_code=item,
            region=region, licence_id=_text(licence.identifier, 256) if licence is not None else None,
            verdict="refused", reasons=(errors.FORBIDDEN.code,),
            holder_hmac=trail.holder(licence.holder_code_type, licence.holder_code) if licence is not None else None,
            extra={"refused": "region"})
    except Exception as err:  # noqa: BLE001 - a record that cannot be built: no answer (503), not a 500
        raise not_audited(err) from None
    await trail.append(event)


QUERY_PATH = "/v1/licences/query"


async def record_query_scope_refusal(request: web.Request, principal: Any, scope: str) -> None:
    """The auth middleware's hook (``gateway.auth.middleware.SCOPE_REFUSED``) before a 403 for a scope the
    token lacks: a federated query refused so is recorded like the query route's own refusals -- one record,
    verdict ``refused``, FORBIDDEN, ``extra.refused = "scope"``, 503 if it cannot be. The body is not read
    (nothing of a request the partner may not make is processed), so the record names no holder. A 429 is
    not recorded: the rate limit bounds what a partner can make the gateway do, audit commits included, and
    it comes before the scope check and names no one."""
    trail = request.app[AUDIT]
    if request.method != "POST" or request.path != QUERY_PATH or not trail.enabled:
        return
    try:
        event = AuditEvent(kind="query", time=trail.clock(), request_id=_rid(request),
                           partner=principal.client_id, verdict="refused", reasons=(errors.FORBIDDEN.code,),
                           extra={"refused": "scope", "status": errors.FORBIDDEN.status})
    except Exception as err:  # noqa: BLE001 - a record that cannot be built: no answer (503), not a 500
        raise not_audited(err) from None
    await trail.append(event)


@web.middleware
async def audit_action_middleware(request: web.Request,
                                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Records of token issues and admin calls (inside the problem middleware: a failed append
    is answered 503 like any audit failure)."""
    path = request.path
    if request.method != "POST" or not (path == TOKEN_PATH or path.startswith("/v1/admin/")):
        return await handler(request)
    trail = request.app[AUDIT]
    if not trail.enabled:
        return await handler(request)
    try:
        response = await handler(request)
    except GatewayError as exc:
        if path.startswith("/v1/admin/"):
            await trail.append(AuditEvent(kind="admin", time=trail.clock(), request_id=_rid(request),
                                          partner=_partner(request), verdict="refused", reasons=(exc.reason.code,),
                                          extra={"action": path[:128]}))
        raise
    if path == TOKEN_PATH:
        if response.status == 200 and isinstance(response, web.Response) and response.body is not None:
            claims = _token_claims(bytes(response.body))  # type: ignore[arg-type]
            await trail.append(AuditEvent(
                kind="token", time=trail.clock(), request_id=_rid(request),
                partner=_text(str(claims.get("client_id") or ""), 128) or None, verdict="issued",
                extra={"scope": _text(str(claims.get("scope", "")), 512), "jti": _text(str(claims.get("jti", "")), 64)}))
        return response
    await trail.append(AuditEvent(kind="admin", time=trail.clock(), request_id=_rid(request),
                                  partner=_partner(request), verdict="ok" if response.status < 400 else "refused",
                                  extra={"action": path[:128], "status": response.status}))
    return response


async def keys_handler(request: web.Request) -> web.Response:
    """``GET /v1/keys``: the access-token key, the receipt key and the audit checkpoint key."""
    keys = [request.app[TOKEN_SERVICE].signing_key.jwk()]
    trail = request.app.get(AUDIT)
    if trail is not None:
        keys += trail.jwks()
    return web.Response(body=orjson.dumps({"keys": keys}), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})


# --- trust changes -------------------------------------------------------------------------
def audited_reloader(app: web.Application, trail: AuditTrail) -> None:
    """Replace the trust reloader by one that records every accepted or refused trust change."""
    from .logging_setup import CURRENT_REQUEST
    from .trust_routes import RELOADER, TrustReloader

    base = app.get(RELOADER)
    if base is None:
        return

    class AuditedReloader(TrustReloader):
        async def reload(self, trigger: str):  # type: ignore[override]
            outcome = await super().reload(trigger)
            if outcome.outcome == "unchanged":
                return outcome
            request = CURRENT_REQUEST.get()
            event = AuditEvent(kind="trust", time=trail.clock(),
                               request_id=_rid(request) if request is not None else f"trust-{uuid.uuid4().hex}",
                               partner=_partner(request) if request is not None else None,
                               verdict=outcome.outcome, reasons=(errors.TRUST_LIST_REFUSED.code,)
                               if outcome.outcome == "refused" else (),
                               extra={"trigger": trigger, "version": outcome.version})
            try:
                await trail.append(event)
            except GatewayError as exc:
                if request is not None:
                    raise
                log.error("trust change (%s, v%s) not audited: %s", trigger, outcome.version, exc.detail)
            return outcome

    # the same reloader with its reload audited: a copy of every attribute (made again from a fixed list
    # of constructor arguments, one added later -- the expiry warner, session 21 -- was silently dropped)
    replacement = copy.copy(base)
    replacement.__class__ = AuditedReloader
    app[RELOADER] = replacement


# --- wiring --------------------------------------------------------------------------------
async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    trail = app[AUDIT]
    if trail.enabled:
        try:
            await trail.open()
        except GatewayError as exc:  # keep serving: audited routes answer 503 until the store is back
            trail.last_error = exc.detail
            log.error("audit store unavailable at start-up, retrying: %s", exc.detail)
        tasks = [asyncio.create_task(trail.maintain(), name="audit-maintenance"),
                 asyncio.create_task(trail.deadlines.run(), name="audit-commit-deadlines")]
    else:
        log.warning("audit_backend = 'off' (demo benchmark baseline): NO audit records, NO receipts")
        tasks = []
    yield
    for task in tasks:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    await trail.close()


def setup(app: web.Application) -> None:
    services = app[SERVICES]
    trail = AuditTrail(audit_setup_from(services.settings), services.clock)
    app[AUDIT] = trail
    recorder = app.get(LATENCY)
    if recorder is not None:
        trail.deadlines.observe = recorder.audit_wait
    app.middlewares.insert(0, request_context_middleware)
    app[SCOPE_REFUSED] = record_query_scope_refusal
    app.middlewares.append(audit_action_middleware)
    app.cleanup_ctx.append(audit_ctx)
    if trail.enabled:
        from .query_routes import QUERY_AUDIT

        if app.get(QUERY_AUDIT) is None:
            app[QUERY_AUDIT] = TrailQueryAudit(trail)
        from .console import AUDIT_SEARCH, CONSOLE

        console = app.get(CONSOLE)
        if console is not None:
            hooks = ConsoleAudit(trail)
            if console.audit is None:
                console.audit = hooks.verified
            if app.get(AUDIT_SEARCH) is None:
                app[AUDIT_SEARCH] = hooks.search
        audited_reloader(app, trail)


__all__ = ["AUDIT", "AuditSetup", "AuditTrail", "ConsoleAudit", "TEST_AUDIT_HMAC_KEY_HEX", "TrailQueryAudit",
           "audit_check", "audit_setup_from", "audit_verifications", "keys_handler", "licence_event", "open_sink",
           "safe_request_id"]
