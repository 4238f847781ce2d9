"""The load engines run on uvloop wherever they are started from (CLI and benchmark scripts alike),
so a benchmark's load generator costs the server the CPU the operator's tool would."""

from __future__ import annotations

import asyncio

from load.runner import run_loop


def test_run_loop_runs_the_coroutine_on_uvloop_and_returns_its_value() -> None:
    async def which() -> tuple[str, int]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__, 42

    module, value = run_loop(which())
    assert module.startswith("uvloop") and value == 42

