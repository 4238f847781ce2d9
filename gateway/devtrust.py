"""The development trust framework: TEST anchors and issuer keys for all 45 regions.

Everything made here is a TEST key for demo mode, tests and load tests. Names say so
("TEST", "测试") and ``python -m gateway trust dev-init`` writes the private keys under a
``test-keys/`` folder. A production gateway never loads this module's output: it loads the
trust list an operator provides (see README, "Trust material").

Per region: one anchor CA (self-signed, 10 years), issuer certificates under it (2 years:
``issuer-1`` current, and on request an older ``issuer-0`` for rotation tests), keyed by the
algorithm of the region's spec (ES256 -> P-256, EdDSA -> Ed25519, SM2 -> SM2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from adapters.base import SigningKey

from .identifiers import make_uscc
from .specs import RegionInfo, RegionSpec
from .trust import CertInfo, load_certificate


@dataclass(frozen=True, slots=True)
class IssuingAuthority:
    name: str
    uscc: str
    area_code: str


@dataclass(slots=True)
class RegionMaterial:
    code: str
    anchor_key: Any
    anchor: CertInfo
    issuers: list[SigningKey] = field(default_factory=list)
    authority: IssuingAuthority | None = None


def authority_for(info: RegionInfo) -> IssuingAuthority:
    """A synthetic issuing authority registered at the region's own GB/T 2260 code, as pinned by
    the reference's regions.csv (check-valid USCC; 310101 for Shanghai was a code the project
    pins nowhere)."""
    area = info.code
    digest = hashlib.sha256(info.code.encode()).hexdigest()
    org8 = "".join(str(int(c, 16) % 10) for c in digest[:8])
    return IssuingAuthority(f"{info.name}数据资源管理局（测试）", make_uscc("1", "1", area, org8), area)


def _name(cn: str, region: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"电子证照测试信任框架 TEST {region}"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _new_key(algorithm: str):
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(algorithm)


def _sign_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _x509_cert(subject: x509.Name, pub, issuer: x509.Name, issuer_key, serial: int, nb: dt.datetime,
               na: dt.datetime, ca: bool) -> bytes:
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
         .serial_number(serial).not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                      encipher_only=False, decipher_only=False), critical=True))
    return b.sign(issuer_key, _sign_hash(issuer_key)).public_bytes(serialization.Encoding.DER)


def make_anchor(code: str, algorithm: str, now: dt.datetime, years: int = 10):
    if algorithm == "SM2":
        from .crypto.sm2 import SM2PrivateKey
        from .crypto.sm2cert import issue_sm2_certificate

        key = SM2PrivateKey.generate()
        subj = {"C": "CN", "O": f"电子证照测试信任框架 TEST {code}", "CN": f"TEST Root CA {code} 测试根证书"}
        der = issue_sm2_certificate(subject=subj, public_key=key.public_key(), issuer_subject=subj, issuer_key=key,
                                    serial=int(code) * 1000 + 1, not_before=now - dt.timedelta(days=1),
                                    not_after=now + dt.timedelta(days=365 * years), is_ca=True, path_len=0)
        return key, load_certificate(der)
    key = _new_key(algorithm)
    name = _name(f"TEST Root CA {code} 测试根证书", code)
    der = _x509_cert(name, key.public_key(), name, key, int(code) * 1000 + 1, now - dt.timedelta(days=1),
                     now + dt.timedelta(days=365 * years), True)
    return key, load_certificate(der)


def make_issuer(code: str, algorithm: str, anchor_key, anchor: CertInfo, serial: int, not_before: dt.datetime,
                not_after: dt.datetime, label: str = "issuer-1") -> SigningKey:
    if algorithm == "SM2":
        from .crypto.sm2 import SM2PrivateKey
        from .crypto.sm2cert import issue_sm2_certificate, load_sm2_certificate

        key = SM2PrivateKey.generate()
        anchor_subject = load_sm2_certificate(anchor.der).subject
        der = issue_sm2_certificate(
            subject={"C": "CN", "O": f"电子证照测试信任框架 TEST {code}", "CN": f"TEST e-licence signer {code} {label}"},
            public_key=key.public_key(), issuer_subject=anchor_subject, issuer_key=anchor_key, serial=serial,
            not_before=not_before, not_after=not_after, is_ca=False)
        return SigningKey("SM2", key, load_certificate(der))
    key = _new_key(algorithm)
    der = _x509_cert(_name(f"TEST e-licence signer {code} {label}", code), key.public_key(),
                     anchor._native.subject, anchor_key, serial, not_before, not_after, False)
    return SigningKey(algorithm, key, load_certificate(der))


#: the demo's TEST trust list lives this long, and a start makes a new one once fewer than
#: :data:`DEMO_RENEW_WITHIN` are left: longer than the default expiry warning (``trust_expiry_warn_days``,
#: 30), so a demo does not warn about its own list (a list of 30 days, renewed a day before its end,
#: was always "expiring")
DEMO_LIST_DAYS = 90
DEMO_RENEW_WITHIN = dt.timedelta(days=31)


def make_dev_framework(specs: Mapping[str, RegionSpec], regions: Mapping[str, RegionInfo], now: dt.datetime,
                       *, version: int = 1, valid_days: int = DEMO_LIST_DAYS) -> tuple[dict[str, Any], dict[str, RegionMaterial]]:
    """Create the TEST framework: (trust list document, per-region private material)."""
    material: dict[str, RegionMaterial] = {}
    doc_regions: dict[str, Any] = {}
    for code, spec in sorted(specs.items()):
        alg = spec.algorithms[0]
        anchor_key, anchor = make_anchor(code, alg, now)
        issuer = make_issuer(code, alg, anchor_key, anchor, int(code) * 1000 + 11,
                             now - dt.timedelta(days=1), now + dt.timedelta(days=730))
        material[code] = RegionMaterial(code, anchor_key, anchor, [issuer], authority_for(regions[code]))
        doc_regions[code] = {"anchors": [to_pem(anchor.der)], "issuers": [to_pem(issuer.cert.der)], "revoked": []}
    doc = trust_list_document(doc_regions, now, version=version, valid_days=valid_days)
    return doc, material


def trust_list_document(regions: Mapping[str, Any], now: dt.datetime, *, version: int, valid_days: int,
                        framework: str = "dev-TEST") -> dict[str, Any]:
    return {
        "type": "elicence-trust-list", "framework": framework, "version": version,
        "issued_at": now.isoformat(), "expires_at": (now + dt.timedelta(days=valid_days)).isoformat(),
        "regions": dict(regions),
    }


def to_pem(der: bytes) -> str:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


# --- persistence (so the demo gateway, its workers and the CLI share one TEST framework) ----
TEST_KEY_WARNING = "TEST KEY - demo/test trust framework only - never trust in production\n"


def _key_to_pem(key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    if hasattr(key, "scalar"):  # SM2PrivateKey
        return key.to_pem()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _key_from_pem(pem: bytes, algorithm: str):
    if algorithm == "SM2":
        from .crypto.sm2 import SM2PrivateKey

        return SM2PrivateKey.from_pem(pem)
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, None)


def _strip_warning(data: bytes) -> bytes:
    return data.split(b"\n", 1)[1] if data.startswith(TEST_KEY_WARNING.encode()[:9]) else data


def save_framework(directory, doc: Mapping[str, Any], material: Mapping[str, RegionMaterial]) -> None:
    """Write the trust list and every TEST private key under ``directory``."""
    import json
    from pathlib import Path

    root = Path(directory)
    (root / "test-keys").mkdir(parents=True, exist_ok=True)
    (root / "trust-list.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    index: dict[str, Any] = {}
    for code, m in material.items():
        d = root / "test-keys" / code
        d.mkdir(exist_ok=True)
        (d / "test-anchor.key.pem").write_bytes(TEST_KEY_WARNING.encode() + _key_to_pem(m.anchor_key))
        (d / "test-anchor.cert.pem").write_text(to_pem(m.anchor.der))
        issuers = []
        for i, ik in enumerate(m.issuers):
            (d / f"test-issuer-{i}.key.pem").write_bytes(TEST_KEY_WARNING.encode() + _key_to_pem(ik.private_key))
            (d / f"test-issuer-{i}.cert.pem").write_text(to_pem(ik.cert.der))
            issuers.append(i)
        index[code] = {"algorithm": m.anchor.algorithm, "issuers": issuers}
    (root / "test-keys" / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    (root / "test-keys" / "README.txt").write_text(
        "TEST KEYS made by `python -m gateway` demo mode (gateway/devtrust.py).\n"
        "They sign simulated licences only. Never add this trust list to a production gateway.\n", encoding="utf-8")


def load_framework(directory, regions: Mapping[str, RegionInfo]) -> tuple[dict[str, Any], dict[str, RegionMaterial]]:
    import json
    from pathlib import Path

    root = Path(directory)
    doc = json.loads((root / "trust-list.json").read_text(encoding="utf-8"))
    index = json.loads((root / "test-keys" / "index.json").read_text(encoding="utf-8"))
    material: dict[str, RegionMaterial] = {}
    for code, meta in index.items():
        d = root / "test-keys" / code
        alg = meta["algorithm"]
        anchor = load_certificate((d / "test-anchor.cert.pem").read_bytes())
        anchor_key = _key_from_pem(_strip_warning((d / "test-anchor.key.pem").read_bytes()), alg)
        issuers = [SigningKey(alg, _key_from_pem(_strip_warning((d / f"test-issuer-{i}.key.pem").read_bytes()), alg),
                              load_certificate((d / f"test-issuer-{i}.cert.pem").read_bytes()))
                   for i in meta["issuers"]]
        material[code] = RegionMaterial(code, anchor_key, anchor, issuers, authority_for(regions[code]))
    return doc, material


def ensure_framework(directory, specs: Mapping[str, RegionSpec], regions: Mapping[str, RegionInfo],
                     now: dt.datetime) -> tuple[dict[str, Any], dict[str, RegionMaterial]]:
    """Load the demo framework from ``directory``; (re)create it when missing, expired,
    or made for different region algorithms."""
    from pathlib import Path

    root = Path(directory)
    try:
        doc, material = load_framework(root, regions)
        expires = dt.datetime.fromisoformat(doc["expires_at"])
        algs_ok = all(code in material and material[code].anchor.algorithm == spec.algorithms[0]
                      for code, spec in specs.items())
        if expires - now > DEMO_RENEW_WITHIN and algs_ok:
            return doc, material
    except (OSError, ValueError, KeyError):
        pass
    doc, material = make_dev_framework(specs, regions, now)
    save_framework(root, doc, material)
    # a new TEST framework starts again at version 1: the record of the old one's highest version
    # (gateway.bootstrap.DEMO_TRUST_STATE) would refuse it as a rollback or a conflict
    (root / "trust-held.json").unlink(missing_ok=True)
    return doc, material
