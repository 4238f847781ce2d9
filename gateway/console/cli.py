"""``python -m gateway staff add|list|remove`` and the demo banner listing the TEST staff accounts.

A running gateway follows the store file: an added, reset or removed account applies at the
next sign-in or console request, without a restart (see :class:`.accounts.StaffDirectory`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from .accounts import DEMO_ACCOUNTS, ROLES, AccountError, add_account, load_accounts, remove_account


def _store(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    from ..config import load_settings
    from .routes import staff_file

    return staff_file(load_settings(args.config, demo=True))


def _staff(args: argparse.Namespace) -> int:
    try:
        path = _store(args)
        if args.staff_cmd == "list":
            accounts = load_accounts(path)
            for a in accounts.values():
                print(f"{a.username:20} {a.role:11} {a.window}")
            if not accounts:   # a missing store is an empty one (accounts.load_accounts); it printed nothing
                why = "is empty" if path.exists() else "does not exist yet (staff add creates it)"
                print(f"无账号 / no accounts: the staff store {path} {why}", file=sys.stderr)
            return 0
        if args.staff_cmd == "remove":
            removed = remove_account(path, args.username)
            print(f"removed {removed.username} ({removed.role}, window {removed.window}) from {path}")
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            try:
                password = getpass.getpass("密码 / password: ")
                again = getpass.getpass("再次输入 / again: ")
            except EOFError:   # no terminal and nothing on stdin (a script, cron, ssh without -t)
                print("错误 / error: no password given: no terminal to ask on; pipe it with --password-stdin",
                      file=sys.stderr)
                return 2
            if again != password:
                print("错误 / error: the passwords differ", file=sys.stderr)
                return 2
        existed = args.replace and args.username in load_accounts(path)
        account = add_account(path, args.username, args.role, args.window, password, replace=args.replace)
    except (AccountError, OSError) as exc:  # OSError: the store's folder not writable, ...
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 2
    if existed:
        print(f"replaced {account.username} ({account.role}, window {account.window}) in {path}")
    else:
        print(f"added {account.username} ({account.role}, window {account.window}) to {path}")
    return 0


def add_staff_parser(sub: Any) -> None:
    st = sub.add_parser("staff", help="service-window console staff accounts")
    ssub = st.add_subparsers(dest="staff_cmd", required=True)
    sa = ssub.add_parser("add", help="add (or with --replace reset) a staff account; the password is asked for")
    sa.add_argument("username")
    sa.add_argument("--role", required=True, choices=ROLES)
    sa.add_argument("--window", required=True, help="service window id, e.g. HZ-01")
    sa.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    sa.add_argument("--replace", action="store_true", help="reset an existing account")
    sl = ssub.add_parser("list", help="list staff accounts (no hashes)")
    sr = ssub.add_parser("remove", help="remove a staff account; a running gateway ends its sessions at once")
    sr.add_argument("username")
    for p in (sa, sl, sr):
        p.add_argument("--file", help="staff store (default: setting console_staff_file or var/console/staff.json)")
        p.add_argument("--config", help="TOML settings file")
    st.set_defaults(func=_staff)


def demo_banner(host: str, port: int) -> str:
    lines = [f"  console: http://{host}:{port}/console/  TEST staff accounts (demo only):"]
    lines += [f"    {user:11} {password:24} role {role}, window {window}" for user, role, window, password in DEMO_ACCOUNTS]
    return "\n".join(lines)
