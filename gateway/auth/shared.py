"""Partner limits held once for all the workers of ``serve --workers N``.

With one process, :class:`~gateway.auth.ratelimit.RateLimiter` and
:class:`~gateway.auth.tokens.ReplayCache` live in its memory. With N workers sharing a port
(SO_REUSEPORT: the kernel spreads the connections) each worker held its own: a partner
registered for 100 requests/s was served ~N x 100/s, and one client assertion could be
exchanged for a token once per worker (and again after a worker restart). Here:

* :class:`SharedRateLimiter` -- the partners' token buckets in one
  ``multiprocessing.shared_memory`` segment, created by the serve parent before the workers
  start (:func:`create_rate_segment`), attached by each worker (and by a restarted one), guarded
  by one cross-process lock the parent made (a spawn-context ``multiprocessing.Lock``, handed
  to each worker as a process argument). The bucket arithmetic is the pure
  :func:`~gateway.auth.ratelimit.take`.
* :class:`SharedReplayCache` -- the seen ``(client_id, jti)`` pairs in a small SQLite database
  under ``var_dir`` (WAL), one short write transaction per client assertion.
* :class:`WorkerLimits` -- what a worker needs to reach both (picklable: passed through
  ``run_worker``'s arguments); :func:`worker_limits` -- the parent's side (makes them, and
  removes the segment when the gateway stops, also on an error).

Segment layout (little-endian)::

    header  64 bytes   magic b"GWRLIM01", u32 slot count, u32 slot size, zeros
    slot    32 bytes   16-byte key (BLAKE2b-128 of the client id; all zeros = empty),
                       f64 tokens, f64 updated (time.monotonic() seconds, system-wide on Linux)

Open addressing with linear probing; a slot, once given to a partner, keeps it for the life of
the segment (nothing is ever deleted), so each worker remembers its partners' slot offsets and
a request costs one lock acquire/release, a ``struct`` unpack and pack, and ``take()`` -- no
system call when the lock is free (glibc's semaphore is a futex: a syscall only to wait or wake).

Failing safe, never unlimited:

* table full (more distinct partners than slots): that partner gets a bucket of this worker at
  ``rate / N`` and ``burst // N`` (at least 1), logged once per worker;
* the lock not obtained within :data:`LOCK_TIMEOUT_S` (a worker killed while holding it, for
  nothing else holds it longer than a few microseconds): the same per-worker ``rate / N``
  buckets, logged; every :data:`LOCK_RETRY_S` a non-blocking try goes back to the shared table
  once the lock is free again;
* a worker that cannot attach the segment (removed from /dev/shm meanwhile): ``rate / N`` too.

The replay database refuses the token (``temporarily_unavailable``, HTTP 503) when it cannot be
opened, is busy past its short timeout or fails otherwise -- never an assertion accepted unchecked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import sqlite3
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, Final

from .ratelimit import BucketState, Decision, take
from .tokens import (MAX_REPLAY_ENTRIES_PER_CLIENT, TEMPORARILY_UNAVAILABLE, OAuthError, partner_share_refused,
                     replay_cache_full, retry_after)

log = logging.getLogger("gateway.auth")

MAGIC: Final = b"GWRLIM01"
HEADER_SIZE: Final = 64
_HEADER = struct.Struct("<8sII")
_SLOT_KEY = struct.Struct("<16s")
_STATE = struct.Struct("<dd")  # tokens, updated: at the slot's offset + 16
SLOT_SIZE: Final = _SLOT_KEY.size + _STATE.size  # 32
#: partners the table holds (128 KiB); past it a partner is limited per worker at rate/N
DEFAULT_SLOTS: Final = 4096
_EMPTY: Final = bytes(16)
#: a claimed slot whose partner has not been charged yet: tokens -1 is outside [0, burst], so the
#: first ``check`` starts that partner's bucket full (``take(None, ...)``)
_NEW_TOKENS: Final = -1.0
#: a bucket stamped later than this past ``now`` is not to be trusted (the workers read one system-wide
#: clock; two of them differ by the wait for the lock, microseconds): it starts again, full
_FUTURE_S: Final = 1.0
#: longest a request waits for the shared lock before this worker limits on its own at rate/N
LOCK_TIMEOUT_S: Final = 0.5
#: while limiting on its own, how often a worker tries (without waiting) whether the lock is free again
LOCK_RETRY_S: Final = 5.0

REPLAY_DB_NAME: Final = "auth-replay.sqlite3"
#: SQLITE_BUSY: how long one token request may wait for another worker's write transaction, ms
REPLAY_BUSY_TIMEOUT_MS: Final = 200
REPLAY_MAX_ENTRIES: Final = 100_000


def partner_key(client_id: str) -> bytes:
    """The 16-byte slot key of a partner: BLAKE2b-128 of its client id (never all zeros in practice)."""
    return hashlib.blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def divided(rate_per_s: float, burst: int, workers: int) -> tuple[float, int]:
    """A worker's part of a partner's limit when the workers cannot share its bucket: the N parts
    together never allow more than the partner's rate (a burst of 1 cannot be divided: 1 each)."""
    return rate_per_s / workers, max(1, burst // workers)


# --- the rate limiter ---------------------------------------------------------------------------

SEGMENT_PREFIX: Final = "gwrl_"
_SHM_DIR: Final = Path("/dev/shm")


def create_rate_segment(slots: int = DEFAULT_SLOTS, name: str | None = None) -> shared_memory.SharedMemory:
    """The serve parent's side: a new, empty bucket table (the kernel zero-fills it: every slot is
    empty), named after the parent's pid. The caller unlinks it when the gateway stops; a worker never
    does. The tables of earlier gateways killed with SIGKILL (no unlink: 128 KiB left in /dev/shm
    each) are removed first."""
    if slots < 1:
        raise ValueError("slots must be >= 1")
    remove_stale_segments()
    name = name or f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=HEADER_SIZE + slots * SLOT_SIZE)
    _HEADER.pack_into(shm.buf, 0, MAGIC, slots, SLOT_SIZE)
    return shm


def remove_stale_segments(shm_dir: Path = _SHM_DIR) -> list[str]:
    """Unlink the bucket tables whose gateway (the pid in the name) no longer runs; the names removed.
    A table of a running process -- or of a pid the kernel gave to another process since -- stays."""
    removed = []
    try:
        entries = list(shm_dir.glob(f"{SEGMENT_PREFIX}*_*"))
    except OSError:
        return removed
    for entry in entries:
        try:
            os.kill(int(entry.name[len(SEGMENT_PREFIX):].split("_", 1)[0]), 0)
        except ValueError:
            continue  # not one of ours
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry.name)
        except OSError:
            continue  # PermissionError: a process of another user runs under that pid
    if removed:
        log.warning("partner rate limits: removed the shared tables of gateways no longer running: %s",
                    ", ".join(removed))
    return removed


class SharedRateLimiter:
    """The interface of :class:`~gateway.auth.ratelimit.RateLimiter` (``check``, and this
    worker's ``allowed`` / ``refused`` counters and ``requests``) over one bucket per partner in a
    shared-memory table that every worker of the gateway charges.

    ``name`` is the segment :func:`create_rate_segment` made, ``lock`` the cross-process lock the
    parent made for it, ``workers`` N (for the rate/N fallback)."""

    def __init__(self, name: str, lock: Any, workers: int, *, lock_timeout_s: float = LOCK_TIMEOUT_S,
                 lock_retry_s: float = LOCK_RETRY_S) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        shm = shared_memory.SharedMemory(name=name, create=False)
        try:
            magic, slots, slot_size = _HEADER.unpack_from(shm.buf, 0)
            if magic != MAGIC or slot_size != SLOT_SIZE or shm.size < HEADER_SIZE + slots * SLOT_SIZE:
                raise ValueError(f"shared memory segment {name!r} is not a partner rate-limit table")
        except BaseException:
            shm.close()
            raise
        self.name = name
        self.slots = slots
        self.workers = workers
        self._shm = shm
        self._buf = shm.buf
        self._lock = lock
        self._acquire = lock.acquire
        self._release = lock.release
        self._lock_timeout_s = lock_timeout_s
        self._lock_retry_s = lock_retry_s
        self._offsets: dict[str, int] = {}  # client id -> offset of its (tokens, updated) in the segment
        self._no_slot: set[str] = set()  # partners the full table had no slot for
        self._own: dict[str, BucketState] = {}  # this worker's rate/N buckets (fallback only)
        self._lock_lost_until: float | None = None  # limiting on its own until then (lock not obtained)
        self.allowed: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def check(self, client_id: str, rate_per_s: float, burst: int, now: float) -> Decision:
        off = self._offsets.get(client_id)
        if off is not None and self._lock_lost_until is None:
            if self._acquire(True, self._lock_timeout_s):
                try:
                    buf = self._buf
                    tokens, updated = _STATE.unpack_from(buf, off)
                    if 0.0 <= tokens <= burst and updated <= now + _FUTURE_S:
                        if updated > now:  # another worker read the clock later but took the lock first
                            now = updated
                        decision, state = take(BucketState(tokens, updated), now, rate_per_s, burst)
                    else:  # new slot (or a stamp not to be trusted): a full bucket
                        decision, state = take(None, now, rate_per_s, burst)
                    _STATE.pack_into(buf, off, state.tokens, state.updated)
                finally:
                    self._release()
                (self.allowed if decision.allowed else self.refused)[client_id] += 1
                return decision
            self._lock_lost(now)
        return self._check_slow(client_id, rate_per_s, burst, now)

    def requests(self, client_id: str) -> int:
        """Requests this worker counted for the partner (allowed + refused)."""
        return self.allowed[client_id] + self.refused[client_id]

    @property
    def limiting_alone(self) -> bool:
        """True while this worker limits on its own at rate/N (the shared lock was not obtained)."""
        return self._lock_lost_until is not None

    def close(self) -> None:
        """Detach from the segment (never unlinks it: the parent does)."""
        self._buf = None  # type: ignore[assignment]
        self._shm.close()

    # --- the rare paths ----------------------------------------------------------------------

    def _check_slow(self, client_id: str, rate_per_s: float, burst: int, now: float) -> Decision:
        if self._lock_lost_until is not None:
            if now < self._lock_lost_until or not self._acquire(False):
                return self._check_own(client_id, rate_per_s, burst, now)
            self._release()
            self._lock_lost_until = None
            log.warning("partner rate limits: the lock shared by the workers is free again; worker %d uses the "
                        "shared buckets again", os.getpid(), extra={"pid": os.getpid()})
        if client_id not in self._offsets:
            if client_id in self._no_slot:
                return self._check_own(client_id, rate_per_s, burst, now)
            if not self._acquire(True, self._lock_timeout_s):
                self._lock_lost(now)
                return self._check_own(client_id, rate_per_s, burst, now)
            try:
                off = self._slot_for(partner_key(client_id))
            finally:
                self._release()
            if off is None:
                self._no_slot.add(client_id)
                log.error("partner rate limits: the shared table's %d slots are all taken; partner %s is limited "
                          "by each worker at 1/%d of its rate", self.slots, client_id[:64], self.workers,
                          extra={"pid": os.getpid(), "client_id": client_id[:64]})
                return self._check_own(client_id, rate_per_s, burst, now)
            self._offsets[client_id] = off
        return self.check(client_id, rate_per_s, burst, now)

    def _slot_for(self, key: bytes) -> int | None:
        """Offset of the partner's (tokens, updated), claiming an empty slot; None when full. Under the lock."""
        buf, slots = self._buf, self.slots
        start = int.from_bytes(key[:8], "little") % slots
        for i in range(slots):
            base = HEADER_SIZE + ((start + i) % slots) * SLOT_SIZE
            (found,) = _SLOT_KEY.unpack_from(buf, base)
            if found == key:
                return base + _SLOT_KEY.size
            if found == _EMPTY:
                _SLOT_KEY.pack_into(buf, base, key)
                _STATE.pack_into(buf, base + _SLOT_KEY.size, _NEW_TOKENS, 0.0)
                return base + _SLOT_KEY.size
        return None

    def _check_own(self, client_id: str, rate_per_s: float, burst: int, now: float) -> Decision:
        rate, own_burst = divided(rate_per_s, burst, self.workers)
        decision, self._own[client_id] = take(self._own.get(client_id), now, rate, own_burst)
        (self.allowed if decision.allowed else self.refused)[client_id] += 1
        return decision

    def _lock_lost(self, now: float) -> None:
        self._lock_lost_until = now + self._lock_retry_s
        log.error("partner rate limits: worker %d waited %g s for the lock the workers share (a worker killed "
                  "while holding it?); it limits each partner on its own at 1/%d of its rate, and tries the lock "
                  "again every %.0f s", os.getpid(), self._lock_timeout_s, self.workers, self._lock_retry_s,
                  extra={"pid": os.getpid()})


# --- the replay cache ---------------------------------------------------------------------------

_SCHEMA = ("CREATE TABLE IF NOT EXISTS replay (client_id TEXT NOT NULL, jti TEXT NOT NULL, "
           "expires_at REAL NOT NULL, PRIMARY KEY (client_id, jti)) WITHOUT ROWID",
           "CREATE INDEX IF NOT EXISTS replay_expiry ON replay (expires_at)")


def _connect(path: str | Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # a process crash loses nothing; a power cut may lose the last commits (of assertions that
        # expire within five minutes anyway)
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


def prepare_replay_db(path: str | Path, busy_timeout_ms: int = REPLAY_BUSY_TIMEOUT_MS) -> None:
    """The serve parent's side: the database file, WAL mode and the table, made once before the
    workers open it (each worker checks them again, idempotently)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _connect(path, busy_timeout_ms).close()


class SharedReplayCache:
    """:class:`~gateway.auth.tokens.ReplayCache`'s ``add`` over a SQLite database the workers of the
    machine share: ``False`` for a pair already seen; the same 429 ``temporarily_unavailable``
    refusals for a partner past its share (``max_per_client``) and for a full cache
    (``max_entries``), with the same ``Retry-After`` (when the partner's oldest entry, or the oldest of
    all, is forgotten); expired entries pruned in the same transaction. A database that cannot be
    used refuses the token (``temporarily_unavailable``, 503): fail closed.

    The connection is opened on first use (and again after a failure), in the process that uses it."""

    def __init__(self, path: str | Path, max_entries: int = REPLAY_MAX_ENTRIES,
                 max_per_client: int = MAX_REPLAY_ENTRIES_PER_CLIENT, *,
                 busy_timeout_ms: int = REPLAY_BUSY_TIMEOUT_MS) -> None:
        self.path = str(path)
        self._max = max_entries
        self._max_per_client = max_per_client
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._failing = False

    def add(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record the pair; ``False`` if any worker has seen it (a replay). One write transaction."""
        refusal: OAuthError | None = None
        try:
            conn = self._conn or self._open()
            conn.execute("BEGIN IMMEDIATE")  # the write lock first: no two workers both find the pair new
            try:
                conn.execute("DELETE FROM replay WHERE expires_at <= ?", (now,))
                if conn.execute("SELECT 1 FROM replay WHERE client_id = ? AND jti = ?", (client_id, jti)).fetchone():
                    fresh = False
                else:
                    held, oldest = conn.execute("SELECT count(*), min(expires_at) FROM replay WHERE client_id = ?",
                                                (client_id,)).fetchone()
                    if held >= self._max_per_client:  # it may try again when its oldest is forgotten
                        refusal = partner_share_refused(client_id, held, retry_after(oldest if held else now, now))
                    elif conn.execute("SELECT count(*) FROM replay").fetchone()[0] >= self._max:
                        (first,) = conn.execute("SELECT min(expires_at) FROM replay").fetchone()  # the index's head
                        refusal = replay_cache_full(retry_after(now if first is None else first, now))
                    else:
                        conn.execute("INSERT INTO replay (client_id, jti, expires_at) VALUES (?, ?, ?)",
                                     (client_id, jti, expires_at))
                    fresh = True
                conn.execute("COMMIT")  # the pruning too, when refused
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._failed(exc)
            raise OAuthError(TEMPORARILY_UNAVAILABLE, "The token service is unavailable; retry later.", "令牌服务暂不可用，请稍后重试。",
                             f"replay cache {self.path} unusable: {type(exc).__name__}: {exc}", status=503) from None
        if self._failing:
            self._failing = False
            log.warning("client-assertion replay cache %s usable again", self.path)
        if refusal is not None:
            raise refusal
        return fresh

    def prune(self, now: float) -> None:
        with contextlib.suppress(sqlite3.Error):
            (self._conn or self._open()).execute("DELETE FROM replay WHERE expires_at <= ?", (now,))

    def held_for(self, client_id: str) -> int:
        """Entries of one partner in the database (as of the last prune)."""
        conn = self._conn or self._open()
        return conn.execute("SELECT count(*) FROM replay WHERE client_id = ?", (client_id,)).fetchone()[0]

    def __len__(self) -> int:
        conn = self._conn or self._open()
        return conn.execute("SELECT count(*) FROM replay").fetchone()[0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        self._conn = _connect(self.path, self._busy_timeout_ms)
        return self._conn

    def _failed(self, exc: sqlite3.Error) -> None:
        if self._conn is not None:  # opened again on the next request
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if not self._failing:  # once per failing spell: the token endpoint may be asked often meanwhile
            self._failing = True
            log.error("client-assertion replay cache %s unusable (%s: %s): token requests are refused until it "
                      "is usable again", self.path, type(exc).__name__, exc, extra={"pid": os.getpid()})


# --- from the serve parent to its workers -------------------------------------------------------

@dataclass(frozen=True)
class WorkerLimits:
    """What a worker of ``serve --workers N`` needs to share the partner limits (a process argument:
    the lock can be pickled only while a process is spawned)."""

    rate_segment: str
    rate_lock: Any
    workers: int
    replay_db: str

    def rate_limiter(self) -> Any:
        """The shared limiter; if the segment cannot be attached, this worker's buckets at rate/N."""
        try:
            return SharedRateLimiter(self.rate_segment, self.rate_lock, self.workers)
        except (OSError, ValueError) as exc:
            log.error("partner rate limits: worker %d cannot attach the shared table %s (%s); it limits each "
                      "partner on its own at 1/%d of its rate", os.getpid(), self.rate_segment, exc, self.workers,
                      extra={"pid": os.getpid()})
            return DividedRateLimiter(self.workers)

    def replay_cache(self) -> SharedReplayCache:
        return SharedReplayCache(self.replay_db)

    def install(self, services: Any) -> Any:
        """Put both on ``services`` (gateway.app.Services) for ``create_app``; returns it."""
        services.rate_limiter = self.rate_limiter()
        services.replay_cache = self.replay_cache()
        return services


class DividedRateLimiter:
    """This worker's own buckets at ``rate / N`` (burst ``// N``): the fail-safe when the shared
    table cannot be used at all."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._buckets: dict[str, BucketState] = {}
        self.allowed: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def check(self, client_id: str, rate_per_s: float, burst: int, now: float) -> Decision:
        rate, own_burst = divided(rate_per_s, burst, self.workers)
        decision, self._buckets[client_id] = take(self._buckets.get(client_id), now, rate, own_burst)
        (self.allowed if decision.allowed else self.refused)[client_id] += 1
        return decision

    def requests(self, client_id: str) -> int:
        return self.allowed[client_id] + self.refused[client_id]


def replay_db_path(var_dir: str | Path) -> Path:
    return Path(var_dir) / REPLAY_DB_NAME


@contextlib.contextmanager
def worker_limits(var_dir: str | Path, workers: int, ctx: Any, *, slots: int = DEFAULT_SLOTS) -> Iterator[WorkerLimits]:
    """The serve parent's side, around the supervision of the workers: the bucket table and its lock,
    the replay database; the table is unlinked on the way out (also on an error)."""
    shm = create_rate_segment(slots)
    try:
        db = replay_db_path(var_dir)
        try:
            prepare_replay_db(db)
        except (OSError, sqlite3.Error) as exc:  # the workers fail closed (token refused) and try again
            log.error("client-assertion replay cache %s cannot be prepared (%s: %s): token requests are refused "
                      "until it is usable", db, type(exc).__name__, exc)
        yield WorkerLimits(shm.name, ctx.Lock(), workers, str(db))
    finally:
        shm.close()
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()
