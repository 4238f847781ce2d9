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
from typing import Mapping, Protocol

import orjson

from .simulator import IssuerSimulator
from .specs import RegionInfo
from .status import StatusSnapshot
from .trust import TrustSnapshot, build_snapshot

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
    """Reads an operator-provided trust list (JSON) from disk."""

    def __init__(self, path: str | Path, regions: Mapping[str, RegionInfo], max_chain_depth: int) -> None:
        self.path = Path(path)
        self.regions = regions
        self.max_chain_depth = max_chain_depth

    async def load(self) -> TrustSnapshot:
        raw = await asyncio.to_thread(self.path.read_bytes)
        return build_snapshot(orjson.loads(raw), self.regions, max_chain_depth=self.max_chain_depth)


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
