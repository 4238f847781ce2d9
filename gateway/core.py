"""The pure verification core.

``Verifier(policy, specs).verify(data, trust, status, now)`` takes the presented bytes, an
immutable trust snapshot, an immutable status snapshot and an explicit ``now``; it returns a
:class:`VerificationResult`. No I/O, no clock reads, no asyncio.

Verification is a fixed sequence of small policy objects (:class:`Check`). Each records
``pass`` / ``fail`` / ``skip``. Until the signature has passed, the first failure stops the
run (nothing in an unverified licence may be believed); after it, every remaining check
runs so the clerk sees every problem at once.

Verdict: any licence rejection -> ``invalid``; otherwise any infrastructure failure ->
``indeterminate``; otherwise ``valid``. Nothing that was not verified is ever ``valid``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from functools import lru_cache
from typing import Any, Mapping

from adapters import FAMILIES, Envelope, Family, Limits, detect

from . import errors
from .errors import GatewayError, InfrastructureError, LicenceRejected
from .identifiers import (
    holder_code_valid,
    licence_identifier_matches,
    parse_licence_identifier,
    uscc_division,
    uscc_valid,
)
from .model import Licence, make_licence, positional_builder
from .specs import RegionInfo, RegionSpec, _format_date, _parse_date, covers
from .status import REVOKED, SUSPENDED, StatusSnapshot
from .trust import (
    IssuerEntry,
    TrustSnapshot,
    build_chain,
    key_id_of,
    load_certificate,
    revocation_of,
    unprocessed_critical_problem,
)

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_CHINA_OFFSET_S = 8 * 3600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class Verdict(str, Enum):
    VALID = "valid"
    INVALID = "invalid"
    INDETERMINATE = "indeterminate"


PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True, slots=True)
class Policy:
    """Every limit is a named setting (see gateway.config for their documentation)."""

    clock_skew: timedelta = timedelta(minutes=5)
    #: "signing-time": the issuer certificate must have been valid when the licence was signed
    #: (a key's later expiry does not invalidate what it signed while valid);
    #: "now": it must be valid now as well.
    issuer_time_policy: str = "signing-time"
    max_chain_depth: int = 3
    limits: Limits = Limits()
    #: regions whose licence status is not checked (explicit, reported as a note)
    status_exempt_regions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Note:
    """Something the caller should know that does not change the verdict."""

    code: str
    message: str
    message_zh: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "message_zh": self.message_zh}


@dataclass(frozen=True, slots=True)
class VerificationResult:
    verdict: Verdict
    reasons: tuple[GatewayError, ...]
    checks: Mapping[str, str]
    region: RegionInfo | None
    format: str | None
    licence: Licence | None
    verified_at: datetime
    signer_key_id: str | None = None
    signing_time: datetime | None = None
    status_age: timedelta | None = None
    notes: tuple[Note, ...] = ()

    @property
    def reason_codes(self) -> tuple[str, ...]:
        reasons = self.reasons
        if not reasons:   # the common case (valid): no generator for an empty tuple
            return ()
        return tuple([r.code for r in reasons])


@dataclass(slots=True)
class Context:
    """Mutable scratch state of one verification (never escapes the core)."""

    data: bytes
    trust: TrustSnapshot
    status: StatusSnapshot
    now: datetime
    policy: Policy
    specs: Mapping[str, RegionSpec]
    type_names: Mapping[str, str]
    now_ts: float = 0.0  # ``now`` as epoch seconds, computed once per verification
    family: Family | None = None
    envelope: Envelope | None = None
    issuer: IssuerEntry | None = None
    spec: RegionSpec | None = None
    licence: Licence | None = None
    status_age: timedelta | None = None
    notes: list[Note] = field(default_factory=list)


class Check(ABC):
    """A policy object: one named check. ``run`` returns PASS or SKIP, or raises."""

    name: str = ""
    #: gate checks stop the run on failure (before the signature is trusted)
    gate: bool = False

    @abstractmethod
    def run(self, ctx: Context) -> str:
        """Return PASS or SKIP, or raise a LicenceRejected / InfrastructureError."""


class TrustCurrent(Check):
    name, gate = "trust", True

    def run(self, ctx: Context) -> str:
        if ctx.trust.expired(ctx.now):
            raise InfrastructureError(errors.TRUST_UNAVAILABLE, f"trust list v{ctx.trust.version} expired "
                                      f"{ctx.trust.expires_at.isoformat()}")
        return PASS


class Format(Check):
    name, gate = "format", True

    def run(self, ctx: Context) -> str:
        data, limits = ctx.data, ctx.policy.limits
        if not data:
            raise LicenceRejected(errors.MALFORMED, "empty licence")
        if len(data) > limits.max_licence_bytes and not data.startswith(b"PK"):
            raise LicenceRejected(errors.MALFORMED, f"licence larger than {limits.max_licence_bytes} bytes")
        family = detect(data)
        if family is None:
            data = text_without_lead(data)  # a pasted token's newline, a file's UTF-8 BOM (not signed bytes)
            family = detect(data)
            if family is None:
                raise LicenceRejected(errors.UNSUPPORTED_FORMAT, "not JWS, SM2-JSON, SM2-XML or OFD")
        ctx.family = family
        ctx.envelope = family.open(data, limits)
        return PASS


_UTF8_BOM = b"\xef\xbb\xbf"


def text_without_lead(data: bytes) -> bytes:
    """A text licence without the UTF-8 byte order mark and whitespace before it: what a text editor or
    a paste adds to a JWS or SM2-JSON licence. Neither is signed (JWS signs its parts, SM2-JSON the data
    it re-serialises), so dropping them changes no verdict; the XML family reads its own declaration
    and BOM, and a zip starts with ``PK``: both are detected before this is tried."""
    if data.startswith(_UTF8_BOM):
        data = data[3:]
    return data.lstrip(b" \t\r\n")


class Issuer(Check):
    """Find the signer certificate; it must chain to a region anchor (pre-validated at load)."""

    name, gate = "issuer", True

    def run(self, ctx: Context) -> str:
        ref = ctx.envelope.key_ref
        if ref.region_hint is not None and ref.region_hint not in ctx.specs:
            raise LicenceRejected(errors.UNKNOWN_REGION, f"region {ref.region_hint!r} is not one the gateway recognises")
        entry = None
        if ref.kid is not None:
            entry = ctx.trust.by_key_id.get(ref.kid)
        elif ref.serial_hex is not None and ref.region_hint is not None:
            rt = ctx.trust.regions.get(ref.region_hint)
            if rt is None:
                raise LicenceRejected(errors.UNKNOWN_REGION, f"region {ref.region_hint} is not recognised")
            entry = next((i for i in rt.issuers if i.cert.serial_hex == ref.serial_hex.lower()), None)
        elif ref.chain:
            entry = ctx.trust.by_key_id.get(_leaf_key_id(ref.chain[0])) or self._from_chain(ctx, ref.chain)
        if entry is None:
            if ref.chain:
                raise LicenceRejected(errors.UNTRUSTED_CHAIN, "embedded certificate chain reaches no region anchor")
            raise LicenceRejected(errors.UNKNOWN_ISSUER, "signing key is not in the trust list")
        if ref.region_hint is not None and ref.region_hint != entry.region:
            raise LicenceRejected(errors.ISSUER_REGION_MISMATCH,
                                  f"licence names region {ref.region_hint}, signer belongs to {entry.region}")
        ctx.issuer = entry
        ctx.spec = ctx.specs.get(entry.region)
        if ctx.spec is None:
            raise LicenceRejected(errors.UNKNOWN_REGION, f"no spec for region {entry.region}")
        return PASS

    @staticmethod
    def _from_chain(ctx: Context, chain: tuple[bytes, ...]) -> IssuerEntry | None:
        try:
            certs = [load_certificate(der) for der in chain]
        except ValueError as exc:
            raise LicenceRejected(errors.MALFORMED, f"embedded certificate unreadable: {exc}") from None
        for cert in certs:
            critical = unprocessed_critical_problem(cert)
            if critical:
                raise LicenceRejected(errors.UNTRUSTED_CHAIN, critical)
        leaf = certs[0]
        if leaf.is_ca or not leaf.digital_signature:
            raise LicenceRejected(errors.UNTRUSTED_CHAIN, "embedded signer certificate is not an end-entity signing certificate")
        # one anchor may serve several regions (a provincial CA for its cities): the region the licence names
        # is tried first, then the regions issuing this format, so a shared anchor does not hand a genuine
        # licence to the first region holding it (ISSUER_REGION_MISMATCH) -- the order only breaks ties
        env, specs = ctx.envelope, ctx.specs
        hint = env.key_ref.region_hint
        regions = sorted(ctx.trust.regions.items(), key=lambda item: (
            item[0] != hint, (spec := specs.get(item[0])) is None or spec.family != env.family))
        for code, rt in regions:
            path = build_chain(leaf, certs[1:], list(rt.anchors), ctx.policy.max_chain_depth)
            if path is not None:
                # the region's revoked serials, whether or not the certificate is (still) listed as an issuer
                return IssuerEntry(leaf.key_id, code, leaf, path, revocation_of(leaf, path, rt.revoked))
        return None


#: key id (SHA-256 thumbprint) of an embedded signer certificate, by its DER bytes: issuers are
#: few and sign many licences (OFD carries the certificate in every licence). Bounded (cleared
#: when full) in entries and in bytes: only "certificates" up to :data:`_LEAF_KEY_IDS_MAX_DER` bytes
#: are kept (an issuer certificate is 0.5-2 KB; the bytes are the presenter's, not yet read as a
#: certificate, and 1,024 kept 190-KB blobs held ~200 MB per worker). A hit is one dict read (atomic
#: under the GIL). Keyed by the certificate, never by a licence's own bytes.
_LEAF_KEY_IDS_SIZE = 1024
_LEAF_KEY_IDS_MAX_DER = 16 * 1024
_LEAF_KEY_IDS: dict[bytes, str] = {}


def _leaf_key_id(der: bytes) -> str:
    hit = _LEAF_KEY_IDS.get(der)
    if hit is None:
        hit = key_id_of(der)
        if len(der) <= _LEAF_KEY_IDS_MAX_DER:
            if len(_LEAF_KEY_IDS) >= _LEAF_KEY_IDS_SIZE:
                _LEAF_KEY_IDS.clear()
            _LEAF_KEY_IDS[bytes(der)] = hit
    return hit


class Algorithm(Check):
    """The region's spec fixes its family and algorithms; a licence may not pick others."""

    name, gate = "algorithm", True

    def run(self, ctx: Context) -> str:
        env, spec = ctx.envelope, ctx.spec
        if env.family != spec.family:
            raise LicenceRejected(errors.UNSUPPORTED_FORMAT,
                                  f"region {spec.code} issues {spec.family}, not {env.family}")
        if env.algorithm not in spec.algorithms or env.algorithm != ctx.issuer.cert.algorithm:
            raise LicenceRejected(errors.ALGORITHM_NOT_ALLOWED,
                                  f"{env.algorithm} with a {ctx.issuer.cert.algorithm} key; region allows {list(spec.algorithms)}")
        return PASS


class Signature(Check):
    name, gate = "signature", True

    def run(self, ctx: Context) -> str:
        if not ctx.family.verify(ctx.envelope, ctx.issuer.cert):
            raise LicenceRejected(errors.SIGNATURE_INVALID)
        return PASS


class Normalise(Check):
    """Map the region's fields onto the canonical model, through the region spec."""

    name, gate = "normalise", True

    def run(self, ctx: Context) -> str:
        no_data = ctx.envelope.extra.get("no_licence_data")  # e.g. a signed OFD that is not a licence
        if no_data:
            raise LicenceRejected(errors.FIELD_INVALID, no_data)
        ctx.licence = normalise(ctx.envelope.raw, ctx.spec, ctx.type_names)
        return PASS


#: covers(region, code) by pair: pure, immutable string inputs, bounded (cleared when full)
_COVERS_CACHE_SIZE = 4096
_COVERS: dict[tuple[str, str], bool] = {}


def _covers(region: str, code: str) -> bool:
    key = (region, code)
    hit = _COVERS.get(key)
    if hit is None:
        if len(_COVERS) >= _COVERS_CACHE_SIZE:
            _COVERS.clear()
        hit = _COVERS[key] = covers(region, code)
    return hit


class RegionBinding(Check):
    """A region's issuer may only sign for its own jurisdiction (anti-spoofing)."""

    name = "region_binding"

    def run(self, ctx: Context) -> str:
        lic, region = ctx.licence, ctx.issuer.region
        if not _covers(region, lic.area_code):
            raise LicenceRejected(errors.ISSUER_REGION_MISMATCH,
                                  f"area code {lic.area_code} is outside signer region {region}")
        if not uscc_valid(lic.issuer_code):
            raise LicenceRejected(errors.FIELD_INVALID, "issuer code is not a valid USCC")
        if not _covers(region, uscc_division(lic.issuer_code)):
            raise LicenceRejected(errors.ISSUER_REGION_MISMATCH,
                                  f"issuing authority {lic.issuer_code} is registered outside signer region {region}")
        return PASS


class IdentifierCheck(Check):
    name = "identifier"

    def run(self, ctx: Context) -> str:
        lic = ctx.licence
        if licence_identifier_matches(lic.identifier, lic.type_code, lic.issuer_code):
            return PASS
        try:  # not valid: find and name the problem
            ident = parse_licence_identifier(lic.identifier)
        except ValueError as exc:
            raise LicenceRejected(errors.IDENTIFIER_INVALID, str(exc)) from None
        if ident.type_code != lic.type_code or ident.issuer_code != lic.issuer_code:
            raise LicenceRejected(errors.IDENTIFIER_INVALID,
                                  "identifier's type or issuer code differs from the licence fields")
        return PASS


class HolderCode(Check):
    name = "holder_code"

    def run(self, ctx: Context) -> str:
        lic = ctx.licence
        if not holder_code_valid(lic.holder_code_type, lic.holder_code):
            raise LicenceRejected(errors.HOLDER_CODE_INVALID, f"code type {lic.holder_code_type}")
        return PASS


class IssuerCertificate(Check):
    """Validity and revocation of the signer certificate and its chain."""

    name = "issuer_certificate"

    def run(self, ctx: Context) -> str:
        entry, pol, now, now_ts = ctx.issuer, ctx.policy, ctx.now, ctx.now_ts
        skew = pol.clock_skew.total_seconds()
        signed = ctx.envelope.signing_time
        signed_ts = signed.timestamp() if signed is not None else None
        if signed_ts is not None and signed_ts > now_ts + skew:
            raise LicenceRejected(errors.LICENCE_NOT_YET_VALID, f"signed in the future ({signed.isoformat()})")
        if signed is not None and pol.issuer_time_policy == "signing-time":
            when, when_ts = signed, signed_ts
        else:
            when, when_ts = now, now_ts
        # Clock skew covers the difference between OUR clock and the issuer's; a signing time and
        # a certificate's validity are both the issuer side's, so that boundary is exact.
        tolerance = 0.0 if when is signed else skew
        # the whole chain's common window first (precomputed per entry); outside it, the loop
        # finds and names the first certificate that is out of its validity
        if not entry.valid_nb_ts - tolerance <= when_ts <= entry.valid_na_ts + tolerance:
            for cert in (entry.cert, *entry.chain):
                if not cert.nb_ts - tolerance <= when_ts <= cert.na_ts + tolerance:
                    raise LicenceRejected(errors.ISSUER_CERT_EXPIRED,
                                          f"{cert.subject} valid {cert.not_before:%Y-%m-%d}..{cert.not_after:%Y-%m-%d}, "
                                          f"judged at {when:%Y-%m-%dT%H:%M:%SZ} ({pol.issuer_time_policy})")
        rev = entry.revocation
        if rev is not None:
            # a compromise (keyCompromise, cACompromise for a CA above it; or an unrecognised reason, failing
            # closed): nothing the key ever signed is trusted; otherwise only what it signed after the revocation time.
            if rev.compromise or signed is None or signed >= rev.revoked_at:
                raise LicenceRejected(errors.ISSUER_CERT_REVOKED,
                                      f"serial {rev.serial_hex} revoked {rev.revoked_at.isoformat()} ({rev.reason})")
        if when is not now and not entry.cert.nb_ts - skew <= now_ts <= entry.cert.na_ts + skew:
            ctx.notes.append(Note("ISSUER_CERT_EXPIRED_SINCE_SIGNING",
                                  f"The issuer certificate expired on {entry.cert.not_after:%Y-%m-%d}; the licence was "
                                  f"signed on {signed:%Y-%m-%d}, while it was valid.",
                                  f"签发机构证书已于 {entry.cert.not_after:%Y-%m-%d} 过期；证照签发于 "
                                  f"{signed:%Y-%m-%d}，签发时证书有效。"))
        return PASS


class ValidityPeriod(Check):
    name = "validity_period"

    def run(self, ctx: Context) -> str:
        lic, skew = ctx.licence, ctx.policy.clock_skew.total_seconds()
        # Beijing calendar day (as a proleptic ordinal) of now +/- skew, by integer arithmetic on
        # epoch seconds (UTC+8 has no DST): the same days as (now +/- skew).astimezone(CHINA_TZ).date()
        local = ctx.now_ts + _CHINA_OFFSET_S
        latest_today = int((local + skew) // 86400) + _EPOCH_ORDINAL
        earliest_today = int((local - skew) // 86400) + _EPOCH_ORDINAL
        start = lic.valid_from.toordinal()
        if lic.valid_until is not None and lic.valid_until.toordinal() < start:  # never valid on any day
            raise LicenceRejected(errors.FIELD_INVALID, f"valid until {lic.valid_until.isoformat()}, before it is valid "
                                                        f"from {lic.valid_from.isoformat()}")
        if start > latest_today:
            raise LicenceRejected(errors.LICENCE_NOT_YET_VALID, f"valid from {lic.valid_from.isoformat()}")
        if lic.valid_until is not None and lic.valid_until.toordinal() < earliest_today:
            raise LicenceRejected(errors.LICENCE_EXPIRED, f"valid until {lic.valid_until.isoformat()}")
        # the issue date (a Beijing calendar day) is neither still to come nor after the licence was signed
        # (the issuer's two clocks may differ by the skew)
        issued = lic.issue_date.toordinal()
        if issued > latest_today:
            raise LicenceRejected(errors.LICENCE_NOT_YET_VALID,
                                  f"issued on {lic.issue_date.isoformat()}, a day still to come")
        signed = ctx.envelope.signing_time
        if signed is not None and issued > int((signed.timestamp() + _CHINA_OFFSET_S + skew) // 86400) + _EPOCH_ORDINAL:
            raise LicenceRejected(errors.FIELD_INVALID, f"issued on {lic.issue_date.isoformat()}, after it was signed "
                                                        f"({signed.isoformat()})")
        return PASS


class Status(Check):
    """Per-licence status from the region's status list; fails closed when stale."""

    name = "status"

    def run(self, ctx: Context) -> str:
        region = ctx.issuer.region
        if region in ctx.policy.status_exempt_regions:
            ctx.notes.append(Note("STATUS_NOT_CHECKED", f"Status checking is switched off for region {region}.",
                                  f"地区 {region} 的证照状态核验已按配置关闭。"))
            return SKIP
        rs = ctx.status.get(region)
        if rs is None:
            raise InfrastructureError(errors.STATUS_UNAVAILABLE, f"no status list for region {region}")
        ctx.status_age = rs.age(ctx.now)
        if not rs.fresh(ctx.now):
            raise InfrastructureError(errors.STATUS_UNAVAILABLE,
                                      f"status list of region {region} is {int(ctx.status_age.total_seconds())} s old "
                                      f"(limit {int(rs.max_age.total_seconds())} s; signed "
                                      f"{rs.issued_at.isoformat()}, usable until its signing time plus the limit)")
        index = ctx.licence.status_index
        if index is None:
            raise LicenceRejected(errors.FIELD_INVALID, "licence carries no status index")
        try:
            value = rs.status_list.get(index)
        except IndexError:
            raise LicenceRejected(errors.FIELD_INVALID, f"status index {index} outside the region's list") from None
        if value == REVOKED:
            raise LicenceRejected(errors.LICENCE_REVOKED)
        if value == SUSPENDED:
            raise LicenceRejected(errors.LICENCE_SUSPENDED)
        if value != 0:
            raise LicenceRejected(errors.LICENCE_REVOKED, f"status value {value} is not 'valid'")
        return PASS


DEFAULT_CHECKS: tuple[Check, ...] = (
    TrustCurrent(), Format(), Issuer(), Algorithm(), Signature(), Normalise(),
    RegionBinding(), IdentifierCheck(), HolderCode(), IssuerCertificate(), ValidityPeriod(), Status(),
)
#: judge a signed document as signed (no licence fields): for signed files that are not
#: e-licences, e.g. the OFD vectors (see adapters/ofd_seal.py)
SIGNATURE_ONLY_CHECKS: tuple[Check, ...] = (
    TrustCurrent(), Format(), Issuer(), Algorithm(), Signature(), IssuerCertificate(),
)


def normalise(raw: Mapping[str, Any], spec: RegionSpec, type_names: Mapping[str, str]) -> Licence:
    """Region field dictionary -> canonical :class:`Licence` (raises LicenceRejected).

    The common case -- every field present as short text, known vocabulary, well-formed
    dates -- is handled straight from the spec's precomputed :class:`~gateway.specs.NormalisePlan`;
    anything else goes through :func:`_normalise_checked`, which finds and names the problem.
    """
    p = spec.plan
    get = raw.get
    try:
        required = p.required(raw)
    except LookupError:  # a required field is missing
        return _normalise_checked(raw, spec, type_names)
    for v in required:
        if type(v) is not str or not 0 < len(v) <= 512:
            return _normalise_checked(raw, spec, type_names)
    (identifier, name, type_code, number, issuer_name, issuer_code, issue_date, holder_name, holder_code, local_type,
     valid_from, area_code) = required
    valid_until = get(p.valid_until)
    type_name = get(p.type_name) if p.type_name is not None else None
    index = get(p.status_index)
    surface_raw = get(p.surface_container, _NO_SURFACE)
    code_type = spec.holder_code_types.get(local_type)
    if (code_type is None or (valid_until is not None and (type(valid_until) is not str or not 0 < len(valid_until) <= 512))
            or (type_name is not None and (type(type_name) is not str or not 0 < len(type_name) <= 512))
            or type(surface_raw) is not dict):
        return _normalise_checked(raw, spec, type_names)
    if index is not None and (type(index) is not int or index < 0):
        if type(index) is str and index.isascii() and index.isdigit() and len(index) < 12:  # XML carries text
            index = int(index)
        else:
            return _normalise_checked(raw, spec, type_names)
    fmt = p.date_format
    try:
        issued, start = _read_date(issue_date, fmt), _read_date(valid_from, fmt)
        until = _read_date(valid_until, fmt) if valid_until is not None else None
    except ValueError:
        return _normalise_checked(raw, spec, type_names)
    rev = p.surface_reverse
    if surface_raw is _NO_SURFACE:
        surface: dict[str, Any] = {}
    else:
        surface = {rev.get(k, k): v for k, v in surface_raw.items()} if rev is not None else dict(surface_raw)
    return make_licence(identifier, name, type_code, type_name or type_names.get(type_code, ""), number, issuer_name,
                        _ascii_upper(issuer_code), issued, holder_name, _ascii_upper(holder_code), code_type, start, until,
                        area_code, surface, index)


@lru_cache(maxsize=8192)
def _read_date(text: str, fmt: str) -> date:
    """A licence date in its region's format, written as the region writes it (4-digit year, 2-digit month
    and day): strptime also reads "2026121" for %Y%m%d -- 1 December, or 21 January? -- and "2026-12-1",
    "202612 1". Anything but the region's own writing of the day is a ValueError. Pure; cached by
    (text, format) as ``_parse_date`` is, so a hit costs what one did."""
    day = _parse_date(text, fmt)
    if _format_date(day, fmt) != text:
        raise ValueError(f"{text!r} is not written as {fmt} writes {day.isoformat()}")
    return day


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _ascii_upper(code: str) -> str:
    """An issuer or holder code with its ASCII letters in upper case (a lower-case USCC letter or ID check
    "x"). Only ASCII: str.upper() turns "ﬀ" into "FF" and "ı" into "I", which made a valid USCC of a code
    the issuer did not write."""
    return code.upper() if code.isascii() else code.translate(_ASCII_UPPER)


#: marks an absent surface container (never handed out, never mutated)
_NO_SURFACE: dict[str, Any] = {}


def _normalise_checked(raw: Mapping[str, Any], spec: RegionSpec, type_names: Mapping[str, str]) -> Licence:
    """:func:`normalise` for input off the common path: every field checked, the problem named."""
    f = spec.fields
    get = raw.get

    def text(canon: str, required: bool = True) -> str | None:
        v = get(f[canon])
        if type(v) is str and 0 < len(v) <= 512:  # the common case, first
            return v
        if v is None or v == "":
            if required:
                raise LicenceRejected(errors.FIELD_INVALID, f"missing field {f[canon]} ({canon})")
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or len(v) > 512:
            raise LicenceRejected(errors.FIELD_INVALID, f"field {f[canon]} ({canon}) must be text")
        return v

    def day(canon: str, required: bool = True) -> date | None:
        v = text(canon, required)
        if v is None:
            return None
        try:
            return _read_date(v, spec.date_format)
        except ValueError:
            raise LicenceRejected(errors.FIELD_INVALID,
                                  f"field {f[canon]} ({canon}) = {v!r} is not a date in {spec.date_format}") from None

    local_type = text("holder_code_type")
    code_type = spec.holder_code_types.get(local_type)
    if code_type is None:
        raise LicenceRejected(errors.FIELD_INVALID, f"holder code type {local_type!r} is not in region {spec.code}'s vocabulary")
    index_raw = raw.get(f["status_index"])
    if index_raw is None:
        status_index = None
    elif isinstance(index_raw, int) and not isinstance(index_raw, bool) and index_raw >= 0:
        status_index = index_raw
    elif isinstance(index_raw, str) and index_raw.isascii() and index_raw.isdigit() and len(index_raw) < 12:
        # ASCII digits only, as on the fast path: str.isdigit() is also true of "²" or "①", which int() refuses
        status_index = int(index_raw)
    else:
        raise LicenceRejected(errors.FIELD_INVALID, "status index must be a non-negative integer")
    surface_raw = raw.get(spec.surface_container, {})
    if not isinstance(surface_raw, dict):
        raise LicenceRejected(errors.FIELD_INVALID, f"{spec.surface_container} must be an object")
    rev = {v: k for k, v in spec.surface_names.items()} if spec.surface_names else None
    surface = {(rev.get(k, k) if rev else k): v for k, v in surface_raw.items()}
    type_code = text("type_code")
    return Licence(
        identifier=text("identifier"), name=text("name"), type_code=type_code,
        type_name=(text("type_name", False) if "type_name" in f else None) or type_names.get(type_code, ""), number=text("number"),
        issuer_name=text("issuer_name"), issuer_code=_ascii_upper(text("issuer_code")), issue_date=day("issue_date"),
        holder_name=text("holder_name"), holder_code=_ascii_upper(text("holder_code")), holder_code_type=code_type,
        valid_from=day("valid_from"), valid_until=day("valid_until", False), area_code=text("area_code"),
        surface=surface, status_index=status_index,
    )


def denormalise(lic: Licence, spec: RegionSpec) -> dict[str, Any]:
    """Canonical licence -> the region's own field dictionary (issuer simulator)."""
    f = spec.fields
    out: dict[str, Any] = {
        f["identifier"]: lic.identifier, f["name"]: lic.name, f["type_code"]: lic.type_code,
        f["number"]: lic.number, f["issuer_name"]: lic.issuer_name, f["issuer_code"]: lic.issuer_code,
        f["issue_date"]: spec.format_date(lic.issue_date), f["holder_name"]: lic.holder_name,
        f["holder_code"]: lic.holder_code, f["holder_code_type"]: spec.holder_code_type_names[lic.holder_code_type],
        f["valid_from"]: spec.format_date(lic.valid_from),
        f["area_code"]: lic.area_code,
    }
    if "type_name" in f and lic.type_name:
        out[f["type_name"]] = lic.type_name
    if lic.valid_until is not None:
        out[f["valid_until"]] = spec.format_date(lic.valid_until)
    if lic.status_index is not None:
        out[f["status_index"]] = lic.status_index
    if lic.surface:
        names = spec.surface_names
        out[spec.surface_container] = {names.get(k, k): v for k, v in lic.surface.items()}
    return out


class Verifier:
    """Set once at start-up (policy, specs, type names); then ``verify`` many times."""

    def __init__(self, policy: Policy, specs: Mapping[str, RegionSpec], type_names: Mapping[str, str] | None = None,
                 checks: tuple[Check, ...] = DEFAULT_CHECKS) -> None:
        self.policy = policy
        self.specs = specs
        self.type_names = type_names or {}
        self.checks = checks
        self._steps: tuple[tuple[str, Any, bool], ...] = ()
        self._runs: tuple[Any, ...] = ()
        self._names: tuple[str, ...] = ()
        self._skipped: dict[str, str] = {}
        self._steps_of: tuple[Check, ...] | None = None

    def _plan(self) -> tuple[tuple[str, Any, bool], ...]:
        """(name, bound run, gate) per check, the bound runs and names alone, and the results
        template (every check SKIP, in order), rebuilt only if ``checks`` is replaced."""
        if self._steps_of is not self.checks:
            self._steps = tuple((c.name, c.run, c.gate) for c in self.checks)
            self._runs = tuple(c.run for c in self.checks)
            self._names = tuple(c.name for c in self.checks)
            self._skipped = {c.name: SKIP for c in self.checks}
            self._steps_of = self.checks
        return self._steps

    def _after_failure(self, ctx: Context, steps: tuple[tuple[str, Any, bool], ...], done: list[str],
                       exc: Exception | None) -> tuple[dict[str, str], list[GatewayError]]:
        """The run from the first check that raised (``exc``; the checks before it returned
        ``done``), one check at a time: the same results and reasons as that loop from the start."""
        # every check starts as SKIP, in order: a failed gate leaves the rest so (nothing after
        # it may be believed)
        results: dict[str, str] = self._skipped.copy()
        for (name, _, _), value in zip(steps, done):
            results[name] = value
        reasons: list[GatewayError] = []
        for name, run, gate in steps[len(done):]:
            if exc is None:
                try:
                    results[name] = run(ctx)
                    continue
                except Exception as raised:
                    exc = raised
            results[name] = FAIL
            if isinstance(exc, GatewayError):
                reasons.append(_as_reason(exc))
                exc = None
                if not gate:
                    continue
            else:  # a bug must never turn into "valid"
                reasons.append(InfrastructureError(errors.INTERNAL, f"{name}: {type(exc).__name__}"))
            break
        return results, reasons

    def verify(self, data: bytes, trust: TrustSnapshot, status: StatusSnapshot, now: datetime) -> VerificationResult:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        ctx = _make_context(data, trust, status, now, self.policy, self.specs, self.type_names, now.timestamp(),
                            None, None, None, None, None, None, [])
        steps = self._plan()
        # the common case first: every check returns (pass or skip); the first one that raises hands
        # over to _after_failure, which records it and goes on as the rules say
        done: list[str] = []
        append = done.append
        try:
            for run in self._runs:
                append(run(ctx))
        except Exception as exc:
            results, reasons = self._after_failure(ctx, steps, done, exc)
        else:
            results, reasons = dict(zip(self._names, done)), _NO_REASONS
        if not reasons:  # every check passed or was skipped; never valid without a verified signature
            verdict = Verdict.VALID if results.get("signature") == PASS else Verdict.INDETERMINATE
        elif any(isinstance(r, LicenceRejected) for r in reasons):
            verdict = Verdict.INVALID
        else:
            verdict = Verdict.INDETERMINATE
        issuer, env = ctx.issuer, ctx.envelope
        region = None
        if issuer is not None:
            rt = trust.regions.get(issuer.region)
            region = rt.info if rt else None
        notes = ctx.notes
        return _make_result(
            verdict, tuple(reasons) if reasons else (), results, region,
            env.family if env is not None else (ctx.family.name if ctx.family else None),
            ctx.licence, now, issuer.key_id if issuer is not None else None,
            env.signing_time if env is not None else None, ctx.status_age, tuple(notes) if notes else (),
        )


def _as_reason(exc: GatewayError) -> GatewayError:
    """A raised check failure kept as a result's reason: its code and message, without the
    traceback and the exceptions it was raised from. A kept traceback keeps its frames alive, and
    since Python 3.11 a frame that outlives its call keeps its caller's too, up to the request
    handler's (the request, its body, its transport): one reference cycle per rejected licence,
    which outlived the young collections while the answer waited for its audit commit and was then
    left to the rare full collection (a 600-s soak at 2,151/s grew the workers' RSS 12 %;
    tests/test_core_reasons_hold_no_frames.py)."""
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc


#: the reasons of a run where no check raised (never mutated)
_NO_REASONS: list[GatewayError] = []
#: ``VerificationResult(...)`` / ``Context(...)`` with every field given (the verify hot path)
_make_result = positional_builder(VerificationResult)
_make_context = positional_builder(Context)


def known_families() -> list[str]:
    return sorted(FAMILIES)


__all__ = ["SIGNATURE_ONLY_CHECKS", "Check", "Policy", "Verdict", "VerificationResult", "Verifier", "denormalise", "normalise",
           "known_families", "text_without_lead", "PASS", "FAIL", "SKIP", "CHINA_TZ"]
