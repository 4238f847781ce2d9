"""The hash chain and its signed checkpoints. Pure functions, no I/O, no clock.

Record hash::

    hash = SHA-256( orjson.dumps({"seq": seq, "prev_hash": prev_hash, **body}, OPT_SORT_KEYS) )

hex encoded, where ``body`` is :meth:`AuditEvent.body` (time as canonical UTC text,
reasons as a list, extra as an object). Record 1 has ``prev_hash`` = 64 zeros.

Checkpoint: a compact JWS, ``alg`` EdDSA (Ed25519 gateway audit key), header
``{"alg":"EdDSA","kid":...,"typ":"audit-checkpoint+jws"}``, payload
``{"seq": n, "hash": <hash of record n>, "time": <canonical UTC text>}``. A JWS rather than a
raw signature so an auditor can check it with any JOSE library and the ``kid`` says which
key to use after a key rotation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit.jws import JwsError, JwsSigner, verify_compact
from gateway.audit.model import AppendReceipt, Checkpoint, format_time

CHECKPOINT_TYP = "audit-checkpoint+jws"


def record_hash(seq: int, prev_hash: str, body: dict[str, Any]) -> str:
    doc = {"seq": seq, "prev_hash": prev_hash, **body}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainedRecord:
    seq: int
    prev_hash: str
    hash: str
    body: dict[str, Any]


def extend_chain(head_seq: int, head_hash: str, bodies: Iterable[dict[str, Any]]) -> list[ChainedRecord]:
    """Chain ``bodies`` after the head (seq, hash); the caller stores them in one transaction."""
    out: list[ChainedRecord] = []
    seq, prev = head_seq, head_hash
    for body in bodies:
        seq += 1
        h = record_hash(seq, prev, body)
        out.append(ChainedRecord(seq, prev, h, body))
        prev = h
    return out


def receipts_of(records: Sequence[ChainedRecord]) -> list[AppendReceipt]:
    return [AppendReceipt(r.seq, r.hash) for r in records]


def audit_key_id(key: Ed25519PublicKey) -> str:
    """The kid the gateway gives an audit key (``gateway.audit_wiring.key_id("audit", key)``)."""
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"audit-{hashlib.sha256(spki).hexdigest()[:16]}"


class CheckpointSigner:
    """Signs checkpoints with the gateway audit key (Ed25519)."""

    def __init__(self, private_key: Ed25519PrivateKey, kid: str) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("the audit checkpoint key is Ed25519")
        self._signer = JwsSigner(private_key, kid, CHECKPOINT_TYP)
        self.kid = kid

    def public_key(self) -> Ed25519PublicKey:
        return self._signer.key.public_key()  # type: ignore[return-value]

    def sign(self, seq: int, head_hash: str, now: datetime) -> Checkpoint:
        t = format_time(now)
        jws = self._signer.sign({"seq": seq, "hash": head_hash, "time": t})
        return Checkpoint(seq=seq, hash=head_hash, time=t, kid=self.kid, jws=jws)


def check_checkpoint(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Return None when the checkpoint's signature verifies and agrees with its columns,
    else a description of the problem."""
    try:
        payload = verify_compact(cp.jws, keys, typ=CHECKPOINT_TYP)
    except JwsError as exc:
        return f"checkpoint at seq {cp.seq}: {exc}"
    if payload.get("seq") != cp.seq or payload.get("hash") != cp.hash or payload.get("time") != cp.time:
        return f"checkpoint at seq {cp.seq}: stored columns differ from the signed statement"
    return None

