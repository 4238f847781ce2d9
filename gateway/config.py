"""Settings: parsed once at start-up into a frozen object.

Sources, later wins: embedded defaults -> a TOML file (``--config`` or ``GATEWAY_CONFIG``)
-> environment variables ``GATEWAY_<NAME>`` (upper case) -> command-line flags. Every
limit is a named, documented setting; an unknown or mistyped setting refuses start-up.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    pass



#: most serving processes ``serve --workers`` starts
MAX_WORKERS = 256

@dataclass(frozen=True, slots=True)
class Settings:
    #: interface and port to listen on
    host: str = "127.0.0.1"
    port: int = 8080
    #: demo mode: a TEST trust framework and simulated issuers for all 45 regions
    demo: bool = False
    #: serving processes on the port (``serve --workers N`` sets it; audit_writer = "auto" reads it)
    workers: int = 1
    #: largest accepted request body, bytes (an OFD licence in base64 fits comfortably)
    max_body_bytes: int = 4 * 1024 * 1024
    #: a request body (JSON, a form) must arrive within this many seconds of being started; past it 408
    #: REQUEST_TIMEOUT (a client sending a few bytes and then nothing held its connection for good)
    body_read_timeout_seconds: float = 10.0
    #: largest accepted text licence (JWS, JSON, XML), bytes
    max_licence_bytes: int = 256 * 1024
    #: OFD (zip) limits: entries, total uncompressed bytes, compression ratio
    max_zip_entries: int = 64
    max_zip_uncompressed_bytes: int = 8 * 1024 * 1024
    max_zip_ratio: int = 100
    #: most licences in one verify-batch request
    max_batch: int = 100
    #: tolerated clock difference with issuers, seconds
    clock_skew_seconds: int = 300
    #: "signing-time" (default) or "now": when the issuer certificate must have been valid
    issuer_time_policy: str = "signing-time"
    #: most certificates above the issuer certificate in a chain
    max_chain_depth: int = 3
    #: default staleness limit of a region's status list, seconds (fail closed beyond it)
    status_max_age_seconds: int = 3600
    #: per-region staleness limits overriding the default, {"330500": 600}
    status_max_age_by_region: Mapping[str, int] = field(default_factory=dict)
    #: regions whose licence status is explicitly not checked (reported on every answer)
    status_exempt_regions: tuple[str, ...] = ()
    #: the SIGNED trust list an operator provides (gateway/trustlist.py); ignored in demo mode
    trust_list: str = ""
    #: pinned trust-framework operator PUBLIC keys (PEM files) allowed to sign the trust list;
    #: required outside demo mode (demo mode pins the TEST key in certs/trust/)
    trust_operator_keys: tuple[str, ...] = ()
    #: poll the trust list file for changes every N seconds and hot-reload it (0: only on
    #: POST /v1/admin/trust/reload)
    trust_reload_seconds: int = 10
    #: where the highest trust list version accepted is recorded, so an older list is refused after a
    #: restart too (default <var_dir>/trust-held.json; demo mode keeps it in <var_dir>/demo/)
    trust_state: str = ""
    #: warn this many days ahead of the trust list's expiry and each region's anchor, intermediate and issuer
    #: certificate's notAfter: GET /v1/admin/trust lists them ("expiring"), a WARNING log line per item when
    #: the list is loaded or reloaded and once a day, an amber note on the console's status page, and
    #: `python -m gateway trust check` exits 3 (0: no warning)
    trust_expiry_warn_days: int = 30
    #: where each region's signed status list is fetched, "{region}" replaced by the region
    #: code (operator mode; empty: no fetching, every status answers indeterminate unless exempt)
    status_url_template: str = ""
    #: longest time between two fetches of one region's status list, seconds (the list's own
    #: ttl shortens it; jitter spreads the regions)
    status_refresh_seconds: int = 60
    #: random jitter on the status schedule, percent of the interval
    status_jitter_percent: int = 10
    #: timeout of one status list fetch, seconds
    status_fetch_timeout_seconds: int = 5
    #: directory of region specs and catalogues
    specs_dir: str = str(ROOT / "specs")
    #: demo mode: loopback port of the simulated issuing regions process (0 = the gateway port + 1)
    demo_regions_port: int = 0
    #: where demo mode keeps its generated TEST material
    var_dir: str = str(ROOT / "var")
    #: partner registry (one TOML per partner, see certs/partners/README.md)
    partners_dir: str = str(ROOT / "certs" / "partners")
    #: the gateway's own signing key (access tokens); demo default is the committed TEST key
    gateway_key: str = str(ROOT / "certs" / "partners" / "gateway.test-signing-key.pem")
    #: the token endpoint URL partners put in their assertion's "aud" (default: this gateway)
    token_endpoint: str = ""
    #: lifetime of issued access tokens, seconds
    access_token_ttl_seconds: int = 600
    #: verification result cache per worker (gateway/result_cache.py): most entries (0: off) and
    #: the longest an entry is reused, seconds (each entry lives between half and all of it, spread by
    #: its key; it is dropped sooner on any trust change or change of its region's status list bits,
    #: at a validity-date boundary, or when its status list turns stale)
    verify_cache_entries: int = 10_000
    verify_cache_ttl_seconds: int = 60
    #: serving workers: net new container objects that start a young-generation garbage collection
    #: (Python's default 700 made the collector run ~80x a second under load, walking the requests in
    #: flight and the answers waiting for their audit commit; 0 keeps Python's default)
    gc_gen0_threshold: int = 50_000
    #: serving workers: log a WARNING "event loop stalled" when the loop could not run for at least
    #: N ms, with the garbage collector's share and the CPU used meanwhile (gateway/watchdog.py; 0: off)
    loop_stall_warn_ms: int = 200
    #: log level
    log_level: str = "INFO"
    #: Prometheus metrics (gateway/metrics.py): GET /metrics on a listener of its own, unauthenticated, at
    #: metrics_host:metrics_port (0: off, nothing listens). Loopback by default: it shows counts and times only,
    #: but nothing outside the machine needs to read it unless the operator says so
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # --- service-window console (/console/, gateway/console/) ------------------------------
    #: idle time after which a staff session ends, seconds
    console_idle_timeout_seconds: int = 900
    #: staff account store written by `python -m gateway staff add` (default: <var_dir>/console/staff.json)
    console_staff_file: str = ""
    # --- federated query (POST /v1/licences/query, gateway/upstream/) ---------------------
    #: URL template of each region's sharing service ("{region}" -> region code); empty = none
    #: configured (every region then answers "error"). Demo: the loopback region simulator.
    upstream_base_url: str = ""
    #: default and largest overall deadline of one query, ms (a caller may only lower it)
    query_deadline_ms: int = 3000
    #: time kept back from the deadline for verifying and rendering the answer, ms
    query_reserve_ms: int = 100
    #: most regions one query may fan out to (an item may name 41 regions)
    query_max_regions: int = 45
    #: per-attempt timeout of one upstream request, ms (always capped by the remaining deadline)
    upstream_timeout_ms: int = 2500
    #: per-region attempt timeouts overriding the default, {"340100": 1500}
    upstream_timeout_ms_by_region: Mapping[str, int] = field(default_factory=dict)
    #: most concurrent requests to one region (one slow region cannot take every connection)
    upstream_concurrency: int = 8
    #: most open connections of the shared upstream client session (all regions)
    upstream_max_connections: int = 256
    #: retries of safe failures (connection refused, 503) and the first backoff, ms (jittered)
    upstream_retries: int = 2
    upstream_backoff_ms: int = 50
    #: largest accepted upstream answer, bytes
    upstream_max_body_bytes: int = 2 * 1024 * 1024
    #: circuit breaker per region: window, fewest requests, failure percentage, cool-down
    breaker_window_seconds: int = 30
    breaker_min_requests: int = 5
    breaker_error_percent: int = 50
    breaker_cool_down_seconds: int = 15
    #: key of the keyed hash (HMAC-SHA256, as gateway.audit) of holder codes in query audit records. The default
    #: is a TEST key, committed on purpose and not secret: set a real one in production.
    query_holder_hash_key: str = "TEST-ONLY query holder hash key (not secret)"
    # --- audit trail and receipts (gateway/audit/, gateway/audit_wiring.py) --------------------
    #: where audit records go: "sqlite" (embedded, default; several workers of one machine may share
    #: the file), "postgres" (several processes or machines writing one chain), "memory" (tests;
    #: demo mode only) or "off" (demo mode only: the baseline of load/bench_audit_overhead.py)
    audit_backend: str = "sqlite"
    #: SQLite audit database (default <var_dir>/audit.sqlite3)
    audit_path: str = ""
    #: PostgreSQL DSN and schema of the audit tables (audit_backend = "postgres")
    audit_dsn: str = ""
    audit_pg_schema: str = "gateway_audit"
    #: HMAC-SHA256 key (hex, >= 16 bytes) of holder codes in audit records; required outside demo
    #: mode (demo: a committed TEST key)
    audit_hmac_key: str = ""
    #: Ed25519 private key (PEM) signing audit checkpoints; required outside demo mode
    audit_checkpoint_key: str = ""
    #: P-256 (ES256) or Ed25519 private key (PEM) signing verification receipts; required outside demo mode
    receipt_key: str = ""
    #: sign a checkpoint of the chain head every N records, and every N seconds when records were added
    audit_checkpoint_every: int = 1000
    audit_checkpoint_seconds: int = 60
    #: SQLite: who commits the appends -- "inline" (the statements on the worker's event loop, the
    #: COMMIT and its fsync on a commit thread; no hop to another process; gateway/audit/sqlite_inline.py),
    #: "process" (a writer process of each worker: chaining, inserts, fsync and receipt sealing in its own
    #: interpreter, two pipe hops per batch), "thread" (a writer thread doing all of it) or "auto" (default:
    #: "process" while the workers leave a CPU free for the writers, else "inline"; see resolved_audit_writer)
    audit_writer: str = "auto"
    #: SQLite: bring the deferred holder search index (<audit_path>-holders) up to the chain head every
    #: N seconds, off the request path (searches stay complete: they scan the records not yet indexed)
    audit_index_seconds: float = 60.0
    #: prune audit records older than N days, keeping the chain verifiable from a signed checkpoint
    #: (0: keep forever); checked at start-up and hourly, or run `python -m gateway audit prune`
    audit_retention_days: int = 0
    #: group commit: most records in one transaction, and microseconds: the least time between the starts
    #: of two commits of the process writer (a lone answer after a quiet spell commits at once), the
    #: gathering pause of the thread writer (the inline writer spaces its commits by audit_commit_interval_us)
    audit_batch_max: int = 256
    audit_batch_window_us: int = 1000
    #: inline writer: the least time between the starts of two commits, microseconds (a commit's fixed
    #: cost -- fsync, receipt signature -- is ~10x a record's; an append after a quiet spell commits at once).
    #: 2000 since session 13 (4000 before): with the commit thread's one-pass hand-over and batches of up to
    #: audit_inline_commit_max made durable on the loop, 2 workers at 3,000/s (two runs of five interleaved
    #: 6-s pairs) waited p50 2.2 vs 3.7 ms, p99 8.1-8.3 vs 11.1-12.5 ms for their audit commit, at 424-428 vs
    #: 417-418 us of server CPU a request; the closed-loop max did not move (six pairs: 5,150 vs 5,022/s);
    #: 1000 cost more CPU (452 us) for no better tail. 1000 since session 14, with the WAL synced through
    #: Linux AIO (audit_async_fsync), when a commit no longer stops the loop for its fsync: 2 workers at
    #: 4,000/s, two runs of interleaved 6-s pairs (5 and 4), client p99 11.5 vs 19.4 and 7.2 vs 11.3 ms
    #: (8 of 9 pairs better), audit wait p50 1.6 vs 2.3 and 1.4 vs 2.3 ms, at +19-30 us of server CPU a
    #: request (+7-10 %); the closed-loop max was not lower (four pairs: 10,146 vs 9,658/s)
    audit_commit_interval_us: int = 1000
    #: inline writer: the spacing of commits while the worker's event loop is busy, microseconds. The
    #: spacing rises from audit_commit_interval_us (loop thread at <= 30 % of a CPU over the last 20 ms)
    #: to this (>= 70 %), so an idle worker commits at once and a busy one shares each commit's fixed cost
    #: among more answers (gateway/audit/sqlite_inline.py, commit_spacing). 0, or a value not above
    #: audit_commit_interval_us: the spacing stays fixed
    audit_commit_interval_busy_us: int = 4000
    #: how long an answer may wait for its audit record to be durable, milliseconds; past it the answer is
    #: 503 AUDIT_UNAVAILABLE (the record is still committed when the store catches up), so a stalled disk
    #: or a hung writer does not hold every caller until its own timeout (gateway/audit/deadline.py)
    audit_commit_timeout_ms: int = 10_000
    #: inline writer without Linux AIO (audit_async_fsync false, or refused by the kernel): a batch of at
    #: most N records commits on the event loop itself, larger ones on the commit thread (0: always the thread). 16 since session 13: at half max (2 workers, 3,000/s, batches
    #: of ~6-8) the thread's hand-over cost the batch's answers more than the fsync blocks the loop
    #: (six interleaved pairs, 16 vs 4: audit wait p50 3.6 vs 4.5 ms, p99 11.6 vs 15.1 ms, server CPU
    #: per request 410 vs 428 us); every batch on the loop (no thread) was no better than 16
    audit_inline_commit_max: int = 16
    #: inline writer: COMMIT only writes the WAL and releases the write lock; the WAL is fsynced
    #: just after, before the answers (false: the fsync inside COMMIT, holding the lock -- with several
    #: workers on one file the others wait for it)
    audit_fsync_after_commit: bool = True
    #: inline writer, with audit_fsync_after_commit: start the WAL's fdatasync with Linux native AIO and
    #: learn its end from an eventfd on the event loop, so the loop neither blocks for the sync nor waits
    #: for a thread to hand the batch back (gateway/audit/aio_sync.py; where the kernel refuses AIO the
    #: writer syncs as with false: small batches on the loop, larger ones on the commit thread). Session 14,
    #: 2 workers, five interleaved 6-s open-loop pairs at 3,600/s (that hour's half max): client p99 16.2 vs
    #: 37.8 ms (5 of 5 pairs better), the loop's lag p99 5.2 vs 7.6 ms, machine CPU per request 465 vs 461 us
    audit_async_fsync: bool = True

    def resolved_audit_writer(self, cpus: int | None = None) -> str:
        """The SQLite writer ``audit_writer = "auto"`` stands for: ``process`` when fewer workers than
        CPUs serve (the writer processes then have a CPU to run on, and take the chaining, inserts,
        fsync and sealing off the workers' interpreters: 1 worker on 2 CPUs, closed loop at 128 in
        flight, 4,599-5,219 vs 3,382-3,731 answers/s inline), else ``inline`` (every CPU already runs
        a worker, and a hop to another process costs more than the commit: 2 workers on 2 CPUs,
        5,505-6,517 inline vs 4,528-4,547/s). ``cpus``: the CPUs this process may run on."""
        if self.audit_writer != "auto":
            return self.audit_writer
        if cpus is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return "process" if self.workers < cpus else "inline"

    @property
    def token_endpoint_url(self) -> str:
        return self.token_endpoint or f"http://{self.host}:{self.port}/v1/oauth/token"

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)

    def status_max_age(self, region: str) -> timedelta:
        return timedelta(seconds=self.status_max_age_by_region.get(region, self.status_max_age_seconds))

    def validate(self) -> "Settings":
        if self.issuer_time_policy not in ("signing-time", "now"):
            raise ConfigError("issuer_time_policy must be 'signing-time' or 'now'")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be 1..65535, not {self.port}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be 0 (off) or 1..65535, not {self.metrics_port}")
        if self.metrics_port and not self.metrics_host:
            raise ConfigError("metrics_host must name an interface (127.0.0.1 by default) when metrics_port is set")
        if self.metrics_port and self.metrics_port in (self.port, self.demo_regions_port or
                                                       (self.port + 1 if self.demo else 0)):
            raise ConfigError(f"metrics_port {self.metrics_port} is the gateway's own port or its demo regions' port: "
                              "the metrics listen on a port of their own")
        if not 0 <= self.demo_regions_port <= 65535:
            raise ConfigError(f"demo_regions_port must be 0..65535, not {self.demo_regions_port}")
        if not isinstance(logging.getLevelName(self.log_level), int):
            raise ConfigError(f"log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not {self.log_level!r}")
        if self.max_body_bytes < self.max_licence_bytes:
            raise ConfigError(f"max_body_bytes ({self.max_body_bytes}) must be at least max_licence_bytes "
                              f"({self.max_licence_bytes}): a licence of the allowed size must fit in a request")
        if not 0 < self.body_read_timeout_seconds <= 600:
            raise ConfigError(f"body_read_timeout_seconds must be in (0, 600], not {self.body_read_timeout_seconds}")
        for name in ("access_token_ttl_seconds", "console_idle_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        # the federated query's limits (also checked by gateway/query_routes.py; here so that start-up
        # refuses them before any worker starts, not inside one)
        for name in ("query_deadline_ms", "query_max_regions", "upstream_timeout_ms", "upstream_concurrency",
                     "upstream_max_connections", "upstream_max_body_bytes", "breaker_window_seconds",
                     "breaker_min_requests", "breaker_cool_down_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.upstream_retries < 0 or self.upstream_backoff_ms < 0 or self.query_reserve_ms < 0:
            raise ConfigError("upstream_retries, upstream_backoff_ms and query_reserve_ms must not be negative")
        if not 0 < self.breaker_error_percent <= 100:
            raise ConfigError("breaker_error_percent must be 1..100")
        if self.upstream_base_url and "{region}" not in self.upstream_base_url:
            raise ConfigError("upstream_base_url must contain {region}")
        for name in ("status_max_age_by_region", "upstream_timeout_ms_by_region"):
            for region, value in getattr(self, name).items():
                if not (isinstance(region, str) and len(region) == 6 and region.isdigit()):
                    raise ConfigError(f"{name}: {region!r} is not a 6-digit region code")
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ConfigError(f"{name}: the value for {region} must be a positive integer, not {value!r}")
        for region in self.status_exempt_regions:
            if not (isinstance(region, str) and len(region) == 6 and region.isdigit()):
                raise ConfigError(f"status_exempt_regions: {region!r} is not a 6-digit region code")
        for name in ("max_body_bytes", "max_licence_bytes", "max_batch", "max_chain_depth", "status_max_age_seconds",
                     "max_zip_entries", "max_zip_uncompressed_bytes", "max_zip_ratio"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.clock_skew_seconds < 0 or self.clock_skew_seconds > 3600:
            raise ConfigError("clock_skew_seconds must be between 0 and 3600")
        if not self.demo and not self.trust_list:
            raise ConfigError("trust_list is required outside demo mode (set GATEWAY_TRUST_LIST or use --demo)")
        if not self.demo and not self.trust_operator_keys:
            raise ConfigError("trust_operator_keys is required outside demo mode: pin the operator's public key "
                              "(set GATEWAY_TRUST_OPERATOR_KEYS)")
        if self.trust_reload_seconds < 0 or self.status_refresh_seconds <= 0 or self.status_fetch_timeout_seconds <= 0:
            raise ConfigError("trust_reload_seconds must be >= 0; status_refresh_seconds and "
                              "status_fetch_timeout_seconds must be positive")
        if not 0 <= self.trust_expiry_warn_days <= 3650:
            raise ConfigError(f"trust_expiry_warn_days must be 0..3650 (0: no warning), not {self.trust_expiry_warn_days}")
        if self.gc_gen0_threshold < 0 or self.loop_stall_warn_ms < 0:
            raise ConfigError("gc_gen0_threshold and loop_stall_warn_ms must not be negative")
        if self.verify_cache_entries < 0 or self.verify_cache_ttl_seconds <= 0:
            raise ConfigError("verify_cache_entries must be >= 0 and verify_cache_ttl_seconds positive")
        if self.audit_backend not in ("sqlite", "postgres", "memory", "off"):
            raise ConfigError("audit_backend must be sqlite, postgres, memory or off")
        if self.audit_backend in ("memory", "off") and not self.demo:
            raise ConfigError(f"audit_backend = {self.audit_backend!r} keeps no durable audit trail: demo mode only")
        if self.audit_writer not in ("auto", "process", "thread", "inline"):
            raise ConfigError("audit_writer must be auto, inline, process or thread")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be 1..{MAX_WORKERS}, not {self.workers} (one process per CPU is the "
                              "useful most; each holds its own caches and audit connection)")
        if self.workers > 1 and self.trust_reload_seconds == 0:
            # POST /v1/admin/trust/reload is answered by one worker: without polling, the others kept
            # the previous list (an issuer revoked since still trusted) until they were restarted
            raise ConfigError(f"trust_reload_seconds = 0 (reload only on POST /v1/admin/trust/reload) needs "
                              f"workers = 1, not {self.workers}: the POST reaches one worker and the others would "
                              "keep the previous trust list; set trust_reload_seconds > 0 (default 10)")
        if self.audit_backend == "postgres" and not self.audit_dsn:
            raise ConfigError("audit_backend = 'postgres' needs audit_dsn")
        if (self.audit_checkpoint_every <= 0 or self.audit_checkpoint_seconds <= 0 or self.audit_batch_max <= 0
                or self.audit_batch_window_us < 0 or self.audit_commit_interval_us < 0
                or self.audit_commit_interval_busy_us < 0
                or self.audit_inline_commit_max < 0 or self.audit_retention_days < 0 or self.audit_index_seconds <= 0
                or self.audit_commit_timeout_ms <= 0):
            raise ConfigError("audit_checkpoint_every, audit_checkpoint_seconds, audit_index_seconds, audit_batch_max "
                              "and audit_commit_timeout_ms must be positive; audit_batch_window_us, audit_commit_interval_us, "
                              "audit_commit_interval_busy_us, audit_inline_commit_max and audit_retention_days not negative")
        if not 0 <= self.status_jitter_percent < 100:
            raise ConfigError("status_jitter_percent must be between 0 and 99")
        if self.status_url_template and "{region}" not in self.status_url_template:
            raise ConfigError("status_url_template must contain {region}")
        return self


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce(name: str, raw: Any, default: Any, source: str = "") -> Any:
    """``raw`` (text from the environment or a flag, or a TOML value) as the type of ``default``;
    a ConfigError names the setting and ``source`` (where the value came from)."""
    where = f"setting {name}" + (f" ({source})" if source else "")
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: {_shown(raw)} is not a boolean (true/false, yes/no, on/off, 1/0)")
    if isinstance(default, int):
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, (bool, float)):  # TOML true or 2.5 for a whole number: not silently 1 or 2
            raise ConfigError(f"{where}: {_shown(raw)} is not an integer")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {_shown(raw)} is not an integer") from None
    if isinstance(default, float):
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {_shown(raw)} is not a number")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {_shown(raw)} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {_shown(raw)} is not a finite number")
        return value
    if isinstance(default, tuple):
        if isinstance(raw, str):
            return tuple(x.strip() for x in raw.split(",") if x.strip())
        if not isinstance(raw, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in raw):
            raise ConfigError(f"{where}: {_shown(raw)} is not a list of text values")
        return tuple(x.strip() for x in raw)
    if isinstance(default, Mapping) or name.endswith("_by_region"):
        if isinstance(raw, str):
            pairs = []
            for part in filter(None, (p.strip() for p in raw.split(","))):
                k, eq, v = part.partition("=")
                if not eq:
                    raise ConfigError(f"{where}: {_shown(part)} is not REGION=VALUE (e.g. 330500=600)")
                pairs.append((k.strip(), v.strip()))
        elif isinstance(raw, Mapping):
            pairs = list(raw.items())
        else:
            raise ConfigError(f"{where}: {_shown(raw)} is not a table of REGION = VALUE")
        out = {}
        for k, v in pairs:
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise ConfigError(f"{where}: the value for {k} ({_shown(v)}) is not an integer")
            try:
                out[k] = int(v)
            except ValueError:
                raise ConfigError(f"{where}: the value for {k} ({_shown(v)}) is not an integer") from None
        return out
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: {_shown(raw)} is not text")
    return raw


#: GATEWAY_* environment variables that are not settings but are read by the project's own tools
_OTHER_ENV = frozenset({"GATEWAY_CONFIG"})


def load_settings(config_file: str | None = None, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    env = os.environ if env is None else env
    base = Settings()
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # setting -> where its value came from (for the error messages)
    known = {f.name for f in fields(Settings)}
    path = config_file or env.get("GATEWAY_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for k, v in data.items():
            if k not in known:
                raise ConfigError(f"config file {path}: unknown setting {k!r}")
            origin[k] = f"config file {path}"
            values[k] = _coerce(k, v, getattr(base, k), origin[k])
    env_names = {f"GATEWAY_{k.upper()}": k for k in known}
    for name in env:
        if name.startswith("GATEWAY_") and name not in env_names and name not in _OTHER_ENV:
            near = difflib.get_close_matches(name, env_names, 1, 0.85)
            if near:  # a misspelt setting must not be silently ignored (other GATEWAY_* names are left alone)
                raise ConfigError(f"environment variable {name} is not a setting: did you mean {near[0]}?")
    for ev_name, k in env_names.items():
        ev = env.get(ev_name)
        if ev is not None:
            origin[k] = f"environment variable {ev_name}"
            values[k] = _coerce(k, ev, getattr(base, k), origin[k])
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in known:
            raise ConfigError(f"unknown setting {k!r}")
        origin[k] = "command line"
        values[k] = _coerce(k, v, getattr(base, k), origin[k])
    try:
        return replace(base, **values).validate()
    except ConfigError as exc:
        named = [origin[k] for k in sorted(origin, key=str(exc).find) if re.search(rf"\b{k}\b", str(exc))]
        if named:
            raise ConfigError(f"{exc} (set by {', '.join(dict.fromkeys(named))})") from None
        raise
