"""Broken catalogues are refused at load, with every problem naming file, entry and field.

Each fixture takes the shipped files and plants one fault, named after what it models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.catalogue import (
    DEFAULT_ITEMS_PATH, DEFAULT_REGIONS_CSV, DEFAULT_TYPES_PATH, CatalogueError, load_catalogue, read_region_codes,
)
from gateway.identifiers import USCC_ALPHABET

TYPES_TEXT = DEFAULT_TYPES_PATH.read_text(encoding="utf-8")
ITEMS_TEXT = DEFAULT_ITEMS_PATH.read_text(encoding="utf-8")
REGIONS = read_region_codes(DEFAULT_REGIONS_CSV)


def _edit_block(text: str, marker: str, ident: str, old: str, new: str) -> str:
    """Replace ``old`` by ``new`` once, inside the [[marker]] block whose first line is ``ident``."""
    head, *blocks = text.split(f"\n[[{marker}]]\n")
    for n, block in enumerate(blocks):
        if block.startswith(ident + "\n"):
            assert old in block, f"{old!r} not in block {ident}"
            blocks[n] = block.replace(old, new, 1)
            return f"\n[[{marker}]]\n".join([head, *blocks])
    raise AssertionError(f"no block {ident}")


def edit_item(code: str, old: str, new: str, text: str = ITEMS_TEXT) -> str:
    return _edit_block(text, "item", f'code = "{code}"', old, new)


def edit_type(key: str, old: str, new: str, text: str = TYPES_TEXT) -> str:
    return _edit_block(text, "type", f'key = "{key}"', old, new)


def problems_of(tmp_path: Path, types_text: str = TYPES_TEXT, items_text: str = ITEMS_TEXT) -> list[str]:
    tp, ip = tmp_path / "licence_types.toml", tmp_path / "items.toml"
    tp.write_text(types_text, encoding="utf-8")
    ip.write_text(items_text, encoding="utf-8")
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(tp, ip, REGIONS)
    assert isinstance(exc.value, ValueError)
    return list(exc.value.problems)


def one_problem(problems: list[str], *needles: str) -> str:
    hits = [p for p in problems if all(n in p for n in needles)]
    assert len(hits) == 1, (needles, problems)
    return hits[0]


def test_unmodified_copies_load(tmp_path: Path) -> None:
    tp, ip = tmp_path / "t.toml", tmp_path / "i.toml"
    tp.write_text(TYPES_TEXT, encoding="utf-8")
    ip.write_text(ITEMS_TEXT, encoding="utf-8")
    assert load_catalogue(tp, ip, REGIONS).item_count == 151


def test_item_accepting_an_unknown_licence_type_is_refused(tmp_path: Path) -> None:
    forged = edit_item("KS-001", 'accept = ["id_card"]', 'accept = ["id_card_forged"]')
    p = problems_of(tmp_path, items_text=forged)
    assert p == ["items.toml: item 'KS-001' (#1): requirements[0]: accept: unknown licence type 'id_card_forged'"]


def test_item_disclosing_a_field_its_licence_does_not_have_is_refused(tmp_path: Path) -> None:
    # over-disclosure: an identity-card requirement asking for the spouse's ID number
    greedy = edit_item("KS-001", '"holder_code_type", "valid_until"]', '"holder_code_type", "valid_until", "spouse_code"]')
    p = problems_of(tmp_path, items_text=greedy)
    line = one_problem(p, "items.toml", "item 'KS-001'", "requirements[0]", "disclose:")
    assert "'spouse_code'" in line and "'id_card'" in line
    assert len(p) == 1


def test_type_code_with_a_wrong_uscc_check_character_is_refused(tmp_path: Path) -> None:
    code = re.search(r'key = "id_card"\ntype_code = "([0-9A-Z]{21})"', TYPES_TEXT)[1]
    wrong = next(c for c in USCC_ALPHABET if c != code[17])
    bad = edit_type("id_card", f'type_code = "{code}"', f'type_code = "{code[:17]}{wrong}{code[18:]}"')
    p = problems_of(tmp_path, types_text=bad)
    line = one_problem(p, "licence_types.toml", "type 'id_card' (#1)", "type_code:")
    assert "not a check-valid USCC" in line


def test_type_code_of_wrong_length_is_refused(tmp_path: Path) -> None:
    code = re.search(r'key = "diploma"\ntype_code = "([0-9A-Z]{21})"', TYPES_TEXT)[1]
    bad = edit_type("diploma", f'type_code = "{code}"', f'type_code = "{code[:20]}"')
    line = one_problem(problems_of(tmp_path, types_text=bad), "type 'diploma'", "type_code:")
    assert "21 characters" in line


def test_duplicate_item_code_is_refused(tmp_path: Path) -> None:
    shadow = edit_item("KS-002", 'code = "KS-002"', 'code = "KS-001"')
    p = problems_of(tmp_path, items_text=shadow)
    assert p == ["items.toml: item 'KS-001' (#2): code: duplicate item code (also item 'KS-001' (#1))"]


def test_duplicate_type_key_and_type_code_are_refused(tmp_path: Path) -> None:
    code_id = re.search(r'key = "id_card"\ntype_code = "([0-9A-Z]{21})"', TYPES_TEXT)[1]
    code_hr = re.search(r'key = "household_register"\ntype_code = "([0-9A-Z]{21})"', TYPES_TEXT)[1]
    clash = edit_type("household_register", f'key = "household_register"\ntype_code = "{code_hr}"',
                      f'key = "id_card"\ntype_code = "{code_id}"')
    p = problems_of(tmp_path, types_text=clash)
    one_problem(p, "type 'id_card' (#2)", "key: duplicate key")
    one_problem(p, "type 'id_card' (#2)", "type_code: duplicate type code")


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    invented = edit_item("KS-003", 'modes = ["全程网办"', 'modes = ["全国漫游办"')
    p = problems_of(tmp_path, items_text=invented)
    line = one_problem(p, "items.toml", "item 'KS-003' (#3)", "modes:")
    assert "'全国漫游办'" in line


def test_unknown_region_is_refused(tmp_path: Path) -> None:
    block = ITEMS_TEXT.split('code = "KS-')
    g60_code = next("KS-" + b[:3] for b in block if 'regions = ["310000"' in b)
    outside = edit_item(g60_code, 'regions = ["310000"', 'regions = ["999999"')
    p = problems_of(tmp_path, items_text=outside)
    line = one_problem(p, "items.toml", f"item '{g60_code}'", "regions:")
    assert "'999999'" in line


def test_regions_as_a_bare_string_other_than_all_is_refused(tmp_path: Path) -> None:
    bad = edit_item("KS-001", 'regions = "all"', 'regions = "everywhere"')
    one_problem(problems_of(tmp_path, items_text=bad), "item 'KS-001'", "regions:")


def test_unknown_name_status_is_refused(tmp_path: Path) -> None:
    code = "KS-" + re.search(r'code = "KS-(\d{3})"\n[^\n]*\n[^\n]*\nname_status = "modelled"', ITEMS_TEXT)[1]
    bad = edit_item(code, 'name_status = "modelled"', 'name_status = "probably"')
    line = one_problem(problems_of(tmp_path, items_text=bad), f"item '{code}'", "name_status:")
    assert "'probably'" in line


def test_role_binding_to_a_role_the_licence_lacks_is_refused(tmp_path: Path) -> None:
    # an item claiming "the applicant is the identity card's legal representative"
    bad = edit_item("KS-001", 'accept = ["id_card"], binding = "holder"',
                    'accept = ["id_card"], binding = "role:legal_representative"')
    line = one_problem(problems_of(tmp_path, items_text=bad), "item 'KS-001'", "requirements[0]", "binding:")
    assert "'id_card' has no role 'legal_representative'" in line


def test_misspelt_field_is_reported_as_unknown_and_missing(tmp_path: Path) -> None:
    typo = edit_item("KS-005", "department = ", "departmnet = ")
    p = problems_of(tmp_path, items_text=typo)
    one_problem(p, "item 'KS-005'", "departmnet: unknown field")
    one_problem(p, "item 'KS-005'", "department: missing")


def test_truncated_items_file_is_refused_by_the_declared_count(tmp_path: Path) -> None:
    truncated = ITEMS_TEXT[: ITEMS_TEXT.index('\n[[item]]\ncode = "KS-151"')] + "\n"
    line = one_problem(problems_of(tmp_path, items_text=truncated), "items.toml", "(file)", "item_count:")
    assert "150" in line


def test_surface_field_shadowing_a_canonical_field_is_refused(tmp_path: Path) -> None:
    # a surface field named holder_code would let an item smuggle a second holder code
    bad = edit_type("id_card", '{ name = "ethnicity"', '{ name = "holder_code"')
    p = problems_of(tmp_path, types_text=bad)
    one_problem(p, "type 'id_card'", "surface_fields[1]", "name:", "canonical")


def test_enum_without_values_is_refused(tmp_path: Path) -> None:
    bad = edit_type("id_card", ', values = ["男", "女"] }', " }")
    one_problem(problems_of(tmp_path, types_text=bad), "type 'id_card'", "surface_fields[0]", "values:")


def test_person_licence_with_an_organisation_holder_code_is_refused(tmp_path: Path) -> None:
    bad = edit_type("id_card", 'holder_code_types = ["111"]', 'holder_code_types = ["111", "001"]')
    line = one_problem(problems_of(tmp_path, types_text=bad), "type 'id_card'", "holder_code_types:")
    assert "'001'" in line


def test_role_pointing_at_a_non_code_field_is_refused(tmp_path: Path) -> None:
    bad = edit_type("business_licence", 'code_fields = ["legal_representative_code"]',
                    'code_fields = ["legal_representative_name"]')
    one_problem(problems_of(tmp_path, types_text=bad), "type 'business_licence'", "role_fields[0]", "code_fields:")


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    items = edit_item("KS-001", 'accept = ["id_card"]', 'accept = ["ghost"]')
    items = edit_item("KS-002", 'code = "KS-002"', 'code = "KS-001"', text=items)
    items = edit_item("KS-003", 'modes = ["全程网办"', 'modes = ["传真办"', text=items)
    p = problems_of(tmp_path, items_text=items)
    assert len(p) == 3
    assert all(line.startswith("items.toml: item ") for line in p)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = problems_of(tmp_path, items_text=ITEMS_TEXT.replace('\n[[item]]\ncode = "KS-001"', '\n[[item]\ncode = "KS-001"'))
    assert len(p) == 1 and p[0].startswith("items.toml: not valid TOML")


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    tp, ip = tmp_path / "licence_types.toml", tmp_path / "items.toml"
    tp.write_bytes(TYPES_TEXT.encode("gb18030"))
    ip.write_text(ITEMS_TEXT, encoding="utf-8")
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(tp, ip, REGIONS)
    assert exc.value.problems[0].startswith("licence_types.toml: file is not UTF-8")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    ip = tmp_path / "items.toml"
    ip.write_text(ITEMS_TEXT, encoding="utf-8")
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(tmp_path / "nowhere.toml", ip, REGIONS)
    assert exc.value.problems[0].startswith("nowhere.toml: cannot read file")
