"""Two gateway PROCESSES append to one PostgreSQL chain at the same time."""

from __future__ import annotations

import multiprocessing

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import verify_chain
from gateway.audit.postgres import PostgresAuditSink
from tests.pg_fixture import TEST_AUDIT_KEY_SEED, append_worker, pg_dsn, pg_schema  # noqa: F401 - fixtures

PER_PROCESS = 150


async def test_two_processes_appending_to_one_postgres_chain_keep_it_gap_free(pg_dsn: str, pg_schema: str) -> None:
    # neither process is given the schema ready-made: both race to create it (advisory lock)
    ctx = multiprocessing.get_context("spawn")
    out, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=append_worker, args=(pg_dsn, pg_schema, w, PER_PROCESS, out, barrier))
             for w in (1, 2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    seqs1, seqs2 = results[1], results[2]
    assert len(seqs1) == len(seqs2) == PER_PROCESS
    assert not set(seqs1) & set(seqs2)
    assert sorted(seqs1 + seqs2) == list(range(1, 2 * PER_PROCESS + 1))
    # the two processes really interleaved: neither got one contiguous block
    assert max(seqs1) > min(seqs2) and max(seqs2) > min(seqs1)

    sink = await PostgresAuditSink.open(pg_dsn, schema=pg_schema)
    try:
        key = Ed25519PrivateKey.from_private_bytes(TEST_AUDIT_KEY_SEED).public_key()
        report = await verify_chain(sink, key)
        assert (report.ok, report.records_checked, report.head_seq) == (True, 300, 300), report.problem
        assert report.checkpoints_checked >= 5     # both processes signed checkpoints on the one chain
        state = await sink.state()
        assert state.commits < 2 * PER_PROCESS      # group commit across the waves
        partners = {r.body["partner"] for r in await sink.read_records(0, 1000)}
        assert partners == {"partner-1", "partner-2"}
    finally:
        await sink.close()
