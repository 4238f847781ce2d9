"""A bounded cache of verification results, at the edge (the core stays pure).

Presenting the same licence again (a clerk re-checking, a partner retrying, one licence in
several item checks) need not repeat the signature verification and normalisation. An entry
is reused only while the answer is provably the same:

* key: SHA-256 of the presented bytes;
* the **same trust snapshot object** the result was computed with (any trust reload or swap
  invalidates everything), and the **same status list content** of the signer's region: a
  refresh that changes any bit of that region's list (a revocation, a suspension -- of this
  licence or another) invalidates that region's entries, while a refresh re-confirming the same
  bits keeps them (the status check reads only the licence's own entry of the list and the list's
  freshness, which is judged on every hit against the current list). Regions re-publish their
  lists every few seconds to minutes, mostly unchanged: dropping every entry at each refresh made
  each worker re-verify its whole working set in a burst (the open-loop tail at the demo's 5 s
  refresh); the status list must still be fresh now;
* before its expiry instant: the earliest of a short TTL (shortened by up to half, spread by the key,
  so entries stored together do not expire together), the next validity-date boundary
  (midnight Beijing time +/- the clock skew, when ``valid_from`` / ``valid_until`` flip), the
  trust list's expiry, the status list's staleness instant, the signer certificate chain's
  validity bounds and a future signing time becoming acceptable; a result whose signer certificate
  came with the licence (not on the trust list's issuer list: its bounds are not known here) is
  not stored;
* ``indeterminate`` results (infrastructure failures) are never stored.

A hit returns the stored result with ``verified_at`` = the request's ``now`` and the status
age recomputed for ``now``: exactly what :meth:`Verifier.verify` would answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .core import CHINA_TZ, Verdict, VerificationResult
from .status import RegionStatus, StatusSnapshot
from .trust import TrustSnapshot

DEFAULT_ENTRIES = 10_000
DEFAULT_TTL = timedelta(seconds=60)
#: an entry lives between (1 - TTL_JITTER) x ttl and ttl (by its key), never all at once: when every
#: entry of a busy worker expired in the same second, the whole working set was verified again in
#: one burst (the 10-minute soak dropped requests every 60 s, the TTL)
TTL_JITTER = 0.5


@dataclass(frozen=True, slots=True)
class _Entry:
    result: VerificationResult
    trust: TrustSnapshot
    region_status: RegionStatus | None
    until: float  # epoch seconds; the entry is not used at or after this instant


_FIELDS = ("verdict", "reasons", "checks", "region", "format", "licence", "verified_at", "signer_key_id",
           "signing_time", "status_age", "notes")
_FAST = tuple(f.name for f in dataclasses.fields(VerificationResult)) == _FIELDS


def _restamp(r: VerificationResult, now: datetime, age: timedelta | None) -> VerificationResult:
    """``replace(r, verified_at=now, status_age=age)``, positionally when the fields are the known
    ones (a tenth of ``dataclasses.replace``'s cost); any new field falls back to ``replace``."""
    if _FAST:
        return VerificationResult(r.verdict, r.reasons, r.checks, r.region, r.format, r.licence, now,
                                  r.signer_key_id, r.signing_time, age, r.notes)
    return dataclasses.replace(r, verified_at=now, status_age=age)


def _same_list(a: RegionStatus | None, b: RegionStatus | None) -> bool:
    """Both the same status list content (bit width and bits): every licence of the region has the
    same status in both, so a result judged against one is the result against the other."""
    return a is not None and b is not None and a.region == b.region and a.status_list == b.status_list


def _date_boundaries(now: datetime, skew: timedelta) -> list[datetime]:
    local = now.astimezone(CHINA_TZ)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for m in (midnight, midnight + timedelta(days=1)):
        out += [m - skew, m + skew]
    return out


class ResultCache:
    """LRU of at most ``max_entries`` results (not thread-safe: one per event loop / worker)."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, ttl: timedelta = DEFAULT_TTL,
                 skew: timedelta = timedelta(minutes=5)) -> None:
        if max_entries < 1 or ttl <= timedelta(0):
            raise ValueError("max_entries must be >= 1 and ttl positive")
        self.max_entries, self.ttl, self.skew = max_entries, ttl, skew
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.hits = self.misses = self.stored = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def get(self, key: bytes, trust: TrustSnapshot, status: StatusSnapshot, now: datetime) -> VerificationResult | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        result = entry.result
        rs = status.get(result.region.code) if result.region is not None else None
        if rs is not entry.region_status:
            if not _same_list(rs, entry.region_status):   # a changed list: never answered from here
                return self._miss(key)
            entry = self._entries[key] = _Entry(result, entry.trust, rs, entry.until)   # re-confirmed
        if entry.trust is not trust or now.timestamp() >= entry.until or (rs is not None and not rs.fresh(now)):
            return self._miss(key)
        self._entries.move_to_end(key)
        self.hits += 1
        age = rs.age(now) if (rs is not None and result.status_age is not None) else result.status_age
        return _restamp(result, now, age)

    def _miss(self, key: bytes) -> None:
        del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: bytes, trust: TrustSnapshot, status: StatusSnapshot, now: datetime,
            result: VerificationResult) -> None:
        if result.verdict is Verdict.INDETERMINATE:
            return
        rs = status.get(result.region.code) if result.region is not None else None
        # the TTL shortened by up to TTL_JITTER, by the key's first byte (uniform: a SHA-256): entries
        # stored together -- a warm-up, a burst of new licences -- do not all expire together
        until = min(self.expiry(trust, rs, now, result),
                    now.timestamp() + self.ttl.total_seconds() * (1.0 - TTL_JITTER * key[0] / 256))
        if until <= now.timestamp():
            return
        self._entries[key] = _Entry(result, trust, rs, until)
        self._entries.move_to_end(key)
        self.stored += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def expiry(self, trust: TrustSnapshot, rs: RegionStatus | None, now: datetime, result: VerificationResult) -> float:
        """The earliest instant after ``now`` at which the same input could be judged differently."""
        candidates: list[datetime] = [now + self.ttl, trust.expires_at, *_date_boundaries(now, self.skew)]
        if rs is not None:
            candidates.append(rs.fetched_at + rs.max_age)
            if rs.expires_at is not None:
                candidates.append(rs.expires_at)
            if rs.stale_after is not None:
                candidates.append(rs.stale_after)
        if result.signing_time is not None:
            candidates.append(result.signing_time - self.skew)
        entry = trust.by_key_id.get(result.signer_key_id) if result.signer_key_id else None
        if entry is None and result.signer_key_id:
            # a signer certificate the licence carried (x5c, an OFD signer not on the issuer list): its chain's
            # validity bounds are not known here, and a "valid" stored before the certificate expired was
            # answered after it (a licence judged at now): not stored
            return now.timestamp()
        if entry is not None:
            for cert in (entry.cert, *entry.chain):
                for t in (cert.not_before, cert.not_after):
                    candidates += [t - self.skew, t, t + self.skew]
            rev = entry.revocation
            if rev is not None:
                candidates.append(rev.revoked_at)
        return min(c.timestamp() for c in candidates if c > now)  # now + ttl is always a candidate

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {"entries": len(self._entries), "max_entries": self.max_entries, "hits": self.hits,
                "misses": self.misses, "hit_rate": round(self.hits / total, 4) if total else 0.0}


__all__ = ["DEFAULT_ENTRIES", "DEFAULT_TTL", "ResultCache"]
