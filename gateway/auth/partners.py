"""Partner registry: one strictly validated TOML file per partner in ``certs/partners/``.

File ``certs/partners/<client_id>.toml``::

    client_id = "demo-partner"          # must equal the file name stem
    name_zh   = "演示合作方（测试）"
    scopes    = ["licences:verify", "items:read"]   # scopes the partner MAY request
    items     = "*"                     # or a list of item codes
    regions   = ["330500", "310000"]    # or "*"; GB/T 2260 codes, see Partner.may_use_region

    [key]                               # exactly one of public_key_pem / jwk
    public_key_pem = "demo-partner.test-public.pem"  # path relative to this file
    # jwk = { kty = "EC", crv = "P-256", x = "...", y = "..." }
    # alg = "ES256"                     # optional, inferred from the key (RSA: RS256 unless PS256)

    [rate_limit]
    requests_per_second = 20
    burst = 40

Unknown keys are errors (a typo such as ``scope =`` must not silently grant nothing or
everything). Every error names the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.errors import TRUST_UNAVAILABLE, InfrastructureError

from .scopes import ALL_SCOPES

ANY: str = "*"
CLIENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
ITEM_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
REGION_CODE_RE = re.compile(r"^[1-9][0-9]{5}\Z")
#: the highest rate a partner file may set (requests/s for the whole gateway: since the workers of
#: ``serve --workers N`` share one bucket per partner, it is no longer multiplied by N)
MAX_RATE = 100_000.0
MIN_RSA_BITS = 2048

_TOP_FIELDS = frozenset({"client_id", "name_zh", "scopes", "items", "regions", "key", "rate_limit"})
_KEY_FIELDS = frozenset({"public_key_pem", "jwk", "alg"})
_RATE_FIELDS = frozenset({"requests_per_second", "burst"})
_JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


class PartnerRegistryError(InfrastructureError):
    """The partner registry is invalid; the gateway must not start with it."""

    def __init__(self, file: Path | str, field: str, problem: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        super().__init__(TRUST_UNAVAILABLE, f"{file}: field '{field}': {problem}")


PartnerPublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def region_prefix(code: str) -> str:
    """GB/T 2260 code -> the prefix it covers: 330000 -> 33, 330500 -> 3305, 330502 -> 330502."""
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


@dataclass(frozen=True, slots=True, eq=False)
class Partner:
    client_id: str
    name_zh: str
    alg: str
    public_key: PartnerPublicKey
    scopes: frozenset[str]
    items: frozenset[str] | None  # None = every item ("*")
    regions: tuple[str, ...] | None  # None = every region ("*")
    rate_per_s: float
    burst: int
    source: str

    @property
    def region_prefixes(self) -> tuple[str, ...] | None:
        return None if self.regions is None else tuple(region_prefix(r) for r in self.regions)

    def may_use_item(self, code: str) -> bool:
        return self.items is None or code in self.items

    def may_use_region(self, code: str) -> bool:
        """A province code allows its cities and districts, a city code its districts."""
        if self.regions is None:
            return True
        if not REGION_CODE_RE.match(code):
            return False
        return any(code.startswith(p) for p in self.region_prefixes or ())


class PartnerRegistry(Mapping[str, Partner]):
    """Read-only ``client_id -> Partner`` mapping."""

    def __init__(self, partners: Mapping[str, Partner]) -> None:
        self._partners = dict(partners)

    def __getitem__(self, client_id: str) -> Partner:
        return self._partners[client_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._partners)

    def __len__(self) -> int:
        return len(self._partners)


def load_partners(directory: str | Path) -> PartnerRegistry:
    """Load and validate every ``*.toml`` in ``directory`` (other files are ignored)."""
    root = Path(directory)
    if not root.is_dir():
        raise PartnerRegistryError(root, "-", "partner registry directory does not exist")
    partners: dict[str, Partner] = {}
    for path in sorted(root.glob("*.toml")):
        partner = load_partner_file(path)
        partners[partner.client_id] = partner
    return PartnerRegistry(partners)


def load_partner_file(path: Path) -> Partner:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PartnerRegistryError(path, "-", f"not valid TOML: {exc}") from None
    _no_unknown(path, "", data, _TOP_FIELDS)

    client_id = _str(path, "client_id", data)
    if not CLIENT_ID_RE.match(client_id):
        raise PartnerRegistryError(path, "client_id", "must be 2-63 chars of a-z, 0-9, '-'")
    if client_id != path.stem:
        raise PartnerRegistryError(path, "client_id", f"{client_id!r} does not match the file name {path.stem!r}")
    name_zh = _str(path, "name_zh", data)

    scopes = _str_list(path, "scopes", data.get("scopes"))
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise PartnerRegistryError(path, "scopes", f"unknown scope(s) {unknown}; known: {sorted(ALL_SCOPES)}")

    items = _star_or_list(path, "items", data)
    if items is not None:
        bad = [c for c in items if not ITEM_CODE_RE.match(c)]
        if bad:
            raise PartnerRegistryError(path, "items", f"malformed item code(s) {bad}")
    regions = _star_or_list(path, "regions", data)
    if regions is not None:
        bad = [c for c in regions if not REGION_CODE_RE.match(c)]
        if bad:
            raise PartnerRegistryError(path, "regions", f"not 6-digit GB/T 2260 code(s) {bad}")

    alg, public_key = _load_key(path, data.get("key"))
    rate_per_s, burst = _load_rate(path, data.get("rate_limit"))
    return Partner(client_id=client_id, name_zh=name_zh, alg=alg, public_key=public_key,
                   scopes=frozenset(scopes), items=None if items is None else frozenset(items),
                   regions=None if regions is None else tuple(regions),
                   rate_per_s=rate_per_s, burst=burst, source=str(path))


# --- field helpers ----------------------------------------------------------------------

def _no_unknown(path: Path, prefix: str, table: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in table:
        if key not in allowed:
            raise PartnerRegistryError(path, prefix + key, f"unknown field; allowed: {sorted(allowed)}")


def _str(path: Path, name: str, data: Mapping[str, Any]) -> str:
    value = data.get(name)
    if value is None:
        raise PartnerRegistryError(path, name, "missing")
    if not isinstance(value, str) or not value.strip():
        raise PartnerRegistryError(path, name, "must be a non-empty string")
    return value


def _str_list(path: Path, name: str, value: Any) -> list[str]:
    if value is None:
        raise PartnerRegistryError(path, name, "missing")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise PartnerRegistryError(path, name, "must be a non-empty list of non-empty strings")
    if len(set(value)) != len(value):
        raise PartnerRegistryError(path, name, "has duplicate entries")
    return value


def _star_or_list(path: Path, name: str, data: Mapping[str, Any]) -> list[str] | None:
    value = data.get(name)
    if value == ANY:
        return None
    if isinstance(value, str):
        raise PartnerRegistryError(path, name, 'must be "*" or a list')
    return _str_list(path, name, value)


def _load_key(path: Path, table: Any) -> tuple[str, PartnerPublicKey]:
    if not isinstance(table, dict):
        raise PartnerRegistryError(path, "key", "missing [key] table")
    _no_unknown(path, "key.", table, _KEY_FIELDS)
    has_pem, has_jwk = "public_key_pem" in table, "jwk" in table
    if has_pem == has_jwk:
        raise PartnerRegistryError(path, "key", "give exactly one of public_key_pem or jwk")
    key: Any
    if has_pem:
        rel = table["public_key_pem"]
        if not isinstance(rel, str) or not rel:
            raise PartnerRegistryError(path, "key.public_key_pem", "must be a path string")
        pem_path = (path.parent / rel)
        try:
            pem = pem_path.read_bytes()
        except OSError as exc:
            raise PartnerRegistryError(path, "key.public_key_pem", f"cannot read {pem_path}: {exc.strerror}") from None
        if b"PRIVATE KEY" in pem:
            raise PartnerRegistryError(path, "key.public_key_pem", "is a PRIVATE key; the registry holds public keys only")
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise PartnerRegistryError(path, "key.public_key_pem", f"not a public key PEM: {exc}") from None
    else:
        jwk = table["jwk"]
        if not isinstance(jwk, dict):
            raise PartnerRegistryError(path, "key.jwk", "must be a table")
        private = sorted(_JWK_PRIVATE_MEMBERS & set(jwk))
        if private:
            raise PartnerRegistryError(path, "key.jwk", f"contains private key member(s) {private}")
        try:
            key = jwt.PyJWK(dict(jwk)).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise PartnerRegistryError(path, "key.jwk", f"not a usable public JWK: {exc}") from None
    alg = table.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise PartnerRegistryError(path, "key.alg", "must be a string")
    return _alg_for(path, key, alg), key


def _alg_for(path: Path, key: Any, declared: str | None) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        allowed = ("EdDSA",)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384"}
        if key.curve.name not in by_curve:
            raise PartnerRegistryError(path, "key", f"EC curve {key.curve.name} not allowed (P-256, P-384)")
        allowed = (by_curve[key.curve.name],)
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise PartnerRegistryError(path, "key", f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
        allowed = ("RS256", "PS256")
    else:
        raise PartnerRegistryError(path, "key", f"key type {type(key).__name__} not allowed")
    if declared is None:
        return allowed[0]
    if declared not in allowed:
        raise PartnerRegistryError(path, "key.alg", f"{declared!r} does not fit the key; allowed: {list(allowed)}")
    return declared


def _load_rate(path: Path, table: Any) -> tuple[float, int]:
    if not isinstance(table, dict):
        raise PartnerRegistryError(path, "rate_limit", "missing [rate_limit] table")
    _no_unknown(path, "rate_limit.", table, _RATE_FIELDS)
    rps = table.get("requests_per_second")
    if isinstance(rps, bool) or not isinstance(rps, (int, float)) or not 0 < rps <= MAX_RATE:
        raise PartnerRegistryError(path, "rate_limit.requests_per_second", f"must be a number in (0, {MAX_RATE:g}]")
    burst = table.get("burst")
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 100_000:
        raise PartnerRegistryError(path, "rate_limit.burst", "must be an integer in [1, 100000]")
    return float(rps), burst
