"""Server-side console sessions, CSRF synchroniser tokens and the sign-in throttle.

Pure state machines with ``now`` passed in: the routes give them the app's clock, tests a
fake one. The browser only ever holds an opaque random session id (HttpOnly cookie); the
CSRF token lives in the session and must come back in a header or hidden field on every
state-changing request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Session:
    id: str
    username: str
    role: str
    window: str
    csrf: str
    created: dt.datetime
    last_seen: dt.datetime
    #: the cases (办件) handled in this session, by id (bounded, oldest dropped)
    cases: "OrderedDict[str, Any]" = field(default_factory=OrderedDict)
    #: digest of the password hash the session signed in with (accounts.credential_digest): a
    #: password reset ends the session. Server-side only, never in a cookie or a page.
    credential: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    #: idle time after which a session ends (the clerk must sign in again)
    idle_timeout: dt.timedelta = dt.timedelta(minutes=15)
    #: absolute session lifetime, whatever the activity
    max_lifetime: dt.timedelta = dt.timedelta(hours=12)
    #: most live sessions kept (oldest evicted first): bounds memory
    max_sessions: int = 10_000
    #: most cases kept per session
    max_cases: int = 50
    #: most ended sessions whose reason is remembered (the sign-in page says why it ended)
    max_ended: int = 1_000


class SessionStore:
    def __init__(self, policy: SessionPolicy = SessionPolicy()) -> None:
        self.policy = policy
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        #: session id -> why it was ended (bounded, oldest forgotten): a JSON call may end a
        #: session, and the next page load must still tell the clerk why
        self._ended: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, username: str, role: str, window: str, now: dt.datetime, *, credential: str = "") -> Session:
        while len(self._sessions) >= self.policy.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(secrets.token_urlsafe(32), username, role, window, secrets.token_urlsafe(32), now, now,
                          credential=credential)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, now: dt.datetime, *, touch: bool = True) -> Session | None:
        """The live session, or None when unknown, idle too long or too old (then it is dropped)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if now - session.last_seen > self.policy.idle_timeout or now - session.created > self.policy.max_lifetime:
            del self._sessions[session_id]
            return None
        if touch:
            session.last_seen = now
            self._sessions.move_to_end(session_id)
        return session

    def drop(self, session_id: str, *, reason: str | None = None) -> None:
        """End a session; with ``reason``, :meth:`ended_reason` remembers why for a while."""
        self._sessions.pop(session_id, None)
        if reason is not None:
            self._ended[session_id] = reason
            while len(self._ended) > self.policy.max_ended:
                self._ended.popitem(last=False)

    def ended_reason(self, session_id: str | None) -> str | None:
        """Why the session of ``session_id`` was ended by :meth:`drop` (None: unknown, or no reason given)."""
        return self._ended.get(session_id) if session_id else None

    def add_case(self, session: Session, case_id: str, case: Any) -> None:
        session.cases[case_id] = case
        while len(session.cases) > self.policy.max_cases:
            session.cases.popitem(last=False)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), str(presented).encode())


class LoginCsrf:
    """CSRF for the sign-in form itself (no session exists yet): the form carries
    HMAC(secret, nonce) where the nonce is in a short-lived cookie."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def issue(self) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(24)
        return nonce, self.token(nonce)

    def token(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def ok(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce) and bool(token) and hmac.compare_digest(self.token(str(nonce)), str(token))


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    #: failed sign-ins per user name within ``window`` before that name is locked
    max_failures_per_user: int = 5
    #: failed sign-ins per client address within ``window`` before that address is locked
    max_failures_per_client: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)
    lockout: dt.timedelta = dt.timedelta(minutes=15)


class LoginThrottle:
    """Counts failed sign-ins per user name and per client address; locks either for a while."""

    def __init__(self, policy: ThrottlePolicy = ThrottlePolicy(), max_keys: int = 50_000) -> None:
        self.policy = policy
        self._fails: OrderedDict[str, deque[dt.datetime]] = OrderedDict()
        self._locked: dict[str, dt.datetime] = {}
        #: sign-in attempts whose password is being checked right now, per key: they count
        #: towards the limit before they finish, so parallel guesses cannot outrun the lockout
        self._pending: dict[str, int] = {}
        self._max_keys = max_keys

    def _keys(self, username: str, client: str) -> tuple[tuple[str, int], tuple[str, int]]:
        return ((f"u:{username}", self.policy.max_failures_per_user),
                (f"c:{client}", self.policy.max_failures_per_client))

    def _key_locked(self, key: str, now: dt.datetime) -> bool:
        until = self._locked.get(key)
        if until is None:
            return False
        if now >= until:
            del self._locked[key]
            self._fails.pop(key, None)
            return False
        return True

    def locked(self, username: str, client: str, now: dt.datetime) -> bool:
        return self._key_locked(f"u:{username}", now) or self._key_locked(f"c:{client}", now)

    def begin(self, username: str, client: str, now: dt.datetime) -> bool:
        """Reserve one sign-in attempt (end it with :meth:`end`): False when the user name or the
        client is locked, or when the recent failures plus the attempts still in flight reach the
        limit (N requests sent at once would otherwise all pass :meth:`locked` before any fails)."""
        if self.locked(username, client, now):
            return False
        keys = self._keys(username, client)
        for key, limit in keys:
            recent = sum(1 for t in self._fails.get(key, ()) if now - t <= self.policy.window)
            if recent + self._pending.get(key, 0) >= limit:
                return False
        for key, _ in keys:
            self._pending[key] = self._pending.get(key, 0) + 1
        return True

    def end(self, username: str, client: str) -> None:
        """The attempt reserved by :meth:`begin` is over (record its failure first)."""
        for key, _ in self._keys(username, client):
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)

    def failure(self, username: str, client: str, now: dt.datetime) -> None:
        for key, limit in self._keys(username, client):
            q = self._fails.setdefault(key, deque())
            self._fails.move_to_end(key)
            q.append(now)
            while q and now - q[0] > self.policy.window:
                q.popleft()
            if len(q) >= limit:
                self._locked[key] = now + self.policy.lockout
        while len(self._fails) > self._max_keys:
            self._fails.popitem(last=False)

    def success(self, username: str) -> None:
        self._fails.pop(f"u:{username}", None)
