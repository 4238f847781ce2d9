"""Check-character algorithms against the real identifiers of the reference file."""

from __future__ import annotations

import pytest

from gateway.identifiers import (citizen_id_check, citizen_id_valid, make_licence_identifier, make_uscc,
                                 mask_holder_code, mod37_36_check, org_code_check, parse_licence_identifier,
                                 uscc_check, uscc_division, uscc_valid)

REAL_IDENTIFIERS = [
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
    "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
]


@pytest.mark.parametrize("ident", REAL_IDENTIFIERS)
def test_real_identifiers_validate(ident):
    parsed = parse_licence_identifier(ident)
    assert str(parsed) == ident


@pytest.mark.parametrize("ident", REAL_IDENTIFIERS)
def test_every_other_check_character_is_refused(ident):
    head, check = ident[:-1], ident[-1]
    for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if c != check:
            with pytest.raises(ValueError, match="check character"):
                parse_licence_identifier(head + c)


def test_check_computed_without_root_oid_and_dots():
    # the rule the reference file insists on: including the OID gives a different (wrong) answer
    body = "11100000000013338W032" + "11220000013544541J" + "2430599" + "001"
    assert mod37_36_check(body) == "F"
    assert mod37_36_check("1215630052" + body) != "F"


def test_transposed_serial_digits_are_caught():
    good = REAL_IDENTIFIERS[1]
    swapped = good.replace("2430599", "2430959")
    with pytest.raises(ValueError):
        parse_licence_identifier(swapped)


def test_make_licence_identifier_round_trips():
    ident = make_licence_identifier("11100000000013338W032", "11220000013544541J", "2430599")
    assert ident == REAL_IDENTIFIERS[1]


def test_identifier_with_five_parts_is_refused():
    with pytest.raises(ValueError, match="six"):
        parse_licence_identifier("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001")


def test_citizen_id_mod_11_2():
    # GB 11643 worked example: 11010519491231002 -> X
    assert citizen_id_check("11010519491231002") == "X"
    assert citizen_id_valid("11010519491231002X")
    assert not citizen_id_valid("110105194912310021")
    assert not citizen_id_valid("11010519491331002X")  # month 13


@pytest.mark.parametrize("code", ["11100000000013338W", "11330105002500287C", "11220000013544541J",
                                  "11430000006122244L"])
def test_real_usccs_validate(code):
    assert uscc_valid(code)
    assert uscc_check(code[:17]) == code[17]


def test_uscc_refuses_letters_outside_its_alphabet_and_bad_checks():
    assert not uscc_valid("11100000000013338I")
    assert not uscc_valid("11100000000013338X")
    assert not uscc_valid("1110000000001333")


def test_organisation_code_inside_a_uscc():
    # positions 9-17 of 11330105002500287C are the organisation code 00250028 + 7
    assert org_code_check("00250028") == "7"


def test_synthetic_uscc_is_check_valid_and_carries_its_division():
    code = make_uscc("9", "1", "330502", "12345678")
    assert uscc_valid(code) and uscc_division(code) == "330502"


def test_masking_keeps_only_the_ends():
    assert mask_holder_code("33050219900101123X") == "3305**********123X"


def test_full_width_digits_are_not_a_citizen_id() -> None:
    """``\\d`` and ``int()`` read "３" as 3: a full-width ID number must not pass as one."""
    from gateway.identifiers import citizen_id_check, citizen_id_valid
    first17 = "33050219900101001"
    code = first17 + citizen_id_check(first17)
    assert citizen_id_valid(code)
    assert not citizen_id_valid(code.translate(str.maketrans("0123456789", "０１２３４５６７８９")))


def test_short_holder_codes_keep_at_least_eight_characters_hidden() -> None:
    from gateway.identifiers import mask_holder_code
    assert mask_holder_code("330502199001010018") == "3305**********0018"
    assert mask_holder_code("E12345678") == "*********"          # was E123*5678: one character hidden
    assert mask_holder_code("AB12345678") == "A********8"
    assert mask_holder_code("") == ""
