"""Staff accounts of the window console: a small JSON store under ``var/``.

Passwords are hashed with Argon2id (argon2-cffi, memory-hard). The store file holds only
user name, role, window and the encoded hash; ``python -m gateway staff add`` writes it.
Demo mode adds three TEST accounts (``DEMO_ACCOUNTS``) whose passwords are printed when
the demo starts; they are hashed lazily on first use so building an app stays cheap.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..files import write_atomically

ROLES = ("clerk", "supervisor", "admin")
#: what each role may do in the console
PERMISSIONS: dict[str, frozenset[str]] = {
    "clerk": frozenset({"check"}),
    "supervisor": frozenset({"check", "status", "audit"}),
    "admin": frozenset({"check", "status"}),
}
MIN_PASSWORD_LENGTH = 10
#: the sign-in form reads at most this many characters of a password (routes.login_submit)
MAX_PASSWORD_LENGTH = 256
_USER_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}\Z")
_WINDOW_RE = re.compile(r"^[\w.\-]{1,32}\Z")

#: TEST accounts of demo mode (user, role, window, password). Never use outside the demo.
DEMO_ACCOUNTS: tuple[tuple[str, str, str, str], ...] = (
    ("clerk", "clerk", "HZ-01", "clerk-TEST-pass-1"),
    ("supervisor", "supervisor", "HZ-01", "supervisor-TEST-pass-1"),
    ("admin", "admin", "HZ-ADMIN", "admin-TEST-pass-1"),
)


class AccountError(ValueError):
    """A staff account or the store file is invalid (message says which and why)."""


@dataclass(frozen=True, slots=True)
class StaffAccount:
    username: str
    role: str
    window: str
    password_hash: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())

    def to_dict(self) -> dict[str, str]:
        return {"username": self.username, "role": self.role, "window": self.window,
                "password_hash": self.password_hash}


def make_hasher(time_cost: int = 3, memory_kib: int = 64 * 1024, parallelism: int = 2) -> PasswordHasher:
    """Argon2id with the given cost (the defaults follow RFC 9106's second recommendation scaled to a window PC)."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def validate_account(username: str, role: str, window: str) -> None:
    if not _USER_RE.match(username):
        raise AccountError(f"user name {username!r}: 2-32 characters, lower-case letters, digits, . _ -")
    if role not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
    if not _WINDOW_RE.match(window):
        raise AccountError(f"window {window!r}: 1-32 letters, digits, . _ -")


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:  # a longer one could be stored but never typed in whole
        raise AccountError(f"password: at most {MAX_PASSWORD_LENGTH} characters")


def load_accounts(path: Path) -> dict[str, StaffAccount]:
    """Read the store (missing file = no accounts); AccountError names the bad entry."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AccountError(f"{path}: {exc}") from None
    entries = doc.get("staff") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise AccountError(f"{path}: expected {{\"staff\": [...]}}")
    out: dict[str, StaffAccount] = {}
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in
                                              ("username", "role", "window", "password_hash")):
            raise AccountError(f"{path}: staff[{n}]: needs username, role, window and password_hash strings")
        validate_account(e["username"], e["role"], e["window"])
        if not e["password_hash"].startswith("$argon2"):
            raise AccountError(f"{path}: staff[{n}]: password_hash is not an Argon2 hash")
        out[e["username"]] = StaffAccount(e["username"], e["role"], e["window"], e["password_hash"])
    return out


def save_accounts(path: Path, accounts: Iterable[StaffAccount]) -> None:
    """Write atomically (temp file + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"staff": [a.to_dict() for a in sorted(accounts, key=lambda a: a.username)]}
    write_atomically(path, json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8"), mode=0o600)


def add_account(path: Path, username: str, role: str, window: str, password: str,
                hasher: PasswordHasher | None = None, *, replace: bool = False) -> StaffAccount:
    validate_account(username, role, window)
    validate_password(password)
    accounts = load_accounts(path)
    if username in accounts and not replace:
        raise AccountError(f"user {username!r} exists (use --replace to reset it)")
    account = StaffAccount(username, role, window, (hasher or make_hasher()).hash(password))
    accounts[username] = account
    save_accounts(path, accounts.values())
    return account


class StaffDirectory:
    """Accounts from the store file plus, in demo mode, the TEST demo accounts."""

    def __init__(self, accounts: dict[str, StaffAccount], hasher: PasswordHasher,
                 demo_passwords: dict[str, tuple[str, str, str]] | None = None) -> None:
        self._accounts = dict(accounts)
        self._hasher = hasher
        self._demo = dict(demo_passwords or {})  # username -> (role, window, password), hashed on first use
        self._dummy_hash: str | None = None

    @classmethod
    def build(cls, store: Path, demo: bool, hasher: PasswordHasher) -> "StaffDirectory":
        demo_pw = {u: (r, w, p) for u, r, w, p in DEMO_ACCOUNTS} if demo else {}
        return cls(load_accounts(store), hasher, demo_pw)

    def _account(self, username: str) -> StaffAccount | None:
        if username in self._accounts:
            return self._accounts[username]
        if username in self._demo:
            role, window, password = self._demo.pop(username)
            self._accounts[username] = StaffAccount(username, role, window, self._hasher.hash(password))
            return self._accounts[username]
        return None

    def get(self, username: str) -> StaffAccount | None:
        return self._accounts.get(username) or (self._account(username) if username in self._demo else None)

    def authenticate(self, username: str, password: str) -> StaffAccount | None:
        """The account when the password matches, else None. Blocking (Argon2): run in an executor.
        An unknown user costs one hash verification too, so timing does not reveal user names."""
        account = self._account(username)
        if account is None:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash("not-a-password-of-anyone")
            try:
                self._hasher.verify(self._dummy_hash, password)
            except VerificationError:
                pass
            return None
        try:
            self._hasher.verify(account.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return account
