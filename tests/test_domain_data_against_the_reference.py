"""The project's domain data agrees with the shared reference (../shared/reference/), so an
edit of either cannot drift unnoticed.

Every expectation here is read from ``elicence-facts.md`` or the reference ``regions.csv``
(not copied into this file), and the check-character algorithms are re-implemented from the
reference's own wording, independently of ``gateway.identifiers``. Then the simulator's
synthetic people, companies and licences are held to the same facts.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.catalogue import MODES, load_default_catalogue
from gateway.devtrust import RegionMaterial, authority_for
from gateway.identifiers import HOLDER_CODE_TYPES
from gateway.simulator import IssuerSimulator
from gateway.specs import load_region_specs, load_regions

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
if not (REFERENCE / "elicence-facts.md").is_file():  # a checkout beside the shared folder
    REFERENCE = Path("/work/shared/reference")
FACTS = (REFERENCE / "elicence-facts.md").read_text(encoding="utf-8")
#: the suite's fixed reference time (tests/conftest.py)
NOW = dt.datetime(2026, 11, 27, 4, 0, 0, tzinfo=dt.timezone.utc)


# --- reading the reference -------------------------------------------------------------------
def section(number: int) -> str:
    m = re.search(rf"^## {number}\. .*?(?=^## |\Z)", FACTS, re.M | re.S)
    assert m, f"section {number} missing from elicence-facts.md"
    return m.group(0)


def between(text: str, start: str, end: str) -> str:
    i = text.index(start) + len(start)
    return text[i:text.index(end, i)]


def expand(term: str) -> list[str]:
    """The reference's shorthand: ``内资/外资企业及分支机构 设立/变更/注销登记`` is six names
    (the last alternative of a slash group carries the suffix the others share)."""
    groups = []
    for part in term.split():
        alts = part.split("/")
        if len(alts) > 1:
            suffix = alts[-1][len(alts[0]):]
            alts = [a + suffix for a in alts[:-1]] + [alts[-1]]
        groups.append(alts)
    return ["".join(p) for p in itertools.product(*groups)]


def listed(text: str) -> list[str]:
    terms = re.split(r"\s*[·,，]\s*", " ".join(text.split()))
    return [n for t in terms if t.strip(" .") for n in expand(t.strip(" ."))]


def reference_rows() -> list[dict[str, str]]:
    with (REFERENCE / "regions.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


REF_ROWS = reference_rows()
REF_CODES = {r["code"]: r for r in REF_ROWS}
#: every GB/T 2260 code the reference pins: the 45 regions, and the districts it names
#: (Huzhou's, §6; Shanghai's 松江区 in the G60 column)
REF_DIVISIONS = set(REF_CODES) | set(re.findall(r"\b\d{6}\b", section(6))) | {
    c for r in REF_ROWS for c in re.findall(r"\b\d{6}\b", r["g60"])}
HOUSING_MINISTRY_USCC = re.search(r"only the housing ministry's \(`([0-9A-Z]{18})`", FACTS).group(1)
REAL_IDENTIFIERS = re.findall(r"`(1\.2\.156\.3005\.2\.[0-9A-Z.]+)`", section(2))


def reference_holder_code_types() -> set[str]:
    text = section(3).split("持证主体代码类型代码 (holder code type) [firm]:", 1)[1]
    codes = set(re.findall(r"\b\d{3}\b", text))
    for lo, hi in re.findall(r"\b(\d{3})–(\d{3})\b", text):
        codes |= {f"{n:03d}" for n in range(int(lo), int(hi) + 1)}
    return codes


def reference_item_names() -> list[str]:
    block = between(section(7), "Item names confirmed in public sources:", "- Which licences")
    return listed(block.replace("and the market-regulation\n  block:", "·").replace(
        "and the market-regulation block:", "·"))


def reference_typical_licences() -> list[str]:
    return listed(between(section(7), "typical ones:", "\n- ").rstrip("."))


def reference_modes() -> list[str]:
    text = re.search(r"sets three\s+modes:(.*?)\n- ", section(7), re.S).group(1)
    return re.findall(r"([\u4e00-\u9fff]{4,6}) \(", text)


# --- the reference's check-character algorithms, written from its text ------------------------
ALNUM36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def mod37_36_valid(s: str) -> bool:
    """§2: run the loop over the string plus its check character: the last (s mod 36) is 1."""
    p, last = 36, None
    for c in s:
        total = p + ALNUM36.index(c)
        r = total % 36 or 36
        last = total % 36
        p = (2 * r) % 37
    return last == 1


def licence_identifier_valid(ident: str) -> bool:
    parts = ident.split(".")
    if ".".join(parts[:5]) != "1.2.156.3005.2" or len(parts) != 10:
        return False
    type_code, issuer, serial, version, check = parts[5:]
    return (len(type_code) == 21 and len(issuer) == 18 and 7 <= len(serial) <= 32 and serial.isalnum()
            and len(version) == 3 and version.isdigit() and len(check) == 1
            and mod37_36_valid((type_code + issuer + serial + version).upper() + check))


def citizen_id_valid(code: str) -> bool:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return (len(code) == 18 and code[:17].isdigit()
            and "10X98765432"[sum(int(c) * w for c, w in zip(code, weights)) % 11] == code[17])


def uscc_valid(code: str) -> bool:
    weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    if len(code) != 18 or any(c not in USCC_ALPHABET for c in code):
        return False
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(code, weights))
    org = code[8:17]
    org_sum = sum(ALNUM36.index(c) * w for c, w in zip(org, [3, 7, 9, 10, 5, 8, 4, 2]))
    v = 11 - org_sum % 11
    return USCC_ALPHABET[(31 - total % 31) % 31] == code[17] and org[8] == {10: "X", 11: "0"}.get(v, str(v))


# --- the project's data -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def regions() -> dict[str, Any]:
    return load_regions()


@pytest.fixture(scope="module")
def specs(regions) -> dict[str, Any]:
    return load_region_specs(regions=regions)


@pytest.fixture(scope="module")
def catalogue():
    return load_default_catalogue()


@pytest.fixture
def sim(regions, specs, catalogue) -> IssuerSimulator:
    """The simulator with its synthetic authorities (no keys: nothing here signs)."""
    material = {c: RegionMaterial(c, None, None, [], authority_for(regions[c])) for c in specs}
    return IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types}, seed=7)


# --- the reference is readable as this test reads it -----------------------------------------
def test_the_reference_parses_into_the_facts_this_test_relies_on() -> None:
    assert len(REF_ROWS) == 45 and HOUSING_MINISTRY_USCC == "11100000000013338W"
    assert {"330502", "330503", "330521", "330522", "330523", "310117"} <= REF_DIVISIONS
    assert len(REAL_IDENTIFIERS) == 3
    assert reference_modes() == ["全程网办", "异地代收代办", "多地联办"]
    names = reference_item_names()
    assert len(names) == len(set(names)) == 39
    assert "外资企业及分支机构注销登记" in names and "营业执照遗失补领、换发" in names
    assert {"学历证书", "学位证书", "执业药师注册证"} <= set(reference_typical_licences())
    assert {"001", "099", "111", "122", "412", "516", "999"} <= reference_holder_code_types()


# --- regions ----------------------------------------------------------------------------------
def test_regions_csv_is_the_references_row_for_row() -> None:
    with (ROOT / "specs" / "regions.csv").open(encoding="utf-8") as fh:
        assert list(csv.DictReader(fh)) == REF_ROWS


def test_the_groups_are_the_41_yrd_cities_and_the_four_named_partners() -> None:
    s6 = section(6)
    counts = {p: int(n) for p, n in re.findall(r"(Shanghai|Jiangsu|Zhejiang|Anhui) (\d+)", s6)}
    by_province = {"Shanghai": "上海市", "Jiangsu": "江苏省", "Zhejiang": "浙江省", "Anhui": "安徽省"}
    yrd = [r for r in REF_ROWS if r["group"] == "yrd"]
    assert len(yrd) == int(re.search(r"the (\d+) Yangtze River Delta cities", s6).group(1)) == sum(counts.values())
    assert {en: sum(r["province"] == zh for r in yrd) for en, zh in by_province.items()} == counts
    partners = {r["name"] for r in REF_ROWS if r["group"] == "partner"}
    named = re.search(r"named by the city \(([^)]*)\)", " ".join(s6.split())).group(1)
    assert partners == set(named.split(", ")) == {"柯坪县", "白山市", "涪陵区", "广安市"}
    assert REF_CODES["330500"]["name"] == "湖州市"


def test_each_region_spec_names_its_region_as_the_reference_does(specs) -> None:
    files = sorted((ROOT / "specs" / "regions").glob("*.toml"))
    assert sorted(p.stem for p in files) == sorted(REF_CODES)
    for path in files:
        row = REF_CODES[path.stem]
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert (data["code"], data["name"]) == (row["code"], row["name"]), path.name
        assert path.read_text(encoding="utf-8").splitlines()[0] == (
            f"# Region spec: {row['name']} ({row['code']}), {row['province']}."), path.name
    assert {c: (s.code, s.name) for c, s in specs.items()} == {c: (c, r["name"]) for c, r in REF_CODES.items()}


def test_what_each_spec_says_a_region_speaks_is_recorded_as_modelled(specs) -> None:
    """No region's interface document is in the reference: family, encoding and field names
    are the project's model, and each spec says so (field and header)."""
    assert {c: s.interface_status for c, s in specs.items()} == dict.fromkeys(REF_CODES, "modelled")
    for path in (ROOT / "specs" / "regions").glob("*.toml"):
        text = path.read_text(encoding="utf-8")
        assert 'interface_status = "modelled"' in text and "# MODELLED: the region's real interface" in text, path


def test_the_region_specs_holder_vocabularies_map_into_the_references_code_types(specs) -> None:
    ref = reference_holder_code_types()
    assert set(HOLDER_CODE_TYPES) == ref
    for code, spec in specs.items():
        assert set(spec.holder_code_types.values()) <= ref, code


# --- licence types ----------------------------------------------------------------------------
def test_every_typical_licence_of_the_reference_is_a_catalogued_type(catalogue) -> None:
    names = {t.name_zh for t in catalogue.types}
    assert [n for n in reference_typical_licences() if n not in names] == []


def test_type_codes_are_confirmed_only_for_the_agency_the_reference_confirms(catalogue) -> None:
    ref_types = reference_holder_code_types()
    real_type_codes = {i.split(".")[5] for i in REAL_IDENTIFIERS}
    for t in catalogue.types:
        agency, serial = t.type_code[:18], t.type_code[18:]
        assert len(t.type_code) == 21 and serial.isdigit() and uscc_valid(agency), t.key
        assert (t.type_code_status == "confirmed") == (agency == HOUSING_MINISTRY_USCC), t.key
        if t.type_code_status == "modelled":  # a placeholder, visibly so
            assert agency[8:10] == "PH" and "placeholder" in t.type_code_note, t.key
        else:  # the agency is the reference's; the serial is still said to be modelled
            assert "serial modelled" in t.type_code_note, t.key
        assert t.type_code not in real_type_codes, t.key  # serials seen in real identifiers, names unknown
        assert set(t.holder_code_types) <= ref_types, t.key
        for role in t.role_fields:
            assert set(role.code_types) <= ref_types, (t.key, role.role)


# --- items ------------------------------------------------------------------------------------
def test_the_item_count_is_the_number_the_city_reports(catalogue) -> None:
    reported = int(re.search(r"The city reports (\d+) cross-province items", section(7)).group(1))
    assert catalogue.item_count == len(catalogue.items) == reported == 151


def test_confirmed_item_names_are_exactly_the_references(catalogue) -> None:
    confirmed = sorted(i.name_zh for i in catalogue.items if i.name_status == "confirmed")
    assert confirmed == sorted(reference_item_names())
    for item in catalogue.items:  # what the reference leaves open is said to be modelled, per item
        assert "部门、办理模式、地区与所需证照为建模" in item.source, item.code
        assert item.source.startswith("建模") == (item.name_status == "modelled"), item.code


def test_item_modes_and_regions_are_the_references(catalogue) -> None:
    assert list(MODES) == reference_modes()
    g60 = {r["code"] for r in REF_ROWS if r["g60"]}
    yrd = {r["code"] for r in REF_ROWS if r["group"] == "yrd"}
    for item in catalogue.items:
        assert item.modes and set(item.modes) <= set(reference_modes()), item.code
        if not item.all_regions:
            assert set(item.regions) in (g60, yrd), item.code
    header = (ROOT / "specs" / "items.toml").read_text(encoding="utf-8").split("schema_version", 1)[0]
    assert "For EVERY item the department, modes, regions and required licences" in header


# --- identifiers --------------------------------------------------------------------------------
def test_the_references_real_identifiers_validate_with_its_algorithm() -> None:
    assert all(licence_identifier_valid(i) for i in REAL_IDENTIFIERS)
    wrong = REAL_IDENTIFIERS[1][:-1] + "E"
    assert not licence_identifier_valid(wrong)


def test_simulated_licence_identifiers_follow_gb_t_36904_as_the_reference_describes(sim, specs) -> None:
    for region in specs:
        for type_key in ("id_card", "business_licence", "construction_qualification"):
            lic = sim.canonical(region, type_key, NOW)
            parts = lic.identifier.split(".")
            assert ".".join(parts[:5]) == "1.2.156.3005.2" and len(parts) == 10, lic.identifier
            assert parts[5] == lic.type_code and parts[6] == lic.issuer_code and parts[8] == "001"
            assert licence_identifier_valid(lic.identifier), lic.identifier
            assert uscc_valid(lic.issuer_code) and lic.issuer_code[2:8] in REF_DIVISIONS, (region, lic.issuer_code)
            assert lic.area_code in REF_DIVISIONS and lic.area_code[:2] == region[:2], (region, lic.area_code)


def _age(code: str) -> int:
    born = dt.date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    today = NOW.date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def test_synthetic_people_have_valid_ids_with_a_pinned_region_prefix_and_a_plausible_birth_date(sim, specs) -> None:
    """The ID's first six digits must be a GB/T 2260 code the project pins (the reference):
    the simulator made up ``<city>02`` district codes, seven of which no longer exist
    (320202 崇安区, 320502 沧浪区, 320802 清河区, 340502 金家庄区, 340702 铜官山区 were
    abolished; 320702 and 330202 are not current codes)."""
    for region in specs:
        for _ in range(20):
            name, code = sim.person(region)
            assert citizen_id_valid(code), code
            assert code[:6] in REF_DIVISIONS and code[:2] == region[:2], (region, code)
            assert 18 <= _age(code) <= 80, code
            assert 1 <= int(code[14:17]) <= 999


def test_synthetic_people_are_obviously_synthetic(sim, specs) -> None:
    """A plain 'surname + popular given name' is somebody's real name (林俊杰 is a famous singer)."""
    names = {sim.person(region)[0] for region in specs for _ in range(30)}
    assert all("测试" in n for n in names), sorted(n for n in names if "测试" not in n)[:5]
    assert "林俊杰" not in names and len(names) > 100  # still many distinct people


def test_synthetic_companies_are_obviously_synthetic_with_valid_codes(sim, specs, regions) -> None:
    for region in specs:
        name, code = sim.company(region)
        assert uscc_valid(code) and code[:2] == "91", code
        assert code[2:8] in REF_DIVISIONS and regions[region].covers(code[2:8]), code
        assert name.endswith("（测试）") and name.startswith(regions[region].name), name
        auth = authority_for(regions[region])
        assert uscc_valid(auth.uscc) and auth.uscc[2:8] == auth.area_code, auth
        assert auth.area_code in REF_DIVISIONS, auth
        assert "（测试）" in auth.name and regions[region].covers(auth.area_code), auth


def test_a_holders_surface_birth_date_and_gender_agree_with_the_holders_id_number(sim, specs) -> None:
    """GB 11643 (facts §4): the ID carries YYYYMMDD and the sex (odd order = male). The
    simulator drew the surface 出生日期 (100 to 8000 days before today) and 性别 at random, so a
    居民身份证 said one birth date in the number and another on its face."""
    for region in ("330500", "310000", "340100", "652929"):
        for type_key, date_field, gender_field in (("id_card", "birth_date", "gender"),
                                                   ("driving_licence", "birth_date", "gender"),
                                                   ("marriage_certificate", "holder_birth_date", "holder_gender")):
            for _ in range(10):
                lic = sim.canonical(region, type_key, NOW)
                code = lic.holder_code
                assert lic.surface[date_field] == f"{code[6:10]}-{code[10:12]}-{code[12:14]}", (type_key, code)
                assert lic.surface[gender_field] == ("男" if int(code[16]) % 2 else "女"), (type_key, code)
        for _ in range(10):
            lic = sim.canonical(region, "marriage_certificate", NOW)
            spouse = lic.surface["spouse_code"]
            assert citizen_id_valid(spouse)
            assert lic.surface["spouse_birth_date"] == f"{spouse[6:10]}-{spouse[10:12]}-{spouse[12:14]}"
            assert lic.surface["spouse_gender"] == ("男" if int(spouse[16]) % 2 else "女")


def test_a_surface_field_that_holds_a_uscc_gets_a_check_valid_one(sim, catalogue) -> None:
    """执业药师注册证's 执业单位统一社会信用代码 was eight random digits, not a USCC at all."""
    uscc_fields = [(t.key, f.name) for t in catalogue.types for f in t.surface_fields
                   if "统一社会信用代码" in f.label_zh]
    assert uscc_fields == [("licensed_pharmacist", "practice_unit_code")]
    for region in ("330500", "320100", "511600"):
        for _ in range(5):
            value = sim.canonical(region, "licensed_pharmacist", NOW).surface["practice_unit_code"]
            assert uscc_valid(value) and value[2:8] in REF_DIVISIONS, value


def test_caller_given_surface_values_are_kept_as_given(sim) -> None:
    lic = sim.canonical("330500", "id_card", NOW, surface={"birth_date": "1999-09-09", "gender": "女"})
    assert (lic.surface["birth_date"], lic.surface["gender"]) == ("1999-09-09", "女")


def test_chinese_field_names_outside_the_references_metadata_list_are_said_to_be_modelled(specs) -> None:
    """The spec generator called its Chinese vocabulary 'straight from GB/T 36903'; the reference
    lists that field list as [thin] and two of the names are not in it."""
    listed_fields = set(re.findall(r"[\u4e00-\u9fff]{4,}", between(
        section(3), "[thin: field list from implementations citing it]", "Official field codes")))
    chinese = {s.code: set(s.fields.values()) for s in specs.values() if "证照标识" in s.fields.values()}
    assert chinese and all(v - listed_fields == {"证照类型名称", "状态索引"} for v in chinese.values()), chinese
    tool = (ROOT / "specs" / "tools" / "gen_region_specs.py").read_text(encoding="utf-8")
    assert "straight from GB/T 36903" not in tool
    assert "证照类型名称 and 状态索引 are not in that list: MODELLED" in tool
