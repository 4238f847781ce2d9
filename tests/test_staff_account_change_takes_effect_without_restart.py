"""A staff account removed, reset or changed in the store applies in the running gateway at
once: its open sessions end at their next request (sent to the sign-in page, as an expired
session is) and it signs in (or not) with what the store now says -- no restart. An
unreadable or invalid store fails closed with one ERROR per version of the file; the TEST
demo accounts are not in the store and stay. ``python -m gateway staff remove`` removes an
account. Clients, clock and sign-in as in ``tests/test_console_http.py``."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.console import accounts as accounts_module
from gateway.console.accounts import (StaffAccount, StaffDirectory, add_account, credential_digest, load_accounts,
                                      make_hasher, save_accounts)
from gateway.console.routes import CONSOLE
from tests.conftest import NOW
from tests.test_console_http import Clock, login_token, open_case, sign_in

PASSWORDS = {"alice": "alice-pass-0001", "bob": "bob-pass-00002"}
ACCOUNT_ENDED = "/console/login?expired=account"
ENDED_ZH = "您的账号已被修改或停用，本次登录已结束"


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with two clerks at different windows (cheap Argon2 parameters: tests only)."""
    path = tmp_path / "console" / "staff.json"
    add_account(path, "alice", "clerk", "HZ-02", PASSWORDS["alice"], make_hasher(1, 8, 1))
    add_account(path, "bob", "clerk", "HZ-03", PASSWORDS["bob"], make_hasher(1, 8, 1))
    return path


@pytest.fixture
async def hall(world, client_for, aiohttp_client, store):
    """Three browsers of one service hall on one gateway that reads ``store``."""
    first = await client_for(clock=Clock(NOW), settings=replace(world.settings, console_staff_file=str(store)))
    return first, await aiohttp_client(first.server), await aiohttp_client(first.server)


@pytest.fixture
def applicant(world) -> tuple[str, str]:
    return world.simulator.person("320500")


async def try_sign_in(client, user: str, password: str):
    token = await login_token(client)
    return await client.post("/console/login", data={"username": user, "password": password, "csrf_token": token},
                             allow_redirects=False)


async def check_page_status(client) -> tuple[int, str]:
    resp = await client.get("/console/", allow_redirects=False)
    return resp.status, resp.headers.get("Location", "")


def staff(*argv: str) -> int:
    return main(["staff", *argv])


def rewrite(store: Path, **changes: str) -> None:
    """Rewrite alice's entry with ``changes`` (same hash unless given), atomically as the CLI does."""
    accounts = load_accounts(store)
    accounts["alice"] = replace(accounts["alice"], **changes)
    save_accounts(store, accounts.values())


def store_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and "staff store" in r.getMessage()]


# --- removal ---------------------------------------------------------------------------------------
async def test_removed_clerk_is_sent_to_sign_in_at_next_request_and_cannot_sign_in_again(hall, store, capsys,
                                                                                          applicant) -> None:
    alice, bob, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    bob_csrf = await sign_in(bob, "bob", PASSWORDS["bob"])
    assert await check_page_status(alice) == (200, "")

    assert staff("remove", "alice", "--file", str(store)) == 0
    capsys.readouterr()

    resp = await alice.get("/console/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == ACCOUNT_ENDED
    login = await alice.get(resp.headers["Location"])
    html = await login.text()
    assert login.status == 200 and ENDED_ZH in html and "长时间未操作" not in html
    assert [s.username for s in alice.app[CONSOLE].sessions._sessions.values()] == ["bob"]
    refused = await try_sign_in(alice, "alice", PASSWORDS["alice"])
    assert refused.status == 401 and "用户名或密码错误" in await refused.text()
    # the colleague at the next window goes on working, in the same session
    assert await check_page_status(bob) == (200, "")
    await open_case(bob, bob_csrf, applicant[1])


async def test_removed_clerks_json_call_is_refused_and_the_next_page_says_why(hall, store, capsys) -> None:
    """console.js's calls are usually the first request after the change: a 401 problem, and the
    page the clerk reloads then says the account changed (not "inactivity")."""
    alice, _, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    assert staff("remove", "alice", "--file", str(store)) == 0
    capsys.readouterr()
    api = await alice.get("/console/api/items?q=hkqy")
    problem = await api.json()
    assert api.status == 401 and problem["code"] == "UNAUTHENTICATED"
    assert "removed or changed" in problem["detail"]
    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    english = await (await alice.get(ACCOUNT_ENDED + "&lang=en")).text()
    assert "Your staff account was changed or removed" in english


# --- reset and changes ---------------------------------------------------------------------------------
async def test_reset_password_ends_the_old_session_and_only_the_new_password_signs_in(hall, store) -> None:
    alice, bob, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    await sign_in(bob, "bob", PASSWORDS["bob"])
    add_account(store, "alice", "clerk", "HZ-02", "alice-new-pass-2", make_hasher(1, 8, 1), replace=True)

    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    assert (await try_sign_in(alice, "alice", PASSWORDS["alice"])).status == 401
    await sign_in(alice, "alice", "alice-new-pass-2")
    assert await check_page_status(alice) == (200, "")
    assert await check_page_status(bob) == (200, "")


@pytest.mark.parametrize("change, page, status", [
    ({"role": "supervisor"}, "/console/status", 200),  # promoted: the new session has the new role
    ({"window": "HZ-09"}, "/console/", 200),
])
async def test_a_changed_role_or_window_ends_the_session_and_the_new_one_has_it(hall, store, change, page,
                                                                                 status) -> None:
    alice, bob, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    await sign_in(bob, "bob", PASSWORDS["bob"])
    rewrite(store, **change)  # the same password hash: only the role or the window differs

    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    await sign_in(alice, "alice", PASSWORDS["alice"])
    resp = await alice.get(page)
    assert resp.status == status
    if "window" in change:
        assert "HZ-09" in await resp.text()
    (session,) = [s for s in alice.app[CONSOLE].sessions._sessions.values() if s.username == "alice"]
    assert (session.role, session.window) == (change.get("role", "clerk"), change.get("window", "HZ-02"))
    assert await check_page_status(bob) == (200, "")


async def test_rewriting_the_store_unchanged_or_adding_a_colleague_keeps_open_sessions(hall, store) -> None:
    """Control: a new version of the file alone ends nothing; an added account signs in at once."""
    alice, bob, carol = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    save_accounts(store, load_accounts(store).values())  # same content, new file (new inode)
    assert await check_page_status(alice) == (200, "")
    add_account(store, "carol", "supervisor", "HZ-04", "carol-pass-003", make_hasher(1, 8, 1))
    assert await check_page_status(alice) == (200, "")
    await sign_in(carol, "carol", "carol-pass-003")
    assert (await carol.get("/console/status")).status == 200


async def test_an_unchanged_store_is_not_read_again_on_each_request(hall, store, monkeypatch) -> None:
    alice, _, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    reads: list[Path] = []
    real = accounts_module._read_store

    def counting(path: Path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(accounts_module, "_read_store", counting)
    for _ in range(5):
        assert await check_page_status(alice) == (200, "")
    assert reads == []
    rewrite(store, window="HZ-05")
    reads.clear()  # the rewrite's own read
    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)  # the reason is remembered, no further read
    assert reads == [store]


# --- fail closed -----------------------------------------------------------------------------------------
async def test_unreadable_store_refuses_store_accounts_keeps_demo_accounts_and_logs_one_error(hall, store,
                                                                                            caplog) -> None:
    alice, demo, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    await sign_in(demo, "clerk")  # a TEST demo account (demo mode): not in the store
    caplog.set_level(logging.INFO, logger="gateway.console")
    store.write_text('{"staff": [', encoding="utf-8")  # an editor saved half a file, in place

    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    for _ in range(3):
        assert (await try_sign_in(alice, "alice", PASSWORDS["alice"])).status == 401
        assert await check_page_status(demo) == (200, "")
    (error,) = store_errors(caplog)
    assert str(store) in error.getMessage() and "Expecting" in error.getMessage()

    # valid again: store accounts sign in; then a bad entry is a new version, so a new ERROR
    save_accounts(store, [StaffAccount("alice", "clerk", "HZ-02", make_hasher(1, 8, 1).hash(PASSWORDS["alice"]))])
    await sign_in(alice, "alice", PASSWORDS["alice"])
    store.write_text(store.read_text(encoding="utf-8").replace('"clerk"', '"boss"'), encoding="utf-8")
    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    assert (await try_sign_in(alice, "alice", PASSWORDS["alice"])).status == 401
    assert await check_page_status(demo) == (200, "")
    first, second = store_errors(caplog)
    assert first is error and str(store) in second.getMessage() and "staff[0]" in second.getMessage() \
        and "'boss'" in second.getMessage()


async def test_many_requests_at_once_on_a_broken_store_log_one_error(hall, store, caplog) -> None:
    """The event loop (session checks) and executor threads (Argon2 sign-ins) meet the new
    version of the file at the same moment: one re-read, one ERROR."""
    alice, demo, third = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    await sign_in(demo, "supervisor")
    caplog.set_level(logging.INFO, logger="gateway.console")
    store.write_bytes(b"\xff not even utf-8")
    tokens = [await login_token(c) for c in (alice, third)]
    answers = await asyncio.gather(
        *(demo.get("/console/status", allow_redirects=False) for _ in range(6)),
        *(c.post("/console/login", data={"username": "bob", "password": PASSWORDS["bob"], "csrf_token": tok},
                 allow_redirects=False) for c, tok in zip((alice, third), tokens)),
        alice.get("/console/", allow_redirects=False))
    assert [a.status for a in answers] == [200] * 6 + [401, 401, 303]
    assert len(store_errors(caplog)) == 1


async def test_a_missing_store_means_no_store_accounts_without_an_error(hall, store, caplog) -> None:
    alice, bob, _ = hall
    await sign_in(alice, "alice", PASSWORDS["alice"])
    caplog.set_level(logging.INFO, logger="gateway.console")
    store.unlink()
    assert await check_page_status(alice) == (303, ACCOUNT_ENDED)
    assert (await try_sign_in(bob, "bob", PASSWORDS["bob"])).status == 401
    assert store_errors(caplog) == []
    add_account(store, "bob", "clerk", "HZ-03", PASSWORDS["bob"], make_hasher(1, 8, 1))  # back: signs in at once
    await sign_in(bob, "bob", PASSWORDS["bob"])


# --- the directory on its own ------------------------------------------------------------------------
def test_threads_meeting_a_changed_store_read_it_once(store, caplog) -> None:
    directory = StaffDirectory.build(store, False, make_hasher(1, 8, 1))
    alice = load_accounts(store)["alice"]
    caplog.set_level(logging.INFO, logger="gateway.console")
    rewrite(store, window="HZ-07")
    barrier = threading.Barrier(8)
    answers: list[bool] = []

    def check() -> None:
        barrier.wait()
        answers.append(directory.unchanged("alice", "clerk", "HZ-02", credential_digest(alice.password_hash)))

    threads = [threading.Thread(target=check) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [False] * 8
    assert [r.getMessage() for r in caplog.records].count(f"console staff store {store} re-read: 2 account(s)") == 1
    assert directory.unchanged("alice", "clerk", "HZ-07", credential_digest(alice.password_hash))
    assert not directory.unchanged("alice", "clerk", "HZ-07", "")  # a session without the digest never matches


async def test_the_password_hash_never_reaches_the_browser(hall, store) -> None:
    alice, _, _ = hall
    token = await login_token(alice)
    resp = await alice.post("/console/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                                    "csrf_token": token}, allow_redirects=False)
    page = await (await alice.get("/console/")).text()
    secret = load_accounts(store)["alice"].password_hash
    shown = page + " ".join(resp.headers.getall("Set-Cookie")) + str(alice.session.cookie_jar.filter_cookies(
        alice.make_url("/console/")))
    assert secret not in shown and credential_digest(secret) not in shown and secret.split("$")[-1] not in shown


# --- python -m gateway staff ---------------------------------------------------------------------------
def test_staff_remove_removes_the_account_and_says_from_which_file(store, capsys) -> None:
    assert staff("remove", "alice", "--file", str(store)) == 0
    out = capsys.readouterr()
    assert out.out == f"removed alice (clerk, window HZ-02) from {store}\n" and out.err == ""
    assert list(load_accounts(store)) == ["bob"]
    assert os.stat(store).st_mode & 0o777 == 0o600
    assert [p.name for p in store.parent.iterdir()] == ["staff.json"]  # no temporary file left behind
    assert staff("list", "--file", str(store)) == 0
    assert capsys.readouterr().out.split() == ["bob", "clerk", "HZ-03"]


def test_staff_remove_of_an_unknown_user_exits_2_and_leaves_the_store_as_it_is(store, tmp_path, capsys) -> None:
    before = store.read_bytes()
    assert staff("remove", "carol", "--file", str(store)) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"错误 / error: user 'carol' is not in {store}\n"
    assert store.read_bytes() == before
    assert staff("remove", "clerk", "--file", str(store)) == 2  # a demo account: built in, not in the store
    assert "TEST demo accounts are built in" in capsys.readouterr().err
    missing = tmp_path / "nowhere" / "staff.json"
    assert staff("remove", "alice", "--file", str(missing)) == 2
    assert capsys.readouterr().err.startswith("错误 / error: user 'alice' is not in") and not missing.parent.exists()


def test_staff_remove_refuses_an_invalid_store_and_does_not_overwrite_it(store, capsys) -> None:
    store.write_text('{"staff": [{"username": "alice"}]}', encoding="utf-8")
    assert staff("remove", "alice", "--file", str(store)) == 2
    err = capsys.readouterr().err
    assert err.startswith("错误 / error: ") and "staff[0]" in err and str(store) in err
    assert store.read_text(encoding="utf-8") == '{"staff": [{"username": "alice"}]}'


def test_staff_remove_from_the_command_line_exits_2_for_an_unknown_user(store) -> None:
    """The real entry point: the exit status a shell script sees."""
    run = subprocess.run([sys.executable, "-m", "gateway", "staff", "remove", "nobody", "--file", str(store)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert run.returncode == 2 and "错误 / error: user 'nobody' is not in" in run.stderr
    assert sorted(load_accounts(store)) == ["alice", "bob"]


def test_staff_add_and_list_still_work(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "staff.json"
    monkeypatch.setattr(accounts_module, "make_hasher", lambda: make_hasher(1, 8, 1))
    monkeypatch.setattr(sys, "stdin", io.StringIO("dora-pass-0004\n"))
    assert staff("add", "dora", "--role", "admin", "--window", "HZ-ADMIN", "--password-stdin", "--file", str(path)) == 0
    assert capsys.readouterr().out == f"added dora (admin, window HZ-ADMIN) to {path}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("dora-pass-0004\n"))
    assert staff("add", "dora", "--role", "admin", "--window", "HZ-ADMIN", "--password-stdin", "--file", str(path)) == 2
    assert re.fullmatch(r"错误 / error: user 'dora' exists \(use --replace to reset it\)\n", capsys.readouterr().err)
    assert staff("list", "--file", str(path)) == 0
    assert capsys.readouterr().out.split() == ["dora", "admin", "HZ-ADMIN"]
