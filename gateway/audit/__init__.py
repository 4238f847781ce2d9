"""Tamper-evident audit trail: hash-chained records, signed checkpoints, group commit.

Use::

    sink = await SqliteAuditSink.open("var/audit.db", signer=CheckpointSigner(key, "audit-1"))
    receipt = await sink.append(AuditEvent(kind="verify", time=now, request_id=rid, ...))
    report = await verify_chain(sink, key.public_key())

``append`` returns only after the record is committed; a store failure raises
``InfrastructureError(AUDIT_UNAVAILABLE)`` (answer 503). The Postgres sink is imported
lazily (``gateway.audit.postgres``) so asyncpg is loaded only where it is used.
"""

from gateway.audit.chain import CheckpointSigner, check_checkpoint, extend_chain, record_hash
from gateway.audit.cli import audit_cli
from gateway.audit.memory import MemoryAuditSink
from gateway.audit.model import (GENESIS_HASH, KINDS, AppendReceipt, AuditEvent, AuditQuery, ChainState,
                                 Checkpoint, PruneResult, StoredRecord, holder_hmac)
from gateway.audit.sink import AuditSink, AuditStore, GroupCommitConfig, SinkStats
from gateway.audit.sqlite import SqliteAuditSink
from gateway.audit.verify import ChainReport, verify_chain

__all__ = [
    "GENESIS_HASH", "KINDS", "AppendReceipt", "AuditEvent", "AuditQuery", "AuditSink", "AuditStore",
    "ChainReport", "ChainState", "CheckpointSigner", "Checkpoint", "GroupCommitConfig", "MemoryAuditSink",
    "PruneResult", "SinkStats", "SqliteAuditSink", "StoredRecord", "audit_cli", "check_checkpoint",
    "extend_chain", "holder_hmac", "record_hash", "verify_chain",
]
