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
