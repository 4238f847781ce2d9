"""The issuer simulator: demo issuers for all 45 regions (TEST keys only).

It encodes licences through the *same* region spec and format family the gateway decodes
with (``core.denormalise`` + ``family.encode``), so the two cannot drift apart. It keeps
each region's status list (revoke / suspend a licence) and produces the cases the tests,
demo and load tests need:

``valid``, ``expired``, ``not-yet-valid``, ``revoked``, ``suspended``, ``tampered``
(content changed after signing), ``wrong-issuer`` (a region's key signing a licence that
claims another region), ``unknown-issuer`` (a key not in the trust list), ``malformed``.

All people and companies are synthetic, with valid check characters.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from adapters import FAMILIES
from adapters.base import SigningKey

from .core import CHINA_TZ, denormalise
from .devtrust import RegionMaterial, make_anchor, make_issuer
from .identifiers import citizen_id_check, citizen_id_valid, make_licence_identifier, make_uscc
from .model import Licence
from .specs import RegionInfo, RegionSpec
from .status import REVOKED, SUSPENDED, VALID, RegionStatus, StatusList, StatusSnapshot, build_status_list

CASES = ("valid", "expired", "not-yet-valid", "revoked", "suspended", "tampered", "wrong-issuer",
         "unknown-issuer", "malformed")
#: which verdict and reason each case must produce (used by the conformance test and the load corpus)
EXPECTED: dict[str, tuple[str, str | None]] = {
    "valid": ("valid", None),
    "expired": ("invalid", "LICENCE_EXPIRED"),
    "not-yet-valid": ("invalid", "LICENCE_NOT_YET_VALID"),
    "revoked": ("invalid", "LICENCE_REVOKED"),
    "suspended": ("invalid", "LICENCE_SUSPENDED"),
    "tampered": ("invalid", "SIGNATURE_INVALID"),
    "wrong-issuer": ("invalid", "ISSUER_REGION_MISMATCH"),
    "unknown-issuer": ("invalid", "UNKNOWN_ISSUER"),
    "malformed": ("invalid", "MALFORMED"),
}

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
#: given names that are plainly test data: a common surname with a popular given name is
#: somebody's real name (林 + 俊杰 was a famous singer's)
_GIVEN = ["测试一", "测试二", "测试三", "测试四", "测试五", "测试六", "测试七", "测试八", "测试九", "测试十",
          "测试十一", "测试十二"]
#: where a synthetic person's ID number is registered: a GB/T 2260 code the reference pins
#: (../shared/reference: regions.csv and elicence-facts.md §6), never a made-up district
#: (``<city>02`` gave 320202 崇安区, 320502 沧浪区, 340702 铜官山区... abolished codes).
#: Shanghai and Huzhou: the district the reference names; every other region: its own code.
_PERSON_DIVISION = {"310000": "310117", "330500": "330502"}
_COMPANY_WORDS = ["智联", "星河", "青禾", "远航", "恒信", "蓝湖", "云帆", "瑞丰"]
STATUS_LIST_SIZE = 1 << 16
#: Standing statuses, identical in every simulator process (each demo gateway worker, ``demo
#: issue``, ``demo corpus``): the top of every region's list holds indices that are revoked /
#: suspended for good. A licence issued by one process with such an index is judged revoked /
#: suspended by a gateway whose status lists come from another simulator instance (the load
#: corpus relies on this, see gateway/corpus.py). Fresh indices count up from 1, far below.
STANDING_REVOKED = range(STATUS_LIST_SIZE - 2048, STATUS_LIST_SIZE - 1024)
STANDING_SUSPENDED = range(STATUS_LIST_SIZE - 1024, STATUS_LIST_SIZE)


def _agree_with_id(values: dict[str, Any], drawn: set[str], prefix: str, code: str) -> None:
    """Replace the drawn ``<prefix>birth_date`` / ``<prefix>gender`` by what the citizen ID
    number ``code`` says (GB 11643: YYYYMMDD at 7-14, odd order number = male). Values the
    caller gave are kept."""
    if not citizen_id_valid(code):
        return
    facts = {f"{prefix}birth_date": f"{code[6:10]}-{code[10:12]}-{code[12:14]}",
             f"{prefix}gender": "男" if int(code[16]) % 2 else "女"}
    for name, value in facts.items():
        if name in drawn:
            values[name] = value


def _standing_values() -> dict[int, int]:
    return {**dict.fromkeys(STANDING_REVOKED, REVOKED), **dict.fromkeys(STANDING_SUSPENDED, SUSPENDED)}


#: where a family's wire format changes the reason: an OFD seal carries its signer
#: certificate, so a key outside the trust list is a chain that reaches no anchor
EXPECTED_BY_FAMILY: dict[str, dict[str, tuple[str, str | None]]] = {
    "ofd-seal": {"unknown-issuer": ("invalid", "UNTRUSTED_CHAIN")},
}


def expected(case: str, family: str) -> tuple[str, str | None]:
    """The verdict and reason a simulator case must produce for a region of ``family``."""
    return EXPECTED_BY_FAMILY.get(family, {}).get(case, EXPECTED[case])


@dataclass(frozen=True, slots=True)
class Issued:
    """One simulated licence, ready to POST."""

    region: str
    case: str
    type_key: str
    data: bytes
    licence: Licence
    expect_verdict: str
    expect_reason: str | None

    @property
    def encoding(self) -> str:
        try:
            self.data.decode("utf-8")
            return "utf-8" if self.data[:1] in (b"e", b"{", b"<") and b"\x00" not in self.data else "base64"
        except UnicodeDecodeError:
            return "base64"

    def body(self) -> dict[str, str]:
        if self.encoding == "utf-8":
            return {"licence": self.data.decode("utf-8"), "encoding": "utf-8"}
        return {"licence": base64.b64encode(self.data).decode("ascii"), "encoding": "base64"}


@dataclass(slots=True)
class _RegionState:
    values: dict[int, int] = field(default_factory=_standing_values)
    next_index: int = 1
    list_version: int = 1


class IssuerSimulator:
    """Demo issuers. ``types`` maps a licence type key to an object with at least
    ``type_code``, ``name_zh``, ``holder_kind`` ("person"|"organisation") and
    ``surface_fields`` (objects with ``name``, ``kind``, ``required``): the catalogue's
    LicenceType."""

    def __init__(self, specs: Mapping[str, RegionSpec], regions: Mapping[str, RegionInfo],
                 material: Mapping[str, RegionMaterial], types: Mapping[str, Any], *, seed: int = 20261127) -> None:
        self.specs = specs
        self.regions = regions
        self.material = material
        self.types = types
        self.rng = random.Random(seed)
        self.state = {code: _RegionState() for code in specs}
        self._rogue: dict[str, SigningKey] = {}

    # --- synthetic people and companies ------------------------------------------
    def person(self, region: str, rng: random.Random | None = None) -> tuple[str, str]:
        rng = rng or self.rng
        area = _PERSON_DIVISION.get(region, region)
        birth = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 45))
        first17 = f"{area}{birth:%Y%m%d}{rng.randrange(1, 999):03d}"
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        return name, first17 + citizen_id_check(first17)

    def company(self, region: str, rng: random.Random | None = None) -> tuple[str, str]:
        rng = rng or self.rng
        org8 = "".join(str(rng.randrange(10)) for _ in range(8))
        name = f"{self.regions[region].name}{rng.choice(_COMPANY_WORDS)}科技有限公司（测试）"
        return name, make_uscc("9", "1", region, org8)  # registered at the region's own (pinned) code

    # --- issuing --------------------------------------------------------------------
    def licence_types_of(self, region: str) -> list[str]:
        listed = self.specs[region].licence_types
        return sorted(self.types) if "*" in listed else [k for k in listed if k in self.types]

    def canonical(self, region: str, type_key: str, now: dt.datetime, *, holder: tuple[str, str, str] | None = None,
                  case: str = "valid", surface: Mapping[str, Any] | None = None) -> Licence:
        lt = self.types[type_key]
        rng = self.rng
        auth = self.material[region].authority
        if holder is None:
            if getattr(lt, "holder_kind", "person") == "organisation":
                name, code = self.company(region)
                holder = (name, code, "001")
            else:
                name, code = self.person(region)
                holder = (name, code, "111")
        today = now.astimezone(CHINA_TZ).date()
        valid_from, valid_until = today - dt.timedelta(days=400), today + dt.timedelta(days=365 * 5)
        if case == "expired":
            valid_from, valid_until = today - dt.timedelta(days=3000), today - dt.timedelta(days=10)
        elif case == "not-yet-valid":
            valid_from, valid_until = today + dt.timedelta(days=30), today + dt.timedelta(days=3000)
        st = self.state[region]
        index = st.next_index
        st.next_index += 1
        serial = f"{now:%Y%m%d}{index:07d}"
        values = dict(surface or {})
        for role in getattr(lt, "role_fields", ()):  # people named in a role: synthetic, check-valid
            if any(c in values for c in role.code_fields):
                continue
            role_name, role_code = self.person(region)
            for c in role.code_fields:
                values[c] = role_code
            for n in role.name_fields:
                values[n] = role_name
        drawn: set[str] = set()
        for f in getattr(lt, "surface_fields", ()):
            if f.name not in values and (f.required or rng.random() < 0.5):
                values[f.name] = self._surface_value(f, holder, today, rng, region)
                drawn.add(f.name)
        # what an ID number says (birth date, sex) is what the face says: the holder's, and a
        # role person's (spouse_code -> spouse_birth_date, spouse_gender)
        if holder[2] == "111":
            for prefix in ("", "holder_", "newborn_"):
                _agree_with_id(values, drawn, prefix, holder[1])
        for role in getattr(lt, "role_fields", ()):
            for c in role.code_fields:
                if c.endswith("_code") and isinstance(values.get(c), str):
                    _agree_with_id(values, drawn, c[:-4], values[c])
        return Licence(
            identifier=make_licence_identifier(lt.type_code, auth.uscc, serial),
            name=lt.name_zh, type_code=lt.type_code, type_name=lt.name_zh,
            number=f"{region[:4]}{index:08d}", issuer_name=auth.name, issuer_code=auth.uscc,
            issue_date=valid_from, holder_name=holder[0], holder_code=holder[1], holder_code_type=holder[2],
            valid_from=valid_from, valid_until=valid_until, area_code=auth.area_code, surface=values,
            status_index=self._status_index(case, index),
        )

    @staticmethod
    def _status_index(case: str, index: int) -> int:
        """Revoked and suspended cases take an index from the standing ranges, which every
        simulator instance's list marks so: a licence issued by one process (the CLI, the load
        corpus) is revoked in the list another process (the demo regions) serves."""
        if case == "revoked":
            return STANDING_REVOKED[index % len(STANDING_REVOKED)]
        if case == "suspended":
            return STANDING_SUSPENDED[index % len(STANDING_SUSPENDED)]
        return index

    @staticmethod
    def _surface_value(f: Any, holder: tuple[str, str, str], today: dt.date, rng: random.Random,
                       region: str = "330500") -> str:
        kind = getattr(f, "kind", "text")
        if kind == "date":
            return (today - dt.timedelta(days=rng.randrange(100, 8000))).isoformat()
        if kind == "code" and "统一社会信用代码" in getattr(f, "label_zh", ""):  # a USCC: check-valid, synthetic
            return make_uscc("9", "1", region, f"{rng.randrange(10**8):08d}")
        if kind == "code":
            return f"{rng.randrange(10**8):08d}"
        if kind == "enum":
            options = getattr(f, "values", None) or ("A", "B")
            return rng.choice(list(options))
        return f"{getattr(f, 'label_zh', f.name)}（测试）"

    def signing_key(self, region: str) -> SigningKey:
        return self.material[region].issuers[-1]

    def encode(self, region: str, lic: Licence, now: dt.datetime, key: SigningKey | None = None) -> bytes:
        spec = self.specs[region]
        family = FAMILIES[spec.family]
        return family.encode(denormalise(lic, spec), spec, key or self.signing_key(region), now)

    def issue(self, region: str, type_key: str | None = None, case: str = "valid", now: dt.datetime | None = None,
              holder: tuple[str, str, str] | None = None) -> Issued:
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}; one of {', '.join(CASES)}")
        if region not in self.specs:
            raise ValueError(f"unknown region {region!r}")
        now = now or dt.datetime.now(dt.timezone.utc)
        type_key = type_key or self.licence_types_of(region)[0]
        if type_key not in self.types:
            raise ValueError(f"unknown licence type {type_key!r}")
        lic = self.canonical(region, type_key, now, holder=holder, case=case)
        family = FAMILIES[self.specs[region].family]
        verdict, reason = expected(case, family.name)
        if case == "malformed":
            data = (family.malformed(self.encode(region, lic, now)) if hasattr(family, "malformed")
                    else b"eyJhbGciOiJFUzI1NiJ9.%%%not-base64%%%.AAAA")
        elif case == "wrong-issuer":
            other = self._neighbour(region)
            lic_other = self.canonical(other, type_key, now, holder=holder)
            data = self.encode(region, replace(lic_other, status_index=lic.status_index), now)
            lic = lic_other
        elif case == "unknown-issuer":
            data = self.encode(region, lic, now, key=self._rogue_key(region, now))
        elif case == "tampered":
            data = self.encode(region, lic, now)
            family = FAMILIES[self.specs[region].family]
            data = family.tamper(data) if hasattr(family, "tamper") else data[:-8] + bytes(
                b ^ 1 for b in data[-8:])
        else:
            data = self.encode(region, lic, now)
        if case == "revoked":
            self.set_status(region, lic.status_index, REVOKED)
        elif case == "suspended":
            self.set_status(region, lic.status_index, SUSPENDED)
        return Issued(region, case, type_key, data, lic, verdict, reason)

    def _neighbour(self, region: str) -> str:
        codes = sorted(self.specs)
        same = [c for c in codes if c != region and self.specs[c].family == self.specs[region].family]
        return same[0] if same else next(c for c in codes if c != region)

    def _rogue_key(self, region: str, now: dt.datetime) -> SigningKey:
        """A key with a certificate that looks like the region's but chains to a rogue root."""
        if region not in self._rogue:
            alg = self.specs[region].algorithms[0]
            rogue_anchor_key, rogue_anchor = make_anchor(region, alg, now)
            self._rogue[region] = make_issuer(region, alg, rogue_anchor_key, rogue_anchor, 666,
                                              now - dt.timedelta(days=1), now + dt.timedelta(days=30), "rogue")
        return self._rogue[region]

    # --- status lists ---------------------------------------------------------------
    def set_status(self, region: str, index: int, value: int) -> None:
        st = self.state[region]
        if value == VALID:
            st.values.pop(index, None)
        else:
            st.values[index] = value
        st.list_version += 1

    def status_list(self, region: str) -> StatusList:
        return build_status_list(STATUS_LIST_SIZE, 2, self.state[region].values)

    def status_snapshot(self, now: dt.datetime, max_age: dt.timedelta) -> StatusSnapshot:
        snap = StatusSnapshot()
        for code in self.specs:
            snap = snap.with_region(RegionStatus(code, self.status_list(code), fetched_at=now, issued_at=now,
                                                 expires_at=None, max_age=max_age,
                                                 version=str(self.state[code].list_version)))
        return snap
