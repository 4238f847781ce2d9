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
import hashlib
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
#: the legal minimum age of marriage (民法典 第1047条): men 22, women 20
MARRIAGE_AGE = {"男": 22, "女": 20}
#: a parent's age (years, inclusive) when their child is born, by the parent's sex
PARENT_AGE = {"女": (20, 40), "男": (22, 45)}
#: 与户主关系 by the holder's sex (None: either) and the head's birth relative to the holder's, in
#: years (None: the head is the holder, or anyone): a 子 is younger than the head, a 父亲 older...
RELATION_TO_HEAD: dict[str, tuple[str | None, tuple[int, int] | None]] = {
    "户主": (None, None), "配偶": (None, (-8, 8)), "其他": (None, None),
    "子": ("男", (-45, -20)), "女": ("女", (-45, -20)),        # the head is a parent
    "父亲": ("男", (20, 40)), "母亲": ("女", (20, 40)),        # the head is a child
    "孙子": ("男", (-80, -40)), "孙女": ("女", (-80, -40)),    # the head is a grandparent
    "兄弟": ("男", (-12, 12)), "姐妹": ("女", (-12, 12)),
}
#: a synthetic adult's birth dates (:meth:`IssuerSimulator.person`): 22 or older from 2026 on, so anyone
#: the simulator makes may be named on a 结婚证
PERSON_BORN_FROM, PERSON_BORN_UNTIL = dt.date(1960, 1, 1), dt.date(1960, 1, 1) + dt.timedelta(days=365 * 44 - 1)
#: GB 11643 birth dates from 1900 on (gateway.identifiers)
_EARLIEST_BIRTH = dt.date(1900, 1, 1)
#: the sex of a role's place (a 出生医学证明's mother and father)
_PLACE_SEX = {"mother_code": "女", "father_code": "男"}
_SPOUSE_ROLES = ("spouse", "former_spouse")
#: drawn dates that follow one another
_ORDERED_DATES = (("admission_date", "graduation_date"),)
#: a holder's own dated events (初次领证, 入学, 取得...) happen from this age on
EVENT_MIN_AGE = 18
#: surface date fields that are not an event of the holder's: their birth, or a term's end
_NOT_EVENTS = ("birth_date", "holder_birth_date", "spouse_birth_date", "established_date")
#: face fields that are the day the licence itself was issued: a 结婚证 or 离婚证 is issued on its
#: 登记日期, a 行驶证 on its 注册日期, a 学位证书 on its 授予日期, a 学历证书 on its 毕（结）业日期, a
#: 职业资格证书 on its 取得日期. The licence's issue date is that day, and so is the start of its
#: validity (but for the not-yet-valid case, issued then and valid from a day to come).
ISSUE_DATE_FIELDS = ("registration_date", "register_date", "award_date", "graduation_date", "pass_date")
#: face fields of an event the licence's issue follows: the holder's first licence of the kind
#: (初次领证日期, 初领日期: this one may be a renewal), the company's founding (成立日期)
BEFORE_ISSUE_FIELDS = ("first_issue_date", "established_date")
_COMPANY_WORDS = ["智联", "星河", "青禾", "远航", "恒信", "蓝湖", "云帆", "瑞丰"]
STATUS_LIST_SIZE = 1 << 16
#: Standing statuses, identical in every simulator process (each demo gateway worker, ``demo
#: issue``, ``demo corpus``): the top of every region's list holds indices that are revoked /
#: suspended for good. A licence issued by one process with such an index is judged revoked /
#: suspended by a gateway whose status lists come from another simulator instance (the load
#: corpus relies on this, see gateway/corpus.py). Fresh indices count up from 1, far below.
STANDING_REVOKED = range(STATUS_LIST_SIZE - 2048, STATUS_LIST_SIZE - 1024)
STANDING_SUSPENDED = range(STATUS_LIST_SIZE - 1024, STATUS_LIST_SIZE)


def synthetic_name(code: str) -> str:
    """The one synthetic name of the person with ID number ``code``: a function of the number
    alone, so ``/issue``, a licence's role fields and the simulated regions' sharing services
    (gateway/region_server.py) all name the same person the same way."""
    digest = hashlib.sha256(b"name:" + code.upper().encode("utf-8")).digest()
    return _SURNAMES[digest[0] % len(_SURNAMES)] + _GIVEN[digest[1] % len(_GIVEN)]


def id_facts(code: str) -> tuple[dt.date, str] | None:
    """(birth date, sex) a valid citizen ID number says (GB 11643), else None."""
    if not (isinstance(code, str) and citizen_id_valid(code)):
        return None
    return dt.date(int(code[6:10]), int(code[10:12]), int(code[12:14])), "男" if int(code[16]) % 2 else "女"


def _add_years(day: dt.date, n: int) -> dt.date:
    try:
        return day.replace(year=day.year + n)
    except ValueError:  # 29 February
        return day.replace(year=day.year + n, day=28)


def _other_sex(sex: str | None) -> str | None:
    return {"男": "女", "女": "男"}.get(sex or "")


def _draw_day(rng: random.Random, lo: dt.date, hi: dt.date) -> dt.date:
    """A day in [lo, hi]; ``lo`` when the span is empty (the caller's people allow no better)."""
    return lo + dt.timedelta(days=rng.randrange(0, (hi - lo).days + 1)) if hi > lo else lo


def _role_places(role: Any) -> list[tuple[str, str | None]]:
    """A role's places as (code field, name field) pairs: ``mother_code`` with ``mother_name``."""
    names = list(role.name_fields)
    return [(c, names[i] if i < len(names) else None) for i, c in enumerate(role.code_fields)]


def _head_window(rel: str, me: tuple[dt.date | None, str | None], today: dt.date) -> tuple[dt.date, dt.date] | None:
    """When the head of a holder in relationship ``rel`` was born: an adult alive today, at the
    relationship's distance from the holder (None: any adult)."""
    span = RELATION_TO_HEAD.get(rel, (None, None))[1]
    if span is None or me[0] is None:
        return None
    oldest, youngest = _add_years(today, -100), _add_years(today, -18)
    if rel == "配偶":
        youngest = _add_years(today, -MARRIAGE_AGE.get(_other_sex(me[1]) or "", 22))
    lo, hi = max(_add_years(me[0], span[0]), oldest, _EARLIEST_BIRTH), min(_add_years(me[0], span[1]), youngest)
    return (lo, hi) if lo <= hi else None


def _feasible(rel: str, me: tuple[dt.date | None, str | None], today: dt.date) -> bool:
    """Can a holder (birth date, sex) stand in ``rel`` to some head of household?"""
    sex, span = RELATION_TO_HEAD.get(rel, (None, None))  # a relationship this table does not know: anyone's
    if span is None:
        return True
    if me[0] is None or me[1] is None or (sex is not None and sex != me[1]):
        return False
    if rel == "配偶" and me[0] > _add_years(today, -MARRIAGE_AGE[me[1]]):
        return False
    return _head_window(rel, me, today) is not None


def _fits(rel: str, me: tuple[dt.date | None, str | None], my_code: str, head: Any, today: dt.date) -> bool:
    """Does ``rel`` fit a holder (birth date, sex, ID number) and the given head's ID number?"""
    if RELATION_TO_HEAD.get(rel, (None, None))[1] is None:
        return (rel == "户主") == (head == my_code)
    facts = id_facts(head) if isinstance(head, str) else None
    if head == my_code or facts is None or not _feasible(rel, me, today):
        return False
    if rel == "配偶" and facts[1] == me[1]:
        return False
    window = _head_window(rel, me, today)
    return window is not None and window[0] <= facts[0] <= window[1]


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
    def person(self, region: str, rng: random.Random | None = None, *, sex: str | None = None,
               born: tuple[dt.date, dt.date] | None = None) -> tuple[str, str]:
        """(name, citizen ID number) of a synthetic person registered in ``region``: of ``sex``
        (男/女: the order number's parity) and born in ``born`` (default: an adult, old enough to
        marry from 2026 on). The name is :func:`synthetic_name` of the number."""
        rng = rng or self.rng
        area = _PERSON_DIVISION.get(region, region)
        lo, hi = born or (PERSON_BORN_FROM, PERSON_BORN_UNTIL)
        birth = _draw_day(rng, max(lo, _EARLIEST_BIRTH), hi)
        order = rng.randrange(1, 999)
        if sex is not None and ("男" if order % 2 else "女") != sex:
            order += 1 if order < 998 else -1
        first17 = f"{area}{birth:%Y%m%d}{order:03d}"
        code = first17 + citizen_id_check(first17)
        return synthetic_name(code), code

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
        roles = tuple(getattr(lt, "role_fields", ()))
        in_roles = {n for role in roles for n in (*role.code_fields, *role.name_fields)}
        drawn: set[str] = set()
        for f in getattr(lt, "surface_fields", ()):
            if f.name not in values and f.name not in in_roles and (f.required or rng.random() < 0.5):
                values[f.name] = self._surface_value(f, holder, today, rng, region)
                drawn.add(f.name)
        # what an ID number says (birth date, sex) is what the face says: the holder's, and a
        # role person's (spouse_code -> spouse_birth_date, spouse_gender)
        if holder[2] == "111":
            for prefix in ("", "holder_", "newborn_"):
                _agree_with_id(values, drawn, prefix, holder[1])
        me = self._holder_facts(values, drawn, holder, rng)
        for role in roles:  # people named in a role: synthetic, check-valid, related to the holder as it says
            self._fill_role(lt, role, values, drawn, holder, me, today, rng, region)
        for role in roles:
            for c in role.code_fields:
                if c.endswith("_code") and isinstance(values.get(c), str):
                    _agree_with_id(values, drawn, c[:-4], values[c])
        self._order_dates(roles, values, drawn, me, today, rng)
        issue_date, valid_from = self._dates_on_the_face(lt, values, drawn, case, today, valid_from, valid_until)
        # the fields in the order they always had: the caller's, the role people's, the drawn ones
        order = [*(surface or ()), *(n for role in roles for n in (*role.code_fields, *role.name_fields)),
                 *(f.name for f in getattr(lt, "surface_fields", ()))]
        values = {k: values[k] for k in (*dict.fromkeys(order), *values) if k in values}
        return Licence(
            identifier=make_licence_identifier(lt.type_code, auth.uscc, serial),
            name=lt.name_zh, type_code=lt.type_code, type_name=lt.name_zh,
            number=f"{region[:4]}{index:08d}", issuer_name=auth.name, issuer_code=auth.uscc,
            issue_date=issue_date, holder_name=holder[0], holder_code=holder[1], holder_code_type=holder[2],
            valid_from=valid_from, valid_until=valid_until, area_code=auth.area_code, surface=values,
            status_index=self._status_index(case, index),
        )

    # --- people who belong together -------------------------------------------------------
    def role_surface(self, lt: Any, role_name: str, name: str, code: str) -> dict[str, str]:
        """The surface fields naming the person (``name``, ``code``) in role ``role_name`` of a
        licence of type ``lt``. A role with a mother's and a father's place (``parent``) names
        them in the place of their sex only (the other parent is drawn by :meth:`canonical`)."""
        role = lt.role(role_name)
        pairs = _role_places(role)
        facts = id_facts(code)
        own = [(c, n) for c, n in pairs if facts is not None and _PLACE_SEX.get(c) == facts[1]]
        if len(pairs) > 1 and own:
            pairs = own[:1]
        return {**{c: code for c, _ in pairs}, **{n: name for _, n in pairs if n}}

    def holder_for_role(self, region: str, lt: Any, role_name: str, code: str, now: dt.datetime,
                        rng: random.Random | None = None) -> tuple[str, str]:
        """A synthetic holder of a licence of type ``lt`` that names ``code`` in ``role_name``:
        a parent's child is born when the parent was of an age to have one, a spouse is of the
        other sex and of an age to marry; anyone else is any adult."""
        today = now.astimezone(CHINA_TZ).date()
        facts = id_facts(code)
        places = _role_places(lt.role(role_name))
        if facts is not None and any(c in _PLACE_SEX for c, _ in places):
            youngest, oldest = PARENT_AGE[facts[1]]
            lo, hi = _add_years(facts[0], youngest), min(_add_years(facts[0], oldest), today)
            return self.person(region, rng, born=(lo, hi) if lo <= hi else None)  # too young to be a parent: anyone
        if facts is not None and role_name in _SPOUSE_ROLES:
            return self._spouse(region, facts, today, rng or self.rng)
        return self.person(region, rng)

    @staticmethod
    def _holder_facts(values: dict[str, Any], drawn: set[str], holder: tuple[str, str, str],
                      rng: random.Random) -> tuple[dt.date | None, str | None]:
        """The holder's (birth date, sex): what the ID number says, else what the face says. A
        holder without an ID number (a passport's) is an adult like :meth:`person`, not born
        100 to 8000 days ago -- unless the licence is a newborn's."""
        facts = id_facts(holder[1]) if holder[2] == "111" else None
        if facts is not None:
            return facts
        if "newborn_gender" not in values:
            for name in ("birth_date", "holder_birth_date"):
                if name in drawn:
                    values[name] = _draw_day(rng, PERSON_BORN_FROM, PERSON_BORN_UNTIL).isoformat()
        birth = next((values[n] for n in ("birth_date", "holder_birth_date") if isinstance(values.get(n), str)), "")
        sex = next((values[n] for n in ("gender", "holder_gender", "newborn_gender") if values.get(n) in MARRIAGE_AGE),
                   None)
        try:
            return dt.date.fromisoformat(birth), sex
        except ValueError:
            return None, sex

    def _spouse(self, region: str, me: tuple[dt.date | None, str | None], today: dt.date,
                rng: random.Random) -> tuple[str, str]:
        """A (former) spouse: the other sex (民法典 第1046-1049条 registers a man and a woman), born
        within eight years of the holder and old enough to marry today."""
        sex = _other_sex(me[1])
        hi = _add_years(today, -MARRIAGE_AGE.get(sex or "", 22))
        if me[0] is None:
            return self.person(region, rng, sex=sex, born=(PERSON_BORN_FROM, min(PERSON_BORN_UNTIL, hi)))
        lo, top = _add_years(me[0], -8), min(_add_years(me[0], 8), hi)
        return self.person(region, rng, sex=sex, born=(lo, top) if top >= lo else (PERSON_BORN_FROM, hi))

    def _fill_role(self, lt: Any, role: Any, values: dict[str, Any], drawn: set[str], holder: tuple[str, str, str],
                   me: tuple[dt.date | None, str | None], today: dt.date, rng: random.Random, region: str) -> None:
        """Name a synthetic person in each of ``role``'s places the caller left empty."""
        places = _role_places(role)
        if role.role == "household_head":
            options = next((tuple(f.values or ()) for f in getattr(lt, "surface_fields", ())
                            if f.name == "relationship_to_head"), ()) or tuple(RELATION_TO_HEAD)
            self._household(places, options, values, drawn, holder, me, today, rng, region)
            return
        if not any(c in _PLACE_SEX for c, _ in places):
            if any(c in values for c in role.code_fields):  # one person for the whole role, as given
                return
            if role.role in _SPOUSE_ROLES:
                name, code = self._spouse(region, me, today, rng)
            else:
                name, code = self.person(region, rng)
            for c in role.code_fields:
                values[c] = code
            for n in role.name_fields:
                values[n] = name
            return
        for c, n in places:  # a mother's and a father's place: two people, each of the place's sex
            if c in values:
                continue
            sex = _PLACE_SEX.get(c)
            born = None
            if me[0] is not None and sex is not None:
                lo, hi = PARENT_AGE[sex]
                born = (_add_years(me[0], -hi), _add_years(me[0], -lo))
            name, code = self.person(region, rng, sex=sex, born=born)
            values[c] = code
            if n:
                values[n] = name

    def _household(self, places: list[tuple[str, str | None]], options: tuple[str, ...], values: dict[str, Any],
                   drawn: set[str], holder: tuple[str, str, str], me: tuple[dt.date | None, str | None], today: dt.date,
                   rng: random.Random, region: str) -> None:
        """户主 and 与户主关系 that fit together: a 女 or 姐妹 is a woman, a 子 twenty to forty-five
        years younger than the head, the head of a 户主 the holder, the head of a 配偶 a spouse."""
        code_f, name_f = places[0]
        rel_f = "relationship_to_head"
        if code_f in values:  # the caller named the head: a relationship that fits both people
            if rel_f in drawn:
                head = values[code_f]
                fits = [r for r in options if _fits(r, me, holder[1], head, today)]
                values[rel_f] = rng.choice(fits or ["其他"])
            return
        rel = values.get(rel_f, "其他")
        if rel_f in drawn:
            rel = rng.choice([r for r in options if _feasible(r, me, today)] or ["户主"])
            values[rel_f] = rel
        if rel == "户主":
            name, code = holder[0], holder[1]
        else:
            window = _head_window(rel, me, today)
            sex = _other_sex(me[1]) if rel == "配偶" else None
            name, code = self.person(region, rng, sex=sex, born=window)
        values[code_f] = code
        if name_f:
            values[name_f] = name

    @staticmethod
    def _order_dates(roles: tuple[Any, ...], values: dict[str, Any], drawn: set[str],
                     me: tuple[dt.date | None, str | None], today: dt.date, rng: random.Random) -> None:
        """Drawn dates follow the people: a marriage (or its divorce) is registered once both
        are of legal age; the holder's own events (初次领证, 入学, 毕业, 取得...) happen once the
        holder is grown up; graduation follows admission."""
        last = today - dt.timedelta(days=100)
        spouses = [values.get(c) for r in roles if r.role in _SPOUSE_ROLES for c in r.code_fields]
        if "registration_date" in drawn and spouses:
            people = [me, *(id_facts(c) or (None, None) for c in spouses)]
            legal = [_add_years(b, MARRIAGE_AGE[sex]) for b, sex in people if b is not None and sex in MARRIAGE_AGE]
            if legal:
                values["registration_date"] = min(_draw_day(rng, max(legal), last), today).isoformat()
        if me[0] is not None:
            grown = _add_years(me[0], EVENT_MIN_AGE)
            for name in sorted(drawn):
                if name in _NOT_EVENTS or name == "registration_date" or name.endswith("_until"):
                    continue
                try:
                    day = dt.date.fromisoformat(values[name])
                except (TypeError, ValueError):
                    continue
                if day < grown:
                    values[name] = min(_draw_day(rng, grown, last), today).isoformat()
        for first, then in _ORDERED_DATES:
            if {first, then} <= drawn and values[first] >= values[then]:
                a, b = sorted((values[first], values[then]))
                if a == b:
                    a = (dt.date.fromisoformat(b) - dt.timedelta(days=1)).isoformat()
                values[first], values[then] = a, b

    @staticmethod
    def _dates_on_the_face(lt: Any, values: dict[str, Any], drawn: set[str], case: str, today: dt.date,
                           valid_from: dt.date, valid_until: dt.date) -> tuple[dt.date, dt.date]:
        """(issue date, valid from) that agree with the face, whose drawn term ends (签注有效期至,
        检验有效期至, 营业期限至, 土地使用期限至) become the validity's end: a 结婚证 is issued on its
        登记日期, a 驾驶证 no earlier than its 初次领证日期, a valid 居住证's 签注有效期至 is still to
        come and an expired one's past. Each case keeps its verdict: the face's days are drawn
        before today (at least 100 days before, but for people too young for any earlier one), an
        expired licence ended ten days ago, a not-yet-valid one is valid from 30 days on (issued
        on its face's day, or on that day when its face has none)."""
        dates = [f.name for f in getattr(lt, "surface_fields", ()) if getattr(f, "kind", "") == "date"]
        days: dict[str, dt.date] = {}
        for name in dates:
            try:
                days[name] = dt.date.fromisoformat(values[name])
            except (KeyError, TypeError, ValueError):
                continue
        if case == "expired":  # a holder too young for any earlier day: the face's day is the last valid one
            for name in (*ISSUE_DATE_FIELDS, *BEFORE_ISSUE_FIELDS):
                if name in days and days[name] > valid_until:
                    days[name] = valid_until
                    values[name] = valid_until.isoformat()
        issued_on = next((n for n in ISSUE_DATE_FIELDS if n in days), None)
        if issued_on is not None:
            issue_date = days[issued_on]
            if case != "not-yet-valid":
                valid_from = issue_date
        elif case == "not-yet-valid":
            issue_date = valid_from
        else:
            issue_date = valid_from = max([valid_from, *(days[n] for n in BEFORE_ISSUE_FIELDS if n in days)])
        for name in dates:
            if name.endswith("_until") and name in drawn:
                values[name] = valid_until.isoformat()
        return issue_date, valid_from

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
