"""Declarative region specs (``specs/regions/<code>.toml``), validated strictly at start-up.

A region spec is the project's *model* of one issuing region's e-licence interface:
which format family it speaks, its own field names, date format, code vocabularies,
text encoding and signature algorithms. The same spec drives decoding (gateway) and
encoding (issuer simulator), so the two cannot drift apart.

The gateway refuses to start on an invalid spec; :class:`SpecError` names the file and
the field.
"""

from __future__ import annotations

import csv
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .identifiers import HOLDER_CODE_TYPES
from .model import CANONICAL_FIELDS, REQUIRED_FIELDS

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
REGIONS_CSV = SPECS_DIR / "regions.csv"
GBT2260_PINNED = "GB/T 2260 codes as in specs/regions.csv (pinned 2026-11, from shared/reference)"

#: families implemented under adapters/; a spec naming another family is refused
KNOWN_FAMILIES = ("jws", "sm2-json", "sm2-xml", "ofd-seal")
KNOWN_ALGORITHMS = ("ES256", "EdDSA", "SM2")
KNOWN_ENCODINGS = ("utf-8", "gb18030")
#: families whose wire text is JSON, always UTF-8 (RFC 8259, RFC 7515): only the XML-based families
#: (sm2-xml, ofd-seal) write the spec's text_encoding
UTF8_ONLY_FAMILIES = ("jws", "sm2-json")
#: the options each family reads (adapters/<family>.py) and the values it can do; a spec naming
#: another option or value is refused (it would be silently ignored, or fail every licence)
_SM2_OPTIONS: dict[str, tuple[str, ...]] = {
    "signature_encoding": ("der", "raw"),
    # the decoder recognises only these two names of the signing time (adapters/sm2_json.py,
    # pop_signing_time): a licence written under another name is MALFORMED
    "signing_time_field": ("qmsj", "签名时间"),
    "key_ref": ("serial", "kid"),
}
FAMILY_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "jws": {}, "sm2-json": _SM2_OPTIONS, "sm2-xml": _SM2_OPTIONS, "ofd-seal": {"signature_type": ("Seal", "Sign")},
}
#: a spec is a page of text; anything much larger is not one
MAX_SPEC_BYTES = 1024 * 1024
#: dates a date_format must write and read back unchanged: a leap day, the long-term "9999-12-31",
#: and years on both sides of the two-digit-year pivot (%y reads 69-99 as 19xx)
_DATE_PROBES = (date(2024, 2, 29), date(1949, 10, 1), date(2000, 1, 1), date(2069, 12, 31), date(2099, 12, 31),
                date(9999, 12, 31))


class SpecError(ValueError):
    """A region spec is invalid. The message names the file and the field."""


@dataclass(frozen=True, slots=True)
class RegionInfo:
    code: str
    name: str
    province_code: str
    province: str
    group: str  # "yrd" | "partner"
    g60: str

    def covers(self, code: str) -> bool:
        """Is the GB/T 2260 ``code`` within this region's jurisdiction?"""
        return covers(self.code, code)


def covers(region_code: str, code: str) -> bool:
    if len(code) != 6 or not code.isdigit():
        return False
    if region_code.endswith("0000"):
        return code[:2] == region_code[:2]
    if region_code.endswith("00"):
        return code[:4] == region_code[:4]
    return code == region_code


def load_regions(path: Path = REGIONS_CSV) -> dict[str, RegionInfo]:
    out: dict[str, RegionInfo] = {}
    with path.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            info = RegionInfo(row["code"], row["name"], row["province_code"], row["province"],
                              row["group"], row.get("g60") or "")
            out[info.code] = info
    return out


@dataclass(frozen=True, slots=True)
class RegionSpec:
    code: str
    name: str
    name_en: str
    family: str
    algorithms: tuple[str, ...]
    text_encoding: str
    date_format: str
    fields: Mapping[str, str]  # canonical name -> region's field name
    holder_code_types: Mapping[str, str]  # region vocabulary -> canonical 3-digit code
    surface_container: str  # key/element under which type-specific fields live
    surface_names: Mapping[str, str]  # canonical surface field -> region name (identity if absent)
    licence_types: tuple[str, ...]  # licence type keys this region issues (simulator, conformance)
    interface_status: str  # "modelled" | "documented"
    notes: str
    source: str  # the file it came from
    options: Mapping[str, Any] = field(default_factory=dict)  # family-specific settings
    #: derived once from the fields above (the verify hot path reads these, never rebuilds them)
    plan: "NormalisePlan" = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", NormalisePlan.of(self))

    @property
    def reverse_fields(self) -> Mapping[str, str]:
        return {v: k for k, v in self.fields.items()}

    @property
    def holder_code_type_names(self) -> Mapping[str, str]:
        """canonical code -> region vocabulary (for the simulator)."""
        return {v: k for k, v in self.holder_code_types.items()}

    def parse_date(self, text: str) -> date:
        return _parse_date(text, self.date_format)

    def format_date(self, d: date) -> str:
        return _format_date(d, self.date_format)


def _format_date(d: date, fmt: str) -> str:
    if fmt == "%Y年%m月%d日":  # strftime pads; the region writes it padded too
        return f"{d.year:04d}年{d.month:02d}月{d.day:02d}日"
    return d.strftime(fmt)


@dataclass(frozen=True, slots=True)
class NormalisePlan:
    """What normalisation needs of a spec, precomputed once: the region's name of every
    canonical field, the reverse surface-name map, the date format."""

    identifier: str
    name: str
    type_code: str
    type_name: str | None
    number: str
    issuer_name: str
    issuer_code: str
    issue_date: str
    holder_name: str
    holder_code: str
    holder_code_type: str
    valid_from: str
    valid_until: str
    area_code: str
    status_index: str
    surface_container: str
    surface_reverse: Mapping[str, str] | None  # region surface name -> canonical (None: identity)
    date_format: str
    #: raw -> the 12 required text fields' values in one call (identifier, name, type_code,
    #: number, issuer_name, issuer_code, issue_date, holder_name, holder_code,
    #: holder_code_type, valid_from, area_code); KeyError when one is missing
    required: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @classmethod
    def of(cls, spec: "RegionSpec") -> "NormalisePlan":
        f = spec.fields
        rev = MappingProxyType({v: k for k, v in spec.surface_names.items()}) if spec.surface_names else None
        return cls(
            identifier=f.get("identifier", ""), name=f.get("name", ""), type_code=f.get("type_code", ""),
            type_name=f.get("type_name"), number=f.get("number", ""), issuer_name=f.get("issuer_name", ""),
            issuer_code=f.get("issuer_code", ""), issue_date=f.get("issue_date", ""),
            holder_name=f.get("holder_name", ""), holder_code=f.get("holder_code", ""),
            holder_code_type=f.get("holder_code_type", ""), valid_from=f.get("valid_from", ""),
            valid_until=f.get("valid_until", ""), area_code=f.get("area_code", ""),
            status_index=f.get("status_index", ""), surface_container=spec.surface_container,
            surface_reverse=rev, date_format=spec.date_format,
            required=itemgetter(*(f.get(k, "") for k in _PLAN_REQUIRED)),
        )


#: the canonical fields NormalisePlan.required reads, in its order
_PLAN_REQUIRED = ("identifier", "name", "type_code", "number", "issuer_name", "issuer_code", "issue_date",
                  "holder_name", "holder_code", "holder_code_type", "valid_from", "area_code")


@lru_cache(maxsize=8192)
def _parse_date(text: str, fmt: str) -> date:
    """strptime is slow (~10 us) and licence dates repeat: cache by (text, format); pure."""
    if fmt == "%Y-%m-%d" and len(text) == 10 and text[4] == "-" == text[7]:
        return date.fromisoformat(text)
    return datetime.strptime(text, fmt).date()


_SPEC_KEYS = {"code", "name", "name_en", "family", "algorithms", "text_encoding", "date_format", "fields",
              "holder_code_types", "surface", "licence_types", "interface_status", "notes", "options"}


def _optional_text(data: dict, key: str, default: str, where: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise SpecError(f"{where}: field '{key}' must be str, got {type(value).__name__}")
    return value


def _need(data: dict, key: str, typ: type, where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, typ):
        raise SpecError(f"{where}: field '{key}' must be {typ.__name__}, got {type(value).__name__}")
    return value


def parse_region_spec(data: dict[str, Any], source: str, regions: Mapping[str, RegionInfo]) -> RegionSpec:
    where = source
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {sorted(unknown)}")
    code = _need(data, "code", str, where)
    if code not in regions:
        raise SpecError(f"{where}: field 'code' = {code!r} is not one of the 45 regions in regions.csv")
    if Path(source).stem != code:
        raise SpecError(f"{where}: file name must be {code}.toml")
    name = _need(data, "name", str, where)
    if name != regions[code].name:
        raise SpecError(f"{where}: field 'name' = {name!r} differs from regions.csv ({regions[code].name!r})")
    family = _need(data, "family", str, where)
    if family not in KNOWN_FAMILIES:
        raise SpecError(f"{where}: field 'family' = {family!r} is not one of {list(KNOWN_FAMILIES)}")
    algorithms = tuple(_need(data, "algorithms", list, where))
    if not algorithms or any(a not in KNOWN_ALGORITHMS for a in algorithms):
        raise SpecError(f"{where}: field 'algorithms' must be a non-empty subset of {list(KNOWN_ALGORITHMS)}")
    if family == "jws" and "SM2" in algorithms:
        raise SpecError(f"{where}: field 'algorithms': the jws family does not carry SM2")
    if family != "jws" and algorithms != ("SM2",):
        raise SpecError(f"{where}: field 'algorithms': family {family} signs with SM2 only")
    enc = data.get("text_encoding", "utf-8")
    if enc not in KNOWN_ENCODINGS:
        raise SpecError(f"{where}: field 'text_encoding' = {enc!r} is not one of {list(KNOWN_ENCODINGS)}")
    if family in UTF8_ONLY_FAMILIES and enc != "utf-8":
        raise SpecError(f"{where}: field 'text_encoding' = {enc!r}: the {family} family is JSON text, UTF-8 only")
    date_format = _need(data, "date_format", str, where)
    for probe in _DATE_PROBES:
        try:
            back = datetime.strptime(_format_date(probe, date_format), date_format).date()
        except (ValueError, re.error):  # re.error: a directive given twice (strptime compiles a pattern)
            back = None
        if back != probe:
            raise SpecError(f"{where}: field 'date_format' = {date_format!r} does not round-trip a date "
                            f"({probe.isoformat()} read back as {back}); it needs a 4-digit %Y, %m and %d")
    fields = _need(data, "fields", dict, where)
    for canon, local in fields.items():
        if canon not in CANONICAL_FIELDS:
            raise SpecError(f"{where}: fields.{canon}: not a canonical field (see gateway/model.py)")
        if not isinstance(local, str) or not local:
            raise SpecError(f"{where}: fields.{canon}: must be a non-empty string")
    for canon in REQUIRED_FIELDS + ("valid_until", "status_index"):
        if canon not in fields:
            raise SpecError(f"{where}: fields.{canon}: missing (every canonical field needs a name)")
    if len(set(fields.values())) != len(fields):
        raise SpecError(f"{where}: fields: two canonical fields map to the same region field name")
    hct = _need(data, "holder_code_types", dict, where)
    for local, canon in hct.items():
        if not (isinstance(canon, str) and len(canon) == 3 and canon.isdigit()):
            raise SpecError(f"{where}: holder_code_types.{local}: must map to a 3-digit GB/T 36903 code")
        if canon not in HOLDER_CODE_TYPES:
            raise SpecError(f"{where}: holder_code_types.{local}: {canon!r} is not a GB/T 36903 holder code type "
                            f"(gateway/identifiers.py HOLDER_CODE_TYPES)")
        if not local.strip():
            raise SpecError(f"{where}: holder_code_types: an empty region value")
    if "111" not in hct.values() or "001" not in hct.values():
        raise SpecError(f"{where}: holder_code_types: must map some value to 111 and to 001")
    surface = _need(data, "surface", dict, where)
    unknown = set(surface) - {"container", "names"}
    if unknown:
        raise SpecError(f"{where}: surface: unknown field(s) {sorted(unknown)} (known: container, names)")
    container = _need(surface, "container", str, f"{where}: surface")
    if not container:
        raise SpecError(f"{where}: surface.container must be a non-empty string")
    if container in fields.values():
        raise SpecError(f"{where}: surface.container = {container!r} is also the name of a field in [fields]")
    names = surface.get("names", {})
    if not isinstance(names, dict):
        raise SpecError(f"{where}: surface.names must be a table")
    for canon, local in names.items():
        if not isinstance(local, str) or not local:
            raise SpecError(f"{where}: surface.names.{canon}: must be a non-empty string")
    if len(set(names.values())) != len(names):
        raise SpecError(f"{where}: surface.names: two surface fields map to the same region field name")
    lt = tuple(_need(data, "licence_types", list, where))
    if not lt:
        raise SpecError(f"{where}: field 'licence_types' must list at least one licence type key")
    if not all(isinstance(t, str) and t for t in lt):
        raise SpecError(f"{where}: field 'licence_types' must list licence type keys (text), or \"*\"")
    status = data.get("interface_status", "modelled")
    if status not in ("modelled", "documented"):
        raise SpecError(f"{where}: field 'interface_status' must be 'modelled' or 'documented'")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise SpecError(f"{where}: field 'options' must be a table")
    _check_options(options, family, where)
    if family in ("sm2-json", "sm2-xml"):
        clash = sorted(set(fields.values()) & set(_SM2_OPTIONS["signing_time_field"]))
        if clash:
            raise SpecError(f"{where}: fields: {clash[0]!r} is the {family} family's signing time field, "
                            f"not a licence field")
    return RegionSpec(
        code=code, name=name, name_en=_optional_text(data, "name_en", "", where), family=family,
        algorithms=algorithms, text_encoding=enc, date_format=date_format, fields=MappingProxyType(dict(fields)),
        holder_code_types=MappingProxyType(dict(hct)), surface_container=container,
        surface_names=MappingProxyType(dict(names)), licence_types=lt, interface_status=status,
        notes=_optional_text(data, "notes", "", where), source=source, options=MappingProxyType(dict(options)),
    )


def _check_options(options: Mapping[str, Any], family: str, where: str) -> None:
    from .upstream.config import FLAVOURS  # the sharing-service flavours (any family's region may set one)

    allowed = dict(FAMILY_OPTIONS[family], upstream_flavour=FLAVOURS)
    for key, value in options.items():
        if key not in allowed:
            raise SpecError(f"{where}: options.{key}: not an option of the {family} family "
                            f"(known: {', '.join(sorted(allowed))})")
        if value not in allowed[key]:
            raise SpecError(f"{where}: options.{key} = {value!r} is not one of {list(allowed[key])}")


def load_region_specs(directory: Path = SPECS_DIR / "regions",
                      regions: Mapping[str, RegionInfo] | None = None) -> dict[str, RegionSpec]:
    """Load and validate every region spec; refuse unless all 45 regions have exactly one."""
    regions = regions if regions is not None else load_regions()
    specs: dict[str, RegionSpec] = {}
    if not directory.is_dir():
        raise SpecError(f"{directory}: no such directory of region specs")
    for path in sorted(directory.glob("*.toml")):
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes: not a region spec")
            data = tomllib.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise SpecError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path}: not valid TOML: {exc}") from None
        spec = parse_region_spec(data, str(path), regions)
        specs[spec.code] = spec
    missing = sorted(set(regions) - set(specs))
    if missing:
        raise SpecError(f"{directory}: no spec for region(s) {missing}")
    return specs
