"""The hot path's fast forms give exactly the answers of their reference forms (seeded random inputs)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from adapters.jws import _es256_der
from gateway.identifiers import licence_identifier_matches, make_licence_identifier, parse_licence_identifier
from gateway.model import Licence, make_licence

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TYPE, ISSUER = "11100000000013338W032", "11220000013544541J"


def reference_matches(text: str, type_code: str, issuer_code: str) -> bool:
    try:
        ident = parse_licence_identifier(text)
    except ValueError:
        return False
    return ident.type_code == type_code and ident.issuer_code == issuer_code


def test_identifier_fast_check_agrees_with_the_parser_on_valid_and_mutated_identifiers():
    rng = random.Random(36904)
    for _ in range(3000):
        serial = "".join(rng.choice(ALNUM + "abc") for _ in range(rng.randrange(1, 20)))
        ident = make_licence_identifier(TYPE, ISSUER, serial, f"{rng.randrange(1, 999):03d}")
        variants = [ident]
        pos = rng.randrange(len(ident))
        variants.append(ident[:pos] + rng.choice(ALNUM + ".x") + ident[pos + 1:])
        variants.append(ident[:pos] + ident[pos + 1:])
        for text in variants:
            for codes in ((TYPE, ISSUER), (TYPE, "11330105002500287C")):
                assert licence_identifier_matches(text, *codes) == reference_matches(text, *codes), text


def test_es256_raw_to_der_equals_the_library_encoding():
    rng = random.Random(7515)
    edge = [b"\x00" * 32, b"\xff" * 32, b"\x00" * 31 + b"\x01", b"\x80" + b"\x00" * 31, b"\x00\x80" + b"\x00" * 30]
    for _ in range(2000):
        r = rng.choice(edge) if rng.random() < 0.2 else rng.randbytes(32)
        s = rng.choice(edge) if rng.random() < 0.2 else rng.randbytes(32)
        assert _es256_der(r + s) == encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))


def test_positional_licence_builder_equals_the_dataclass_constructor():
    values = {f.name: None for f in dataclasses.fields(Licence)}
    values.update(identifier="i", name="n", type_code="t", type_name="tn", number="no", issuer_name="in",
                  issuer_code="ic", issue_date=dt.date(2024, 1, 2), holder_name="h", holder_code="hc",
                  holder_code_type="111", valid_from=dt.date(2024, 1, 2), valid_until=None, area_code="330500",
                  surface={"gender": "女"}, status_index=7)
    built = make_licence(*[values[f.name] for f in dataclasses.fields(Licence)])
    assert built == Licence(**values)
    assert built.to_dict() == Licence(**values).to_dict()
