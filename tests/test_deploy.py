"""deploy/: the systemd unit, gunicorn settings, nginx site and settings example agree with each other."""

from __future__ import annotations

import configparser
import re
import runpy
from pathlib import Path

from clicktrail import config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string((DEPLOY / "clicktrail.service").read_text())
    return parser


def example_env() -> dict[str, str]:
    lines = (DEPLOY / "clicktrail.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_settings_example_names_real_settings_with_good_values(tmp_path: Path) -> None:
    env = example_env()
    assert config.unknown_environment(env) == []
    assert env["CLICKTRAIL_DATABASE"].startswith("/var/lib/clicktrail/")  # the service user's home (README: useradd)
    env["CLICKTRAIL_DATABASE"] = str(tmp_path / Path(env["CLICKTRAIL_DATABASE"]).name)  # not on this machine
    loaded = config.load(env)
    assert loaded["trusted_proxies"] == 1 and loaded["click_domain"].startswith("https://")


def test_the_unit_runs_gunicorn_with_the_repos_settings_as_an_unprivileged_user() -> None:
    service = unit()["Service"]
    assert service["ExecStart"].split()[1:] == ["--config", "/opt/clicktrail/deploy/gunicorn.conf.py"]
    assert service["User"] == "clicktrail" and service["EnvironmentFile"] == "/etc/clicktrail/clicktrail.env"
    database = Path(example_env()["CLICKTRAIL_DATABASE"])
    assert str(database.parent) in service["ReadWritePaths"].split()  # the database, its WAL and spool
    assert service["ProtectSystem"] == "strict"


def test_gunicorn_listens_where_nginx_sends_requests() -> None:
    settings = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert settings["wsgi_app"] == "clicktrail.tracker:create_app()"
    site = (DEPLOY / "nginx-clicktrail.conf").read_text()
    assert re.findall(r"proxy_pass (\S+);", site) == [f"http://{settings['bind']}"]  # no URI part


def test_the_nginx_site_sets_rather_than_appends_forwarded_headers() -> None:
    site = (DEPLOY / "nginx-clicktrail.conf").read_text()
    headers = dict(re.findall(r"proxy_set_header (\S+) (\S+);", site))
    assert headers == {"Host": "$host", "X-Forwarded-Host": "$host", "X-Forwarded-For": "$remote_addr",
                       "X-Forwarded-Proto": "$scheme"}
