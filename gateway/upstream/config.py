"""Per-region upstream configuration: flavour, base URL, credentials, timeout, concurrency.

Where it comes from (later wins):

1. :func:`default_flavour` -- the project's model of which sharing-service flavour each
   region runs (MODELLED: the regions' real interface documents are not available);
2. the region spec's ``options.upstream_flavour`` (``specs/regions/<code>.toml``), if set;
3. settings: ``upstream_base_url`` (a template; ``{region}`` becomes the region code),
   ``upstream_timeout_ms`` / ``upstream_timeout_ms_by_region``, ``upstream_concurrency``.

Credentials: outside the TEST simulator an operator supplies them; in this project every
region uses the TEST credentials of :mod:`gateway.upstream.signing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .signing import HMAC_SM3, SM2_SM3, Credentials, app_key_for_test_region, app_secret_for_test_region, client_sm2_key_for_tests

#: the four modelled sharing-service flavours
HMAC_JSON = "hmac-json"      # REST/JSON, HMAC-SM3 request signature
SM2_JSON = "sm2-json"        # REST/JSON, SM2 request signature
XML = "xml"                  # XML over HTTP, HMAC-SM3 request signature
TWO_STEP = "two-step"        # list identifiers, then fetch each licence (HMAC-SM3)
FLAVOURS = (HMAC_JSON, SM2_JSON, XML, TWO_STEP)


def default_flavour(region: str) -> str:
    """MODELLED: Zhejiang REST/JSON + HMAC-SM3, Jiangsu REST/JSON + SM2, Shanghai XML,
    Anhui list-then-fetch; the partner regions REST/JSON + HMAC-SM3."""
    return {"33": HMAC_JSON, "32": SM2_JSON, "31": XML, "34": TWO_STEP}.get(region[:2], HMAC_JSON)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    region: str
    flavour: str
    base_url: str
    credentials: Credentials
    timeout_s: float
    concurrency: int

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"region {self.region}: unknown upstream flavour {self.flavour!r}; one of {FLAVOURS}")
        if self.timeout_s <= 0 or self.concurrency < 1:
            raise ValueError(f"region {self.region}: timeout and concurrency must be positive")


def region_flavour(region: str, spec_options: Mapping[str, Any] | None) -> str:
    flavour = (spec_options or {}).get("upstream_flavour")
    return flavour if isinstance(flavour, str) else default_flavour(region)


def credentials_for_test_region(region: str, flavour: str) -> Credentials:
    if flavour == SM2_JSON:
        return Credentials(app_key_for_test_region(region), SM2_SM3, sm2_key=client_sm2_key_for_tests())
    return Credentials(app_key_for_test_region(region), HMAC_SM3, secret=app_secret_for_test_region(region))


def build_configs(settings: Any, specs: Mapping[str, Any]) -> dict[str, UpstreamConfig]:
    """One config per region when ``settings.upstream_base_url`` is set; none otherwise."""
    template: str = settings.upstream_base_url
    if not template:
        return {}
    by_region: Mapping[str, int] = settings.upstream_timeout_ms_by_region
    out: dict[str, UpstreamConfig] = {}
    for code, spec in specs.items():
        flavour = region_flavour(code, getattr(spec, "options", None))
        out[code] = UpstreamConfig(
            region=code, flavour=flavour, base_url=template.replace("{region}", code).rstrip("/"),
            credentials=credentials_for_test_region(code, flavour),
            timeout_s=by_region.get(code, settings.upstream_timeout_ms) / 1000.0,
            concurrency=settings.upstream_concurrency)
    return out
