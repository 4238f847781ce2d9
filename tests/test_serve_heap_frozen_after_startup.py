"""A serving worker freezes its start-up heap, so no full collection walks it under load."""

from __future__ import annotations

import gc

from gateway.serve import freeze_heap


async def test_freeze_heap_takes_the_start_up_objects_out_of_the_collectors_generations() -> None:
    startup_objects = [[i] for i in range(20_000)]   # a start-up heap stand-in
    tracked_before = len(gc.get_objects())
    try:
        await freeze_heap()
        tracked_after = len(gc.get_objects())
        assert gc.get_freeze_count() >= len(startup_objects)
        assert tracked_after < tracked_before - len(startup_objects)
        made_later = [["answer"]]   # a container of containers: tracked by the collector
        assert any(o is made_later for o in gc.get_objects())       # new objects are collected as usual
    finally:
        gc.unfreeze()


def _young_collections_while_holding(n: int) -> int:
    """Young-generation collections run while ``n`` new containers are made and kept alive (a
    stand-in for the requests in flight and the answers waiting for their audit commit)."""
    runs = 0

    def count(phase: str, info: dict) -> None:
        nonlocal runs
        if phase == "start" and info["generation"] == 0:
            runs += 1

    gc.collect()
    gc.callbacks.append(count)
    try:
        held = [[i] for i in range(n)]
        del held
    finally:
        gc.callbacks.remove(count)
    return runs


async def test_gen0_threshold_setting_spares_the_live_young_objects_repeated_collections() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        assert _young_collections_while_holding(5_000) >= 5        # Python's default: one run per ~700
        await freeze_heap(gen0_threshold=50_000)
        assert gc.get_threshold() == (50_000, before[1], before[2])  # the older generations' ratios kept
        assert _young_collections_while_holding(5_000) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_gen0_threshold_zero_keeps_the_interpreters_threshold() -> None:
    before = gc.get_threshold()
    try:
        await freeze_heap(gen0_threshold=0)
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
