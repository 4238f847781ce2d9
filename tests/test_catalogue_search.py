"""Item search: Chinese substring, pinyin, code, English, filters and pagination."""

from __future__ import annotations

import pytest

from gateway.catalogue import MAX_SEARCH_LIMIT, Catalogue, load_default_catalogue
from gateway.errors import RequestRejected


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_default_catalogue()


def everything(cat: Catalogue, **kw: object) -> list[str]:
    total, items = cat.search(limit=MAX_SEARCH_LIMIT, **kw)
    names = [i.name_zh for i in items]
    offset = MAX_SEARCH_LIMIT
    while offset < total:
        _, more = cat.search(offset=offset, limit=MAX_SEARCH_LIMIT, **kw)
        names += [i.name_zh for i in more]
        offset += MAX_SEARCH_LIMIT
    assert len(names) == total
    return names


def test_chinese_substring_finds_every_item_containing_it(cat: Catalogue) -> None:
    found = everything(cat, text="公积金")
    assert sorted(found) == sorted(i.name_zh for i in cat.items if "公积金" in i.name_zh)
    assert len(found) == 11
    assert "正常退休提取住房公积金" in found and "购房提取住房公积金" in found


def test_exact_name_and_prefix_rank_before_mere_substrings(cat: Catalogue) -> None:
    _, items = cat.search(text="户口迁移", limit=3)
    assert items[0].name_zh == "户口迁移"
    _, items = cat.search(text="残疾人证", limit=10)
    assert [i.name_zh for i in items][:4] == ["残疾人证新办", "残疾人证迁移", "残疾人证换领", "残疾人证挂失补办"]


def test_pinyin_initials_find_the_item(cat: Catalogue) -> None:
    found = everything(cat, text="hkqy")  # 户口迁移
    assert found[0] == "户口迁移"
    assert sorted(found) == sorted(i.name_zh for i in cat.items if "户口迁移" in i.name_zh)


def test_pinyin_initials_are_case_insensitive_and_skip_punctuation(cat: Catalogue) -> None:
    assert "营业执照遗失补领、换发" in everything(cat, text="YYZZYSBLHF")
    assert everything(cat, text="yyzz") == ["营业执照遗失补领、换发", "营业执照公证"]


def test_pinyin_initials_accept_a_less_common_reading(cat: Catalogue) -> None:
    # 长 reads chang (长期) here; typing its other reading's initial z still finds the item
    assert "异地长期居住人员备案" in everything(cat, text="ydcqjz")
    assert "异地长期居住人员备案" in everything(cat, text="ydzqjz")


def test_full_pinyin_finds_the_item(cat: Catalogue) -> None:
    assert everything(cat, text="canjirenzheng")[:2] == ["残疾人证新办", "残疾人证迁移"]


def test_item_code_finds_exactly_that_item_first(cat: Catalogue) -> None:
    total, items = cat.search(text="ks-042")
    assert total == 1 and items[0].code == "KS-042"


def test_english_substring_is_case_insensitive(cat: Catalogue) -> None:
    found = everything(cat, text="PENSION")
    assert "养老保险关系转移接续" in found
    assert all("pension" in cat_item.name_en.lower() for cat_item in cat.items if cat_item.name_zh in found)


def test_text_matching_nothing_returns_zero(cat: Catalogue) -> None:
    assert cat.search(text="量子纠缠登记") == (0, [])
    assert cat.search(text="qqqqqq") == (0, [])


def test_department_filter(cat: Catalogue) -> None:
    total, items = cat.search(department="残疾人联合会")
    assert total == 6
    assert {i.department for i in items} == {"残疾人联合会"}
    assert "残疾人联合会" in cat.departments()


def test_department_and_text_combine(cat: Catalogue) -> None:
    found = everything(cat, text="登记", department="公安局")
    assert found == ["新生儿入户登记", "机动车转移登记"]


def test_licence_type_filter_by_key_and_by_type_code(cat: Catalogue) -> None:
    by_key = everything(cat, licence_type="marriage_certificate")
    assert by_key and all(
        any("marriage_certificate" in r.accept for r in i.requirements)
        for i in cat.items if i.name_zh in by_key)
    assert "夫妻投靠户口迁移" in by_key and "户口迁移" not in by_key
    code = cat.type_by_key("marriage_certificate").type_code
    assert everything(cat, licence_type=code) == by_key
    assert cat.search(licence_type="unicorn_licence") == (0, [])


def test_mode_filter(cat: Catalogue) -> None:
    joint = everything(cat, mode="多地联办")
    assert "户口迁移" in joint and "社保卡申领" not in joint
    assert all("多地联办" in i.modes for i in cat.items if i.name_zh in joint)
    assert len(joint) == sum("多地联办" in i.modes for i in cat.items)


def test_region_filter_keeps_national_items_and_items_listing_the_region(cat: Catalogue) -> None:
    huzhou = everything(cat, region="330500")  # a G60 and YRD city: every item applies
    assert len(huzhou) == 151
    keping = everything(cat, region="652929")  # partner region: only items open to all regions
    assert len(keping) == sum(i.all_regions for i in cat.items) < 151
    assert "计量器具型式批准" not in keping  # G60-only
    nanjing = everything(cat, region="320100")  # YRD but not G60
    assert "计量器具型式批准" not in nanjing and "机关事业单位养老保险关系转移接续" in nanjing


def test_region_outside_the_catalogue_matches_nothing(cat: Catalogue) -> None:
    # "all" means every region of the catalogue, not any string a caller sends
    assert cat.search(region="110000") == (0, [])


def test_pagination_walks_every_item_once_in_a_stable_order(cat: Catalogue) -> None:
    seen: list[str] = []
    for offset in range(0, 160, 20):
        total, page = cat.search(offset=offset, limit=20)
        assert total == 151
        seen += [i.code for i in page]
    assert seen == [f"KS-{n:03d}" for n in range(1, 152)]
    assert cat.search(offset=140, limit=20)[1][-1].code == "KS-151"
    assert len(cat.search(offset=140, limit=20)[1]) == 11
    assert cat.search(offset=500) == (151, [])


def test_pagination_of_a_filtered_search_counts_all_matches(cat: Catalogue) -> None:
    total, first = cat.search(text="登记", limit=5)
    _, second = cat.search(text="登记", offset=5, limit=5)
    assert total > 10 and len(first) == 5 and len(second) == 5
    assert not {i.code for i in first} & {i.code for i in second}


@pytest.mark.parametrize("kw", [{"offset": -1}, {"limit": 0}, {"limit": MAX_SEARCH_LIMIT + 1},
                                {"limit": True}, {"offset": "5"}, {"text": "长" * 65}])
def test_out_of_range_paging_or_oversized_text_is_a_bad_request(cat: Catalogue, kw: dict) -> None:
    with pytest.raises(RequestRejected) as exc:
        cat.search(**kw)
    assert exc.value.code == "BAD_REQUEST"
