"""Request signatures of the regions' sharing services (GB/T 36906 style, modelled).

Every request carries ``X-App-Key``, ``X-Timestamp`` (epoch seconds), ``X-Nonce`` and
``X-Signature`` over the canonical string::

    METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n APP_KEY \\n hex(SM3(body))

signed either with HMAC-SM3 under the app secret (``X-Signature-Method: HMAC-SM3``, hex)
or with the gateway's SM2 client key (``SM2-SM3``, base64 DER, default signer id).

TEST CREDENTIALS: the simulated regions' app keys, app secrets and the gateway's SM2 client
key are derived from :data:`TEST_CREDENTIAL_SEED`, a constant committed on purpose. They
are TEST keys for the loopback region simulator only and are not secret; a real region
issues its own credentials, configured per region by the operator.
"""

from __future__ import annotations

import base64
import hmac as std_hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac

from gateway.crypto.sm2 import SM2PrivateKey, SM2PublicKey, sm2_sign, sm2_verify, sm3

#: TEST ONLY: seed of the simulated regions' credentials (not secret, never for production)
TEST_CREDENTIAL_SEED = b"elicence-gateway TEST upstream credentials v1 (NOT SECRET)"
HMAC_SM3, SM2_SM3 = "HMAC-SM3", "SM2-SM3"
#: the remaining budget of the caller, ms, sent with every upstream request
DEADLINE_HEADER = "X-Deadline-Ms"


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def app_key_for_test_region(region: str) -> str:
    return f"elg-test-{region}"


def app_secret_for_test_region(region: str) -> bytes:
    """TEST ONLY: the app secret the simulated region ``region`` shares with the gateway."""
    return hmac_sm3(TEST_CREDENTIAL_SEED, b"app-secret:" + region.encode("ascii"))


def client_sm2_key_for_tests() -> SM2PrivateKey:
    """TEST ONLY: the gateway's SM2 request-signing key towards the simulated regions."""
    return SM2PrivateKey.from_scalar(sm3(TEST_CREDENTIAL_SEED + b":sm2-client-key"))


def canonical_string(method: str, path: str, timestamp: str, nonce: str, app_key: str, body: bytes) -> bytes:
    return "\n".join((method.upper(), path, timestamp, nonce, app_key, sm3(body).hex())).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Credentials:
    app_key: str
    method: str  # HMAC_SM3 or SM2_SM3
    secret: bytes = b""  # HMAC-SM3
    sm2_key: SM2PrivateKey | None = None  # SM2-SM3

    def sign(self, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> dict[str, str]:
        msg = canonical_string(method, path, timestamp, nonce, self.app_key, body)
        if self.method == HMAC_SM3:
            sig = hmac_sm3(self.secret, msg).hex()
        elif self.method == SM2_SM3 and self.sm2_key is not None:
            sig = base64.b64encode(sm2_sign(self.sm2_key, msg)).decode("ascii")
        else:
            raise ValueError(f"cannot sign with {self.method}")
        return {"X-App-Key": self.app_key, "X-Timestamp": timestamp, "X-Nonce": nonce,
                "X-Signature-Method": self.method, "X-Signature": sig}


def check_signature(headers: dict[str, str] | object, method: str, path: str, body: bytes, *,
                    secret: bytes | None, sm2_public: SM2PublicKey | None) -> bool:
    """Server side (region simulator): does the request carry a valid signature?"""
    get = headers.get  # type: ignore[attr-defined]
    app_key, ts, nonce, sig, sig_method = (get("X-App-Key"), get("X-Timestamp"), get("X-Nonce"),
                                           get("X-Signature"), get("X-Signature-Method"))
    if not all((app_key, ts, nonce, sig, sig_method)):
        return False
    msg = canonical_string(method, path, ts, nonce, app_key, body)
    if sig_method == HMAC_SM3 and secret is not None:
        return std_hmac.compare_digest(hmac_sm3(secret, msg).hex(), sig)
    if sig_method == SM2_SM3 and sm2_public is not None:
        try:
            raw = base64.b64decode(sig, validate=True)
        except ValueError:
            return False
        return sm2_verify(sm2_public, msg, raw)
    return False
