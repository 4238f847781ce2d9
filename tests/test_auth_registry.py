"""Partner registry loading: shipped partners, and strict errors naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import PartnerRegistryError, load_partners
from gateway.auth.partners import region_prefix
from gateway.errors import InfrastructureError

from .test_auth_support import REGISTRY_DIR

DEMO_PUB = (REGISTRY_DIR / "demo-partner.test-public.pem").read_text()


def write_partner(tmp: Path, body: str, name: str = "acme-partner") -> Path:
    (tmp / "acme.test-public.pem").write_text(DEMO_PUB)
    (tmp / f"{name}.toml").write_text(body, encoding="utf-8")
    return tmp


GOOD = '''client_id = "acme-partner"
name_zh = "测试合作方"
scopes = ["licences:verify"]
items = "*"
regions = ["330500"]
[key]
public_key_pem = "acme.test-public.pem"
[rate_limit]
requests_per_second = 5
burst = 10
'''


def load_error(tmp: Path, body: str, name: str = "acme-partner") -> PartnerRegistryError:
    write_partner(tmp, body, name)
    with pytest.raises(PartnerRegistryError) as info:
        load_partners(tmp)
    return info.value


def test_shipped_registry_loads_demo_and_restricted_partner() -> None:
    reg = load_partners(REGISTRY_DIR)
    assert sorted(reg) == ["demo-partner", "load-operator", "load-partner", "restricted-partner"]
    demo, restricted = reg["demo-partner"], reg["restricted-partner"]
    assert demo.alg == "EdDSA" and demo.items is None and demo.regions is None
    assert "admin" not in demo.scopes and "admin" not in reg["load-partner"].scopes
    assert reg["load-operator"].scopes == frozenset({"admin"})   # the benchmarks' reader of worker histograms
    assert restricted.alg == "ES256"
    assert restricted.items == frozenset({"KS-001", "KS-002"})
    assert (restricted.rate_per_s, restricted.burst) == (2.0, 3)


def test_minimal_valid_partner_loads(tmp_path: Path) -> None:
    reg = load_partners(write_partner(tmp_path, GOOD))
    assert reg["acme-partner"].scopes == frozenset({"licences:verify"})
    assert reg["acme-partner"].regions == ("330500",)


@pytest.mark.parametrize("attack, body, field", [
    ("typo_scope_instead_of_scopes", GOOD.replace("scopes =", "scope ="), "scope"),
    ("client_id_differs_from_file_name", GOOD.replace('"acme-partner"', '"demo-partner"'), "client_id"),
    ("unknown_scope_granted", GOOD.replace('["licences:verify"]', '["licences:verify", "root"]'), "scopes"),
    ("empty_scope_list", GOOD.replace('["licences:verify"]', "[]"), "scopes"),
    ("duplicate_scope", GOOD.replace('["licences:verify"]', '["admin", "admin"]'), "scopes"),
    ("region_name_instead_of_code", GOOD.replace('["330500"]', '["湖州市"]'), "regions"),
    ("items_as_bare_string", GOOD.replace('items = "*"', 'items = "KS-001"'), "items"),
    ("item_code_with_path_traversal", GOOD.replace('items = "*"', 'items = ["../etc"]'), "items"),
    ("zero_rate", GOOD.replace("requests_per_second = 5", "requests_per_second = 0"), "rate_limit.requests_per_second"),
    ("fractional_burst", GOOD.replace("burst = 10", "burst = 2.5"), "rate_limit.burst"),
    ("missing_rate_table", GOOD.split("[rate_limit]")[0], "rate_limit"),
    ("missing_name", GOOD.replace('name_zh = "测试合作方"\n', ""), "name_zh"),
    ("unknown_key_field", GOOD.replace("[key]\n", '[key]\ncert = "x"\n'), "key.cert"),
    ("both_pem_and_jwk", GOOD.replace("[key]\n", '[key]\njwk = { kty = "OKP" }\n'), "key"),
    ("missing_key_file", GOOD.replace("acme.test-public.pem", "nowhere.pem"), "key.public_key_pem"),
    ("hmac_alg_declared_for_an_ed25519_key", GOOD.replace("[key]\n", '[key]\nalg = "HS256"\n'), "key.alg"),
    ("broken_toml", GOOD + "scopes = [", "-"),
])
def test_invalid_partner_file_names_file_and_field(tmp_path: Path, attack: str, body: str, field: str) -> None:
    err = load_error(tmp_path, body)
    assert err.field == field, (attack, str(err))
    assert err.file.endswith("acme-partner.toml")
    assert isinstance(err, InfrastructureError) and err.code == "TRUST_UNAVAILABLE"
    assert "acme-partner.toml" in str(err) and field in str(err)


def test_private_key_placed_in_the_registry_is_refused(tmp_path: Path) -> None:
    shutil.copy(REGISTRY_DIR / "demo-partner.test-private.pem", tmp_path / "leak.test-private.pem")
    err = load_error(tmp_path, GOOD.replace("acme.test-public.pem", "leak.test-private.pem"))
    assert err.field == "key.public_key_pem" and "PRIVATE" in err.problem


def test_jwk_carrying_the_private_scalar_is_refused(tmp_path: Path) -> None:
    body = GOOD.replace('public_key_pem = "acme.test-public.pem"',
                        'jwk = { kty = "EC", crv = "P-256", x = "AA", y = "AA", d = "AA" }')
    err = load_error(tmp_path, body)
    assert err.field == "key.jwk" and "'d'" in err.problem


def test_weak_rsa_1024_key_is_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    (tmp_path / "weak.pem").write_bytes(weak.public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    err = load_error(tmp_path, GOOD.replace("acme.test-public.pem", "weak.pem"))
    assert err.field == "key" and "1024" in err.problem


def test_missing_registry_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PartnerRegistryError) as info:
        load_partners(tmp_path / "absent")
    assert "does not exist" in str(info.value)


@pytest.mark.parametrize("code, prefix", [("330000", "33"), ("330500", "3305"), ("330502", "330502"),
                                          ("310000", "31")])
def test_region_prefix_follows_gbt2260_levels(code: str, prefix: str) -> None:
    assert region_prefix(code) == prefix


def test_region_allow_list_covers_subordinate_divisions_only() -> None:
    restricted = load_partners(REGISTRY_DIR)["restricted-partner"]  # 330500 湖州市, 310000 上海市
    assert restricted.may_use_region("330500") and restricted.may_use_region("330523")  # 安吉县
    assert restricted.may_use_region("310117")  # 松江区
    assert not restricted.may_use_region("330100")  # 杭州市
    assert not restricted.may_use_region("33050")  # malformed
    assert not restricted.may_use_region("3305001")
