"""config: one table; environment over file over defaults; bad values named."""

import re
from pathlib import Path

import pytest

from clicktrail.config import SETTINGS, load
from clicktrail.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_environment_over_file_over_default(tmp_path: Path) -> None:
    cfg_file = tmp_path / "ct.toml"
    cfg_file.write_text('click_domain = "https://from-file.example.com"\ntrusted_proxies = 2\n')
    env = {"CLICKTRAIL_CONFIG": str(cfg_file), "CLICKTRAIL_TRUSTED_PROXIES": "1",
           "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")}
    cfg = load(env)
    assert cfg["trusted_proxies"] == 1
    assert cfg["click_domain"] == "https://from-file.example.com"
    assert cfg["track_clicks"] is True


@pytest.mark.parametrize(
    ("name", "value"),
    [("CLICKTRAIL_CLICK_DOMAIN", "clicks.example.com"), ("CLICKTRAIL_CLICK_DOMAIN", "https://c.example.com/path"),
     ("CLICKTRAIL_TRUSTED_PROXIES", "-1"), ("CLICKTRAIL_TRACK_OPENS", "maybe"),
     ("CLICKTRAIL_CLICK_DOMAIN", "http://exa mple.com"), ("CLICKTRAIL_CLICK_DOMAIN", "http://clicks.example.com:99999"),
     ("CLICKTRAIL_CLICK_DOMAIN", "https://bücher.example"), ("CLICKTRAIL_AGGREGATE_INTERVAL", "5.7"),
     ("CLICKTRAIL_DASHBOARD_HOST", "a b"), ("CLICKTRAIL_DASHBOARD_HOST", "stats.example.com:99999"),
     ("CLICKTRAIL_MAX_MESSAGE_BYTES", "0"), ("CLICKTRAIL_SPOOL", "/no/such/folder/spool")],
)
def test_bad_value_names_the_setting(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load({name: value, "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")})


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg_file = tmp_path / "ct.toml"
    cfg_file.write_text("clik_domain = 'x'\n")
    with pytest.raises(ConfigError, match="clik_domain"):
        load({"CLICKTRAIL_CONFIG": str(cfg_file)})


def test_secret_key_is_generated_once_beside_the_database_and_hidden(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    env = {"CLICKTRAIL_DATABASE": str(tmp_path / "data" / "ct.db"), "CLICKTRAIL_STATS_PASSWORD": "pw"}
    first, second = load(env), load(env)
    assert first["secret_key"] == second["secret_key"] and len(first["secret_key"]) >= 32
    assert (tmp_path / "data" / "ct.db.secret").stat().st_mode & 0o777 == 0o600
    assert first["secret_key"] not in repr(first) and "pw" not in repr(first)


def test_readme_settings_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table")[1].split("<!-- /settings-table -->")[0]
    documented = re.findall(r"^\| `(CLICKTRAIL_[A-Z_]+)` \|", table, re.M)
    assert documented == [s.env for s in SETTINGS]
    for s in SETTINGS:
        assert s.help in table, s.env


def test_database_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CLICKTRAIL_DATABASE: the folder .* does not exist"):
        load({"CLICKTRAIL_DATABASE": str(tmp_path / "typo" / "ct.db")})


@pytest.mark.parametrize(("name", "value"), [
    ("CLICKTRAIL_SECRET_KEY", "change-me-to-the-output-of-openssl-rand-base64-32"),
    ("CLICKTRAIL_STATS_PASSWORD", "change-me"),
    ("CLICKTRAIL_STATS_PASSWORD", "CHANGE_ME: the output of clicktrail hash-password"),
    ("CLICKTRAIL_OLD_SECRET_KEYS", "a-real-old-key,changeme"),
    ("CLICKTRAIL_SMTP_UPSTREAM_PASSWORD", "'change me'"),
    ("CLICKTRAIL_STATS_USERS", "ann:change-me"),
])
def test_a_placeholder_left_in_place_stops_start_up_naming_the_setting(tmp_path: Path, name: str,
                                                                        value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: still the placeholder") as raised:
        load({name: value, "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")})
    assert value not in raised.value.message  # a secret is never echoed


def test_a_placeholder_in_the_file_is_refused_too(tmp_path: Path) -> None:
    cfg_file = tmp_path / "ct.toml"
    cfg_file.write_text('secret_key = "change-me"\nold_secret_keys = ["changeme-1"]\n')
    with pytest.raises(ConfigError, match="secret_key in .*: still the placeholder"):
        load({"CLICKTRAIL_CONFIG": str(cfg_file), "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")})
    assert load({"CLICKTRAIL_SECRET_KEY": "exchange-me-not", "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")})


@pytest.mark.parametrize(("line", "name"), [('database = ["a.db"]', "database"),
                                            ("aggregate_interval = 5.7", "aggregate_interval"),
                                            ("click_domain = 7", "click_domain"), ("smtp_hostname = true", "smtp_hostname")])
def test_a_value_of_the_wrong_type_in_the_file_is_refused(tmp_path: Path, line: str, name: str) -> None:
    cfg_file = tmp_path / "ct.toml"
    cfg_file.write_text(line + "\n")
    with pytest.raises(ConfigError, match=f"{name} in "):
        load({"CLICKTRAIL_CONFIG": str(cfg_file)})  # refused while reading: nothing is created anywhere


def test_a_config_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    cfg_file = tmp_path / "ct.toml"
    cfg_file.write_bytes(b"\x00\xd8\xff\xfe binary")
    with pytest.raises(ConfigError, match="CLICKTRAIL_CONFIG: cannot read"):
        load({"CLICKTRAIL_CONFIG": str(cfg_file), "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")})


def test_a_config_file_that_never_ends_is_refused_not_read_whole(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a settings file"):
        load({"CLICKTRAIL_CONFIG": "/dev/zero", "CLICKTRAIL_DATABASE": str(tmp_path / "x.db")})
