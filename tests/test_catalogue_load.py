"""The shipped catalogue (specs/licence_types.toml, specs/items.toml) loads and says honestly
what is confirmed and what is modelled."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.catalogue import (
    DEFAULT_ITEMS_PATH, DEFAULT_REGIONS_CSV, DEFAULT_TYPES_PATH, MODES, Catalogue, load_catalogue,
    load_default_catalogue, read_region_codes,
)
from gateway.identifiers import uscc_valid
from gateway.model import CANONICAL_FIELDS

ROOT = Path(__file__).resolve().parent.parent
HOUSING_MINISTRY_USCC = "11100000000013338W"

#: every item name confirmed by a public source (elicence-facts.md §7)
CONFIRMED_NAMES = [
    "市场主体登记注册", "养老保险关系转移接续", "职业资格证书核验", "学历公证", "驾驶证公证",
    "工业产品生产许可证", "异地就医登记备案和结算", "社保卡申领", "户口迁移", "失业登记",
    "企业职工基本养老保险关系转移接续", "城乡居民基本养老保险关系转移接续", "正常退休提取住房公积金",
    "排污许可", "不动产抵押登记", "购房提取住房公积金", "住房公积金转移接续",
    "内资企业及分支机构设立登记", "内资企业及分支机构变更登记", "内资企业及分支机构注销登记",
    "外资企业及分支机构设立登记", "外资企业及分支机构变更登记", "外资企业及分支机构注销登记",
    "个体工商户设立登记", "个体工商户变更登记", "个体工商户注销登记",
    "农民专业合作社设立登记", "农民专业合作社变更登记", "农民专业合作社注销登记",
    "营业执照遗失补领、换发", "计量器具型式批准", "检验检测机构资质认定", "工业产品生产许可证核发",
    "特种设备检验机构核准", "特种设备生产单位资格许可", "特种设备充装单位资格许可",
    "特种设备作业人员资格许可", "执业药师注册", "消毒产品卫生安全评价报告备案",
]

REQUIRED_TYPES = [
    "居民身份证", "户口簿", "营业执照", "结婚证", "离婚证", "出生医学证明", "机动车驾驶证", "机动车行驶证",
    "社会保障卡", "不动产权证书", "学历证书", "学位证书", "职业资格证书", "执业药师注册证", "排污许可证",
    "工业产品生产许可证", "特种设备作业人员证", "食品经营许可证", "道路运输经营许可证", "残疾人证",
]


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_default_catalogue()


def test_shipped_catalogue_has_exactly_151_items_and_at_least_20_types(cat: Catalogue) -> None:
    assert cat.item_count == 151
    assert len(cat.items) == 151
    assert len(cat.types) >= 20
    assert cat.summary().startswith("151 items (39 confirmed names), 28 licence types")


def test_every_required_licence_type_is_catalogued(cat: Catalogue) -> None:
    names = {t.name_zh for t in cat.types}
    assert [n for n in REQUIRED_TYPES if n not in names] == []


def test_every_confirmed_name_of_the_facts_is_present_and_marked_confirmed(cat: Catalogue) -> None:
    by_name = {i.name_zh: i for i in cat.items}
    assert [n for n in CONFIRMED_NAMES if n not in by_name] == []
    assert {n: by_name[n].name_status for n in CONFIRMED_NAMES} == {n: "confirmed" for n in CONFIRMED_NAMES}


def test_no_modelled_name_is_passed_off_as_confirmed(cat: Catalogue) -> None:
    confirmed = sorted(i.name_zh for i in cat.items if i.name_status == "confirmed")
    assert confirmed == sorted(CONFIRMED_NAMES)
    modelled = [i for i in cat.items if i.name_status == "modelled"]
    assert len(modelled) == 151 - len(CONFIRMED_NAMES)
    assert all(i.source.startswith("建模") for i in modelled)
    assert all("elicence-facts.md §7" in i.source for i in cat.items if i.name_status == "confirmed")


def test_item_names_and_codes_are_distinct_and_stable(cat: Catalogue) -> None:
    assert len({i.name_zh for i in cat.items}) == 151
    assert len({i.name_en for i in cat.items}) == 151
    assert [i.code for i in cat.items] == [f"KS-{n:03d}" for n in range(1, 152)]


def test_type_codes_are_21_chars_over_a_check_valid_agency_uscc(cat: Catalogue) -> None:
    for t in cat.types:
        assert len(t.type_code) == 21 and t.type_code[18:].isdigit(), t.key
        assert uscc_valid(t.defining_agency_code), t.key


def test_only_the_housing_ministry_agency_code_is_confirmed(cat: Catalogue) -> None:
    confirmed = {t.key for t in cat.types if t.type_code_status == "confirmed"}
    assert confirmed == {t.key for t in cat.types if t.defining_agency_code == HOUSING_MINISTRY_USCC}
    assert confirmed == {"construction_qualification", "construction_safety_licence",
                         "construction_special_operator"}
    # placeholders are marked in the organisation code so nobody mistakes them for real codes
    assert all(t.defining_agency_code[8:10] == "PH" for t in cat.types if t.type_code_status == "modelled")
    # serials seen in real identifiers whose type names are unknown are not claimed
    assert not {f"{HOUSING_MINISTRY_USCC}{s}" for s in ("009", "011", "032")} & {t.type_code for t in cat.types}


def test_each_type_declares_holder_surface_and_role_fields(cat: Catalogue) -> None:
    bl = cat.type_by_key("business_licence")
    assert bl is not None and bl.holder_kind == "organisation" and bl.holder_code_types == ("001",)
    rep = bl.role("legal_representative")
    assert rep is not None and rep.code_fields == ("legal_representative_code",) and "111" in rep.code_types
    mc = cat.type_by_key("marriage_certificate")
    assert mc is not None and mc.role("spouse") is not None
    assert mc.surface_field("spouse_code") is not None and mc.surface_field("spouse_code").personal
    idc = cat.type_by_key("id_card")
    assert idc is not None and idc.holder_code_types == ("111",) and idc.validity == "varies"
    for t in cat.types:
        assert not {f.name for f in t.surface_fields} & set(CANONICAL_FIELDS), t.key


def test_lookups_by_code_key_and_item_code(cat: Catalogue) -> None:
    idc = cat.type_by_key("id_card")
    assert idc is not None
    assert cat.type_by_code(idc.type_code) is idc
    assert cat.type_by_code("11100000000013338W009") is None
    assert cat.type_by_key("passport_of_atlantis") is None
    item = cat.item("KS-001")
    assert item is not None and item.code == "KS-001"
    assert cat.item("KS-152") is None


def test_every_item_has_allowed_modes_and_known_regions(cat: Catalogue) -> None:
    regions = read_region_codes(DEFAULT_REGIONS_CSV)
    assert len(regions) == 45
    for i in cat.items:
        assert i.modes and set(i.modes) <= set(MODES), i.code
        assert i.all_regions or (i.regions and set(i.regions) <= regions), i.code
    assert {len(i.regions) for i in cat.items if not i.all_regions} == {9, 41}  # G60 and YRD blocks


def test_role_bound_requirements_exist_for_legal_representatives(cat: Catalogue) -> None:
    bound = [r for i in cat.items for r in i.requirements if r.binding == "role:legal_representative"]
    assert len(bound) > 20
    assert all(cat.type_by_key(k).role("legal_representative") for r in bound for k in r.accept)


def test_etag_is_stable_and_changes_with_either_file(cat: Catalogue, tmp_path: Path) -> None:
    again = load_default_catalogue()
    assert again.etag == cat.etag and len(cat.etag) == 64
    types_copy, items_copy = tmp_path / "licence_types.toml", tmp_path / "items.toml"
    shutil.copy(DEFAULT_TYPES_PATH, types_copy)
    shutil.copy(DEFAULT_ITEMS_PATH, items_copy)
    regions = read_region_codes(DEFAULT_REGIONS_CSV)
    assert load_catalogue(types_copy, items_copy, regions).etag == cat.etag
    items_copy.write_bytes(items_copy.read_bytes() + b"\n# operator note\n")
    changed_items = load_catalogue(types_copy, items_copy, regions).etag
    assert changed_items != cat.etag
    types_copy.write_bytes(types_copy.read_bytes() + b"\n")
    assert load_catalogue(types_copy, items_copy, regions).etag not in (cat.etag, changed_items)


def test_to_dict_round_trips_the_public_shape(cat: Catalogue) -> None:
    item = cat.item("KS-001").to_dict()
    assert item["code"] == "KS-001" and item["regions"] == "all"
    assert item["requirements"][0]["accept"] == ["id_card"]
    t = cat.type_by_key("business_licence").to_dict()
    assert t["defining_agency_code"] == t["type_code"][:18]
    assert t["role_fields"][0]["role"] == "legal_representative"


def test_committed_toml_matches_its_generator() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "specs/tools/gen_catalogue.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
