"""Assemble the gateway's services from settings (the only place that wires real edges)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import orjson

from adapters import Limits

from .app import Services
from .catalogue import Catalogue, load_catalogue
from .config import ConfigError, Settings
from .core import Policy, Verifier
from .devtrust import ensure_framework
from .edges import FileTrustSource, MemoryStatusSource
from .files import write_atomically
from .issuer_server import IssuerServer
from .simulator import IssuerSimulator
from .specs import SpecError, load_region_specs, load_regions
from .status import StatusSnapshot
from .status_source import HttpStatusSource
from .trustlist import (TEST_OPERATOR_PRIVATE, TEST_OPERATOR_PUBLIC, TrustListRefused, canonical_json,
                        load_operator_key, load_operator_private_key, read_floor, sign_trust_list)

log = logging.getLogger("gateway.bootstrap")


def policy_from(settings: Settings) -> Policy:
    return Policy(
        clock_skew=settings.clock_skew,
        issuer_time_policy=settings.issuer_time_policy,
        max_chain_depth=settings.max_chain_depth,
        limits=Limits(max_licence_bytes=settings.max_licence_bytes, max_zip_entries=settings.max_zip_entries,
                      max_zip_uncompressed=settings.max_zip_uncompressed_bytes, max_zip_ratio=settings.max_zip_ratio),
        status_exempt_regions=frozenset(settings.status_exempt_regions),
    )


def load_static(settings: Settings):
    """Regions, region specs and catalogues, checked against each other and against the settings
    that name regions (SpecError, CatalogueError or ConfigError: start-up is refused)."""
    specs_dir = Path(settings.specs_dir)
    try:
        regions = load_regions(specs_dir / "regions.csv")
    except (OSError, UnicodeDecodeError, KeyError) as exc:
        raise SpecError(f"{specs_dir / 'regions.csv'}: cannot be read as the region table: {exc!r}") from None
    specs = load_region_specs(specs_dir / "regions", regions)
    catalogue = load_catalogue(specs_dir / "licence_types.toml", specs_dir / "items.toml", set(regions))
    type_keys = {t.key for t in catalogue.types}
    for spec in specs.values():
        unknown = sorted(set(spec.licence_types) - type_keys - {"*"})
        if unknown:
            raise SpecError(f"{spec.source}: field 'licence_types': {unknown} not in {specs_dir / 'licence_types.toml'}")
    for name in ("status_exempt_regions", "status_max_age_by_region", "upstream_timeout_ms_by_region"):
        unknown = sorted(set(getattr(settings, name)) - set(regions))
        if unknown:
            raise ConfigError(f"setting {name}: {unknown} not among the {len(regions)} regions of "
                              f"{specs_dir / 'regions.csv'}")
    return regions, specs, catalogue


def check_startup(settings: Settings) -> None:
    """What every serving process will load, loaded once before any starts, so that a bad spec,
    catalogue, key file or audit setting refuses start-up with its message (no traceback from
    inside a worker after the gateway announced itself)."""
    from .auth import load_partners, load_signing_key
    from .auth.partners import PartnerRegistryError

    load_static(settings)
    checks = [("partners_dir", load_partners, settings.partners_dir),
              ("gateway_key", load_signing_key, settings.gateway_key)]
    checks += [("trust_operator_keys", load_operator_key, path) for path in settings.trust_operator_keys]
    for name, load, path in checks:
        try:
            load(path)
        except (OSError, ValueError, TypeError, PartnerRegistryError) as exc:
            raise ConfigError(f"setting {name}: {path}: {getattr(exc, 'detail', None) or exc}") from None
    try:
        read_floor(trust_state_path(settings))
    except TrustListRefused as exc:
        raise ConfigError(f"setting trust_state: {exc.detail}") from None
    if settings.audit_backend != "off":
        from .audit_wiring import audit_setup_from

        audit_setup_from(settings)
    if not settings.demo:
        refuse_test_auth_material(settings)


#: committed TEST material whose private keys are public (certs/partners: the partners' and the
#: gateway's token keys; certs/trust: the trust-framework operator's key)
TEST_MATERIAL_DIRS = tuple((Path(__file__).resolve().parent.parent / "certs" / d) for d in ("partners", "trust"))


def refuse_test_auth_material(settings: Settings) -> None:
    """Outside demo mode, refuse the committed TEST partner registry, token signing key and trust
    operator key, as :func:`gateway.audit_wiring.audit_setup_from` refuses certs/audit/: with them
    anyone holding this repository signs an access token of any TEST partner (``load-operator`` has
    ``admin``) or a trust list the gateway accepts."""
    test_dirs = {d.resolve() for d in TEST_MATERIAL_DIRS}
    found = []
    if Path(settings.partners_dir).resolve() in test_dirs:
        found.append("partners_dir")
    if Path(settings.gateway_key).resolve().parent in test_dirs:
        found.append("gateway_key")
    if any(Path(k).resolve().parent in test_dirs for k in settings.trust_operator_keys):
        found.append("trust_operator_keys")
    if found:
        raise ConfigError(f"{', '.join(found)}: the TEST material of certs/partners/ and certs/trust/ is refused "
                          "outside demo mode (its private keys are public: anyone could sign access tokens or "
                          "trust lists); set your own")


#: the demo's record of the highest trust list version accepted (beside its TEST framework, which
#: gateway.devtrust.ensure_framework removes with it when it makes a new framework)
DEMO_TRUST_STATE = "trust-held.json"


def trust_state_path(settings: Settings) -> Path:
    """Where the highest trust list version accepted is recorded (setting ``trust_state``)."""
    if settings.demo:
        return Path(settings.var_dir) / "demo" / DEMO_TRUST_STATE
    return Path(settings.trust_state or Path(settings.var_dir) / "trust-held.json")


def type_names(catalogue: Catalogue) -> dict[str, str]:
    return {t.type_code: t.name_zh for t in catalogue.types}


def load_auth(settings: Settings):
    from .auth import load_partners, load_signing_key

    return load_partners(settings.partners_dir), load_signing_key(settings.gateway_key)


def prepare_shared(settings: Settings, now: dt.datetime | None = None) -> None:
    """Things several worker processes must share, made once by the parent before they start."""
    if settings.demo:
        regions, specs, _ = load_static(settings)
        demo_dir = Path(settings.var_dir) / "demo"
        doc, _ = ensure_framework(demo_dir, specs, regions, now or dt.datetime.now(dt.timezone.utc))
        write_signed_demo_list(demo_dir, doc)   # the workers then find it written (each still checks)
    if settings.audit_backend in ("sqlite", "postgres"):
        from .audit_wiring import prepare_audit_store

        prepare_audit_store(settings)  # tables created once, before the workers append to one chain


def build_services(settings: Settings, now: dt.datetime | None = None) -> Services:
    """Real services for ``serve``; in demo mode with a fresh TEST framework and simulator."""
    now = now or dt.datetime.now(dt.timezone.utc)
    regions, specs, catalogue = load_static(settings)
    verifier = Verifier(policy_from(settings), specs, type_names(catalogue))
    partners, gateway_key = load_auth(settings)
    if settings.demo:
        # The TEST framework's list goes through the same signed path as an operator's: signed
        # with the TEST operator key (certs/trust/), written, then loaded by FileTrustSource.
        demo_dir = Path(settings.var_dir) / "demo"
        doc, material = ensure_framework(demo_dir, specs, regions, now)
        signed_path = write_signed_demo_list(demo_dir, doc)
        simulator = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types})
        trust_source = FileTrustSource(signed_path, regions, settings.max_chain_depth,
                                       [load_operator_key(TEST_OPERATOR_PUBLIC)], skew=settings.clock_skew,
                                       state_path=trust_state_path(settings))
        # Status lists: the simulator's signed lists over loopback HTTP, fetched like any region's --
        # from the demo regions process when `serve --demo` started one (gateway/demo_regions.py),
        # else from an issuer server inside this process.
        if settings.status_url_template:
            status_source = http_status_source(
                settings, {code: settings.status_url_template.replace("{region}", code) for code in regions}, None)
        else:
            status_source = http_status_source(settings, {}, IssuerServer(simulator, ttl=settings.status_refresh_seconds))
        return Services(settings, regions, specs, verifier, trust_source, status_source,
                        simulator=simulator, catalogue=catalogue, partners=partners, gateway_key=gateway_key)
    # Operator mode: the signed trust list comes from a file, checked with the pinned operator
    # keys. Without status_url_template every region's status is unavailable, so
    # verifications answer "indeterminate" (fail closed) unless the region is exempt.
    trust_source = FileTrustSource(settings.trust_list, regions, settings.max_chain_depth,
                                   [load_operator_key(k) for k in settings.trust_operator_keys],
                                   skew=settings.clock_skew, state_path=trust_state_path(settings))
    status_source = MemoryStatusSource(StatusSnapshot())
    if settings.status_url_template:
        status_source = http_status_source(
            settings, {code: settings.status_url_template.replace("{region}", code) for code in regions}, None)
    return Services(settings, regions, specs, verifier, trust_source, status_source, catalogue=catalogue,
                    partners=partners, gateway_key=gateway_key)


def http_status_source(settings: Settings, endpoints: dict[str, str], local_issuer: IssuerServer | None):
    return HttpStatusSource(endpoints, settings.status_max_age, interval=settings.status_refresh_seconds,
                            jitter=settings.status_jitter_percent / 100, timeout=settings.status_fetch_timeout_seconds,
                            skew=settings.clock_skew, local_issuer=local_issuer)


def write_signed_demo_list(directory: Path, doc: dict) -> Path:
    """Sign the demo trust list with the TEST operator key; rewrite only when it changed."""
    path = Path(directory) / "trust-list.signed.json"
    signed = canonical_json(sign_trust_list(doc, load_operator_private_key(TEST_OPERATOR_PRIVATE)))
    try:
        current = orjson.loads(path.read_bytes())
        if current.get("trust_list") == doc:
            return path
    except (OSError, ValueError):
        pass
    # the workers of ``serve --workers N`` may write it at once (the same bytes): each through a
    # temporary file of its own (a shared name let the first rename take it from under the second)
    write_atomically(path, signed)
    return path
