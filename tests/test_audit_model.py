"""Audit record model, holder HMAC, canonical hashing and checkpoint signatures (pure code)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditEvent, CheckpointSigner, check_checkpoint, extend_chain, holder_hmac, record_hash
from gateway.audit.model import GENESIS_HASH, format_time
from gateway.errors import INTERNAL, InfrastructureError

KEY = b"test-holder-hmac-key-0123456789"          # TEST key
CITIZEN = "330502199001010014"                     # synthetic, valid MOD 11-2
CITIZEN_X = "11010519491231002X"                   # synthetic, check character X
T = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
AUDIT_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # TEST key


def ev(**kw: object) -> AuditEvent:
    base: dict[str, object] = dict(kind="verify", time=T, request_id="req-1")
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def test_holder_hmac_is_keyed_typed_and_normalised() -> None:
    h = holder_hmac(KEY, "111", CITIZEN)
    assert len(h) == 64 and CITIZEN not in h
    assert holder_hmac(KEY, "111", f" {CITIZEN} ") == h
    assert holder_hmac(KEY, "111", CITIZEN_X.lower()) == holder_hmac(KEY, "111", CITIZEN_X)
    assert holder_hmac(KEY + b"!", "111", CITIZEN) != h          # another key, another value
    assert holder_hmac(KEY, "999", CITIZEN) != h                 # same digits, another code type


def test_holder_hmac_refuses_a_short_key() -> None:
    with pytest.raises(InfrastructureError) as exc:
        holder_hmac(b"short", "111", CITIZEN)
    assert exc.value.reason is INTERNAL


@pytest.mark.parametrize("field", ["operator", "partner", "item_code", "verdict", "request_id"])
def test_clear_citizen_id_smuggled_into_a_text_field_is_refused(field: str) -> None:
    with pytest.raises(InfrastructureError, match="holder code in clear"):
        ev(**{field: f"clerk note {CITIZEN}"})


def test_clear_citizen_id_smuggled_into_extra_is_refused() -> None:
    with pytest.raises(InfrastructureError, match="holder code in clear"):
        ev(extra={"note": CITIZEN_X})


def test_clear_holder_code_in_the_hmac_field_is_refused() -> None:
    with pytest.raises(InfrastructureError, match="lower-case hex"):
        ev(holder_hmac=CITIZEN)


def test_non_citizen_tokens_are_accepted() -> None:
    e = ev(licence_id="1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
           request_id="0f8fad5b-d9cb-469f-a165-70867728950e", extra={"n": 123456789012345678})
    assert e.body()["licence_id"].endswith(".0")


@pytest.mark.parametrize("bad", [
    {"kind": "delete_everything"},
    {"time": datetime(2025, 3, 1, 8, 0)},              # naive time
    {"request_id": ""},
    {"reasons": ["LICENCE_EXPIRED"]},                   # a list, not a tuple
    {"extra": {"nested": {"a": 1}}},
    {"extra": {"blob": "x" * 5000}},
    {"operator": "w" * 300},
])
def test_malformed_event_is_refused_as_internal_error(bad: dict[str, object]) -> None:
    with pytest.raises(InfrastructureError) as exc:
        ev(**bad)
    assert exc.value.reason is INTERNAL


def test_time_is_canonical_utc_whatever_the_offset() -> None:
    shanghai = timezone(timedelta(hours=8))
    a = ev(time=T).body()
    b = ev(time=T.astimezone(shanghai)).body()
    assert a == b and a["time"] == "2025-03-01T08:00:00.000000Z"


def test_hash_covers_seq_prev_and_every_field_and_ignores_key_order() -> None:
    body = ev(reasons=("LICENCE_EXPIRED",), extra={"b": 1, "a": 2}).body()
    h = record_hash(1, GENESIS_HASH, body)
    assert record_hash(1, GENESIS_HASH, dict(reversed(list(body.items())))) == h
    assert record_hash(2, GENESIS_HASH, body) != h
    assert record_hash(1, "1" * 64, body) != h
    for k in body:
        changed = {**body, k: "x" if body[k] != "x" else "y"}
        assert record_hash(1, GENESIS_HASH, changed) != h, k


def test_extend_chain_links_each_record_to_the_previous_hash() -> None:
    recs = extend_chain(0, GENESIS_HASH, [ev(request_id=f"r{i}").body() for i in range(3)])
    assert [r.seq for r in recs] == [1, 2, 3]
    assert [r.prev_hash for r in recs] == [GENESIS_HASH, recs[0].hash, recs[1].hash]


def test_checkpoint_verifies_with_the_public_key_and_names_forgeries() -> None:
    signer = CheckpointSigner(AUDIT_KEY, "test-audit-1")
    cp = signer.sign(40, "a" * 64, T)
    keys = {"test-audit-1": AUDIT_KEY.public_key()}
    assert check_checkpoint(cp, keys) is None
    assert "unknown kid" in (check_checkpoint(cp, {"other": AUDIT_KEY.public_key()}) or "")
    moved = type(cp)(cp.seq + 1, cp.hash, cp.time, cp.kid, cp.jws)
    assert "differ from the signed statement" in (check_checkpoint(moved, keys) or "")
    h, p, s = cp.jws.split(".")
    flipped = f"{h}.{p}.{s[:-2]}{'A' if s[-2] != 'A' else 'B'}{s[-1]}"
    assert "signature does not verify" in (check_checkpoint(type(cp)(40, cp.hash, cp.time, cp.kid, flipped), keys) or "")


def test_checkpoint_time_is_canonical() -> None:
    cp = CheckpointSigner(AUDIT_KEY, "k").sign(1, "a" * 64, T)
    assert cp.time == format_time(T)


# --- the hot path's constructor ---------------------------------------------------------------
def _fields() -> dict[str, object]:
    return dict(kind="verify", time=T, request_id="req-7", partner="demo-partner", operator=None, item_code=None,
                region="330500", licence_id="1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
                verdict="invalid", reasons=("LICENCE_EXPIRED",), holder_hmac=holder_hmac(KEY, "111", CITIZEN),
                extra={"receipt": "ab" * 16, "entry": 2, "entries": 3})


def test_of_verification_builds_the_same_event_and_record_hash_as_the_checked_constructor() -> None:
    fast = AuditEvent.of_verification(**_fields())  # type: ignore[arg-type]
    slow = AuditEvent(**_fields())  # type: ignore[arg-type]
    assert fast == slow and fast.body() == slow.body()
    assert record_hash(1, GENESIS_HASH, fast.body()) == record_hash(1, GENESIS_HASH, slow.body())


@pytest.mark.parametrize("bad", [dict(kind="delete"), dict(time=T.replace(tzinfo=None)), dict(request_id=""),
                                 dict(partner="p" * 257), dict(licence_id="L" * 257)])
def test_of_verification_keeps_the_structural_checks(bad: dict[str, object]) -> None:
    with pytest.raises(InfrastructureError) as exc:
        AuditEvent.of_verification(**{**_fields(), **bad})  # type: ignore[arg-type]
    assert exc.value.reason is INTERNAL


def test_holder_hmac_is_plain_hmac_sha256_of_type_and_code() -> None:
    import hashlib
    import hmac as std_hmac

    expected = std_hmac.new(KEY, f"111\x1f{CITIZEN}".encode(), hashlib.sha256).hexdigest()
    assert holder_hmac(KEY, "111", CITIZEN) == expected


def test_format_time_across_seconds_minutes_days_and_years_in_any_order() -> None:
    """The text of every instant is strftime's, however instants of different seconds alternate
    (format_time keeps the last second's prefix): the same second's prefix must never leak into
    another second, minute, day or year."""
    import random

    base = [datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc),
            datetime(2027, 1, 1, 0, 0, 0, 0, tzinfo=timezone.utc),
            datetime(2026, 2, 28, 23, 59, 59, 500_000, tzinfo=timezone.utc),
            datetime(1000, 1, 1, tzinfo=timezone.utc)]
    rng = random.Random(7)
    instants = base + [base[0] + timedelta(microseconds=rng.randrange(-3_000_000, 3_000_000)) for _ in range(300)]
    instants += [datetime(2026, 12, 3, 14, m, s, us, tzinfo=timezone.utc)
                 for m in (0, 1) for s in (0, 59) for us in (0, 1, 999_999)]
    rng.shuffle(instants)
    for t in instants + instants[::-1]:
        assert format_time(t) == t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), t
    # one after the other, instants equal in every field but one (second, minute, hour, day, month, year)
    t0 = datetime(2026, 11, 27, 4, 30, 15, 250_000, tzinfo=timezone.utc)
    for field, value in (("second", 16), ("minute", 31), ("hour", 5), ("day", 28), ("month", 10), ("year", 2025)):
        other = t0.replace(**{field: value})
        for t in (t0, other, t0, other):
            assert format_time(t) == t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), (field, t)
    # the same instant twice (the cached text), then its neighbours a microsecond apart
    t = datetime(2026, 12, 3, 14, 0, 0, 999_999, tzinfo=timezone.utc)
    assert format_time(t) == format_time(t) == "2026-12-03T14:00:00.999999Z"
    assert format_time(t + timedelta(microseconds=1)) == "2026-12-03T14:00:01.000000Z"
    assert format_time(t) == "2026-12-03T14:00:00.999999Z"


def test_the_keyed_hasher_equals_the_one_shot_hmac_and_keeps_its_checks() -> None:
    import hashlib
    import hmac as std_hmac

    from gateway.audit.model import HolderHasher

    hasher = HolderHasher(KEY)
    for code_type, code in (("111", CITIZEN), ("111", CITIZEN_X.lower()), ("001", "91330500MA2B00000R")):
        want = std_hmac.new(KEY, f"{code_type}\x1f{code.strip().upper()}".encode(), hashlib.sha256).hexdigest()
        assert hasher(code_type, code) == want == holder_hmac(KEY, code_type, code)
    assert hasher("111", CITIZEN) == hasher("111", CITIZEN)      # the keyed state is copied, never consumed
    with pytest.raises(InfrastructureError):
        HolderHasher(b"short")
    with pytest.raises(InfrastructureError):
        hasher("111", "")
