"""I/O at the edges, behind small Protocols, each with a real implementation and a fake.

* :class:`TrustSource` -- yields trust snapshots (file trust list; in-memory fake).
* :class:`StatusSource` -- yields status snapshots (simulator-backed in demo; in-memory fake).

:class:`LiveTrust` is the one mutable holder the request path reads: a single attribute
read gives an immutable (trust, status) pair, and a reload swaps it atomically, so an
in-flight verification finishes on the snapshot it started with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

from .simulator import IssuerSimulator
from .specs import RegionInfo
from .status import StatusSnapshot
from .trust import TrustListError, TrustSnapshot, build_snapshot
from .trustlist import OperatorKey, SignedTrustList, TrustFloor, TrustListRefused, judge, open_signed, read_floor, write_floor

log = logging.getLogger("gateway.edges")


class TrustSource(Protocol):
    async def load(self) -> TrustSnapshot: ...


class StatusSource(Protocol):
    async def snapshot(self, now: dt.datetime) -> StatusSnapshot: ...


@dataclass(frozen=True, slots=True)
class Current:
    trust: TrustSnapshot | None
    status: StatusSnapshot


class LiveTrust:
    """The current (trust, status) pair; swapped whole, read whole."""

    def __init__(self) -> None:
        self.current = Current(None, StatusSnapshot())
        self.last_error: str | None = None

    def set_trust(self, trust: TrustSnapshot) -> None:
        self.current = Current(trust, self.current.status)

    def set_status(self, status: StatusSnapshot) -> None:
        self.current = Current(self.current.trust, status)


class MemoryTrustSource:
    """Fake: returns the snapshot it was given (tests)."""

    def __init__(self, snapshot: TrustSnapshot) -> None:
        self.snapshot = snapshot

    async def load(self) -> TrustSnapshot:
        return self.snapshot


class FileTrustSource:
    """Reads the operator's SIGNED trust list from disk (see :mod:`gateway.trustlist`).

    Refuses (raises :class:`~gateway.trustlist.TrustListRefused`) a list with a bad or
    unpinned signature, a version lower than the one held (rollback), the held version with
    different content, one past its expiry, a document of the wrong shape, or one with an
    unreadable revocation entry (never applied without it); the caller keeps serving the last
    good snapshot. The same version and content again returns the held snapshot unchanged.

    ``state_path`` (setting ``trust_state``): where the highest version accepted is recorded, so the
    rollback rule holds across restarts and between the workers sharing the file: a candidate is
    judged against the higher of the list held in memory and that record (a missing file is a first
    start; an unreadable one refuses every list: :func:`~gateway.trustlist.read_floor`). A record that
    cannot be written is logged as an ERROR; the newer list is used all the same (it is never less safe
    than the older one).
    """

    def __init__(self, path: str | Path, regions: Mapping[str, RegionInfo], max_chain_depth: int,
                 operator_keys: Sequence[OperatorKey] = (), *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 skew: dt.timedelta = dt.timedelta(minutes=5), state_path: str | Path | None = None) -> None:
        if not operator_keys:
            raise ValueError("a signed trust list needs at least one pinned operator key")
        self.path = Path(path)
        self.regions = regions
        self.max_chain_depth = max_chain_depth
        self.operator_keys = tuple(operator_keys)
        self.clock = clock
        self.skew = skew
        self.state_path = Path(state_path) if state_path is not None else None
        self.held: SignedTrustList | None = None
        self.snapshot_held: TrustSnapshot | None = None
        #: the floor last read from ``state_path`` (None: no file, or no state path)
        self.floor: TrustFloor | None = None

    def fingerprint(self) -> tuple[int, int] | None:
        """(mtime_ns, size) of the file, for the reload watcher; None when missing."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def load(self) -> TrustSnapshot:
        raw = await asyncio.to_thread(self.path.read_bytes)
        signed = open_signed(raw, self.operator_keys)
        floor = None
        if self.state_path is not None:
            self.floor = floor = await asyncio.to_thread(read_floor, self.state_path)
        held: SignedTrustList | TrustFloor | None = self.held
        if floor is not None and (held is None or floor.version > held.version):
            held = floor  # another worker, or this gateway before its restart, took a newer list
        if judge(signed, held, self.clock(), self.skew) == "unchanged" and held is self.held \
                and self.snapshot_held is not None:
            return self.snapshot_held
        try:
            snapshot = await asyncio.to_thread(build_snapshot, signed.doc, self.regions,
                                               max_chain_depth=self.max_chain_depth)
        except TrustListError:
            raise
        except Exception as exc:  # a signed document of the wrong shape (a region that is not an object ...)
            raise TrustListRefused("malformed", f"v{signed.version} cannot be read: {type(exc).__name__}: {exc}") \
                from None
        # all or nothing for revocations: an unreadable one (a revoked_at without a zone, a serial that is not
        # hex) was dropped and the list applied without it, so the certificate stayed trusted under a list
        # that was meant to revoke it
        unread = [d for d in snapshot.dropped if d.kind == "revocation"]
        if unread:
            raise TrustListRefused("malformed", f"v{signed.version}: region {unread[0].region}: {unread[0].reason} "
                                                f"({len(unread)} unreadable revocation(s); the list is refused whole, "
                                                f"not applied without them)")
        for d in snapshot.dropped:
            log.warning("trust list v%d: dropped entry region=%s key_id=%s subject=%s: %s",
                        snapshot.version, d.region, d.key_id, d.subject, d.reason)
        self.held, self.snapshot_held = signed, snapshot
        if self.state_path is not None and (floor is None or signed.version > floor.version):
            try:
                await asyncio.to_thread(write_floor, self.state_path, signed, self.clock())
            except OSError as exc:
                log.error("trust list v%d is in force but could not be recorded in %s (%s): after a restart an "
                          "older list would not be refused as a rollback", signed.version, self.state_path, exc)
            else:
                self.floor = TrustFloor(signed.version, signed.digest, str(signed.doc.get("framework", "")),
                                        str(self.state_path))
        return snapshot


class MemoryStatusSource:
    """Fake: a fixed status snapshot (tests)."""

    def __init__(self, snapshot: StatusSnapshot) -> None:
        self._snapshot = snapshot

    async def snapshot(self, now: dt.datetime) -> StatusSnapshot:
        return self._snapshot


class SimulatorStatusSource:
    """Demo: reads the in-process issuer simulator's lists, as if fetched just now."""

    def __init__(self, simulator: IssuerSimulator, max_age: dt.timedelta) -> None:
        self.simulator = simulator
        self.max_age = max_age

    async def snapshot(self, now: dt.datetime) -> StatusSnapshot:
        return self.simulator.status_snapshot(now, self.max_age)
