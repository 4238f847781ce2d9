"""Settings read from the environment: numbers become numbers, or start-up stops with a clear error."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_settings


def test_a_fractional_setting_is_read_as_a_number() -> None:
    s = load_settings(demo=True, env={"GATEWAY_AUDIT_INDEX_SECONDS": "20.5", "GATEWAY_AUDIT_BATCH_WINDOW_US": "300"})
    assert s.audit_index_seconds == 20.5 and s.audit_batch_window_us == 300


@pytest.mark.parametrize("raw", ["soon", "nan", "inf", ""])
def test_a_fractional_setting_that_is_not_a_finite_number_stops_start_up(raw: str) -> None:
    with pytest.raises(ConfigError, match="audit_index_seconds"):
        load_settings(demo=True, env={"GATEWAY_AUDIT_INDEX_SECONDS": raw})


def test_a_non_positive_index_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="audit_index_seconds"):
        load_settings(demo=True, env={"GATEWAY_AUDIT_INDEX_SECONDS": "0"})


def test_an_unknown_audit_writer_is_refused() -> None:
    with pytest.raises(ConfigError, match="audit_writer"):
        load_settings(demo=True, env={"GATEWAY_AUDIT_WRITER": "fork"})


def test_the_inline_writer_settings_reach_its_group_commit_config() -> None:
    from gateway.audit_wiring import audit_setup_from

    s = load_settings(demo=True, env={"GATEWAY_AUDIT_COMMIT_INTERVAL_US": "2500", "GATEWAY_AUDIT_INLINE_COMMIT_MAX": "9",
                                      "GATEWAY_AUDIT_WRITER": "inline"})
    setup = audit_setup_from(s)
    assert setup.writer == "inline"
    assert setup.group.commit_interval == 0.0025 and setup.group.inline_commit_max == 9


@pytest.mark.parametrize("name", ["GATEWAY_AUDIT_COMMIT_INTERVAL_US", "GATEWAY_AUDIT_INLINE_COMMIT_MAX"])
def test_a_negative_inline_writer_setting_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name.removeprefix("GATEWAY_").lower()):
        load_settings(demo=True, env={name: "-1"})


def test_the_gc_threshold_setting_is_read_and_a_negative_one_refused() -> None:
    assert load_settings(demo=True, env={}).gc_gen0_threshold == 50_000
    assert load_settings(demo=True, env={"GATEWAY_GC_GEN0_THRESHOLD": "0"}).gc_gen0_threshold == 0
    with pytest.raises(ConfigError, match="gc_gen0_threshold"):
        load_settings(demo=True, env={"GATEWAY_GC_GEN0_THRESHOLD": "-5"})


def test_fsync_after_commit_is_on_by_default_and_can_be_turned_off() -> None:
    from gateway.audit_wiring import audit_setup_from

    assert audit_setup_from(load_settings(demo=True, env={})).group.fsync_after_commit is True
    off = load_settings(demo=True, env={"GATEWAY_AUDIT_FSYNC_AFTER_COMMIT": "false"})
    assert audit_setup_from(off).group.fsync_after_commit is False


@pytest.mark.parametrize(("workers", "cpus", "writer"), [(1, 2, "process"), (2, 2, "inline"), (3, 2, "inline"),
                                                         (1, 1, "inline"), (3, 4, "process")])
def test_the_auto_writer_gives_the_writers_a_process_only_while_a_cpu_is_left_over(workers: int, cpus: int,
                                                                                   writer: str) -> None:
    s = load_settings(demo=True, env={"GATEWAY_WORKERS": str(workers)})
    assert s.audit_writer == "auto" and s.workers == workers
    assert s.resolved_audit_writer(cpus=cpus) == writer


@pytest.mark.parametrize("named", ["inline", "process", "thread"])
def test_a_named_audit_writer_is_kept_whatever_the_workers(named: str) -> None:
    s = load_settings(demo=True, env={"GATEWAY_AUDIT_WRITER": named}, workers=1)
    assert s.resolved_audit_writer(cpus=8) == named


def test_the_serve_command_sets_the_workers_setting_and_zero_workers_are_refused() -> None:
    assert load_settings(demo=True, env={}, workers=3).workers == 3
    assert load_settings(demo=True, env={"GATEWAY_WORKERS": "2"}, workers=None).workers == 2
    with pytest.raises(ConfigError, match="workers"):
        load_settings(demo=True, env={}, workers=0)
