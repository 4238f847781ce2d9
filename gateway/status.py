"""Per-licence status lists, modelled on the IETF Token Status List.

Each issuing region publishes one list: a byte array of ``bits``-wide entries (1, 2, 4
or 8), compressed with zlib (DEFLATE) on the wire. A licence carries its index; lookup
is O(1) on the decompressed bytes. Values: 0 valid, 1 revoked (注销/吊销),
2 suspended (暂停).

This module is pure. Fetching, signature checks and scheduling live at the edge
(:mod:`gateway.status_source`); the core receives a :class:`StatusSnapshot`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Mapping

VALID, REVOKED, SUSPENDED = 0, 1, 2
STATUS_NAMES = {VALID: "valid", REVOKED: "revoked", SUSPENDED: "suspended"}


@dataclass(frozen=True, slots=True)
class StatusList:
    bits: int
    data: bytes  # decompressed

    def __post_init__(self) -> None:
        if self.bits not in (1, 2, 4, 8):
            raise ValueError("bits must be 1, 2, 4 or 8")

    @property
    def size(self) -> int:
        return len(self.data) * 8 // self.bits

    def get(self, index: int) -> int:
        if index < 0 or index >= self.size:
            raise IndexError(index)
        per_byte = 8 // self.bits
        byte = self.data[index // per_byte]
        shift = (index % per_byte) * self.bits
        return (byte >> shift) & ((1 << self.bits) - 1)

    @classmethod
    def from_compressed(cls, bits: int, lst: bytes, max_size: int = 64 * 1024 * 1024) -> "StatusList":
        d = zlib.decompressobj()
        data = d.decompress(lst, max_size)
        if d.unconsumed_tail:
            raise ValueError("status list decompresses beyond the size limit")
        # a stream cut short decompresses without an error (and without its Adler-32 check): the
        # licences past the cut read "outside the region's list"; bytes after its end are not the list
        if not d.eof or d.unused_data:
            raise ValueError("status list is not one complete zlib stream")
        return cls(bits, data)

    def compressed(self) -> bytes:
        return zlib.compress(self.data, 9)


def build_status_list(size: int, bits: int = 2, values: Mapping[int, int] | None = None) -> StatusList:
    per_byte = 8 // bits
    buf = bytearray((size + per_byte - 1) // per_byte)
    for index, value in (values or {}).items():
        shift = (index % per_byte) * bits
        buf[index // per_byte] |= (value & ((1 << bits) - 1)) << shift
    return StatusList(bits, bytes(buf))


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """One region's current list, with the facts needed to judge its freshness."""

    region: str
    status_list: StatusList
    fetched_at: datetime  # when this gateway last confirmed the list (fetch or 304)
    issued_at: datetime
    expires_at: datetime | None  # the list's own exp; past it the list is stale
    max_age: timedelta  # this region's staleness limit (config)
    version: str = ""
    #: the list's signing time + the region's limit (+ the clock skew): past it the list is stale however
    #: recently it was re-confirmed (a 304 or the same list served again). None: no such bound (a list
    #: made in this process). Without it a list re-confirmed just before its signing limit counted as
    #: fresh for one more limit from that confirmation.
    stale_after: datetime | None = None

    def age(self, now: datetime) -> timedelta:
        return now - self.fetched_at

    def fresh(self, now: datetime) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.stale_after is not None and now > self.stale_after:
            return False
        return self.age(now) <= self.max_age


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    regions: Mapping[str, RegionStatus] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, region: str) -> RegionStatus | None:
        return self.regions.get(region)

    def with_region(self, rs: RegionStatus) -> "StatusSnapshot":
        return StatusSnapshot(MappingProxyType({**self.regions, rs.region: rs}))
