"""OAuth 2.0 client credentials grant with ``private_key_jwt`` client authentication.

RFC 6749 §4.4 (client credentials), RFC 7521 §4.2 / RFC 7523 §2.2 and §3 (JWT client
assertions). The partner signs a short-lived JWT with ``iss = sub = client_id``,
``aud = <token endpoint URL>``, ``exp`` at most 5 minutes ahead and a unique ``jti``; the
gateway answers with its own signed access token (RFC 9068 shape).

Error codes (RFC 6749 §5.2). RFC 7523 §3.2 says every defect of the client assertion
(unknown client, bad signature, expired, wrong audience, replay) is ``invalid_client``;
``invalid_request`` covers a malformed form, ``invalid_scope`` a scope outside the partner's
grant and ``unsupported_grant_type`` any grant but ``client_credentials``. ``invalid_grant``
is defined for completeness: client credentials carry no separate grant that could be invalid.
"""

from __future__ import annotations

import heapq
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any, Final, Protocol

import jwt

from gateway.errors import BAD_REQUEST, RATE_LIMITED, UNAUTHENTICATED, RequestRejected

from .jose import SigningKey
from .partners import PartnerRegistry
from .scopes import ALL_SCOPES
from .verifier import ACCESS_AUDIENCE, ISSUER

GRANT_CLIENT_CREDENTIALS: Final = "client_credentials"
ASSERTION_TYPE_JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: the URL partners put in ``aud``; deployments configure their public URL
DEFAULT_TOKEN_ENDPOINT: Final = "http://127.0.0.1:8080/v1/oauth/token"
MAX_ASSERTION_LIFETIME_S: Final = 300
DEFAULT_ACCESS_TTL_S: Final = 600
MAX_ASSERTION_CHARS: Final = 8192
MAX_JTI_CHARS: Final = 256
#: unexpired assertions remembered for one partner; one partner past it is refused (429), not the others
MAX_REPLAY_ENTRIES_PER_CLIENT: Final = 1_000
#: Retry-After of a ``temporarily_unavailable`` answer that knows no better time (a replay store that cannot
#: be used); the 429s of a partner's share and of a full cache name when the oldest entry is forgotten
DEFAULT_RETRY_AFTER_S: Final = 60

INVALID_REQUEST: Final = "invalid_request"
INVALID_CLIENT: Final = "invalid_client"
INVALID_GRANT: Final = "invalid_grant"
INVALID_SCOPE: Final = "invalid_scope"
UNSUPPORTED_GRANT_TYPE: Final = "unsupported_grant_type"
TEMPORARILY_UNAVAILABLE: Final = "temporarily_unavailable"

_STATUS = {INVALID_CLIENT: 401, TEMPORARILY_UNAVAILABLE: 429}


class OAuthError(RequestRejected):
    """An RFC 6749 §5.2 error. ``error`` is the OAuth code; ``description`` the English message, sent as
    ``error_description`` (which §5.2 limits to printable ASCII without ``"`` and ``\\``: anything else is
    sent as ``?``), and ``description_zh`` the same in Chinese, sent as ``error_description_zh``."""

    def __init__(self, error: str, description: str, description_zh: str, detail: str | None = None, *,
                 status: int | None = None, retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> None:
        reason = UNAUTHENTICATED if error == INVALID_CLIENT else (
            RATE_LIMITED if error == TEMPORARILY_UNAVAILABLE else BAD_REQUEST)
        headers = {"Retry-After": str(retry_after_s)} if error == TEMPORARILY_UNAVAILABLE else None
        super().__init__(reason, detail or description, headers=headers)
        self.error = error
        self.description = description
        self.description_zh = description_zh
        #: HTTP status: 401 invalid_client, 429 temporarily_unavailable (a quota), else 400; a
        #: store that cannot be used gives ``status=503`` (gateway/auth/shared.py)
        self.status = status or _STATUS.get(error, 400)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": _RFC6749_UNSAFE.sub("?", self.description),
                "error_description_zh": self.description_zh}


#: characters RFC 6749 §5.2 does not allow in ``error_description`` (it allows %x20-21 / %x23-5B / %x5D-7E)
_RFC6749_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


def retry_after(forgotten_at: float, now: float) -> int:
    """Whole seconds from ``now`` until an entry remembered until ``forgotten_at`` is pruned: rounded up,
    at least 1 (a ``Retry-After``; at exactly ``forgotten_at`` the entry is gone)."""
    return max(1, math.ceil(forgotten_at - now))


def partner_share_refused(client_id: str, held: int, retry_after_s: int) -> OAuthError:
    """One partner holds its share of unexpired client assertions (429, that partner alone); it may try
    again in ``retry_after_s``, when its oldest one is forgotten."""
    return OAuthError(TEMPORARILY_UNAVAILABLE, "This partner has asked for too many tokens in a short time; retry later.", "该合作方短时间内申请令牌过多，请稍后重试。",
                      f"partner {client_id} holds {held} unexpired client assertions", retry_after_s=retry_after_s)


def replay_cache_full(retry_after_s: int) -> OAuthError:
    """Every slot holds an unexpired assertion: refuse (fail closed) rather than forget one; the oldest
    of all is forgotten in ``retry_after_s``."""
    return OAuthError(TEMPORARILY_UNAVAILABLE, "The token service is busy; retry later.", "令牌服务繁忙，请稍后重试。", "replay cache full",
                      retry_after_s=retry_after_s)


class ReplayStore(Protocol):
    """What :class:`TokenService` needs of a replay cache: :class:`ReplayCache` (this process) or,
    with ``serve --workers N``, :class:`gateway.auth.shared.SharedReplayCache` (all the workers)."""

    def add(self, client_id: str, jti: str, expires_at: float, now: float) -> bool: ...


class ReplayCache:
    """Seen ``(client_id, jti)`` pairs until their expiry, in this process; bounded, pruned by expiry.
    (``serve --workers N`` uses :class:`gateway.auth.shared.SharedReplayCache`: one for all workers.)

    When full of unexpired entries it refuses new ones (fail closed) rather than forgetting
    a jti that could then be replayed. Each partner may hold at most ``max_per_client`` of
    them: without that share, one partner sending ``max_entries`` fresh assertions within an
    assertion's lifetime filled the cache and every other partner was refused a token. A refusal
    names when the partner's oldest entry (for a full cache: the oldest of all) is forgotten.
    """

    def __init__(self, max_entries: int = 100_000, max_per_client: int = MAX_REPLAY_ENTRIES_PER_CLIENT) -> None:
        self._max = max_entries
        self._max_per_client = max_per_client
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        #: each partner's entries' expiries, a heap: its length is the partner's count, its head the oldest
        self._per_client: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def held_for(self, client_id: str) -> int:
        """Unexpired entries of one partner (as of the last prune)."""
        return len(self._per_client.get(client_id, ()))

    def prune(self, now: float) -> None:
        heap, expiry, per_client = self._heap, self._expiry, self._per_client
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if expiry.pop(key, None) is not None:
                # the earliest of all is also the earliest of its partner's: that heap's head
                own = per_client[key[0]]
                heapq.heappop(own)
                if not own:
                    del per_client[key[0]]

    def add(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record the pair; ``False`` if it was already seen (a replay)."""
        self.prune(now)
        key = (client_id, jti)
        if key in self._expiry:
            return False
        own = self._per_client.get(client_id, [])
        if len(own) >= self._max_per_client:
            raise partner_share_refused(client_id, len(own), retry_after(own[0], now) if own else DEFAULT_RETRY_AFTER_S)
        if len(self._expiry) >= self._max:
            raise replay_cache_full(retry_after(self._heap[0][0], now) if self._heap else DEFAULT_RETRY_AFTER_S)
        self._expiry[key] = expires_at
        heapq.heappush(self._per_client.setdefault(client_id, own), expires_at)
        heapq.heappush(self._heap, (expires_at, key))
        return True


class TokenService:
    def __init__(self, registry: PartnerRegistry, signing_key: SigningKey, *,
                 token_endpoint: str = DEFAULT_TOKEN_ENDPOINT, access_ttl_s: int = DEFAULT_ACCESS_TTL_S,
                 max_assertion_lifetime_s: int = MAX_ASSERTION_LIFETIME_S, leeway_s: int = 30,
                 replay_cache: ReplayStore | None = None, audience: str = ACCESS_AUDIENCE,
                 issuer: str = ISSUER) -> None:
        if not 0 < access_ttl_s <= 3600:
            raise ValueError("access_ttl_s must be in (0, 3600]")
        self.registry = registry
        self.signing_key = signing_key
        self.token_endpoint = token_endpoint
        self.access_ttl_s = access_ttl_s
        self.max_assertion_lifetime_s = max_assertion_lifetime_s
        self.leeway_s = leeway_s
        # "is None", not "or": an empty cache has len() 0 and is falsy -- a cache handed in empty (the
        # workers' shared one at start) was silently replaced by a new in-memory one of this process
        self.replay_cache = replay_cache if replay_cache is not None else ReplayCache()
        self.audience = audience
        self.issuer = issuer

    def issue(self, form: Mapping[str, str], now: float) -> dict[str, Any]:
        """Handle one token request (form fields already decoded) at epoch time ``now``."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(INVALID_REQUEST, "The grant_type parameter is missing.", "缺少 grant_type 参数。")
        if grant_type != GRANT_CLIENT_CREDENTIALS:
            raise OAuthError(UNSUPPORTED_GRANT_TYPE, "Only the client_credentials grant type is supported.", "仅支持 client_credentials 授权类型。", f"grant_type {grant_type}")
        if "client_secret" in form:
            raise OAuthError(INVALID_REQUEST, "client_secret is not accepted: authenticate with a private_key_jwt client assertion.", "不接受 client_secret，请使用 private_key_jwt 客户端断言。")
        if form.get("client_assertion_type") != ASSERTION_TYPE_JWT_BEARER:
            raise OAuthError(INVALID_CLIENT, "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.", "client_assertion_type 必须为 urn:ietf:params:oauth:client-assertion-type:jwt-bearer。")
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthError(INVALID_CLIENT, "The client_assertion parameter is missing.", "缺少客户端断言 client_assertion。")
        client_id = self._authenticate(assertion, form.get("client_id"), now)
        scopes = self._grant_scopes(client_id, form.get("scope"))
        jti = secrets.token_urlsafe(18)
        exp = int(now) + self.access_ttl_s
        scope = " ".join(sorted(scopes))
        claims = {"iss": self.issuer, "sub": client_id, "client_id": client_id, "aud": self.audience,
                  "scope": scope, "iat": int(now), "exp": exp, "jti": jti}
        return {"access_token": self.signing_key.sign(claims), "token_type": "Bearer",
                "expires_in": self.access_ttl_s, "scope": scope}

    # --- client authentication (RFC 7523 §3) --------------------------------------------

    def _authenticate(self, assertion: str, form_client_id: str | None, now: float) -> str:
        if len(assertion) > MAX_ASSERTION_CHARS:
            raise OAuthError(INVALID_CLIENT, "The client assertion is too long.", "客户端断言过长。")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError(INVALID_CLIENT, "The client assertion is not a valid JWT.", "客户端断言不是有效的 JWT。") from None
        client_id = unverified.get("iss")
        if not isinstance(client_id, str):
            raise OAuthError(INVALID_CLIENT, "The client assertion has no iss.", "客户端断言缺少 iss。")
        if form_client_id is not None and form_client_id != client_id:
            raise OAuthError(INVALID_CLIENT, "client_id differs from the client assertion's iss.", "client_id 与客户端断言的 iss 不一致。")
        partner = self.registry.get(client_id)
        if partner is None:
            raise OAuthError(INVALID_CLIENT, "Unknown client: not a registered partner.", "未注册的合作方。", f"unknown client {client_id[:64]}")
        try:
            # signature only, with the ONE algorithm registered for this partner; the claims
            # are checked below against the injected clock
            claims = jwt.decode(assertion, partner.public_key, algorithms=[partner.alg],
                                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                         "verify_aud": False, "verify_iss": False, "verify_sub": False,
                                         "verify_jti": False})
        except jwt.PyJWTError as exc:
            raise OAuthError(INVALID_CLIENT, "The client assertion's signature is not valid.", "客户端断言签名无效。", f"assertion signature: {exc}") from None
        if claims.get("sub") != client_id:
            raise OAuthError(INVALID_CLIENT, "The client assertion's sub must equal its iss (the client_id).", "客户端断言的 sub 必须等于 iss（client_id）。")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.token_endpoint not in auds:
            raise OAuthError(INVALID_CLIENT, f"The client assertion's aud must be this token endpoint, exactly {self.token_endpoint}.",
                             f"客户端断言的 aud 必须是本令牌端点：{self.token_endpoint}（须完全一致）。", f"aud {aud!r}")
        exp = _number(claims.get("exp"))
        if exp is None:
            raise OAuthError(INVALID_CLIENT, "The client assertion has no exp, or its exp is not a valid time.", "客户端断言缺少 exp 或其不是有效的时间。")
        for name in ("iat", "nbf"):  # optional, but when present a usable NumericDate (RFC 7519 §2)
            if name in claims and _number(claims[name]) is None:
                raise OAuthError(INVALID_CLIENT, f"The client assertion's {name} is not a valid time.", f"客户端断言的 {name} 不是有效的时间。",
                                 f"assertion {name} is not a finite number")
        if exp <= now - self.leeway_s:
            raise OAuthError(INVALID_CLIENT, "The client assertion has expired.", "客户端断言已过期。")
        if exp - now > self.max_assertion_lifetime_s + self.leeway_s:
            raise OAuthError(INVALID_CLIENT, "The client assertion's lifetime is too long (at most 5 minutes).", "客户端断言有效期过长（不得超过 5 分钟）。")
        iat, nbf = _number(claims.get("iat")), _number(claims.get("nbf"))
        if iat is not None and (iat > now + self.leeway_s or exp - iat > self.max_assertion_lifetime_s):
            raise OAuthError(INVALID_CLIENT, "The client assertion's iat is not valid.", "客户端断言的 iat 无效。")
        if nbf is not None and nbf > now + self.leeway_s:
            raise OAuthError(INVALID_CLIENT, "The client assertion is not valid yet (nbf).", "客户端断言尚未生效（nbf）。")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
            raise OAuthError(INVALID_CLIENT, "The client assertion has no usable jti.", "客户端断言缺少可用的 jti。")
        if not self.replay_cache.add(client_id, jti, exp + self.leeway_s, now):
            raise OAuthError(INVALID_CLIENT, "The client assertion has been used already (replay).", "客户端断言已被使用过（重放）。", "assertion replayed")
        return client_id

    def _grant_scopes(self, client_id: str, requested: str | None) -> frozenset[str]:
        allowed = self.registry[client_id].scopes
        if requested is None or not requested.strip():
            return allowed
        asked = frozenset(requested.split())
        unknown = asked - ALL_SCOPES
        if unknown:
            raise OAuthError(INVALID_SCOPE, "An unknown scope was asked for.", "请求了不存在的权限范围。", f"unknown scope(s) {sorted(unknown)}")
        denied = asked - allowed
        if denied:
            raise OAuthError(INVALID_SCOPE, "A scope beyond this partner's grant was asked for.", "请求的权限范围超出该合作方的授权。", f"not granted {sorted(denied)}")
        return asked


def _number(value: Any) -> float | None:
    """A JSON NumericDate as a finite float; ``None`` for anything else. Python's JSON reader
    (PyJWT's) accepts ``NaN``/``Infinity`` and integers beyond the float range: NaN compares
    false with everything, so it would pass every time check (and stall the replay cache's
    pruning), and ``float()`` of a huge integer raises OverflowError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
