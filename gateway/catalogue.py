"""The licence-type and cross-province item catalogues (``specs/licence_types.toml``,
``specs/items.toml``): loader, strict validator, search and data-minimising disclosure.

Pure code: no HTTP, no clock. The two TOML files are data an operator replaces with the
official catalogue without code changes; :func:`load_catalogue` refuses a broken file with
a :class:`CatalogueError` that lists every problem, each naming the file, the entry and
the field.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pypinyin import Style, lazy_pinyin, pinyin

from .errors import BAD_REQUEST, RequestRejected
from .identifiers import HOLDER_CODE_TYPES, uscc_valid
from .model import CANONICAL_FIELDS, Licence

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
DEFAULT_TYPES_PATH = SPECS_DIR / "licence_types.toml"
DEFAULT_ITEMS_PATH = SPECS_DIR / "items.toml"
DEFAULT_REGIONS_CSV = SPECS_DIR / "regions.csv"

MODES = ("全程网办", "异地代收代办", "多地联办")
NAME_STATUSES = ("confirmed", "modelled")
TYPE_CODE_STATUSES = ("confirmed", "modelled")
HOLDER_KINDS = ("person", "organisation", "either")
FIELD_KINDS = ("text", "date", "code", "enum")
VALIDITY_KINDS = ("fixed", "varies", "long_term")
ORGANISATION_CODE_TYPES = frozenset({"001", "099"})
SCHEMA_VERSION = 1
MAX_SEARCH_LIMIT = 100
MAX_SEARCH_TEXT = 64

_CANONICAL = frozenset(CANONICAL_FIELDS)
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,47}\Z")
_FIELD_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*\Z")
_TYPE_CODE_RE = re.compile(r"^[0-9A-Z]{18}[0-9]{3}\Z")
_ITEM_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class CatalogueError(ValueError):
    """The catalogue files are invalid. ``problems`` lists every problem found, each as
    ``<file>: <entry>: <field>: <what is wrong>``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"catalogue invalid ({len(self.problems)} problem(s)):\n  - "
                         + "\n  - ".join(self.problems))


# --- data model -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SurfaceField:
    name: str
    label_zh: str
    label_en: str
    kind: str
    required: bool
    personal: bool
    values: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "label_zh": self.label_zh, "label_en": self.label_en,
                             "kind": self.kind, "required": self.required, "personal": self.personal}
        if self.values:
            d["values"] = list(self.values)
        return d


@dataclass(frozen=True, slots=True)
class RoleField:
    """Surface fields that name another person in a role (e.g. the legal representative),
    so an item can accept "the applicant is this licence's <role>"."""

    role: str
    label_zh: str
    label_en: str
    code_fields: tuple[str, ...]
    name_fields: tuple[str, ...]
    code_types: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "label_zh": self.label_zh, "label_en": self.label_en,
                "code_fields": list(self.code_fields), "name_fields": list(self.name_fields),
                "code_types": list(self.code_types)}


@dataclass(frozen=True, slots=True)
class LicenceType:
    key: str
    type_code: str
    type_code_status: str
    type_code_note: str
    name_zh: str
    name_en: str
    defining_agency: str
    holder_kind: str
    holder_code_types: tuple[str, ...]
    validity: str
    validity_years: tuple[int, ...]
    validity_note: str
    surface_fields: tuple[SurfaceField, ...]
    role_fields: tuple[RoleField, ...]

    @property
    def defining_agency_code(self) -> str:
        return self.type_code[:18]

    def surface_field(self, name: str) -> SurfaceField | None:
        return next((f for f in self.surface_fields if f.name == name), None)

    def role(self, role: str) -> RoleField | None:
        return next((r for r in self.role_fields if r.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "type_code": self.type_code, "type_code_status": self.type_code_status,
                "type_code_note": self.type_code_note, "name_zh": self.name_zh, "name_en": self.name_en,
                "defining_agency": self.defining_agency, "defining_agency_code": self.defining_agency_code,
                "holder_kind": self.holder_kind, "holder_code_types": list(self.holder_code_types),
                "validity": self.validity, "validity_years": list(self.validity_years),
                "validity_note": self.validity_note,
                "surface_fields": [f.to_dict() for f in self.surface_fields],
                "role_fields": [r.to_dict() for r in self.role_fields]}


@dataclass(frozen=True, slots=True)
class Requirement:
    id: str
    description_zh: str
    mandatory: bool
    accept: tuple[str, ...]  # licence type keys, alternatives
    binding: str  # "holder" or "role:<role>"
    disclose: tuple[str, ...]  # canonical or surface field names

    @property
    def binding_role(self) -> str | None:
        return self.binding[5:] if self.binding.startswith("role:") else None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description_zh": self.description_zh, "mandatory": self.mandatory,
                "accept": list(self.accept), "binding": self.binding, "disclose": list(self.disclose)}


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    name_zh: str
    name_en: str
    name_status: str
    department: str
    modes: tuple[str, ...]
    all_regions: bool
    regions: tuple[str, ...]  # empty when all_regions
    source: str
    requirements: tuple[Requirement, ...]

    def covers_region(self, region: str) -> bool:
        return self.all_regions or region in self.regions

    @property
    def licence_types(self) -> frozenset[str]:
        return frozenset(k for r in self.requirements for k in r.accept)

    def requirement(self, rid: str) -> Requirement | None:
        return next((r for r in self.requirements if r.id == rid), None)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name_zh": self.name_zh, "name_en": self.name_en,
                "name_status": self.name_status, "department": self.department, "modes": list(self.modes),
                "regions": "all" if self.all_regions else list(self.regions), "source": self.source,
                "requirements": [r.to_dict() for r in self.requirements]}


@dataclass(frozen=True, slots=True)
class _SearchKey:
    code: str  # lower case
    name_zh: str
    name_en: str  # lower case
    initials: tuple[frozenset[str], ...]  # per character, every reading's first letter
    likely_initials: str  # first letters of the most likely reading
    initial_letters: frozenset[str]  # every letter in ``initials`` (cheap pre-filter)
    full_pinyin: str  # most likely reading, no separators
    licence_types: frozenset[str]  # every accepted licence type key


@dataclass(frozen=True, slots=True)
class Catalogue:
    types: tuple[LicenceType, ...]
    items: tuple[Item, ...]
    etag: str  # sha256 hex of both files' bytes; changes whenever either file changes
    region_codes: frozenset[str] = frozenset()  # what "all" regions means; empty = not checked
    _by_key: Mapping[str, LicenceType] = field(init=False, repr=False, compare=False)
    _by_code: Mapping[str, LicenceType] = field(init=False, repr=False, compare=False)
    _items: Mapping[str, Item] = field(init=False, repr=False, compare=False)
    _keys: tuple[_SearchKey, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", MappingProxyType({t.key: t for t in self.types}))
        object.__setattr__(self, "_by_code", MappingProxyType({t.type_code: t for t in self.types}))
        object.__setattr__(self, "_items", MappingProxyType({i.code: i for i in self.items}))
        object.__setattr__(self, "_keys", tuple(_search_key(i) for i in self.items))

    # -- lookups --
    @property
    def item_count(self) -> int:
        return len(self.items)

    def type_by_code(self, type_code: str) -> LicenceType | None:
        return self._by_code.get(type_code)

    def type_by_key(self, key: str) -> LicenceType | None:
        return self._by_key.get(key)

    def item(self, code: str) -> Item | None:
        return self._items.get(code)

    def departments(self) -> list[str]:
        return sorted({i.department for i in self.items})

    def summary(self) -> str:
        confirmed_names = sum(i.name_status == "confirmed" for i in self.items)
        confirmed_codes = sum(t.type_code_status == "confirmed" for t in self.types)
        return (f"{len(self.items)} items ({confirmed_names} confirmed names), {len(self.types)} licence types "
                f"({confirmed_codes} with a confirmed defining agency), etag {self.etag[:12]}")

    def binding_codes(self, requirement: Requirement, licence: Mapping[str, Any] | Licence) -> tuple[str, ...]:
        """The holder codes the applicant must match for ``licence`` to satisfy ``requirement``:
        the holder code, or the codes in the role's fields. Empty when the licence is not of
        an accepted type (so nobody can match)."""
        lic = licence.to_dict() if isinstance(licence, Licence) else licence
        ltype = self.type_by_code(str(lic.get("type_code", "")))
        if ltype is None or ltype.key not in requirement.accept:
            return ()
        role_name = requirement.binding_role
        if role_name is None:
            code = lic.get("holder_code")
            return (code,) if isinstance(code, str) and code else ()
        role = ltype.role(role_name)
        surface = lic.get("surface")
        if role is None or not isinstance(surface, Mapping):
            return ()
        return tuple(c for f in role.code_fields if isinstance(c := surface.get(f), str) and c)

    # -- search --
    def search(self, text: str | None = None, department: str | None = None, licence_type: str | None = None,
               mode: str | None = None, region: str | None = None, offset: int = 0,
               limit: int = 20) -> tuple[int, list[Item]]:
        """Filter and page the items. ``text`` matches a Chinese substring of the name, the
        item code, an English substring, or pinyin (initials such as ``hkqy`` for 户口迁移,
        or full pinyin). ``licence_type`` is a type key or a 21-char type code. Results are
        ordered by match quality, then catalogue order; ``total`` counts all matches."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise RequestRejected(BAD_REQUEST, "offset must be a non-negative integer")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise RequestRejected(BAD_REQUEST, f"limit must be an integer from 1 to {MAX_SEARCH_LIMIT}")
        query = (text or "").strip()
        if len(query) > MAX_SEARCH_TEXT:
            raise RequestRejected(BAD_REQUEST, f"search text longer than {MAX_SEARCH_TEXT} characters")
        type_key: str | None = None
        if licence_type:
            ltype = self.type_by_key(licence_type) or self.type_by_code(licence_type)
            if ltype is None:
                return 0, []
            type_key = ltype.key
        ranked: list[tuple[int, int, Item]] = []
        for pos, (item, key) in enumerate(zip(self.items, self._keys)):
            if department and item.department != department:
                continue
            if mode and mode not in item.modes:
                continue
            if region and not (item.covers_region(region)
                               and (not self.region_codes or region in self.region_codes)):
                continue
            if type_key and type_key not in key.licence_types:
                continue
            rank = _rank(key, query) if query else 0
            if rank is not None:
                ranked.append((rank, pos, item))
        ranked.sort(key=lambda r: (r[0], r[1]))
        return len(ranked), [item for _, _, item in ranked[offset:offset + limit]]


# --- disclosure -----------------------------------------------------------------------
def disclose(requirement: Requirement, licence: Mapping[str, Any] | Licence,
             ltype: LicenceType | None = None) -> dict[str, Any]:
    """Keep only the fields ``requirement`` allows: canonical fields at the top level,
    surface fields under ``"surface"`` (present, possibly empty, iff the requirement lists
    any surface field). Nothing else is ever copied; values are deep copies.

    ``ltype``: the licence's type. A requirement accepting several types lists the surface
    fields of each (学历证书 ``school_name``, 学位证书 ``awarding_institution``); a licence
    then shows only the listed fields its own type has, not a field of the other type that
    its issuer happened to put on its face."""
    lic = licence.to_dict() if isinstance(licence, Licence) else licence
    src_surface = lic.get("surface")
    surface_in = src_surface if isinstance(src_surface, Mapping) else {}
    out: dict[str, Any] = {}
    surface_out: dict[str, Any] = {}
    wants_surface = False
    for name in requirement.disclose:
        if name in _CANONICAL:
            if name in lic:
                out[name] = copy.deepcopy(lic[name])
        else:
            wants_surface = True
            if name in surface_in and (ltype is None or ltype.surface_field(name) is not None):
                surface_out[name] = copy.deepcopy(surface_in[name])
    if wants_surface:
        out["surface"] = surface_out
    return out


# --- search keys ----------------------------------------------------------------------
def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def _search_key(item: Item) -> _SearchKey:
    name = item.name_zh
    likely = lazy_pinyin(name, style=Style.FIRST_LETTER, errors=lambda s: list(s))
    initials: list[frozenset[str]] = []
    likely_initials: list[str] = []
    for ch, first in zip(name, likely, strict=True):
        if _is_han(ch):
            # readings of the lone character: in a phrase pypinyin keeps only the phrase reading
            readings = pinyin(ch, style=Style.FIRST_LETTER, heteronym=True)[0]
            initials.append(frozenset({first.lower(), *(r.lower()[:1] for r in readings if r)}))
            likely_initials.append(first.lower())
        elif ch.isascii() and ch.isalnum():
            initials.append(frozenset({ch.lower()}))
            likely_initials.append(ch.lower())
    full = "".join(lazy_pinyin(name, errors=lambda s: list(s))).lower()
    full = "".join(c for c in full if c.isascii() and c.isalnum())
    return _SearchKey(item.code.lower(), name, item.name_en.lower(), tuple(initials), "".join(likely_initials),
                      frozenset().union(*initials), full, item.licence_types)


def _initials_at(initials: tuple[frozenset[str], ...], q: str) -> int | None:
    """Index of the first run of characters whose initials spell ``q``, or None."""
    n, m = len(initials), len(q)
    for i in range(n - m + 1):
        if all(q[j] in initials[i + j] for j in range(m)):
            return i
    return None


def _rank(key: _SearchKey, query: str) -> int | None:
    """0 exact code, 1 exact name, 2 name prefix, 3 name substring, 4 pinyin-initials prefix,
    5 pinyin elsewhere, 6 code or English substring; None when nothing matches."""
    low = query.lower()
    if low == key.code:
        return 0
    if query == key.name_zh:
        return 1
    if key.name_zh.startswith(query):
        return 2
    if query in key.name_zh:
        return 3
    compact = low.replace(" ", "")
    if compact.isascii() and compact.isalnum():
        if key.likely_initials.startswith(compact):
            return 4
        if compact in key.likely_initials:
            return 5
        if key.initial_letters.issuperset(compact):  # a less likely reading of some character
            at = _initials_at(key.initials, compact)
            if at is not None:
                return 4 if at == 0 else 5
        if len(compact) >= 2 and compact in key.full_pinyin:
            return 5
    if low in key.code or low in key.name_en:
        return 6
    return None


# --- loading and validation -----------------------------------------------------------
def read_region_codes(csv_path: Path = DEFAULT_REGIONS_CSV) -> set[str]:
    """The GB/T 2260 codes of the ``code`` column of a regions CSV."""
    with Path(csv_path).open(encoding="utf-8", newline="") as fh:
        return {row["code"].strip() for row in csv.DictReader(fh) if row.get("code")}


def load_default_catalogue() -> Catalogue:
    return load_catalogue(DEFAULT_TYPES_PATH, DEFAULT_ITEMS_PATH, read_region_codes(DEFAULT_REGIONS_CSV))


def load_catalogue(types_path: Path | str, items_path: Path | str, region_codes: set[str]) -> Catalogue:
    """Load and strictly validate both files. Raises :class:`CatalogueError` listing every
    problem (file, entry, field); a file that cannot be read or parsed is one problem."""
    types_path, items_path = Path(types_path), Path(items_path)
    problems: list[str] = []
    types_bytes, types_doc = _read_toml(types_path, problems)
    items_bytes, items_doc = _read_toml(items_path, problems)
    if types_doc is None or items_doc is None:
        raise CatalogueError(problems)
    types = _TypesParser(types_path.name, problems).parse(types_doc)
    items = _ItemsParser(items_path.name, problems, {t.key: t for t in types}, region_codes).parse(items_doc)
    if problems:
        raise CatalogueError(problems)
    digest = hashlib.sha256()
    for blob in (types_bytes, items_bytes):
        digest.update(len(blob).to_bytes(8, "big"))
        digest.update(blob)
    return Catalogue(tuple(types), tuple(items), digest.hexdigest(), frozenset(region_codes))


def _read_toml(path: Path, problems: list[str]) -> tuple[bytes, dict[str, Any] | None]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(f"{path.name}: cannot read file: {exc.strerror or exc}")
        return b"", None
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problems.append(f"{path.name}: file is not UTF-8 (byte {exc.start})")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path.name}: not valid TOML: {exc}")
    return raw, None


class _Checker:
    """Reads typed values out of one TOML table, recording problems with context."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems

    def err(self, entry: str, fld: str, msg: str) -> None:
        self.problems.append(f"{self.file}: {entry}: {fld}: {msg}")

    def keys(self, entry: str, table: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
        for k in sorted(required - table.keys()):
            self.err(entry, k, "missing")
        for k in sorted(table.keys() - required - optional):
            self.err(entry, k, "unknown field")

    def text(self, entry: str, table: Mapping[str, Any], fld: str, *, optional: bool = False) -> str:
        v = table.get(fld)
        if v is None:
            return ""  # missing is reported by keys()
        if not isinstance(v, str) or (not optional and not v.strip()):
            self.err(entry, fld, "must be a non-empty string" if not optional else "must be a string")
            return ""
        return v

    def choice(self, entry: str, table: Mapping[str, Any], fld: str, allowed: Sequence[str]) -> str:
        v = table.get(fld)
        if v is None:
            return ""
        if v not in allowed:
            self.err(entry, fld, f"{v!r} is not one of {', '.join(allowed)}")
            return ""
        return v

    def flag(self, entry: str, table: Mapping[str, Any], fld: str) -> bool:
        v = table.get(fld)
        if v is not None and not isinstance(v, bool):
            self.err(entry, fld, "must be true or false")
            return False
        return bool(v)

    def strings(self, entry: str, table: Mapping[str, Any], fld: str, *, nonempty: bool = True) -> tuple[str, ...]:
        v = table.get(fld)
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            self.err(entry, fld, "must be a list of non-empty strings")
            return ()
        if nonempty and not v:
            self.err(entry, fld, "must not be empty")
        dups = sorted({x for x in v if v.count(x) > 1})
        if dups:
            self.err(entry, fld, f"duplicate value(s) {', '.join(dups)}")
        return tuple(v)

    def tables(self, entry: str, table: Mapping[str, Any], fld: str) -> list[dict[str, Any]]:
        v = table.get(fld)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            self.err(entry, fld, "must be a list of tables")
            return []
        return v

    def header(self, doc: Mapping[str, Any], array: str, extra: set[str]) -> list[dict[str, Any]]:
        entry = "(file)"
        self.keys(entry, doc, {"schema_version", array} | extra, set())
        if "schema_version" in doc and doc["schema_version"] != SCHEMA_VERSION:
            self.err(entry, "schema_version", f"{doc['schema_version']!r} is not supported (expected {SCHEMA_VERSION})")
        return self.tables(entry, doc, array)


class _TypesParser(_Checker):
    REQUIRED = {"key", "type_code", "type_code_status", "name_zh", "name_en", "defining_agency", "holder_kind",
                "holder_code_types", "validity", "validity_years", "surface_fields", "role_fields"}
    OPTIONAL = {"type_code_note", "validity_note"}
    FIELD_REQUIRED = {"name", "label_zh", "label_en", "kind", "required", "personal"}
    ROLE_REQUIRED = {"role", "label_zh", "label_en", "code_fields", "name_fields", "code_types"}

    def parse(self, doc: Mapping[str, Any]) -> list[LicenceType]:
        out: list[LicenceType] = []
        seen_keys: dict[str, str] = {}
        seen_codes: dict[str, str] = {}
        for n, t in enumerate(self.header(doc, "type", set()), 1):
            key = t.get("key")
            entry = f"type {key!r} (#{n})" if isinstance(key, str) else f"type #{n}"
            lt = self._one(entry, t)
            if lt.key:
                if lt.key in seen_keys:
                    self.err(entry, "key", f"duplicate key (also {seen_keys[lt.key]})")
                seen_keys.setdefault(lt.key, entry)
            if lt.type_code:
                if lt.type_code in seen_codes:
                    self.err(entry, "type_code", f"duplicate type code (also {seen_codes[lt.type_code]})")
                seen_codes.setdefault(lt.type_code, entry)
            out.append(lt)
        if not out and "type" in doc:
            self.err("(file)", "type", "no licence types")
        return out

    def _one(self, entry: str, t: Mapping[str, Any]) -> LicenceType:
        self.keys(entry, t, self.REQUIRED, self.OPTIONAL)
        key = self.text(entry, t, "key")
        if key and not _KEY_RE.match(key):
            self.err(entry, "key", f"{key!r} is not a short ascii slug (a-z, 0-9, _)")
            key = ""
        code = self.text(entry, t, "type_code")
        if code:
            if not _TYPE_CODE_RE.match(code):
                self.err(entry, "type_code", f"{code!r} is not 21 characters (18-char USCC + 3 digits)")
                code = ""
            elif not uscc_valid(code[:18]):
                self.err(entry, "type_code", f"{code[:18]!r} (first 18 characters) is not a check-valid USCC")
                code = ""
        kind = self.choice(entry, t, "holder_kind", HOLDER_KINDS)
        code_types = self.strings(entry, t, "holder_code_types")
        for ct in code_types:
            if ct not in HOLDER_CODE_TYPES:
                self.err(entry, "holder_code_types", f"unknown holder code type {ct!r}")
            elif kind == "person" and ct in ORGANISATION_CODE_TYPES:
                self.err(entry, "holder_code_types", f"{ct!r} is an organisation code but holder_kind is person")
            elif kind == "organisation" and ct not in ORGANISATION_CODE_TYPES:
                self.err(entry, "holder_code_types", f"{ct!r} is a personal code but holder_kind is organisation")
        validity = self.choice(entry, t, "validity", VALIDITY_KINDS)
        years = self._years(entry, t, validity)
        surface = self._surface(entry, t)
        roles = self._roles(entry, t, {f.name: f for f in surface})
        return LicenceType(
            key=key, type_code=code, type_code_status=self.choice(entry, t, "type_code_status", TYPE_CODE_STATUSES),
            type_code_note=self.text(entry, t, "type_code_note", optional=True),
            name_zh=self.text(entry, t, "name_zh"), name_en=self.text(entry, t, "name_en"),
            defining_agency=self.text(entry, t, "defining_agency"), holder_kind=kind, holder_code_types=code_types,
            validity=validity, validity_years=years,
            validity_note=self.text(entry, t, "validity_note", optional=True),
            surface_fields=tuple(surface), role_fields=tuple(roles))

    def _years(self, entry: str, t: Mapping[str, Any], validity: str) -> tuple[int, ...]:
        v = t.get("validity_years")
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 100
                                              for x in v):
            self.err(entry, "validity_years", "must be a list of whole years from 1 to 100")
            return ()
        if validity == "fixed" and len(v) != 1:
            self.err(entry, "validity_years", "a fixed validity needs exactly one term")
        if validity == "long_term" and v:
            self.err(entry, "validity_years", "a long-term licence has no term in years")
        return tuple(v)

    def _surface(self, entry: str, t: Mapping[str, Any]) -> list[SurfaceField]:
        out: list[SurfaceField] = []
        seen: set[str] = set()
        for i, sf in enumerate(self.tables(entry, t, "surface_fields")):
            fentry = f"{entry}: surface_fields[{i}]"
            self.keys(fentry, sf, self.FIELD_REQUIRED, {"values"})
            name = self.text(fentry, sf, "name")
            if name:
                if not _FIELD_RE.match(name):
                    self.err(fentry, "name", f"{name!r} is not ascii snake_case")
                elif name in _CANONICAL or name == "surface":
                    self.err(fentry, "name", f"{name!r} collides with a canonical field")
                elif name in seen:
                    self.err(fentry, "name", f"duplicate surface field {name!r}")
                seen.add(name)
            kind = self.choice(fentry, sf, "kind", FIELD_KINDS)
            values = self.strings(fentry, sf, "values", nonempty=kind == "enum")
            if kind == "enum" and "values" not in sf:
                self.err(fentry, "values", "an enum field needs its values")
            if kind and kind != "enum" and values:
                self.err(fentry, "values", "only an enum field has values")
            out.append(SurfaceField(name, self.text(fentry, sf, "label_zh"), self.text(fentry, sf, "label_en"),
                                    kind, self.flag(fentry, sf, "required"), self.flag(fentry, sf, "personal"),
                                    values))
        return out

    def _roles(self, entry: str, t: Mapping[str, Any], surface: Mapping[str, SurfaceField]) -> list[RoleField]:
        out: list[RoleField] = []
        seen: set[str] = set()
        for i, rf in enumerate(self.tables(entry, t, "role_fields")):
            rentry = f"{entry}: role_fields[{i}]"
            self.keys(rentry, rf, self.ROLE_REQUIRED, set())
            role = self.text(rentry, rf, "role")
            if role:
                if not _KEY_RE.match(role):
                    self.err(rentry, "role", f"{role!r} is not a short ascii slug")
                elif role in seen:
                    self.err(rentry, "role", f"duplicate role {role!r}")
                seen.add(role)
            code_fields = self.strings(rentry, rf, "code_fields")
            for cf in code_fields:
                sf = surface.get(cf)
                if sf is None:
                    self.err(rentry, "code_fields", f"{cf!r} is not a surface field of this type")
                elif sf.kind != "code":
                    self.err(rentry, "code_fields", f"{cf!r} is a {sf.kind} field, not a code field")
            name_fields = self.strings(rentry, rf, "name_fields", nonempty=False)
            for nf in name_fields:
                if nf not in surface:
                    self.err(rentry, "name_fields", f"{nf!r} is not a surface field of this type")
            code_types = self.strings(rentry, rf, "code_types")
            for ct in code_types:
                if ct not in HOLDER_CODE_TYPES:
                    self.err(rentry, "code_types", f"unknown holder code type {ct!r}")
            out.append(RoleField(role, self.text(rentry, rf, "label_zh"), self.text(rentry, rf, "label_en"),
                                 code_fields, name_fields, code_types))
        return out


class _ItemsParser(_Checker):
    REQUIRED = {"code", "name_zh", "name_en", "name_status", "department", "modes", "regions", "source",
                "requirements"}
    REQ_REQUIRED = {"id", "description_zh", "mandatory", "accept", "binding", "disclose"}

    def __init__(self, file: str, problems: list[str], types: Mapping[str, LicenceType],
                 region_codes: set[str]) -> None:
        super().__init__(file, problems)
        self.types = types
        self.region_codes = region_codes

    def parse(self, doc: Mapping[str, Any]) -> list[Item]:
        raw_items = self.header(doc, "item", {"item_count"})
        declared = doc.get("item_count")
        if "item_count" in doc and (isinstance(declared, bool) or not isinstance(declared, int)
                                    or declared != len(raw_items)):
            self.err("(file)", "item_count", f"declares {declared!r} items but the file has {len(raw_items)}")
        out: list[Item] = []
        seen: dict[str, str] = {}
        for n, it in enumerate(raw_items, 1):
            code = it.get("code")
            entry = f"item {code!r} (#{n})" if isinstance(code, str) else f"item #{n}"
            item = self._one(entry, it)
            if item.code:
                if item.code in seen:
                    self.err(entry, "code", f"duplicate item code (also {seen[item.code]})")
                seen.setdefault(item.code, entry)
            out.append(item)
        return out

    def _one(self, entry: str, it: Mapping[str, Any]) -> Item:
        self.keys(entry, it, self.REQUIRED, set())
        code = self.text(entry, it, "code")
        if code and not _ITEM_CODE_RE.match(code):
            self.err(entry, "code", f"{code!r} is not a stable code (letters, digits, . _ -; up to 64)")
        modes = self.strings(entry, it, "modes")
        for m in modes:
            if m not in MODES:
                self.err(entry, "modes", f"unknown mode {m!r} (allowed: {', '.join(MODES)})")
        all_regions, regions = False, ()
        raw_regions = it.get("regions")
        if raw_regions == "all":
            all_regions = True
        elif isinstance(raw_regions, str):
            self.err(entry, "regions", f"{raw_regions!r}: use \"all\" or a list of GB/T 2260 codes")
        elif raw_regions is not None:
            regions = self.strings(entry, it, "regions")
            for r in regions:
                if r not in self.region_codes:
                    self.err(entry, "regions", f"unknown region code {r!r}")
        reqs: list[Requirement] = []
        seen: set[str] = set()
        for i, rq in enumerate(self.tables(entry, it, "requirements")):
            req = self._requirement(f"{entry}: requirements[{i}]", rq)
            if req.id and req.id in seen:
                self.err(f"{entry}: requirements[{i}]", "id", f"duplicate requirement id {req.id!r}")
            seen.add(req.id)
            reqs.append(req)
        for i, req in enumerate(reqs):
            # the check binds each licence to each requirement on its own: two requirements that bind
            # alike and accept a common type are both satisfied by one licence, never by two documents
            for other in reqs[:i]:
                common = [k for k in req.accept if k in other.accept]
                if req.binding and req.binding == other.binding and common:
                    self.err(f"{entry}: requirements[{i}]", "accept",
                             f"{', '.join(common)} is also accepted by requirement {other.id!r} with the same "
                             f"binding {req.binding!r}: one licence would satisfy both")
        return Item(code=code, name_zh=self.text(entry, it, "name_zh"), name_en=self.text(entry, it, "name_en"),
                    name_status=self.choice(entry, it, "name_status", NAME_STATUSES),
                    department=self.text(entry, it, "department"), modes=modes, all_regions=all_regions,
                    regions=regions, source=self.text(entry, it, "source"), requirements=tuple(reqs))

    def _requirement(self, entry: str, rq: Mapping[str, Any]) -> Requirement:
        self.keys(entry, rq, self.REQ_REQUIRED, set())
        rid = self.text(entry, rq, "id")
        if rid and not _KEY_RE.match(rid):
            self.err(entry, "id", f"{rid!r} is not a short ascii slug")
        accept = self.strings(entry, rq, "accept")
        known = [self.types[k] for k in accept if k in self.types]
        for k in accept:
            if k not in self.types:
                self.err(entry, "accept", f"unknown licence type {k!r}")
        binding = self.text(entry, rq, "binding")
        if binding and binding != "holder":
            role = binding[5:] if binding.startswith("role:") else ""
            if not role:
                self.err(entry, "binding", f"{binding!r} is neither \"holder\" nor \"role:<role>\"")
            for t in known:
                if role and t.role(role) is None:
                    self.err(entry, "binding", f"licence type {t.key!r} has no role {role!r}")
        disclose = self.strings(entry, rq, "disclose", nonempty=False)
        for name in disclose:
            if name in _CANONICAL:
                continue
            if not any(t.surface_field(name) for t in known):
                self.err(entry, "disclose", f"{name!r} is neither a canonical field nor a surface field of "
                         f"{', '.join(repr(t.key) for t in known) or 'the accepted types'}")
        return Requirement(rid, self.text(entry, rq, "description_zh"), self.flag(entry, rq, "mandatory"),
                           accept, binding, disclose)
