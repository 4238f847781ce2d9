"""Which regions a federated query asks (pure).

Default: the region whose jurisdiction covers the district encoded in the holder's code
(citizen ID digits 1-6; USCC characters 3-8, the registration division), plus the regions
the item names. An item valid in "all" regions adds nothing (asking 45 regions for every
query would be slow and would spread the holder's code needlessly). An explicit list
replaces the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.identifiers import citizen_id_valid, uscc_valid
from gateway.specs import covers


def home_district(code_type: str, code: str) -> str | None:
    """The GB/T 2260 district encoded in a holder code, if its type encodes one."""
    if code_type == "111" and citizen_id_valid(code):
        return code[:6]
    if code_type == "001" and uscc_valid(code):
        return code[2:8]
    return None


def home_region(code_type: str, code: str, region_codes: Iterable[str]) -> str | None:
    district = home_district(code_type, code)
    if district is None:
        return None
    # most specific region first: a city (3305xx) before its province (33xxxx)
    for region in sorted(region_codes, key=lambda r: (r.endswith("0000"), r)):
        if covers(region, district):
            return region
    return None


def route(code_type: str, code: str, item_all_regions: bool, item_regions: Sequence[str],
          explicit: Sequence[str] | None, region_codes: Iterable[str]) -> tuple[str, ...]:
    if explicit:
        return tuple(dict.fromkeys(explicit))
    out: list[str] = []
    home = home_region(code_type, code, region_codes)
    if home is not None:
        out.append(home)
    if not item_all_regions:
        out.extend(r for r in item_regions if r not in out)
    return tuple(out)
