"""disclose() hands an item only the fields its requirement lists; binding_codes() says whom
the applicant must be. Synthetic people and companies, valid check characters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.catalogue import Catalogue, Requirement, disclose, load_default_catalogue
from gateway.identifiers import citizen_id_check, make_licence_identifier, make_uscc
from gateway.model import CANONICAL_FIELDS, Licence

ISSUER = make_uscc("1", "1", "330500", "MB000001")  # synthetic Huzhou market regulator
COMPANY = make_uscc("9", "1", "330502", "MA2B3C4D")  # synthetic company in 吴兴区
REP_ID = "33050219900307123" + citizen_id_check("33050219900307123")  # synthetic person
OTHER_ID = "33052219850611002" + citizen_id_check("33052219850611002")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_default_catalogue()


def business_licence(cat: Catalogue) -> dict[str, Any]:
    t = cat.type_by_key("business_licence")
    return {
        "identifier": make_licence_identifier(t.type_code, ISSUER, "2026000123"),
        "name": "营业执照", "type_code": t.type_code, "type_name": "营业执照", "number": "330502000123456",
        "issuer_name": "湖州市吴兴区市场监督管理局", "issuer_code": ISSUER, "issue_date": "2026-03-01",
        "holder_name": "湖州示例科技有限公司", "holder_code": COMPANY, "holder_code_type": "001",
        "valid_from": "2026-03-01", "valid_until": None, "area_code": "330502", "status_index": 17,
        "surface": {
            "entity_type": "有限责任公司", "legal_representative_name": "张示例",
            "legal_representative_code": REP_ID, "registered_capital": "100万元人民币",
            "established_date": "2026-03-01", "registered_address": "浙江省湖州市吴兴区示例路1号",
            "business_scope": "软件开发", "bank_account": "6222000000000000",  # not a catalogued field
        },
        "signature_blob": "MEUCIQ...",  # a field outside the canonical model
    }


def req(cat: Catalogue, code: str, rid: str) -> Requirement:
    item = cat.item(code)
    assert item is not None
    r = item.requirement(rid)
    assert r is not None
    return r


def find_req(cat: Catalogue, binding: str, accept: tuple[str, ...]) -> Requirement:
    return next(r for i in cat.items for r in i.requirements if r.binding == binding and r.accept == accept)


def test_disclose_keeps_only_listed_canonical_and_surface_fields(cat: Catalogue) -> None:
    r = find_req(cat, "holder", ("business_licence",))
    assert r.disclose == ("holder_name", "holder_code", "valid_until", "entity_type", "registered_address")
    out = disclose(r, business_licence(cat))
    assert out == {
        "holder_name": "湖州示例科技有限公司", "holder_code": COMPANY, "valid_until": None,
        "surface": {"entity_type": "有限责任公司", "registered_address": "浙江省湖州市吴兴区示例路1号"},
    }


def test_disclose_never_passes_unlisted_personal_data(cat: Catalogue) -> None:
    r = find_req(cat, "holder", ("business_licence",))
    out = disclose(r, business_licence(cat))
    flat = repr(out)
    assert REP_ID not in flat and "张示例" not in flat and "6222000000000000" not in flat
    assert "signature_blob" not in out and "identifier" not in out


def test_requirement_without_surface_fields_gets_no_surface(cat: Catalogue) -> None:
    r = req(cat, "KS-001", "applicant_identity")
    assert r.accept == ("id_card",)
    lic = {"holder_name": "李示例", "holder_code": OTHER_ID, "holder_code_type": "111", "valid_until": "2036-01-01",
           "number": "X1", "surface": {"address": "浙江省湖州市示例街2号", "ethnicity": "汉"}}
    assert disclose(r, lic) == {"holder_name": "李示例", "holder_code": OTHER_ID, "holder_code_type": "111",
                                "valid_until": "2036-01-01"}


def test_fields_missing_from_the_licence_are_absent_not_invented(cat: Catalogue) -> None:
    r = find_req(cat, "holder", ("business_licence",))
    out = disclose(r, {"holder_name": "湖州示例科技有限公司"})
    assert out == {"holder_name": "湖州示例科技有限公司", "surface": {}}


def test_surface_that_is_not_a_mapping_discloses_nothing_from_it(cat: Catalogue) -> None:
    # attack: a licence whose surface is a list of (name, value) pairs instead of a table
    r = find_req(cat, "holder", ("business_licence",))
    lic = business_licence(cat) | {"surface": [["entity_type", "有限责任公司"], ["bank_account", "6222"]]}
    assert disclose(r, lic)["surface"] == {}


def test_surface_key_smuggled_at_top_level_is_not_disclosed(cat: Catalogue) -> None:
    # attack: a surface-only field placed at the top level hoping to bypass the surface filter
    r = find_req(cat, "holder", ("business_licence",))
    lic = business_licence(cat)
    lic["entity_type"] = "伪造类型"
    del lic["surface"]["entity_type"]
    out = disclose(r, lic)
    assert "entity_type" not in out and out["surface"] == {"registered_address": "浙江省湖州市吴兴区示例路1号"}


def test_disclosed_values_are_copies(cat: Catalogue) -> None:
    r = Requirement("x", "测试", True, ("business_licence",), "holder", ("holder_name", "business_scope"))
    lic = business_licence(cat)
    lic["surface"]["business_scope"] = ["软件开发", "技术服务"]
    out = disclose(r, lic)
    out["surface"]["business_scope"].append("金融")
    assert lic["surface"]["business_scope"] == ["软件开发", "技术服务"]


def test_disclose_accepts_a_canonical_licence_object(cat: Catalogue) -> None:
    d = business_licence(cat)
    lic = Licence(identifier=d["identifier"], name=d["name"], type_code=d["type_code"], type_name=d["type_name"],
                  number=d["number"], issuer_name=d["issuer_name"], issuer_code=ISSUER,
                  issue_date=dt.date(2026, 3, 1), holder_name=d["holder_name"], holder_code=COMPANY,
                  holder_code_type="001", valid_from=dt.date(2026, 3, 1), valid_until=None, area_code="330502",
                  surface=dict(d["surface"]), status_index=17)
    r = req(cat, "KS-002", "business_licence")
    assert disclose(r, lic) == disclose(r, d | {"signature_blob": "ignored"})


def test_every_shipped_requirement_discloses_only_known_names(cat: Catalogue) -> None:
    # a licence carrying every canonical field and every surface field of its type
    for item in cat.items:
        for r in item.requirements:
            for key in r.accept:
                t = cat.type_by_key(key)
                lic = {f: f"v-{f}" for f in CANONICAL_FIELDS} | {
                    "surface": {sf.name: f"s-{sf.name}" for sf in t.surface_fields}}
                out = disclose(r, lic)
                assert set(out) - {"surface"} <= set(r.disclose), (item.code, r.id)
                assert set(out.get("surface", {})) <= set(r.disclose), (item.code, r.id)


def test_binding_codes_for_the_legal_representative_role(cat: Catalogue) -> None:
    r = find_req(cat, "role:legal_representative", ("business_licence",))
    assert cat.binding_codes(r, business_licence(cat)) == (REP_ID,)


def test_binding_codes_for_the_holder(cat: Catalogue) -> None:
    r = find_req(cat, "holder", ("business_licence",))
    assert cat.binding_codes(r, business_licence(cat)) == (COMPANY,)


def test_binding_codes_of_a_parent_role_list_both_parents(cat: Catalogue) -> None:
    r = find_req(cat, "role:parent", ("birth_certificate",))
    t = cat.type_by_key("birth_certificate")
    lic = {"type_code": t.type_code, "holder_code": "newborn",
           "surface": {"mother_code": REP_ID, "father_code": OTHER_ID}}
    assert cat.binding_codes(r, lic) == (REP_ID, OTHER_ID)


def test_binding_codes_empty_for_a_licence_of_another_type(cat: Catalogue) -> None:
    # attack: an identity card offered where a business licence's representative is required
    r = find_req(cat, "role:legal_representative", ("business_licence",))
    idc = cat.type_by_key("id_card")
    lic = business_licence(cat) | {"type_code": idc.type_code}
    assert cat.binding_codes(r, lic) == ()
