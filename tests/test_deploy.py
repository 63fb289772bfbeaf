"""deploy/: the systemd units, gunicorn settings, nginx site and settings example agree with each other."""

from __future__ import annotations

import configparser
import os
import re
import runpy
import subprocess
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from clicktrail import config
from clicktrail.errors import ConfigError

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ENV_FILE = "/etc/clicktrail/clicktrail.env"  # where README "Deploy" installs clicktrail.env.example
UNITS = ("clicktrail.service", "clicktrail-smtp.service")
HASH = generate_password_hash("a long dashboard password", method="scrypt")  # scrypt:32768:8:1$salt$hash


def unit(name: str = "clicktrail.service") -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string((DEPLOY / name).read_text())
    return parser


def systemd_env(text: str) -> dict[str, str]:
    """Read an environment file as systemd's EnvironmentFile= does (src/basic/env-file.c): no expansion at all.

    ``#`` or ``;`` starts a comment line; single quotes are literal; in double quotes a backslash escapes
    ``"``, ``\\``, `````` ` `````` and ``$`` only; unquoted, a backslash escapes any character and trailing
    whitespace is dropped.
    """
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, raw = line.split("=", 1)
        value, i, quote, trailing = "", 0, "", 0
        raw = raw.lstrip(" \t")
        while i < len(raw):
            c = raw[i]
            if quote == "'":
                quote = "" if c == "'" else quote
                value += c if c != "'" else ""
            elif quote == '"':
                if c == "\\" and i + 1 < len(raw):
                    i += 1
                    value += raw[i] if raw[i] in '"\\`$' else "\\" + raw[i]
                elif c == '"':
                    quote = ""
                else:
                    value += c
            elif c in "'\"":
                quote = c
            elif c == "\\" and i + 1 < len(raw):
                i += 1
                value += raw[i]
            else:
                value += c
                trailing = len(value) if c not in " \t" else trailing
                i += 1
                continue
            trailing = len(value)
            i += 1
        env[key.strip()] = value[:trailing]
    return env


def sh_env(path: Path) -> dict[str, str]:
    """Read an environment file as the README's clicktrail command does: ``set -a; . FILE`` in sh."""
    out = subprocess.run(["sh", "-c", 'set -a; . "$1"; set +a; exec env -0', "sh", str(path)],
                         capture_output=True, check=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout
    pairs = (item.split("=", 1) for item in out.decode().split("\0") if item.startswith("CLICKTRAIL_"))
    return dict(pairs)


def example(password: str | None = HASH) -> str:
    """The settings example, with the stats password filled in as README "Deploy" says (between its quotes)."""
    text = (DEPLOY / "clicktrail.env.example").read_text()
    if password is None:
        return text
    text, n = re.subn(r"^(CLICKTRAIL_STATS_PASSWORD=')[^']*'$", lambda m: m.group(1) + password + "'", text, flags=re.M)
    assert n == 1
    return text


def rooted(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def service_settings(name: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> config.Config:
    """The settings a unit's process reads, on a machine whose file system is under ``root``.

    The unit's EnvironmentFile is the filled-in example; its Environment= lines and WorkingDirectory
    apply as systemd applies them (a relative path is relative to WorkingDirectory, else to /).
    """
    service = unit(name)["Service"]
    env: dict[str, str] = {}
    for assignment in service.get("Environment", "").split():
        key, _, value = assignment.partition("=")
        env[key] = value
    if "EnvironmentFile" in service:
        assert service["EnvironmentFile"].lstrip("-") == ENV_FILE
        env.update(systemd_env(example()))
    for key in ("CLICKTRAIL_DATABASE", "CLICKTRAIL_CONFIG", "CLICKTRAIL_SPOOL"):
        if env.get(key, "").startswith("/"):
            env[key] = str(rooted(root, env[key]))
    for folder in service.get("ReadWritePaths", "").split():  # made by README "Deploy" (useradd --create-home)
        rooted(root, folder).mkdir(parents=True, exist_ok=True)
    workdir = rooted(root, service.get("WorkingDirectory", "/"))
    workdir.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(workdir)
    loaded = config.load(env)
    return config.Config({**loaded, "database": str(workdir / loaded["database"])})


def test_the_settings_example_names_real_settings_with_good_values(tmp_path: Path) -> None:
    env = systemd_env(example())
    assert config.unknown_environment(env) == []
    assert env["CLICKTRAIL_DATABASE"].startswith("/var/lib/clicktrail/")  # the service user's home (README: useradd)
    env["CLICKTRAIL_DATABASE"] = str(tmp_path / Path(env["CLICKTRAIL_DATABASE"]).name)  # not on this machine
    loaded = config.load(env)
    assert loaded["trusted_proxies"] == 1 and loaded["click_domain"].startswith("https://")
    assert loaded["stats_password"] == HASH


def test_the_settings_example_holds_no_usable_secret(tmp_path: Path) -> None:
    env = systemd_env(example(password=None))
    assert "CLICKTRAIL_SECRET_KEY" not in env  # generated on the machine, beside the database
    env["CLICKTRAIL_DATABASE"] = str(tmp_path / "clicktrail.db")
    with pytest.raises(ConfigError, match="^CLICKTRAIL_STATS_PASSWORD: still the placeholder"):
        config.load(env)  # as shipped, nothing starts


def test_sh_and_systemd_read_the_settings_example_alike(tmp_path: Path) -> None:
    """The README's clicktrail command sources the file with sh; a "$" in a hash must survive both."""
    assert "$" in HASH
    path = tmp_path / "clicktrail.env"
    path.write_text(example() + "#CLICKTRAIL_SMTP_UPSTREAM_PASSWORD='not read: a comment'\n")
    read = systemd_env(path.read_text())
    assert read == sh_env(path) and read["CLICKTRAIL_STATS_PASSWORD"] == HASH
    smtp = "\n".join(line.lstrip("#") for line in example().splitlines() if line.startswith("#CLICKTRAIL_SMTP_"))
    path.write_text(smtp + "\n")  # the relay's settings, once uncommented, too
    assert systemd_env(smtp) == sh_env(path) and "CLICKTRAIL_SMTP_UPSTREAM" in systemd_env(smtp)


@pytest.mark.parametrize("text, value", [
    ("A='x$y z'", "x$y z"), ('A="x\\$y"', "x$y"), ("A=x\\ y  ", "x y"), ("  A=plain # not a comment", "plain # not a comment"),
])
def test_the_systemd_reader_of_these_tests_follows_systemd(text: str, value: str) -> None:
    assert systemd_env(text) == {"A": value}


def test_the_units_run_as_an_unprivileged_user_with_the_same_settings_file() -> None:
    for name in UNITS:
        service = unit(name)["Service"]
        assert service["User"] == "clicktrail" and service["EnvironmentFile"] == ENV_FILE, name
        assert "Environment" not in service, name  # every setting in the one file, none beside it
        database = Path(systemd_env(example())["CLICKTRAIL_DATABASE"])
        assert str(database.parent) in service["ReadWritePaths"].split(), name  # the database, its WAL, spool, key
        assert service["ProtectSystem"] == "strict" and service["UMask"] == "0077", name


def test_the_web_app_and_the_relay_share_database_and_secret_key(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Links the relay writes are signed with the key the web app checks: one database, one key beside it."""
    web = service_settings("clicktrail.service", tmp_path, monkeypatch)
    relay = service_settings("clicktrail-smtp.service", tmp_path, monkeypatch)
    assert Path(web["database"]).resolve() == Path(relay["database"]).resolve()
    assert Path(web["database"]).is_relative_to(tmp_path / "var/lib/clicktrail")
    assert web["secret_key"] == relay["secret_key"] and web["click_domain"] == relay["click_domain"]
    assert (tmp_path / "var/lib/clicktrail/clicktrail.db.secret").exists()
    assert dict(web) == dict(relay)  # every other setting too


def test_the_web_unit_runs_gunicorn_with_the_repos_settings() -> None:
    service = unit()["Service"]
    assert service["ExecStart"].split()[1:] == ["--config", "/opt/clicktrail/deploy/gunicorn.conf.py"]
    assert unit("clicktrail-smtp.service")["Service"]["ExecStart"].split()[1:] == ["smtp"]


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
