"""A new city's operator stands the gateway up in OPERATOR mode (not demo) from README.md alone:
own trust-operator key pair and signed trust list, own partner registry and token key, own audit
HMAC, checkpoint and receipt keys, settings in a TOML file; then a partner's token
(``private_key_jwt``), a verification, ``/readyz``, ``GET /v1/admin/trust`` with an admin-scoped
partner, a trust list rotation to v2 and ``python -m gateway audit verify`` with the checkpoint key.

In-process (``load_settings`` -> ``check_startup`` -> ``build_services`` -> ``create_app``: what
``serve`` does in each worker) on the real clock, with a TEST framework made here for the few
regions used. A finding that was a defect is named after it and failed before its fix.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import os
import time
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.__main__ import main as gateway_main
from gateway.app import create_app
from gateway.audit.cli import audit_cli
from gateway.bootstrap import build_services, check_startup, load_static
from gateway.config import ConfigError, load_settings
from gateway.devtrust import make_dev_framework
from gateway.simulator import IssuerSimulator
from gateway.trust import load_certificate

REGION = "330500"      # 湖州
OTHER = "320500"       # 苏州: revoked in the rotated list


def _write_key(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_public(path: Path, key) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _partner(directory: Path, client_id: str, scopes: list[str]):
    key = ed25519.Ed25519PrivateKey.generate()
    _write_public(directory / f"{client_id}.pub.pem", key)
    (directory / f"{client_id}.toml").write_text(
        f'client_id = "{client_id}"\nname_zh = "新城市合作方（测试）"\nscopes = {orjson.dumps(scopes).decode()}\n'
        'items = "*"\nregions = "*"\n\n[key]\n'
        f'public_key_pem = "{client_id}.pub.pem"\n\n[rate_limit]\nrequests_per_second = 50\nburst = 100\n',
        encoding="utf-8")
    return key


def _sign_list(op: Path, doc: dict, version: int, now: dt.datetime) -> None:
    """README: `python -m gateway trust sign --key operator.key.pem --in trust-list.json --out ...`;
    written next to the file in force and renamed over it (a reader never sees half a file)."""
    doc = dict(doc, framework="new-city", version=version, issued_at=now.isoformat(),
               expires_at=(now + dt.timedelta(days=20)).isoformat())
    (op / "trust-list.json").write_bytes(orjson.dumps(doc))
    assert gateway_main(["trust", "sign", "--key", str(op / "operator.key.pem"), "--in", str(op / "trust-list.json"),
                         "--out", str(op / "trust-list.signed.json.new")]) == 0
    os.replace(op / "trust-list.signed.json.new", op / "trust-list.signed.json")


def _operator_dir(tmp_path: Path, *, status_exempt: bool = True):
    """Everything README.md asks of an operator, made from scratch; returns (config file, partner keys,
    the framework's document and private material)."""
    op = tmp_path / "op"
    (op / "partners").mkdir(parents=True)
    operator = ed25519.Ed25519PrivateKey.generate()
    _write_key(op / "operator.key.pem", operator)
    _write_public(op / "operator.pub.pem", operator)
    checkpoint = ed25519.Ed25519PrivateKey.generate()
    _write_key(op / "checkpoint.key.pem", checkpoint)
    _write_public(op / "checkpoint.pub.pem", checkpoint)
    _write_key(op / "receipt.key.pem", ec.generate_private_key(ec.SECP256R1()))
    _write_key(op / "gateway-token.key.pem", ec.generate_private_key(ec.SECP256R1()))
    keys = {"city-partner": _partner(op / "partners", "city-partner", ["licences:verify", "items:read"]),
            "city-admin": _partner(op / "partners", "city-admin", ["admin"])}
    settings_probe = load_settings(env={}, demo=True)
    regions, specs, _ = load_static(settings_probe)
    now = dt.datetime.now(dt.timezone.utc)
    picked = {c: specs[c] for c in (REGION, OTHER)}
    doc, material = make_dev_framework(picked, regions, now - dt.timedelta(days=1), valid_days=60)
    _sign_list(op, doc, 1, now)
    exempt = f'status_exempt_regions = ["{REGION}", "{OTHER}"]\n' if status_exempt else ""
    config = op / "gateway.toml"
    config.write_text(
        f'trust_list = "{op / "trust-list.signed.json"}"\n'
        f'trust_operator_keys = ["{op / "operator.pub.pem"}"]\n'
        f'partners_dir = "{op / "partners"}"\n'
        f'gateway_key = "{op / "gateway-token.key.pem"}"\n'
        f'audit_hmac_key = "{os.urandom(32).hex()}"\n'
        f'audit_checkpoint_key = "{op / "checkpoint.key.pem"}"\n'
        f'receipt_key = "{op / "receipt.key.pem"}"\n'
        f'var_dir = "{tmp_path / "var"}"\n'
        'trust_reload_seconds = 0\n' + exempt, encoding="utf-8")
    return config, keys, doc, material, specs, regions


def _body(licence: bytes) -> bytes:
    return orjson.dumps({"licence": base64.b64encode(licence).decode("ascii"), "encoding": "base64"})


async def _token(client, settings, client_id: str, key) -> str:
    now = int(time.time())
    assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": settings.token_endpoint_url, "iat": now,
                            "exp": now + 120, "jti": uuid.uuid4().hex}, key, algorithm="EdDSA")
    resp = await client.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["access_token"]


async def test_an_operator_gateway_built_from_the_readme_starts_verifies_rotates_and_audits(tmp_path, aiohttp_client):
    config, keys, doc, material, specs, regions = _operator_dir(tmp_path)
    settings = load_settings(str(config), env={})
    assert not settings.demo
    check_startup(settings)
    services = build_services(settings)
    client = await aiohttp_client(create_app(services))
    simulator = IssuerSimulator(specs, regions, material, {t.key: t for t in services.catalogue.types})

    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["trust_list_version"] == 1
    user = {"Authorization": f"Bearer {await _token(client, settings, 'city-partner', keys['city-partner'])}"}
    user["Content-Type"] = "application/json"
    admin = {"Authorization": f"Bearer {await _token(client, settings, 'city-admin', keys['city-admin'])}"}

    for region in (REGION, OTHER):
        body = _body(simulator.issue(region).data)
        answer = await (await client.post("/v1/licences/verify", data=body, headers=user)).json()
        assert answer.get("verdict") == "valid", answer
        assert answer["receipt"].count(".") == 4
    regions_answer = await (await client.get("/v1/regions", headers=user)).json()
    assert {r["code"]: r["trust"]["state"] for r in regions_answer["regions"]}[REGION] == "ok"
    trust = await (await client.get("/v1/admin/trust", headers=admin)).json()
    assert trust["in_force"]["framework"] == "new-city" and trust["in_force"]["version"] == 1

    # rotation: v2 revokes 苏州's issuer (keyCompromise); POST reload (trust_reload_seconds = 0, one worker)
    v2 = orjson.loads(orjson.dumps(doc))
    serial = load_certificate(v2["regions"][OTHER]["issuers"][0].encode()).serial_hex   # as openssl prints it
    v2["regions"][OTHER]["revoked"] = [{"serial": serial, "revoked_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                                        "reason": "keyCompromise"}]
    _sign_list(config.parent, v2, 2, dt.datetime.now(dt.timezone.utc))
    reload = await client.post("/v1/admin/trust/reload", headers=admin)
    assert reload.status == 200 and (await reload.json())["version_in_force"] == 2, await reload.text()
    body = _body(simulator.issue(OTHER).data)
    answer = await (await client.post("/v1/licences/verify", data=body, headers=user)).json()
    assert answer["verdict"] == "invalid" and [r["code"] for r in answer["reasons"]] == ["ISSUER_CERT_REVOKED"]
    keys_json = tmp_path / "keys.json"
    keys_json.write_bytes(await (await client.get("/v1/keys")).read())
    await client.close()   # shutdown signs the last checkpoint

    out, err = io.StringIO(), io.StringIO()
    store = f"sqlite:{settings.var_dir}/audit.sqlite3"
    # (the CLI runs its own event loop: in a thread, as from a shell)
    assert await asyncio.to_thread(audit_cli, ["verify", "--store", store, "--key",
                                               str(config.parent / "checkpoint.pub.pem")], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().startswith("OK:")
    assert await asyncio.to_thread(audit_cli, ["verify", "--store", store, "--key", str(keys_json)],
                                   out=io.StringIO(), err=err) == 0


async def test_without_a_status_source_the_operator_gateway_says_indeterminate_and_not_ready(tmp_path, aiohttp_client):
    config, keys, _, material, specs, regions = _operator_dir(tmp_path, status_exempt=False)
    settings = load_settings(str(config), env={})
    services = build_services(settings)
    client = await aiohttp_client(create_app(services))
    simulator = IssuerSimulator(specs, regions, material, {t.key: t for t in services.catalogue.types})
    ready = await client.get("/readyz")
    assert ready.status == 503 and "fresh status list" in " ".join((await ready.json())["problems"])
    user = {"Authorization": f"Bearer {await _token(client, settings, 'city-partner', keys['city-partner'])}"}
    user["Content-Type"] = "application/json"
    body = _body(simulator.issue(REGION).data)
    answer = await (await client.post("/v1/licences/verify", data=body, headers=user)).json()
    assert answer["verdict"] == "indeterminate" and answer["reasons"][0]["code"] == "STATUS_UNAVAILABLE"


def test_reload_only_on_post_is_refused_with_several_workers(tmp_path):
    """`trust_reload_seconds = 0` documents "only on POST /v1/admin/trust/reload"; with `serve --workers N`
    the POST is answered by ONE worker (SO_REUSEPORT), and the others never polled: they kept the
    previous list -- an issuer revoked in the new one still trusted -- until restarted, while the
    answering worker's GET /v1/admin/trust showed the new version. Was: started."""
    config, *_ = _operator_dir(tmp_path)
    assert load_settings(str(config), env={}, workers=1).trust_reload_seconds == 0    # control: one worker
    assert load_settings(str(config), env={"GATEWAY_TRUST_RELOAD_SECONDS": "10"}, workers=2).workers == 2
    with pytest.raises(ConfigError) as exc:
        load_settings(str(config), env={}, workers=2)
    assert "trust_reload_seconds" in str(exc.value) and "workers" in str(exc.value)
