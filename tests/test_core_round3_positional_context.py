"""The verify hot path builds its scratch Context with a positional builder (every field given):
it must equal the dataclass constructor with its defaults, and a run through the core must see
fresh, unshared state each time (the notes list above all)."""

from __future__ import annotations

import datetime as dt

from gateway.core import Context, _make_context
from tests.conftest import NOW


def test_positional_context_equals_the_constructor_with_its_defaults(world) -> None:
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    args = (b"data", world.snapshot, status, NOW, world.verifier.policy, world.verifier.specs,
            world.verifier.type_names, NOW.timestamp())
    built = _make_context(*args, None, None, None, None, None, None, [])
    assert built == Context(*args)
    assert built.notes == [] and built.notes is not Context(*args).notes


def test_notes_of_one_verification_do_not_leak_into_the_next(world) -> None:
    # status checking switched off for the licence's region: that run carries a STATUS_NOT_CHECKED note
    from dataclasses import replace

    from gateway.core import Verifier
    region = "310000"
    issued = world.simulator.issue(region, world.catalogue.types[0].key, "valid", NOW).data
    other = world.simulator.issue("500102", world.catalogue.types[0].key, "valid", NOW).data
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    verifier = Verifier(replace(world.verifier.policy, status_exempt_regions=frozenset({region})),
                        world.verifier.specs, world.verifier.type_names)
    first = verifier.verify(issued, world.snapshot, status, NOW)
    second = verifier.verify(other, world.snapshot, status, NOW)
    assert [n.code for n in first.notes] == ["STATUS_NOT_CHECKED"]
    assert second.notes == () and second.verdict.value == "valid"
    assert [n.code for n in verifier.verify(issued, world.snapshot, status, NOW).notes] == ["STATUS_NOT_CHECKED"]
