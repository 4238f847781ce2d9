"""Start-up validation, reviewed as an operator: an invalid region spec or setting refuses start-up
with a message naming the file (or the setting and where it came from) and the field, before any
worker starts; a valid one is accepted (each case has its control beside it)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from gateway.bootstrap import load_static
from gateway.config import ConfigError, Settings, load_settings
from gateway.specs import SpecError, load_region_specs, load_regions

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


# --- helpers ------------------------------------------------------------------------------------
def specs_copy(tmp_path: Path, code: str | None = None, edit: Callable[[str], str] | None = None) -> Path:
    """A copy of specs/ with region ``code``'s spec text passed through ``edit``."""
    out = tmp_path / "specs"
    shutil.copytree(SPECS, out)
    if code is not None and edit is not None:
        path = out / "regions" / f"{code}.toml"
        text = path.read_text(encoding="utf-8")
        edited = edit(text)
        assert edited != text, "the edit changed nothing"
        path.write_text(edited, encoding="utf-8")
    return out


def replace_once(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, old
        return text.replace(old, new)
    return edit


def load(specs_dir: Path):
    return load_region_specs(specs_dir / "regions", load_regions(specs_dir / "regions.csv"))


def refused(specs_dir: Path) -> str:
    with pytest.raises(SpecError) as info:
        load(specs_dir)
    return str(info.value)


# --- region specs ---------------------------------------------------------------------------------
def test_spec_file_not_in_utf8_refuses_start_naming_the_file(tmp_path: Path) -> None:
    good = specs_copy(tmp_path / "good")
    assert load(good)["330500"].name == "湖州市"  # control: the UTF-8 file
    bad = specs_copy(tmp_path / "bad")
    path = bad / "regions" / "330500.toml"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))
    message = refused(bad)  # was a bare UnicodeDecodeError naming no file
    assert str(path) in message and "UTF-8" in message


def test_spec_date_format_with_a_repeated_directive_refuses_start_naming_the_field(tmp_path: Path) -> None:
    control = load(specs_copy(tmp_path / "good", "330500", replace_once('date_format = "%Y-%m-%d"',
                                                                         'date_format = "%Y%m%d"')))
    assert control["330500"].parse_date("20991231") == dt.date(2099, 12, 31)
    bad = specs_copy(tmp_path / "bad", "330500", replace_once('date_format = "%Y-%m-%d"',
                                                              'date_format = "%Y-%m-%d %Y"'))
    message = refused(bad)  # was re.error ("redefinition of group name") naming neither file nor field
    assert "330500.toml" in message and "date_format" in message


def test_spec_date_format_with_a_two_digit_year_refuses_start(tmp_path: Path) -> None:
    # %y writes 2099-12-31 (a long-term licence's end) as 99-12-31, read back as 1999: every such
    # licence would be expired; the single probe (2024-02-29) let it through
    bad = specs_copy(tmp_path, "330500", replace_once('date_format = "%Y-%m-%d"', 'date_format = "%y-%m-%d"'))
    message = refused(bad)
    assert "330500.toml" in message and "date_format" in message and "%y-%m-%d" in message


def test_spec_surface_table_with_a_misspelt_key_refuses_start_naming_the_field(tmp_path: Path) -> None:
    good = specs_copy(tmp_path / "good", "330500", replace_once('container = "zmxx"',
                                                                 'container = "zmxx"\nnames = {licence_no = "bh"}'))
    assert dict(load(good)["330500"].surface_names) == {"licence_no": "bh"}  # control
    bad = specs_copy(tmp_path / "bad", "330500", replace_once('container = "zmxx"',
                                                              'container = "zmxx"\nname = {licence_no = "bh"}'))
    message = refused(bad)  # was accepted: the region's surface names silently not used
    assert "330500.toml" in message and "surface" in message and "'name'" in message


def test_spec_surface_names_mapping_two_fields_to_one_name_refuses_start(tmp_path: Path) -> None:
    bad = specs_copy(tmp_path, "330500", replace_once(
        'container = "zmxx"', 'container = "zmxx"\nnames = {licence_no = "bh", plate_no = "bh"}'))
    message = refused(bad)
    assert "330500.toml" in message and "surface.names" in message


def test_spec_surface_container_that_is_also_a_field_name_refuses_start(tmp_path: Path) -> None:
    bad = specs_copy(tmp_path, "330500", replace_once('container = "zmxx"', 'container = "zzbh"'))
    message = refused(bad)  # was accepted: "zzbh" must be both the licence number and the surface object
    assert "330500.toml" in message and "surface.container" in message


@pytest.mark.parametrize(("old", "new", "named"), [
    ('signing_time_field = "qmsj"', 'signing_time_field = "sign_time"', "options.signing_time_field"),
    ('signature_encoding = "der"', 'signature_encoding = "pem"', "options.signature_encoding"),
    ('key_ref = "serial"', 'key_ref = "kidd"', "options.key_ref"),
    ('key_ref = "serial"', 'key_ref = "serial"\nsignatur_encoding = "raw"', "options.signatur_encoding"),
    ('key_ref = "serial"', 'key_ref = "serial"\nupstream_flavour = "soap"', "options.upstream_flavour"),
])
def test_spec_option_the_family_cannot_do_refuses_start_naming_the_option(tmp_path: Path, old: str, new: str,
                                                                            named: str) -> None:
    message = refused(specs_copy(tmp_path, "330500", replace_once(old, new)))  # all were accepted
    assert "330500.toml" in message and named in message


def test_an_sm2_licence_with_another_signing_time_name_is_malformed_so_the_spec_must_not_name_one() -> None:
    # why options.signing_time_field is limited: the decoder knows only qmsj and 签名时间
    from adapters.sm2_json import pop_signing_time
    from gateway.errors import LicenceRejected

    assert pop_signing_time({"qmsj": "2026-01-02T03:04:05+08:00"}).year == 2026  # control
    with pytest.raises(LicenceRejected):
        pop_signing_time({"sign_time": "2026-01-02T03:04:05+08:00"})


def test_spec_options_of_each_family_as_shipped_are_accepted_and_ofd_seal_sign_type_is_checked(tmp_path: Path) -> None:
    specs = load(SPECS)
    assert {s.family for s in specs.values()} == {"jws", "sm2-json", "sm2-xml", "ofd-seal"}
    assert specs["310000"].options["signature_type"] == "Seal"
    bad = specs_copy(tmp_path, "310000", replace_once('signature_type = "Seal"', 'signature_type = "seal"'))
    message = refused(bad)
    assert "310000.toml" in message and "options.signature_type" in message


def test_spec_field_named_like_the_signing_time_refuses_start(tmp_path: Path) -> None:
    bad = specs_copy(tmp_path, "330500", replace_once('status_index = "ztsy"', 'status_index = "qmsj"'))
    message = refused(bad)  # was accepted: the decoder takes "qmsj" out as the signing time
    assert "330500.toml" in message and "qmsj" in message


def test_spec_holder_code_type_outside_gbt_36903_refuses_start(tmp_path: Path) -> None:
    from gateway.identifiers import holder_code_valid

    good = specs_copy(tmp_path / "good", "330500", replace_once('"999" = "999"', '"999" = "999"\n"HZ" = "414"'))
    assert load(good)["330500"].holder_code_types["HZ"] == "414"  # control: a passport type
    bad = specs_copy(tmp_path / "bad", "330500", replace_once('"999" = "999"', '"999" = "123"'))
    message = refused(bad)  # was accepted; every licence of that holder type then HOLDER_CODE_INVALID
    assert "330500.toml" in message and "holder_code_types.999" in message
    assert not holder_code_valid("123", "E12345678")


def test_spec_of_a_json_family_in_gb18030_refuses_start(tmp_path: Path) -> None:
    assert load(SPECS)["320100"].text_encoding == "gb18030"  # control: sm2-xml writes GB 18030
    bad = specs_copy(tmp_path, "340100", replace_once('text_encoding = "utf-8"', 'text_encoding = "gb18030"'))
    message = refused(bad)  # was accepted: the jws family never writes or reads GB 18030
    assert "340100.toml" in message and "text_encoding" in message


def test_spec_name_en_that_is_not_text_refuses_start(tmp_path: Path) -> None:
    bad = specs_copy(tmp_path, "330500", replace_once('family =', 'name_en = 5\nfamily ='))
    message = refused(bad)
    assert "330500.toml" in message and "name_en" in message


def test_spec_licence_type_not_in_the_catalogue_refuses_start_naming_the_file(tmp_path: Path) -> None:
    good = specs_copy(tmp_path / "good", "330500", replace_once('licence_types = ["*"]', 'licence_types = ["id_card"]'))
    _, specs, _ = load_static(Settings(demo=True, specs_dir=str(good)))
    assert specs["330500"].licence_types == ("id_card",)  # control
    bad = specs_copy(tmp_path / "bad", "330500", replace_once('licence_types = ["*"]', 'licence_types = ["id_crad"]'))
    with pytest.raises(SpecError) as info:  # was accepted: the simulator silently issued nothing for it
        load_static(Settings(demo=True, specs_dir=str(bad)))
    assert "330500.toml" in str(info.value) and "licence_types" in str(info.value) and "id_crad" in str(info.value)


# --- settings -------------------------------------------------------------------------------------
def test_by_region_setting_with_a_non_number_names_the_setting_and_the_variable() -> None:
    ok = load_settings(demo=True, env={"GATEWAY_STATUS_MAX_AGE_BY_REGION": "330500=600"})
    assert ok.status_max_age("330500") == dt.timedelta(seconds=600)  # control
    with pytest.raises(ConfigError) as info:  # was a bare ValueError "invalid literal for int()"
        load_settings(demo=True, env={"GATEWAY_STATUS_MAX_AGE_BY_REGION": "330500=abc"})
    assert "status_max_age_by_region" in str(info.value) and "GATEWAY_STATUS_MAX_AGE_BY_REGION" in str(info.value)
    with pytest.raises(ConfigError, match="upstream_timeout_ms_by_region"):
        load_settings(demo=True, env={"GATEWAY_UPSTREAM_TIMEOUT_MS_BY_REGION": "340100"})


def test_by_region_setting_with_text_values_in_the_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('status_max_age_by_region = {"330500" = 600}\n', encoding="utf-8")
    assert load_settings(str(cfg), env={}, demo=True).status_max_age_by_region == {"330500": 600}  # control
    cfg.write_text('status_max_age_by_region = {"330500" = "ten minutes"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:  # was accepted, then a TypeError on every status check
        load_settings(str(cfg), env={}, demo=True)
    assert "status_max_age_by_region" in str(info.value) and str(cfg) in str(info.value)


def test_region_list_setting_of_numbers_in_the_config_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('status_exempt_regions = ["330500"]\n', encoding="utf-8")
    assert load_settings(str(cfg), env={}, demo=True).status_exempt_regions == ("330500",)  # control
    cfg.write_text("status_exempt_regions = [330500]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:  # was accepted as (330500,): the exemption matched nothing
        load_settings(str(cfg), env={}, demo=True)
    assert "status_exempt_regions" in str(info.value) and str(cfg) in str(info.value)
    cfg.write_text("status_exempt_regions = 330500\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="status_exempt_regions"):  # was a TypeError
        load_settings(str(cfg), env={}, demo=True)


@pytest.mark.parametrize(("name", "value"), [("GATEWAY_STATUS_EXEMPT_REGIONS", "33050"),
                                             ("GATEWAY_STATUS_MAX_AGE_BY_REGION", "33050=600")])
def test_region_setting_with_a_malformed_code_is_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(demo=True, env={name: value})
    assert "33050" in str(info.value) and name in str(info.value)


def test_region_setting_naming_a_region_not_served_refuses_start() -> None:
    settings = load_settings(demo=True, env={"GATEWAY_STATUS_EXEMPT_REGIONS": "330500"})
    load_static(settings)  # control
    settings = load_settings(demo=True, env={"GATEWAY_STATUS_EXEMPT_REGIONS": "330501"})
    with pytest.raises(ConfigError) as info:  # was accepted: the exemption silently applied to nothing
        load_static(settings)
    assert "status_exempt_regions" in str(info.value) and "330501" in str(info.value)


@pytest.mark.parametrize(("name", "value"), [
    ("GATEWAY_QUERY_DEADLINE_MS", "0"), ("GATEWAY_BREAKER_ERROR_PERCENT", "0"),
    ("GATEWAY_UPSTREAM_BASE_URL", "http://regions.example/"), ("GATEWAY_UPSTREAM_RETRIES", "-1"),
    ("GATEWAY_PORT", "70000"), ("GATEWAY_PORT", "0"), ("GATEWAY_DEMO_REGIONS_PORT", "-1"),
    ("GATEWAY_LOG_LEVEL", "verbose"), ("GATEWAY_ACCESS_TOKEN_TTL_SECONDS", "-1"),
    ("GATEWAY_CONSOLE_IDLE_TIMEOUT_SECONDS", "0"), ("GATEWAY_MAX_BODY_BYTES", "1000"),
])
def test_a_limit_refused_only_inside_a_worker_or_never_is_refused_by_load_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(demo=True, env={name: value})
    assert name.removeprefix("GATEWAY_").lower() in str(info.value) and name in str(info.value)


def test_the_limits_above_accept_their_defaults_and_sane_values() -> None:
    s = load_settings(demo=True, env={"GATEWAY_QUERY_DEADLINE_MS": "2000", "GATEWAY_PORT": "9000",
                                      "GATEWAY_LOG_LEVEL": "WARNING", "GATEWAY_MAX_BODY_BYTES": "262144",
                                      "GATEWAY_UPSTREAM_BASE_URL": "http://regions.example/{region}"})
    assert (s.query_deadline_ms, s.port, s.log_level, s.max_body_bytes) == (2000, 9000, "WARNING", 262144)


@pytest.mark.parametrize(("line", "named"), [("port = true", "port"), ("max_batch = 2.5", "max_batch"),
                                             ('host = ["0.0.0.0"]', "host")])
def test_a_config_file_value_of_the_wrong_type_is_refused_not_converted(tmp_path: Path, line: str, named: str) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:  # were port 1, max_batch 2, host "['0.0.0.0']"
        load_settings(str(cfg), env={}, demo=True)
    assert f"setting {named}" in str(info.value) and str(cfg) in str(info.value)
    cfg.write_text("port = 9000\nmax_batch = 50\nhost = \"0.0.0.0\"\n", encoding="utf-8")
    s = load_settings(str(cfg), env={}, demo=True)
    assert (s.port, s.max_batch, s.host) == (9000, 50, "0.0.0.0")


def test_a_type_error_names_where_the_value_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('max_batch = "ten"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="GATEWAY_MAX_BATCH"):
        load_settings(demo=True, env={"GATEWAY_MAX_BATCH": "ten"})
    with pytest.raises(ConfigError, match="config file"):
        load_settings(str(cfg), env={}, demo=True)
    with pytest.raises(ConfigError, match="command line"):
        load_settings(env={}, demo=True, workers="two")


def test_a_misspelt_environment_variable_is_refused_with_the_setting_it_resembles() -> None:
    # control: GATEWAY_* names the project's tools read that are not settings are left alone
    s = load_settings(demo=True, env={"GATEWAY_TEST_PG_DSN": "postgresql://x", "GATEWAY_CORPUS": "c.jsonl",
                                      "GATEWAY_MAX_BODY_BYTES": "5000000"})
    assert s.max_body_bytes == 5_000_000
    with pytest.raises(ConfigError) as info:  # was silently ignored: the default 4 MiB stayed
        load_settings(demo=True, env={"GATEWAY_MAX_BODY_BYTE": "5000000"})
    assert "GATEWAY_MAX_BODY_BYTE" in str(info.value) and "GATEWAY_MAX_BODY_BYTES" in str(info.value)


# --- the command line -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full.update({"GATEWAY_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}, **env)
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=90)


def bad_spec_dir(tmp_path: Path) -> Path:
    return specs_copy(tmp_path, "330500", replace_once("family =", 'famly = "sm2-json"\nfamily ='))


def test_specs_check_with_an_invalid_spec_exits_2_naming_the_file_without_a_traceback(tmp_path: Path) -> None:
    ok = run_cli(["specs", "check"], {}, tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 45 region specs")  # control
    done = run_cli(["specs", "check"], {"GATEWAY_SPECS_DIR": str(bad_spec_dir(tmp_path))}, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "330500.toml" in done.stderr and "famly" in done.stderr and "区域规格错误" in done.stderr


def test_specs_check_with_a_bad_setting_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = run_cli(["specs", "check"], {"GATEWAY_MAX_BATCH": "ten"}, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "GATEWAY_MAX_BATCH" in done.stderr and "配置错误" in done.stderr


def test_serve_with_an_invalid_spec_exits_2_before_announcing_itself(tmp_path: Path) -> None:
    done = run_cli(["serve", "--demo", "--port", str(_free_port())],
                   {"GATEWAY_SPECS_DIR": str(bad_spec_dir(tmp_path))}, tmp_path)
    # was: the "e-licence gateway on http://..." banner, then a SpecError traceback, exit 1
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "330500.toml" in done.stderr and "famly" in done.stderr
    assert "e-licence gateway on" not in done.stdout


def test_serve_with_a_bad_query_limit_exits_2_before_any_worker_starts(tmp_path: Path) -> None:
    done = run_cli(["serve", "--demo", "--port", str(_free_port())], {"GATEWAY_QUERY_DEADLINE_MS": "0"}, tmp_path)
    # was: the banner, the demo regions process started, then a ConfigError traceback from the worker
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "query_deadline_ms" in done.stderr and "GATEWAY_QUERY_DEADLINE_MS" in done.stderr
    assert "e-licence gateway on" not in done.stdout


def test_serve_in_operator_mode_without_audit_keys_exits_2_naming_them(tmp_path: Path) -> None:
    env = {"GATEWAY_TRUST_LIST": str(tmp_path / "trust-list.signed.json"),
           "GATEWAY_TRUST_OPERATOR_KEYS": str(ROOT / "certs" / "trust" / "operator.test-public.pem")}
    done = run_cli(["serve", "--port", str(_free_port())], env, tmp_path)
    # was: the banner, then a ConfigError traceback from inside the worker
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "audit_hmac_key" in done.stderr and "e-licence gateway on" not in done.stdout


def test_serve_with_a_missing_operator_key_file_exits_2_naming_the_setting(tmp_path: Path) -> None:
    env = {"GATEWAY_TRUST_LIST": str(tmp_path / "trust-list.signed.json"),
           "GATEWAY_TRUST_OPERATOR_KEYS": str(tmp_path / "no-such-operator.pem")}
    done = run_cli(["serve", "--port", str(_free_port())], env, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "trust_operator_keys" in done.stderr and "no-such-operator.pem" in done.stderr


def test_demo_issue_with_a_misspelt_setting_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = run_cli(["demo", "issue", "--region", "330500"],
                   {"GATEWAY_WORKER": "2", "GATEWAY_DEMO_REGIONS_PORT": str(_free_port())}, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "GATEWAY_WORKERS" in done.stderr


@pytest.mark.parametrize("workers, ok", [(1, True), (256, True), (257, False), (1000, False)])
def test_worker_count_is_bounded(workers: int, ok: bool) -> None:
    from gateway.config import ConfigError, Settings
    if ok:
        assert Settings(demo=True, workers=workers).validate().workers == workers
    else:
        with pytest.raises(ConfigError, match="workers must be 1..256"):
            Settings(demo=True, workers=workers).validate()
