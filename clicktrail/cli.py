"""The ``clicktrail`` command: a thin layer over messages, logstore and tracker."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import click

from . import config as config_mod
from .errors import ClicktrailError
from .messages import track
from .tracker import Clicktrail, build

PORT = click.IntRange(1, 65535)

LOG_KINDS = ("clicks", "opens", "attempts", "deliveries", "failures")
EVENT_TYPES = {"clicks": "click", "opens": "open", "deliveries": "delivery", "failures": "failure"}


def _parts() -> Clicktrail:
    try:
        return build(config_mod.load())
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e


def iso_time(value: str, name: str = "--since") -> str:
    """Parse an ISO 8601 time (naive means UTC) into the stored form."""
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as 2026-12-01T00:00:00Z", param_hint=name) from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="microseconds")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Self-hosted email click and open tracking."""


@main.command()
@click.option("--recipient", "recipients", metavar="ADDR", multiple=True,
              help="Recipient of this copy (default: the To header).")
@click.option("--tag", metavar="TAG", help="Campaign or category tag recorded with the attempt.")
@click.argument("file", type=click.File("rb"), default="-")
def rewrite(recipients: tuple[str, ...], tag: str | None, file: Any) -> None:
    """Rewrite a MIME message or bare HTML from FILE (or stdin) onto stdout."""
    import logging

    from .messages import for_rewrite, untouched
    from .submission import MAX_TAG, valid_address, valid_tag

    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)  # the rewrite's warnings, once
    logging.addLevelName(logging.WARNING, "warning")

    if len(recipients) > 1:  # one copy goes to stdout: a second recipient would be dropped without a word
        raise click.BadParameter("one recipient per run (one copy comes out); run it again for the next",
                                 param_hint="--recipient")
    recipient = recipients[0] if recipients else None
    if recipient is not None and (not recipient.isascii() or not valid_address(recipient)):
        raise click.BadParameter(f"{recipient!r} is not a valid email address", param_hint="--recipient")
    if tag is not None and not valid_tag(tag):
        raise click.BadParameter(f"a tag is 1 to {MAX_TAG} characters of text without control characters",
                                 param_hint="--tag")
    raw = file.read()
    if not raw.strip():
        raise click.ClickException("the input is empty: give a MIME message or HTML")
    parts = _parts()
    try:
        rewritable = for_rewrite(raw, parts.config["smtp_rewrite_dkim"])  # as the relay decides
        if rewritable is None:
            logging.warning("the message carries a DKIM-Signature, which rewriting would break: passed through"
                            " untouched (CLICKTRAIL_SMTP_REWRITE_DKIM=yes rewrites it and removes the signature)")
            copy = untouched(parts.store, raw, [recipient], tag)[0]
        else:
            if rewritable is not raw:
                logging.warning("the message's DKIM-Signature is removed, as rewriting breaks it: sign after clicktrail")
            copy = track(parts.store, parts.signer, parts.options, rewritable, [recipient], tag).copies[0]
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    out = sys.stdout.buffer
    out.write(copy.data)
    out.flush()


@main.command()
@click.argument("kind", type=click.Choice(LOG_KINDS))
@click.option("--since", metavar="ISO8601", help="Only events at or after this time.")
def logs(kind: str, since: str | None) -> None:
    """Print a raw log (clicks, opens, attempts, deliveries or failures) as JSON Lines."""
    since_ts = iso_time(since) if since else None
    store = _parts().store
    rows = store.attempts(since_ts) if kind == "attempts" else store.events(EVENT_TYPES[kind], since_ts)
    write = sys.stdout.write
    try:
        for row in rows:
            row.pop("seq", None)
            write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except ClicktrailError as e:  # the store is failing or busy: no log that is silently short
        raise click.ClickException(e.message) from e
    except BrokenPipeError:
        # The reader stopped early (``| head``): not an error; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@main.command()
def replay() -> None:
    """Move spooled events, and what every journal holds, into the database (each event once)."""
    try:
        n = _parts().store.replay()
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"replayed {n} spooled events")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=PORT, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the development server (use gunicorn in production)."""
    from .tracker import create_app

    try:
        app = create_app()
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    app.run(host=host, port=port)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys (for everything under /api)."""


@keys.command("create")
@click.option("--name", required=True, metavar="NAME", help="What the key is for, e.g. the sending application.")
def keys_create(name: str) -> None:
    """Create a key and print it once, alone on the last line."""
    from . import apikeys

    try:
        made, key = apikeys.create(_parts().store, name)
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"created API key {made.id} ({made.name}); it is shown only now: keep it safe")
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """List keys: id, created, revoked, name (never the keys themselves)."""
    from . import apikeys

    for k in apikeys.listing(_parts().store):
        click.echo(f"{k.id}  created {k.created_at}  {'revoked ' + k.revoked_at if k.revoked_at else 'active'}  "
                   f"{k.name}")


@keys.command("revoke")
@click.argument("key_id", metavar="ID")
def keys_revoke(key_id: str) -> None:
    """Revoke the key with this id (see `keys list`); it stops working at once."""
    from . import apikeys

    try:
        k = apikeys.revoke(_parts().store, key_id)
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"revoked API key {k.id} ({k.name})")


@main.command()
@click.option("--port", default=8000, show_default=True, type=PORT, help="Port for the demo tracker on 127.0.0.1.")
@click.option("--data", default="demo-data", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's database and messages.")
@click.option("--no-serve", is_flag=True, help="Prepare the demo and print its links, but start no server.")
def demo(port: int, data: str, no_serve: bool) -> None:
    """Rewrite a sample newsletter, print its links, and run the tracker on 127.0.0.1."""
    folder = Path(data).resolve()
    password_file = folder / "stats-password"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(9) + "\n")
    except OSError as e:
        raise click.ClickException(f"--data: cannot use {folder} for the demo's files: {e.strerror or e}") from e
    env = {
        "CLICKTRAIL_CLICK_DOMAIN": f"http://127.0.0.1:{port}",
        "CLICKTRAIL_DATABASE": str(folder / "clicktrail.db"),
        "CLICKTRAIL_STATS_PASSWORD": password_file.read_text().strip(),
        "CLICKTRAIL_AGGREGATE_INTERVAL": os.environ.get("CLICKTRAIL_AGGREGATE_INTERVAL") or "2",  # quick to show clicks
    }
    os.environ.update(env)
    parts = _parts()
    sample = resources.files("clicktrail").joinpath("demo/newsletter.eml").read_bytes()
    result = track(parts.store, parts.signer, parts.options, sample, ["reader@example.com"], "demo")
    copy = result.copies[0]
    out = folder / "newsletter-rewritten.eml"
    out.write_bytes(copy.data)
    attempt = int(copy.message, 16)
    base = parts.options.base
    echo: Callable[[str], None] = click.echo
    echo(f"Rewrote a sample newsletter for reader@example.com -> {out}")
    echo("Its tracked links (open them in a browser; each one is logged, then redirects):")
    from .urls import Target, tracked_url

    for idx, (kind, url) in enumerate(result.prepared.links.links, 1):
        echo(f"  [{kind}] {tracked_url(base, parts.signer.mint(attempt, idx), Target(url))}")
        echo(f"          -> {url}")
    echo(f"  [open pixel] {base}/{parts.signer.mint(attempt, 0)}/o.gif")
    echo(f"Stats page: {base}/stats   password: {env['CLICKTRAIL_STATS_PASSWORD']}")
    command = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "clicktrail" else "clicktrail"
    echo(f"Raw logs:   CLICKTRAIL_DATABASE={env['CLICKTRAIL_DATABASE']} {command} logs clicks")
    echo(f"API key:    CLICKTRAIL_DATABASE={env['CLICKTRAIL_DATABASE']} {command} keys create --name demo"
         "   (README, API: curl examples)")
    if no_serve:
        return
    echo("Starting the tracker (gunicorn, 2 workers); Ctrl-C stops it.")
    sys.stdout.flush()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    os.execve(str(gunicorn), [str(gunicorn), "--workers", "2", "--bind", f"127.0.0.1:{port}",
                              "--access-logfile", "-", "--no-control-socket",
                              "clicktrail.tracker:create_app()"], dict(os.environ))


@main.command()
@click.option("--listen", metavar="HOST:PORT", help="Address to listen on (default: CLICKTRAIL_SMTP_LISTEN).")
@click.option("--upstream", metavar="HOST:PORT", help="Mail server to forward to (default: CLICKTRAIL_SMTP_UPSTREAM).")
def smtp(listen: str | None, upstream: str | None) -> None:
    """Run the SMTP relay: track each message in transit and forward it upstream."""
    import logging
    import signal

    from .relay import Relay

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
    overrides = {k: v for k, v in (("smtp_listen", listen), ("smtp_upstream", upstream)) if v}
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before any thread starts, so only sigwait below sees them
    try:
        relay = Relay(build(config_mod.load(overrides=overrides), serving=True))
        relay.start()
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"SMTP relay on {relay.cfg['smtp_listen']}, forwarding to {relay.cfg['smtp_upstream']}", err=True)
    signal.sigwait(stop)
    click.echo("stopping: finishing messages in flight", err=True)
    relay.stop()


@main.group("smtp-users")
def smtp_users() -> None:
    """Logins of the SMTP relay, each with its own tracking defaults."""


@smtp_users.command("add")
@click.argument("name")
@click.option("--clicks/--no-clicks", default=True, show_default=True, help="Track clicks in this login's mail.")
@click.option("--opens/--no-opens", default=True, show_default=True, help="Track opens in this login's mail.")
def smtp_users_add(name: str, clicks: bool, opens: bool) -> None:
    """Add a login; the password is read from stdin (one line) or prompted for."""
    from . import smtpusers

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        smtpusers.add(_parts().store, name, password, clicks, opens)
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"added {name} (clicks {'on' if clicks else 'off'}, opens {'on' if opens else 'off'})")


@smtp_users.command("list")
def smtp_users_list() -> None:
    """List the logins with their tracking defaults."""
    from . import smtpusers

    for login in smtpusers.all_logins(_parts().store):
        clicks, opens = ("on" if login.track_clicks else "off"), ("on" if login.track_opens else "off")
        click.echo(f"{login.name}\tclicks {clicks}\topens {opens}\tadded {login.created}")


@smtp_users.command("remove")
@click.argument("name")
def smtp_users_remove(name: str) -> None:
    """Remove a login."""
    from . import smtpusers

    try:
        smtpusers.remove(_parts().store, name)
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"removed {name}")
@main.group()
def domains() -> None:
    """Click domains of sender identities, and the DNS records they need."""


def _identity(from_: str | None, login: str | None, api_key: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("from", from_), ("login", login), ("api_key", api_key)) if v is not None]
    if len(given) != 1:
        raise click.UsageError("name exactly one sender identity: --from DOMAIN, --login LOGIN or --api-key NAME")
    return given[0]


_FROM = click.option("--from", "from_", metavar="DOMAIN", help="Messages whose From address is at DOMAIN (or below).")
_LOGIN = click.option("--login", metavar="LOGIN", help="Messages relayed for this SMTP login.")
_API_KEY = click.option("--api-key", metavar="NAME", help="Messages sent with the API key of this name.")


@domains.command("add")
@click.argument("domain")
@_FROM
@_LOGIN
@_API_KEY
def domains_add(domain: str, from_: str | None, login: str | None, api_key: str | None) -> None:
    """Rewrite a sender's links onto DOMAIN (e.g. offers.example.com or https://offers.example.com)."""
    from . import domains as domains_mod

    kind, value = _identity(from_, login, api_key)
    try:
        parts = _parts()
        entry = domains_mod.add(parts.store, kind, value, domain, domains_mod.own_names(parts.config))
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"{domains_mod.KIND_NAMES[entry.kind]} {entry.value} -> {entry.base}")
    click.echo(f"Check its DNS record with: clicktrail domains check {domains_mod.host_of(entry.base)}")


@domains.command("list")
def domains_list() -> None:
    """Print the default click domain and each sender identity's own."""
    from . import domains as domains_mod

    parts = _parts()
    click.echo(f"default\t\t{parts.config['click_domain']}")
    for e in domains_mod.entries(parts.store):
        click.echo(f"{e.kind}\t{e.value}\t{e.base}")


@domains.command("remove")
@click.argument("domain", required=False)
@_FROM
@_LOGIN
@_API_KEY
def domains_remove(domain: str | None, from_: str | None, login: str | None, api_key: str | None) -> None:
    """Remove a sender identity's click domain, or (given DOMAIN) stop answering on DOMAIN at all."""
    from . import domains as domains_mod

    store = _parts().store
    try:
        if domain is not None:
            if from_ or login or api_key:
                raise click.UsageError("give either DOMAIN or one sender identity, not both")
            n = domains_mod.remove_domain(store, domain)
            if not n:
                raise click.ClickException(f"{domain} is not a configured click domain")
            click.echo(f"removed {domain} from {n} sender identit{'y' if n == 1 else 'ies'}")
            return
        kind, value = _identity(from_, login, api_key)
        if not domains_mod.remove(store, kind, value):
            raise click.ClickException(f"the {domains_mod.KIND_NAMES[kind]} {value} has no click domain of its own")
        click.echo(f"removed the click domain of {domains_mod.KIND_NAMES[kind]} {value}")
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e


@domains.command("check")
@click.argument("domain")
@click.option("--target", metavar="HOST", help="The tracker's host name (default: the click domain's host).")
@click.option("--resolver", metavar="ADDR[:PORT]", help="DNS resolver to ask (default: the first in /etc/resolv.conf).")
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait for each DNS answer.")
def domains_check(domain: str, target: str | None, resolver: str | None, timeout: float) -> None:
    """Tell whether DOMAIN's DNS points at the tracker, and which record to create if not."""
    from urllib.parse import urlsplit

    from . import dns
    from . import domains as domains_mod

    try:
        if target is None:
            target = urlsplit(config_mod.load()["click_domain"]).hostname or ""
        server = dns.parse_server(resolver) if resolver else dns.system_server()
        report = domains_mod.check(domain, target, server, timeout)
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    for line in report.lines:
        click.echo(line)
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option("--rebuild", is_flag=True, help="Empty the summaries and fold every event again.")
def aggregate(rebuild: bool) -> None:
    """Fold new events into the dashboard's summary tables (also run by the app on a timer)."""
    from . import aggregate as agg

    store = _parts().store
    n = agg.rebuild(store) if rebuild else agg.fold(store)
    click.echo(f"folded {n} events; summaries now include every event up to seq {agg.high_water(store)}")


@main.command("hash-password")
@click.password_option("--password", prompt="Password", help="The password (asked for when not given).")
def hash_password(password: str) -> None:
    """Print a hash of a password for CLICKTRAIL_STATS_PASSWORD or CLICKTRAIL_STATS_USERS."""
    from werkzeug.security import generate_password_hash

    if len(password) < 8:
        raise click.ClickException("the password is too short: use at least 8 characters")
    click.echo(generate_password_hash(password))
