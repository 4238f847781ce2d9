"""Shared fixtures: one TEST trust framework and issuer simulator per test session.

``world`` is built once (key generation for 45 regions); tests that change simulator
state (revocations) use fresh licences, so they do not disturb each other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.app import Services, create_app
from gateway.auth import demo_token
from gateway.bootstrap import load_auth, load_static, policy_from, type_names
from gateway.config import Settings
from gateway.core import Verifier
from gateway.devtrust import RegionMaterial, make_dev_framework
from gateway.edges import MemoryTrustSource, SimulatorStatusSource
from gateway.simulator import IssuerSimulator
from gateway.specs import RegionInfo, RegionSpec
from gateway.trust import TrustSnapshot, build_snapshot

#: the fixed reference time of the test suite (tests never read the clock)
NOW = dt.datetime(2026, 11, 27, 4, 0, 0, tzinfo=dt.timezone.utc)


@dataclass
class World:
    settings: Settings
    regions: dict[str, RegionInfo]
    specs: dict[str, RegionSpec]
    catalogue: Any
    doc: dict[str, Any]
    material: dict[str, RegionMaterial]
    snapshot: TrustSnapshot
    simulator: IssuerSimulator
    verifier: Verifier
    partners: Any
    gateway_key: Any

    def token(self, client_id: str = "demo-partner", scope: str | None = None) -> str:
        """A real bearer token, issued through the token service at the suite's NOW."""
        return demo_token(self.settings.partners_dir, client_id=client_id, scope=scope, gateway_key=self.gateway_key,
                          token_endpoint=self.settings.token_endpoint_url, now=NOW.timestamp())["access_token"]

    def auth(self, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kw)}"}

    def services(self, **overrides: Any) -> Services:
        kw = dict(
            settings=self.settings, regions=self.regions, specs=self.specs, verifier=self.verifier,
            trust_source=MemoryTrustSource(self.snapshot),
            status_source=SimulatorStatusSource(self.simulator, dt.timedelta(hours=1)),
            simulator=self.simulator, catalogue=self.catalogue, clock=lambda: NOW, status_refresh_seconds=3600,
            partners=self.partners, gateway_key=self.gateway_key,
        )
        kw.update(overrides)
        return Services(**kw)


def make_world(settings: Settings | None = None) -> World:
    settings = settings or Settings(demo=True, audit_backend="memory")  # audit records in memory
    regions, specs, catalogue = load_static(settings)
    doc, material = make_dev_framework(specs, regions, NOW - dt.timedelta(days=30), valid_days=365)
    snapshot = build_snapshot(doc, regions)
    simulator = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types})
    verifier = Verifier(policy_from(settings), specs, type_names(catalogue))
    partners, gateway_key = load_auth(settings)
    return World(settings, regions, specs, catalogue, doc, material, snapshot, simulator, verifier, partners,
                 gateway_key)


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture
async def api(world, aiohttp_client):
    """An HTTP client (demo partner's bearer token) on a gateway app wired to the session world."""
    return await aiohttp_client(create_app(world.services()), headers=world.auth())


@pytest.fixture
def client_for(world, aiohttp_client):
    """Build an authenticated client on an app with some services replaced."""

    async def make(**overrides: Any):
        return await aiohttp_client(create_app(world.services(**overrides)), headers=world.auth())

    return make
