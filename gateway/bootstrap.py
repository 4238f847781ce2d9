"""Assemble the gateway's services from settings (the only place that wires real edges)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from adapters import Limits

from .app import Services
from .catalogue import Catalogue, load_catalogue
from .config import Settings
from .core import Policy, Verifier
from .devtrust import ensure_framework
from .edges import FileTrustSource, MemoryStatusSource, MemoryTrustSource, SimulatorStatusSource
from .simulator import IssuerSimulator
from .specs import load_region_specs, load_regions
from .status import StatusSnapshot
from .trust import build_snapshot

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
    specs_dir = Path(settings.specs_dir)
    regions = load_regions(specs_dir / "regions.csv")
    specs = load_region_specs(specs_dir / "regions", regions)
    catalogue = load_catalogue(specs_dir / "licence_types.toml", specs_dir / "items.toml", set(regions))
    return regions, specs, catalogue


def type_names(catalogue: Catalogue) -> dict[str, str]:
    return {t.type_code: t.name_zh for t in catalogue.types}


def load_auth(settings: Settings):
    from .auth import load_partners, load_signing_key

    return load_partners(settings.partners_dir), load_signing_key(settings.gateway_key)


def prepare_shared(settings: Settings, now: dt.datetime | None = None) -> None:
    """Things several worker processes must share, made once by the parent before they start."""
    if settings.demo:
        regions, specs, _ = load_static(settings)
        ensure_framework(Path(settings.var_dir) / "demo", specs, regions, now or dt.datetime.now(dt.timezone.utc))


def build_services(settings: Settings, now: dt.datetime | None = None) -> Services:
    """Real services for ``serve``; in demo mode with a fresh TEST framework and simulator."""
    now = now or dt.datetime.now(dt.timezone.utc)
    regions, specs, catalogue = load_static(settings)
    verifier = Verifier(policy_from(settings), specs, type_names(catalogue))
    partners, gateway_key = load_auth(settings)
    if settings.demo:
        doc, material = ensure_framework(Path(settings.var_dir) / "demo", specs, regions, now)
        simulator = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types})
        snapshot = build_snapshot(doc, regions, max_chain_depth=settings.max_chain_depth)
        return Services(settings, regions, specs, verifier, MemoryTrustSource(snapshot),
                        SimulatorStatusSource(simulator, dt.timedelta(seconds=settings.status_max_age_seconds)),
                        simulator=simulator, catalogue=catalogue, partners=partners, gateway_key=gateway_key)
    # Operator mode: the trust list comes from a file. Until status sources are configured
    # every region's status is unavailable, so verifications answer "indeterminate"
    # (fail closed) unless a region is listed in status_exempt_regions.
    return Services(settings, regions, specs, verifier,
                    FileTrustSource(settings.trust_list, regions, settings.max_chain_depth),
                    MemoryStatusSource(StatusSnapshot()), catalogue=catalogue, partners=partners,
                    gateway_key=gateway_key)
