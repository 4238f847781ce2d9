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
