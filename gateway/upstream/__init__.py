"""Upstream access to the issuing regions' e-licence sharing services (GB/T 36906 style).

* :mod:`.clients` -- :class:`RegionClient` Protocol and one client per flavour
* :mod:`.pool` -- :class:`Upstreams`: deadlines, retries, breakers, concurrency limits, counters
* :mod:`.breaker`, :mod:`.retry`, :mod:`.metrics` -- the pure pieces
* :mod:`.config`, :mod:`.signing` -- per-region configuration and request signatures (TEST credentials)
"""

from .breaker import BreakerPolicy, BreakerState, CircuitBreaker
from .clients import HolderQuery, RegionClient, make_client
from .config import FLAVOURS, UpstreamConfig, build_configs, default_flavour
from .pool import CIRCUIT_OPEN, ERROR, NOT_FOUND, OK, TIMEOUT, RegionFetch, ResiliencePolicy, Upstreams
from .retry import RetryPolicy, UpstreamFailure, backoff

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "HolderQuery", "RegionClient", "make_client",
           "FLAVOURS", "UpstreamConfig", "build_configs", "default_flavour", "CIRCUIT_OPEN", "ERROR", "NOT_FOUND",
           "OK", "TIMEOUT", "RegionFetch", "ResiliencePolicy", "Upstreams", "RetryPolicy", "UpstreamFailure",
           "backoff"]
