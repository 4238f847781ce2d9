"""Signed verification receipts (回执): proof of what the gateway answered, checkable offline.

Two forms, both checked by :func:`verify_receipt` with the published key set (``/v1/keys``):

**Batch-signed receipt** (every API verify, verify-batch and item check answer: one per answer;
a verify-batch answer's one receipt covers all its entries). The audit writer
commits many answers in one transaction; for each committed batch the gateway signs ONE
statement, a Merkle root over the receipt claims of that batch (X-Road style batch
signatures), so the signing cost is shared by every answer of the batch. The receipt is one
string of five dot-separated base64url parts::

    CLAIMS . PROOF . BATCH-JWS (header . payload . signature)

* ``CLAIMS``: the JSON claims of this answer ``{"gateway", "request_id", "request_digest":
  <b64url SHA-256 of the request body>, "verdict", "reasons", "item", "licence_ids", "time",
  "iat"}``; a verify-batch answer's claims add ``"entries"``, one ``{"verdict", "reasons",
  "licence_id"}`` per entry in request order, and their ``verdict`` is the entries' common verdict
  or ``"mixed"``, ``reasons`` every entry's codes once, ``licence_ids`` the entries' ids
  (:func:`batch_claims`);
* ``PROOF``: JSON ``{"i": <leaf index>, "path": [<b64url SHA-256 sibling hashes>, ...]}``;
* ``BATCH-JWS``: a compact JWS (``typ`` ``elicence-receipt-batch+jws``, ES256 or EdDSA, ``kid``)
  over ``{"gateway", "root": <b64url Merkle root>, "n": <leaves>, "seq": [<first>, <last>
  audit record of the batch>], "time", "iat"}``.

The tree: ``leaf = SHA-256(0x00 || CLAIMS bytes)`` (the exact decoded bytes, no
re-serialisation), ``node = SHA-256(0x01 || left || right)``; leaves are paired left to right,
an odd last node is promoted unchanged to the next level. To fold the proof, with ``i`` the
index and ``n`` the signed leaf count: while ``n > 1``: if ``i`` is odd, ``h = node(path[k], h)``;
else if ``i + 1 < n``, ``h = node(h, path[k])`` (k advances only when a sibling is used);
``i //= 2``; ``n = ceil(n / 2)``. Every path element must be used, and ``h`` must equal
``root``. A changed claim, proof element, index or signature fails.

The audit record of the answer carries ``extra.receipt`` = the first 32 hex digits of the
leaf hash (:func:`receipt_ref`), and the record lies within the signed ``seq`` range: the
receipt finds its record.

**Single-signed receipt** (the console's printed receipts): a plain compact JWS (``typ``
``elicence-receipt+jws``) over the same claims (without ``request_id``), from
:meth:`ReceiptSigner.sign`.

Signing is hand-rolled on ``cryptography`` + ``orjson`` (gateway/audit/jws.py): headers are
encoded once per signer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway.audit.jws import (JwsError, JwsSigner, PrivateKey, PublicKey, b64u, b64u_decode, key_from_jwk,
                               public_jwk, verify_compact)
from gateway.audit.model import format_time
from gateway.errors import RECEIPT_INVALID, RequestRejected

RECEIPT_TYP = "elicence-receipt+jws"
BATCH_TYP = "elicence-receipt-batch+jws"
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: longest receipt accepted for checking (claims + proof + batch JWS); a verify-batch answer's one
#: receipt lists every entry (~100-200 characters each): 256 KiB covers well over 1,000 entries
MAX_RECEIPT_CHARS = 262_144
#: the answer-level ``verdict`` claim of a verify-batch receipt whose entries do not all share one
MIXED = "mixed"
_sha256 = hashlib.sha256
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "gateway": str, "request_digest": str, "verdict": str, "reasons": list, "item": (str, type(None)),
    "licence_ids": list, "time": str, "iat": int,
}


def batch_claims(entries: Sequence[tuple[str, Sequence[str], str | None]]
                 ) -> tuple[str, list[str], list[str], list[dict[str, Any]]]:
    """The answer-level claims of a verify-batch receipt from its entries ``(verdict, reason
    codes, licence id or None)``, in request order: ``verdict`` (the entries' common verdict, else
    :data:`MIXED`), ``reasons`` (every entry's codes, each once, first seen first), ``licence_ids``
    (the entries' ids, in order, absent ones left out) and ``entries`` (one ``{"verdict",
    "reasons", "licence_id"}`` each). :func:`verify_receipt` recomputes them from ``entries``."""
    verdicts = {v for v, _, _ in entries}
    reasons: list[str] = []
    for _, codes, _ in entries:
        for code in codes:
            if code not in reasons:
                reasons.append(code)
    ids = [i for _, _, i in entries if i is not None]
    docs = [{"verdict": v, "reasons": list(codes), "licence_id": i} for v, codes, i in entries]
    return (next(iter(verdicts)) if len(verdicts) == 1 else MIXED), reasons, ids, docs


def request_digest(body: bytes) -> str:
    """b64url (no padding) SHA-256 of the exact request body bytes."""
    return b64u(_sha256(body).digest())


# --- Merkle tree (pure) ----------------------------------------------------------------------
def leaf_hash(claims: bytes) -> bytes:
    return _sha256(LEAF_PREFIX + claims).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(NODE_PREFIX + left + right).digest()


def merkle_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root level (one hash) last."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [list(leaves)]
    level = levels[0]
    while len(level) > 1:
        nxt = [_sha256(NODE_PREFIX + level[j] + level[j + 1]).digest() for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])   # odd last node: promoted unchanged
        levels.append(nxt)
        level = nxt
    return levels


def inclusion_proof(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """The sibling hashes from leaf ``index`` up to the root (promoted levels add none)."""
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return path


def root_from_proof(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """Fold ``path`` from ``leaf`` at ``index`` in a tree of ``size`` leaves; raise ValueError
    when the path is too short or too long for that position."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the signed batch")
    h, k = leaf, 0
    while size > 1:
        if index & 1 or index + 1 < size:
            if k >= len(path):
                raise ValueError("inclusion proof too short")
            h = node_hash(path[k], h) if index & 1 else node_hash(h, path[k])
            k += 1
        index >>= 1
        size = (size + 1) >> 1
    if k != len(path):
        raise ValueError("inclusion proof too long")
    return h


@dataclass(frozen=True, slots=True)
class ReceiptDraft:
    """The claims of one answer, ready to be sealed with its committed batch."""

    claims_b64: str
    leaf: bytes

    @property
    def ref(self) -> str:
        """What the audit record keeps (``extra.receipt``): 32 hex digits of the leaf hash."""
        return self.leaf.hex()[:32]


def receipt_ref(receipt: str) -> str:
    """The audit record reference of a receipt: for a batch-signed receipt the first 32 hex digits
    of its leaf hash (as :attr:`ReceiptDraft.ref`); for a single-signed JWS, of SHA-256 of the text."""
    parts = receipt.split(".")
    if len(parts) == 5:
        try:
            return leaf_hash(b64u_decode(parts[0])).hex()[:32]
        except JwsError:
            pass
    return _sha256(receipt.encode("ascii", "replace")).hexdigest()[:32]


class ReceiptSigner:
    """Signs receipts with one key (Ed25519 -> EdDSA, P-256 -> ES256): single receipts
    (:meth:`sign`) and batch-signed ones (:meth:`draft` per answer, :meth:`seal` per batch)."""

    def __init__(self, private_key: PrivateKey, kid: str, gateway_id: str) -> None:
        try:
            self._jws = JwsSigner(private_key, kid, RECEIPT_TYP)
        except JwsError as exc:
            raise TypeError(str(exc)) from exc
        self._batch = JwsSigner(private_key, kid, BATCH_TYP)
        self.kid = kid
        self.gateway_id = gateway_id
        self.alg = self._jws.alg

    def sign(self, *, request_body: bytes, verdict: str, reasons: Sequence[str], item: str | None,
             time: datetime, licence_ids: Sequence[str]) -> str:
        claims = {
            "gateway": self.gateway_id,
            "request_digest": request_digest(request_body),
            "verdict": verdict,
            "reasons": list(reasons),
            "item": item,
            "licence_ids": list(licence_ids),
            "time": format_time(time),
            "iat": int(time.timestamp()),
        }
        return self._jws.sign(claims)

    def draft(self, *, request_digest: str, request_id: str, verdict: str, reasons: Sequence[str], item: str | None,
              time_text: str, iat: int, licence_ids: Sequence[str],
              entries: Sequence[dict[str, Any]] | None = None) -> ReceiptDraft:
        """The claims of one answer (cheap: one JSON encoding and one hash); ``time_text`` is
        :func:`format_time` of the answer time, computed once per request by the caller;
        ``entries``: a verify-batch answer's entries, each ``{"verdict", "reasons", "licence_id"}``
        (claim present only then; see :func:`batch_claims` for the answer-level claims)."""
        doc: dict[str, Any] = {
            "gateway": self.gateway_id, "request_id": request_id, "request_digest": request_digest,
            "verdict": verdict, "reasons": list(reasons), "item": item, "licence_ids": list(licence_ids),
            "time": time_text, "iat": iat,
        }
        if entries is not None:
            doc["entries"] = entries
        claims = orjson.dumps(doc)
        return ReceiptDraft(b64u(claims), _sha256(LEAF_PREFIX + claims).digest())

    def seal(self, drafts: Sequence[ReceiptDraft], first_seq: int, last_seq: int, now: datetime) -> list[str]:
        """Sign one statement over the Merkle root of ``drafts`` (a committed audit batch whose
        records are ``first_seq..last_seq``) and return each draft's receipt, in order."""
        levels = merkle_levels([d.leaf for d in drafts])
        jws = self._batch.sign({"gateway": self.gateway_id, "root": b64u(levels[-1][0]), "n": len(drafts),
                                "seq": [first_seq, last_seq], "time": format_time(now), "iat": int(now.timestamp())})
        # every node is encoded once (a node is in the proof of each leaf below it), and each
        # proof is the same JSON orjson would write: {"i":<i>,"path":["<b64u>",...]}
        coded = [[b64u(h) for h in level] for level in levels[:-1]]
        out = []
        for i, d in enumerate(drafts):
            path, index = [], i
            for level in coded:
                sibling = index ^ 1
                if sibling < len(level):
                    path.append(level[sibling])
                index >>= 1
            inner = '"' + '","'.join(path) + '"' if path else ""
            proof = ('{"i":%d,"path":[%s]}' % (i, inner)).encode("ascii")
            out.append(f"{d.claims_b64}.{b64u(proof)}.{jws}")
        return out

    def public_key(self) -> PublicKey:
        return self._jws.public_key()

    def jwk(self) -> dict[str, str]:
        return public_jwk(self.public_key(), self.kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The key set to publish at ``/v1/keys``."""
        return jwks(self)


def jwks(*signers: ReceiptSigner) -> dict[str, list[dict[str, str]]]:
    """One key set for several signers (the current key and those being rotated out)."""
    return {"keys": [s.jwk() for s in signers]}


def _reject(detail: str) -> RequestRejected:
    return RequestRejected(RECEIPT_INVALID, detail)


def _keyset(jwks: dict[str, Any]) -> dict[str, PublicKey]:
    keys: dict[str, PublicKey] = {}
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list):
        raise _reject("the key set has no 'keys' list")
    for jwk in entries:
        # the audit checkpoint keys published beside ours ("audit-..." kids) never sign a receipt: a receipt
        # under one is refused (unknown kid) rather than trusted (console receipts are signed by the
        # access-token key, so that one stays)
        if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str) and not jwk["kid"].startswith("audit-"):
            try:
                keys[jwk["kid"]] = key_from_jwk(jwk)
            except JwsError:
                continue  # keys of other types may be published next to ours
    return keys


def _json_part(text: str, what: str) -> Any:
    try:
        return orjson.loads(b64u_decode(text))
    except (JwsError, orjson.JSONDecodeError) as exc:
        raise _reject(f"{what} is not base64url JSON") from exc


def _verify_batch(token: str, keys: dict[str, PublicKey]) -> dict[str, Any]:
    """Claims of a batch-signed receipt once its proof folds to the signed root."""
    c64, p64, jws = token.split(".", 2)
    try:
        claims_bytes = b64u_decode(c64)
        statement = verify_compact(jws, keys, typ=BATCH_TYP)
    except JwsError as exc:
        raise _reject(str(exc)) from exc
    proof = _json_part(p64, "proof")
    if not isinstance(proof, dict):
        raise _reject("the proof must be a JSON object")
    index, path, size = proof.get("i"), proof.get("path"), statement.get("n")
    if (not isinstance(index, int) or isinstance(index, bool) or not isinstance(size, int) or isinstance(size, bool)
            or not isinstance(path, list) or len(path) > 64 or not all(isinstance(h, str) for h in path)):
        raise _reject("proof or signed statement malformed")
    # the proof is not signed: only the one text the gateway writes is accepted, so a receipt cannot be
    # re-encoded (spaces, member order, other members) into another string that still verifies
    if b64u_decode(p64) != orjson.dumps({"i": index, "path": path}):
        raise _reject("the proof is not in its canonical form {\"i\":…,\"path\":[…]}")
    try:
        hashes = [b64u_decode(h) for h in path]
        root = b64u_decode(statement.get("root", "")) if isinstance(statement.get("root"), str) else b""
    except JwsError as exc:
        raise _reject("proof hashes are not base64url") from exc
    if any(len(h) != 32 for h in hashes) or len(root) != 32:
        raise _reject("proof or root hashes are not SHA-256 values")
    try:
        folded = root_from_proof(leaf_hash(claims_bytes), index, size, hashes)
    except ValueError as exc:
        raise _reject(str(exc)) from exc
    if folded != root:
        raise _reject("the claims and proof do not lead to the signed batch root")
    claims = _json_part(c64, "claims")   # parsed only once its bytes are proven part of the batch
    if not isinstance(claims, dict):
        raise _reject("the claims must be a JSON object")
    if claims.get("gateway") != statement.get("gateway"):
        raise _reject("the claims name another gateway than the signed statement")
    kid = peek_kid(jws)
    claims["batch"] = {"seq": statement.get("seq"), "n": size, "index": index, "root": statement["root"],
                       "time": statement.get("time"), "kid": kid}
    return claims


def peek_kid(jws: str) -> str:
    header = orjson.loads(b64u_decode(jws.split(".", 1)[0]))
    return str(header.get("kid"))


def verify_receipt(token: str, jwks: dict[str, Any], *, request_body: bytes | None = None) -> dict[str, Any]:
    """Verify a receipt offline against a published key set; return its claims.

    Batch-signed receipts (five parts) return the claims plus ``batch`` (the signed ``seq``
    range, leaf count ``n``, ``index``, ``root``, ``time``, ``kid``); single-signed ones (a
    compact JWS) their claims. Raises ``RequestRejected(RECEIPT_INVALID)`` with the reason in
    ``detail``: malformed receipt, unknown kid, algorithm not matching the key, signature not
    verifying, claims or proof not folding to the signed root (any changed byte), missing
    claims, or -- when the original ``request_body`` is given -- a request digest that does
    not match it.
    """
    keys = _keyset(jwks)
    if not isinstance(token, str) or len(token) > MAX_RECEIPT_CHARS:
        raise _reject("receipt missing or too long")
    parts = token.split(".")
    if len(parts) == 5:
        claims = _verify_batch(token, keys)
    else:
        try:
            claims = verify_compact(token, keys, typ=RECEIPT_TYP)
        except JwsError as exc:
            raise _reject(str(exc)) from exc
    for name, typ in _REQUIRED.items():
        if name not in claims or not isinstance(claims[name], typ) or isinstance(claims[name], bool):
            raise _reject(f"claim {name!r} missing or of the wrong type")
    if "entries" in claims:
        _check_entries(claims)
    if request_body is not None and claims["request_digest"] != request_digest(request_body):
        raise _reject("the receipt was issued for a different request body")
    return claims


def _check_entries(claims: dict[str, Any]) -> None:
    """A verify-batch receipt: every entry well formed, and the answer-level claims what
    :func:`batch_claims` makes of them (a gateway bug otherwise; the signature already holds)."""
    entries = claims["entries"]
    if not isinstance(entries, list) or not entries:
        raise _reject("claim 'entries' is not a non-empty list")
    rows = []
    for k, e in enumerate(entries):
        if (not isinstance(e, dict) or not isinstance(e.get("verdict"), str) or not isinstance(e.get("reasons"), list)
                or not all(isinstance(r, str) for r in e["reasons"])
                or not (e.get("licence_id") is None or isinstance(e["licence_id"], str))):
            raise _reject(f"entry {k} of claim 'entries' is not {{verdict, reasons, licence_id}}")
        rows.append((e["verdict"], e["reasons"], e.get("licence_id")))
    verdict, reasons, ids, _ = batch_claims(rows)
    if (claims["verdict"], claims["reasons"], claims["licence_ids"]) != (verdict, reasons, ids):
        raise _reject("the answer-level verdict, reasons or licence ids disagree with the entries")
