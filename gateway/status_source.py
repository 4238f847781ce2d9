"""Signed per-region status lists and the asynchronous HTTP fetcher.

Wire format (modelled on the IETF Token Status List, draft-ietf-oauth-status-list): a JWT
with protected header ``{"alg", "kid", "typ": "statuslist+jwt"}`` and claims ::

    {"sub": <the list's URI>, "iat": <int>, "exp": <int>, "ttl": <int seconds>,
     "status_list": {"bits": 2, "lst": <base64url of the zlib-compressed bit array>}}

Signer: the region's ISSUER key (``kid`` = x5t#S256 thumbprint of an issuer certificate of
that same region in the current trust snapshot). Issuer certificates are chain-validated to
the region's anchor when the trust list loads, so the list's signature chains to that
anchor without a second certificate per region. ``alg`` must be the certificate's algorithm
(ES256, EdDSA, or ``SM2`` = SM2-with-SM3 over the JWS signing input, raw r||s: not a
registered JOSE name, used only between the simulator and this gateway). A list is refused
when: the signature fails; the signer is unknown, of another region, not valid at ``iat``,
or revoked (keyCompromise: always; otherwise when revoked at or before ``iat``); ``sub`` is
not the URI it was fetched from (a list served for another region); ``iat`` is in the future,
older than the list already held (rollback would un-revoke licences), equal to the held list's with
other statuses (two lists signed in one second cannot be ordered: issuers give each new list a later
``iat``) or older than the region's staleness limit (a replayed old list, e.g. to a restarted
gateway); ``exp`` has passed; ``lst`` is not one complete zlib stream. A 304 does not re-confirm a
held list signed longer ago than that limit either, and however recently it was re-confirmed a list
is stale once its ``iat`` is older than the limit (plus the clock skew). A held list whose signer the
current trust no longer accepts (revoked, taken off the issuer list) stops being used after the next
fetch attempt, whatever its outcome, or at once through :meth:`HttpStatusSource.trust_changed`.

:class:`HttpStatusSource` fetches every region's list off the request path: one shared
aiohttp ``ClientSession``, one task per region, conditional requests (``If-None-Match``;
a 304 re-confirms the held list and refreshes ``fetched_at``), a schedule of
``min(interval, ttl)`` shortened by random jitter, short retries after a failure. On any
failure it keeps the last good list; the core's Status check turns a list older than the
region's staleness limit into ``indeterminate`` / ``STATUS_UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import binascii
import datetime as dt
import logging
import random
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import aiohttp
import orjson

from .status import RegionStatus, StatusList, StatusSnapshot
from .trust import TrustSnapshot
from .trustlist import b64u, b64u_decode, jws_sign, jws_verify

log = logging.getLogger("gateway.status_source")

TYP = "statuslist+jwt"
STATUS_ALGS = ("ES256", "EdDSA", "SM2")
#: largest status list token accepted, bytes (10^7 two-bit entries compress far below this)
MAX_TOKEN_BYTES = 8 * 1024 * 1024
#: largest decompressed list, bytes
MAX_LIST_BYTES = 64 * 1024 * 1024


class StatusListError(ValueError):
    """A fetched status list is refused; ``kind`` is a stable word for logs and /v1/regions."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VerifiedStatusList:
    region: str
    status_list: StatusList
    sub: str
    iat: dt.datetime
    exp: dt.datetime | None
    ttl: int | None
    key_id: str


def encode_status_list_jwt(status_list: StatusList, key: Any, *, sub: str, iat: dt.datetime,
                           exp: dt.datetime, ttl: int) -> bytes:
    """Sign a status list (the issuer side; ``key`` is an adapters.base.SigningKey)."""
    header = {"alg": key.algorithm, "kid": key.cert.key_id, "typ": TYP}
    claims = {"sub": sub, "iat": int(iat.timestamp()), "exp": int(exp.timestamp()), "ttl": int(ttl),
              "status_list": {"bits": status_list.bits, "lst": b64u(status_list.compressed())}}
    signing_input = f"{b64u(orjson.dumps(header))}.{b64u(orjson.dumps(claims))}".encode("ascii")
    return signing_input + b"." + b64u(jws_sign(key.algorithm, key.private_key, signing_input)).encode("ascii")


def verify_status_list_jwt(token: bytes, *, region: str, expected_sub: str | None, trust: TrustSnapshot,
                           now: dt.datetime, skew: dt.timedelta = dt.timedelta(minutes=5),
                           held: VerifiedStatusList | None = None,
                           max_age: dt.timedelta | None = None) -> VerifiedStatusList:
    """Check a status list token against the region's trust. Pure; raises :class:`StatusListError`.

    ``max_age`` (the region's staleness limit): a list signed longer ago than that is refused as
    ``stale``. Its signed ``iat`` is the only freshness an attacker on the path cannot forge: without
    this bound an old list, replayed to a restarted gateway (nothing held to compare with) or
    replayed again and again in place of newer ones, counted as fresh until its ``exp``."""
    if len(token) > MAX_TOKEN_BYTES:
        raise StatusListError("malformed", f"token larger than {MAX_TOKEN_BYTES} bytes")
    parts = token.strip().split(b".")
    if len(parts) != 3:
        raise StatusListError("malformed", "not a compact JWT")
    try:
        header = orjson.loads(b64u_decode(parts[0].decode("ascii")))
        claims = orjson.loads(b64u_decode(parts[1].decode("ascii")))
        signature = b64u_decode(parts[2].decode("ascii"))
    except (ValueError, UnicodeDecodeError, binascii.Error, orjson.JSONDecodeError):
        raise StatusListError("malformed", "JWT segments are not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise StatusListError("malformed", "JWT header and claims must be objects")
    if header.get("typ") != TYP or "crit" in header:
        raise StatusListError("malformed", f"typ must be {TYP!r} with no crit")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in STATUS_ALGS:
        raise StatusListError("bad-signature", f"algorithm {alg!r} not allowed")
    entry = trust.by_key_id.get(kid) if isinstance(kid, str) else None
    if entry is None:
        raise StatusListError("unknown-signer", f"kid {kid!r} is not an issuer in the trust list")
    if entry.region != region:
        raise StatusListError("signer-region-mismatch", f"signed by an issuer of region {entry.region}, not {region}")
    if alg != entry.cert.algorithm:
        raise StatusListError("bad-signature", f"alg {alg} with a {entry.cert.algorithm} key")
    if not jws_verify(alg, entry.cert.public_key, parts[0] + b"." + parts[1], signature):
        raise StatusListError("bad-signature", "status list signature does not verify")
    iat, exp, ttl = claims.get("iat"), claims.get("exp"), claims.get("ttl")
    if not _is_int(iat) or (exp is not None and not _is_int(exp)) or (ttl is not None and (not _is_int(ttl) or ttl <= 0)):
        raise StatusListError("malformed", "iat/exp/ttl must be integers")
    try:   # a year past 9999 (or before 1) is a ValueError or an OverflowError, not a StatusListError: it
        # escaped refresh(), failing the gateway's start-up or ending the region's fetch task for good
        issued = dt.datetime.fromtimestamp(iat, dt.timezone.utc)
        expires = dt.datetime.fromtimestamp(exp, dt.timezone.utc) if exp is not None else None
    except (ValueError, OverflowError, OSError):
        raise StatusListError("malformed", "iat/exp outside the range of dates") from None
    sub = claims.get("sub")
    if expected_sub is not None and sub != expected_sub:
        raise StatusListError("wrong-subject", f"list is for {sub!r}, fetched from {expected_sub!r}")
    if issued > now + skew:
        raise StatusListError("not-yet-valid", f"issued in the future ({issued.isoformat()})")
    if expires is not None and now >= expires:
        raise StatusListError("expired", f"list expired {expires.isoformat()}")
    problem = stale_problem(issued, now, max_age, skew)
    if problem:
        raise StatusListError("stale", problem)
    if held is not None and issued < held.iat:
        raise StatusListError("rollback", f"list issued {issued.isoformat()} is older than the held one "
                                          f"({held.iat.isoformat()})")
    problem = signer_problem(trust, kid, region, issued, skew)
    if problem:
        raise StatusListError("signer-invalid", problem)
    sl = claims.get("status_list")
    if not isinstance(sl, dict) or not _is_int(sl.get("bits")) or not isinstance(sl.get("lst"), str):
        raise StatusListError("malformed", "status_list must be {bits, lst}")
    try:
        status_list = StatusList.from_compressed(sl["bits"], b64u_decode(sl["lst"]), MAX_LIST_BYTES)
    except (ValueError, binascii.Error) as exc:
        raise StatusListError("malformed", f"status_list unreadable: {exc}") from None
    except Exception as exc:  # zlib.error
        raise StatusListError("malformed", f"status_list does not decompress: {type(exc).__name__}") from None
    if held is not None and issued == held.iat and status_list != held.status_list:
        # iat is in whole seconds: two lists signed in one second (a revocation between them) cannot be
        # ordered, and taking the one served last let a replay of the earlier one un-revoke a licence
        raise StatusListError("rollback", f"a list with other statuses than the held one, signed at the same "
                                          f"time ({issued.isoformat()}): which is newer cannot be told")
    return VerifiedStatusList(region, status_list, str(sub), issued, expires, ttl, kid)


def stale_problem(issued: dt.datetime, now: dt.datetime, max_age: dt.timedelta | None,
                  skew: dt.timedelta) -> str | None:
    """Why a list signed at ``issued`` can no longer confirm the region's statuses (None: it can)."""
    if max_age is not None and now - issued > max_age + skew:
        return (f"list signed {issued.isoformat()}, {int((now - issued).total_seconds())} s ago: older than the "
                f"region's limit of {int(max_age.total_seconds())} s (a replayed old list)")
    return None


def signer_problem(trust: TrustSnapshot, kid: str, region: str, at: dt.datetime, skew: dt.timedelta) -> str | None:
    """Why the issuer ``kid`` may not vouch for ``region``'s list issued ``at`` (None: it may)."""
    entry = trust.by_key_id.get(kid)
    if entry is None or entry.region != region:
        return f"signer {kid} is no longer an issuer of region {region}"
    for cert in (entry.cert, *entry.chain):
        if not cert.valid_at(at, skew.total_seconds()):
            return f"{cert.subject} not valid at {at.isoformat()}"
    rev = entry.revocation
    if rev is not None and (rev.compromise or at >= rev.revoked_at):
        return f"signer certificate revoked {rev.revoked_at.isoformat()} ({rev.reason})"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, slots=True)
class FetchState:
    """What this gateway knows about one region's list source (rendered on /v1/regions)."""

    url: str
    held: VerifiedStatusList | None = None
    etag: str | None = None
    fetched_at: dt.datetime | None = None  # last confirmation (200 accepted or 304)
    last_attempt: dt.datetime | None = None
    last_error: str | None = None
    failures: int = 0  # consecutive
    fetches: int = 0
    not_modified: int = 0


async def _read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refused past ``limit`` bytes. (``content.read(n)`` returns only what is
    buffered so far: a list token of more than one TCP read arrived cut short and a genuine list
    was refused as malformed.)"""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise StatusListError("malformed", f"token larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class HttpStatusSource:
    """Fetches every region's signed status list over HTTP, off the request path.

    ``start(trust, publish)`` opens the shared ClientSession, runs one round (bounded by the
    fetch timeout) and starts one task per region; ``publish`` receives each new
    :class:`StatusSnapshot` (the app passes ``LiveTrust.set_status``). ``close()`` stops it.
    """

    def __init__(self, endpoints: Mapping[str, str], max_age_for: Callable[[str], dt.timedelta], *,
                 interval: float = 60.0, jitter: float = 0.1, timeout: float = 5.0, retry_min: float = 1.0,
                 clock: Callable[[], dt.datetime] = _utcnow, skew: dt.timedelta = dt.timedelta(minutes=5),
                 local_issuer: Any = None, rng: random.Random | None = None) -> None:
        if interval <= 0 or timeout <= 0 or not 0 <= jitter < 1:
            raise ValueError("interval and timeout must be positive, jitter in [0, 1)")
        self.endpoints = dict(endpoints)
        self.max_age_for = max_age_for
        self.interval, self.jitter, self.timeout, self.retry_min = interval, jitter, timeout, retry_min
        self.clock, self.skew = clock, skew
        self.local_issuer = local_issuer  # an issuer_server.IssuerServer to start on loopback (demo)
        self.rng = rng or random.Random()
        self.states: dict[str, FetchState] = {code: FetchState(url) for code, url in self.endpoints.items()}
        self._snapshot = StatusSnapshot()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._trust: Callable[[], TrustSnapshot | None] = lambda: None
        self._publish: Callable[[StatusSnapshot], None] = lambda snap: None

    # --- the StatusSource protocol -------------------------------------------------------
    async def snapshot(self, now: dt.datetime) -> StatusSnapshot:
        return self._snapshot

    def describe(self, region: str) -> dict[str, Any] | None:
        st = self.states.get(region)
        if st is None:
            return None
        return {
            "url": st.url, "etag": st.etag,
            "fetched_at": st.fetched_at.isoformat() if st.fetched_at else None,
            "last_attempt": st.last_attempt.isoformat() if st.last_attempt else None,
            "last_error": st.last_error, "consecutive_failures": st.failures,
            "list_issued_at": st.held.iat.isoformat() if st.held else None,
            "list_expires_at": st.held.exp.isoformat() if st.held and st.held.exp else None,
            "signer_key_id": st.held.key_id if st.held else None,
            "fetches": st.fetches, "not_modified": st.not_modified,
        }

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, trust: Callable[[], TrustSnapshot | None],
                    publish: Callable[[StatusSnapshot], None]) -> None:
        self._trust, self._publish = trust, publish
        if self.local_issuer is not None:
            base = await self.local_issuer.start()
            self.endpoints = {code: f"{base}/status/{code}" for code in self.local_issuer.regions()}
            self.states = {code: FetchState(url) for code, url in self.endpoints.items()}
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                              raise_for_status=False)
        await self.refresh_all()
        self._tasks = [asyncio.create_task(self._run(code), name=f"status-{code}") for code in self.endpoints]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.local_issuer is not None:
            await self.local_issuer.stop()

    async def refresh_all(self) -> None:
        await asyncio.gather(*(self.refresh(code) for code in self.endpoints))

    def next_delay(self, region: str) -> float:
        st = self.states[region]
        if st.failures:
            base = min(self.interval, self.retry_min * 2 ** min(st.failures - 1, 10))
        else:
            base = min(self.interval, st.held.ttl) if st.held and st.held.ttl else self.interval
        return base * (1.0 - self.jitter * self.rng.random())

    async def _run(self, region: str) -> None:
        while True:
            await asyncio.sleep(self.next_delay(region))
            await self.refresh(region)

    # --- one fetch -----------------------------------------------------------------------
    async def refresh(self, region: str) -> bool:
        """Fetch one region's list; True when a list was accepted or re-confirmed."""
        st = self.states[region]
        now = self.clock()
        st = replace(st, last_attempt=now, fetches=st.fetches + 1)
        try:
            st = await self._fetch(region, st)
            st = replace(st, last_error=None, failures=0)
            ok = True
        except StatusListError as exc:
            st = replace(st, last_error=str(exc), failures=st.failures + 1)
            log.warning("status list of region %s refused, keeping the last good one: %s", region, exc)
            ok = False
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            detail = f"timeout after {self.timeout:g} s" if isinstance(exc, asyncio.TimeoutError) else \
                f"{type(exc).__name__}: {exc}"
            st = replace(st, last_error=f"unreachable: {detail}", failures=st.failures + 1)
            log.warning("status list of region %s not fetched, keeping the last good one: %s", region, detail)
            ok = False
        except Exception as exc:  # a bug must not end the region's fetch task (nor fail start-up) for good
            log.exception("status list of region %s: unexpected error, keeping the last good one", region)
            st = replace(st, last_error=f"internal: {type(exc).__name__}", failures=st.failures + 1)
            ok = False
        self.states[region] = st
        if self.recheck_signer(region):
            ok = False
        self._rebuild(region)
        return ok

    def recheck_signer(self, region: str, trust: TrustSnapshot | None = None) -> bool:
        """Stop using ``region``'s held list when the current trust no longer lets its signer vouch for it
        (revoked -- keyCompromise: always --, taken off the issuer list, or out of its validity at the
        list's ``iat``); True when it was dropped. The held list was kept while refusals and 304s, which
        detected it, came in: a list a thief signed with the stolen key counted until the region's
        staleness limit after the operator revoked that key. The list stays the rollback floor (``held``);
        only its use ends (``fetched_at`` cleared: the region answers indeterminate until a list of a
        valid signer arrives). Run after every fetch, the trust read anew (a reload while the fetched list
        was being checked); :meth:`trust_changed` runs it for every region at once."""
        st = self.states.get(region)
        trust = trust if trust is not None else self._trust()
        if st is None or st.held is None or st.fetched_at is None or trust is None:
            return False
        problem = signer_problem(trust, st.held.key_id, region, st.held.iat, self.skew)
        if problem is None:
            return False
        log.warning("status list of region %s no longer used: %s", region, problem)
        self.states[region] = replace(st, fetched_at=None, etag=None,
                                      last_error=f"signer-invalid: held list dropped: {problem}")
        return True

    async def _fetch(self, region: str, st: FetchState) -> FetchState:
        if self._session is None:
            raise StatusListError("not-started", "fetcher not started")
        trust = self._trust()
        if trust is None:
            raise StatusListError("no-trust", "no trust list loaded to check the signature with")
        headers = {"Accept": "application/statuslist+jwt"}
        if st.etag and st.held is not None:
            headers["If-None-Match"] = st.etag
        async with self._session.get(st.url, headers=headers, allow_redirects=False) as resp:
            if resp.status == 304 and st.held is not None:
                now = self.clock()
                problem = signer_problem(trust, st.held.key_id, region, st.held.iat, self.skew)
                if problem:
                    raise StatusListError("signer-invalid", problem)
                if st.held.exp is not None and now >= st.held.exp:
                    raise StatusListError("expired", "304 for a list past its exp")
                problem = stale_problem(st.held.iat, now, self.max_age_for(region), self.skew)
                if problem:
                    raise StatusListError("stale", f"304 for a {problem}")
                return replace(st, fetched_at=now, not_modified=st.not_modified + 1)
            if resp.status != 200:
                raise StatusListError("http", f"HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > MAX_TOKEN_BYTES:
                raise StatusListError("malformed", f"body of {resp.content_length} bytes")
            body = await _read_body(resp, MAX_TOKEN_BYTES)
            etag = resp.headers.get("ETag")
        now = self.clock()
        verified = await asyncio.to_thread(verify_status_list_jwt, body, region=region, expected_sub=st.url,
                                           trust=trust, now=now, skew=self.skew, held=st.held,
                                           max_age=self.max_age_for(region))
        return replace(st, held=verified, etag=etag, fetched_at=now)

    def trust_changed(self, trust: TrustSnapshot) -> None:
        """A new trust snapshot is in force: stop using, now rather than after each region's next fetch,
        every held list whose signer it no longer accepts (for the trust reloader to call after a swap)."""
        for region in self.states:
            if self.recheck_signer(region, trust):
                self._rebuild(region)

    def _rebuild(self, region: str) -> None:
        st = self.states[region]
        if st.held is None or st.fetched_at is None:
            if region in self._snapshot.regions:   # a held list no longer usable (recheck_signer)
                self._snapshot = StatusSnapshot(MappingProxyType(
                    {code: rs for code, rs in self._snapshot.regions.items() if code != region}))
                self._publish(self._snapshot)
            return
        max_age = self.max_age_for(region)
        rs = RegionStatus(region, st.held.status_list, fetched_at=st.fetched_at, issued_at=st.held.iat,
                          expires_at=st.held.exp, max_age=max_age,
                          version=str(int(st.held.iat.timestamp())), stale_after=st.held.iat + max_age + self.skew)
        current = self._snapshot.get(region)
        if current == rs:
            return
        self._snapshot = StatusSnapshot(MappingProxyType({**self._snapshot.regions, region: rs}))
        self._publish(self._snapshot)
