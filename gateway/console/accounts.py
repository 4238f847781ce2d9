"""Staff accounts of the window console: a small JSON store under ``var/``.

Passwords are hashed with Argon2id (argon2-cffi, memory-hard). The store file holds only
user name, role, window and the encoded hash; ``python -m gateway staff add`` writes it.
Demo mode adds three TEST accounts (``DEMO_ACCOUNTS``) whose passwords are printed when
the demo starts; they are hashed lazily on first use so building an app stays cheap.

The running gateway follows the store without a restart: :class:`StaffDirectory` compares the
file's fingerprint (``st_mtime_ns, st_size, st_ino``; None when missing) with the one it last read
on every sign-in and every console request with a session, and re-reads it when they differ. An
unreadable or invalid store fails closed (no store account signs in; one ERROR per fingerprint).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Union

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..files import write_atomically

log = logging.getLogger("gateway.console")

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


#: what identifies one version of the store file: (st_mtime_ns, st_size, st_ino), None when it is
#: missing, ("stat failed", errno) when even ``stat`` fails (a directory we may not enter, ...)
Fingerprint = Union[tuple[int, int, int], tuple[str, int], None]


def store_fingerprint(path: Path) -> Fingerprint:
    """The store's fingerprint from one ``stat`` (cheap enough for every request)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return ("stat failed", exc.errno or 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_store(path: Path) -> tuple[Fingerprint, bytes | None]:
    """(fingerprint, bytes) of the store read through one open file, so the fingerprint is the
    one of the bytes read even when the file is replaced meanwhile; (None, None) when missing.
    OSError when it exists but cannot be read."""
    try:
        f = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    with f:
        st = os.fstat(f.fileno())
        data = f.read()
    return (st.st_mtime_ns, st.st_size, st.st_ino), data


def parse_accounts(data: bytes, path: Path) -> dict[str, StaffAccount]:
    """The accounts of the store's bytes; AccountError names the file and the bad entry."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise AccountError(f"{path}: {exc}") from None
    entries = doc.get("staff") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise AccountError(f"{path}: expected {{\"staff\": [...]}}")
    out: dict[str, StaffAccount] = {}
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in
                                              ("username", "role", "window", "password_hash")):
            raise AccountError(f"{path}: staff[{n}]: needs username, role, window and password_hash strings")
        try:
            validate_account(e["username"], e["role"], e["window"])
        except AccountError as exc:
            raise AccountError(f"{path}: staff[{n}]: {exc}") from None
        if not e["password_hash"].startswith("$argon2"):
            raise AccountError(f"{path}: staff[{n}]: password_hash is not an Argon2 hash")
        out[e["username"]] = StaffAccount(e["username"], e["role"], e["window"], e["password_hash"])
    return out


def _load(path: Path) -> tuple[Fingerprint, dict[str, StaffAccount]]:
    try:
        fingerprint, data = _read_store(path)
    except OSError as exc:
        raise AccountError(f"{path}: {exc}") from None
    return fingerprint, ({} if data is None else parse_accounts(data, path))


def load_accounts(path: Path) -> dict[str, StaffAccount]:
    """Read the store (missing file = no accounts); AccountError names the bad entry."""
    return _load(path)[1]


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


_DEMO_USERS = frozenset(user for user, _, _, _ in DEMO_ACCOUNTS)


def remove_account(path: Path, username: str) -> StaffAccount:
    """Remove ``username`` from the store (atomic write, as :func:`save_accounts`); the removed
    account. AccountError when the store is invalid (left as it is) or holds no such user."""
    accounts = load_accounts(path)
    account = accounts.pop(username, None)
    if account is None:
        demo = " (the TEST demo accounts are built in, not in the store)" if username in _DEMO_USERS else ""
        raise AccountError(f"user {username!r} is not in {path}{demo}")
    save_accounts(path, accounts.values())
    return account


def credential_digest(password_hash: str) -> str:
    """What a session remembers of the hash it signed in with: a digest (the hash itself is kept
    only in the directory; neither ever goes into a cookie or a page)."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _StoreView:
    """One read of the store, replaced whole (never changed): readers on any thread see a
    consistent fingerprint and account table from a single attribute read."""
    fingerprint: Fingerprint
    accounts: Mapping[str, StaffAccount]
    #: why the store is unusable (then ``accounts`` is empty: fail closed), None when it is valid
    error: str | None = None


class StaffDirectory:
    """Accounts from the store file plus, in demo mode, the TEST demo accounts.

    With ``store`` set, :meth:`refresh` (called by :meth:`authenticate` and :meth:`unchanged`)
    re-reads the file when its fingerprint differs from the one last read. It runs on the event
    loop thread and on the executor threads of :meth:`authenticate`: the fast path is one
    ``stat`` and one attribute read; a re-read happens under a lock (never held while hashing)
    and publishes a new immutable :class:`_StoreView`."""

    def __init__(self, accounts: dict[str, StaffAccount], hasher: PasswordHasher,
                 demo_passwords: dict[str, tuple[str, str, str]] | None = None, *,
                 store: Path | None = None, fingerprint: Fingerprint = None) -> None:
        self._view = _StoreView(fingerprint, dict(accounts))
        self._store = store
        self._hasher = hasher
        self._reload_lock = threading.Lock()
        self._demo = dict(demo_passwords or {})  # username -> (role, window, password), hashed on first use
        self._demo_accounts: dict[str, StaffAccount] = {}
        self._demo_lock = threading.Lock()
        self._dummy_hash: str | None = None

    @classmethod
    def build(cls, store: Path, demo: bool, hasher: PasswordHasher) -> "StaffDirectory":
        """The directory of ``store`` (an invalid store refuses start-up: AccountError)."""
        demo_pw = {u: (r, w, p) for u, r, w, p in DEMO_ACCOUNTS} if demo else {}
        fingerprint, accounts = _load(store)
        return cls(accounts, hasher, demo_pw, store=store, fingerprint=fingerprint)

    @property
    def store_error(self) -> str | None:
        """Why the store accounts are refused right now (None: the last read was valid)."""
        return self._view.error

    # --- following the store file -------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the store if its fingerprint changed since the last read (cheap otherwise)."""
        if self._store is None or store_fingerprint(self._store) == self._view.fingerprint:
            return
        with self._reload_lock:
            fingerprint = store_fingerprint(self._store)  # another thread may have re-read it meanwhile
            if fingerprint != self._view.fingerprint:
                self._view = self._read(fingerprint)

    def _read(self, stat_fingerprint: Fingerprint) -> _StoreView:
        path, old = self._store, self._view
        assert path is not None
        try:
            fingerprint, data = _read_store(path)
        except OSError as exc:
            return self._failed(stat_fingerprint, f"{path}: {exc}")
        if fingerprint is not None and fingerprint == old.fingerprint:
            return old  # replaced back between the stat and the read: nothing new
        try:
            accounts = {} if data is None else parse_accounts(data, path)
        except AccountError as exc:
            return self._failed(fingerprint, str(exc))
        if data is None:
            log.info("console staff store %s is missing: no store accounts", path)
        else:
            log.info("console staff store %s re-read: %d account(s)", path, len(accounts))
        return _StoreView(fingerprint, accounts)

    @staticmethod
    def _failed(fingerprint: Fingerprint, problem: str) -> _StoreView:
        # reached once per distinct fingerprint (refresh re-reads only when it changed): one ERROR each
        log.error("console staff store unusable, store accounts refused and their sessions ended "
                  "until it is valid again: %s", problem)
        return _StoreView(fingerprint, {}, problem)

    # --- look-ups -----------------------------------------------------------------------
    def _demo_account(self, username: str, *, hash_now: bool) -> StaffAccount | None:
        account = self._demo_accounts.get(username)
        if account is not None or not hash_now or username not in self._demo:
            return account
        with self._demo_lock:  # one hash per demo account, even for sign-ins at the same moment
            account = self._demo_accounts.get(username)
            if account is None:
                role, window, password = self._demo[username]
                account = StaffAccount(username, role, window, self._hasher.hash(password))
                self._demo_accounts[username] = account
            return account

    def _account(self, username: str, *, hash_now: bool = True) -> StaffAccount | None:
        account = self._view.accounts.get(username)
        if account is not None:
            return account
        return self._demo_account(username, hash_now=hash_now)

    def get(self, username: str) -> StaffAccount | None:
        return self._account(username)

    def unchanged(self, username: str, role: str, window: str, credential: str) -> bool:
        """True while the account a session signed in with still exists with the same role,
        window and password hash (``credential``: :func:`credential_digest` of it). Re-reads the
        store when it changed; never hashes (safe on the event loop)."""
        self.refresh()
        account = self._account(username, hash_now=False)
        return (account is not None and account.role == role and account.window == window
                and hmac.compare_digest(credential_digest(account.password_hash), credential))

    def authenticate(self, username: str, password: str) -> StaffAccount | None:
        """The account when the password matches, else None. Blocking (Argon2): run in an executor.
        An unknown user costs one hash verification too, so timing does not reveal user names."""
        self.refresh()
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
