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

LOG_KINDS = ("clicks", "opens", "attempts")


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
@click.option("--recipient", metavar="ADDR", help="Recipient of this copy (default: the To header).")
@click.option("--tag", metavar="TAG", help="Campaign or category tag recorded with the attempt.")
@click.argument("file", type=click.File("rb"), default="-")
def rewrite(recipient: str | None, tag: str | None, file: Any) -> None:
    """Rewrite a MIME message or bare HTML from FILE (or stdin) onto stdout."""
    raw = file.read()
    if not raw.strip():
        raise click.ClickException("the input is empty: give a MIME message or HTML")
    parts = _parts()
    try:
        result = track(parts.store, parts.signer, parts.options, raw, [recipient], tag)
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    out = sys.stdout.buffer
    out.write(result.copies[0].data)
    out.flush()


@main.command()
@click.argument("kind", type=click.Choice(LOG_KINDS))
@click.option("--since", metavar="ISO8601", help="Only events at or after this time.")
def logs(kind: str, since: str | None) -> None:
    """Print a raw log (clicks, opens or attempts) as JSON Lines."""
    since_ts = iso_time(since) if since else None
    store = _parts().store
    rows = store.attempts(since_ts) if kind == "attempts" else store.events(kind.rstrip("s"), since_ts)
    write = sys.stdout.write
    try:
        for row in rows:
            row.pop("seq", None)
            write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (``| head``): not an error; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@main.command()
def replay() -> None:
    """Move events spooled while the database was failing into the database."""
    try:
        n = _parts().store.replay()
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"replayed {n} spooled events")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the development server (use gunicorn in production)."""
    from .tracker import create_app

    try:
        app = create_app()
    except ClicktrailError as e:
        raise click.ClickException(e.message) from e
    app.run(host=host, port=port)


@main.command()
@click.option("--port", default=8000, show_default=True, help="Port for the demo tracker on 127.0.0.1.")
@click.option("--data", default="demo-data", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo's database and messages.")
@click.option("--no-serve", is_flag=True, help="Prepare the demo and print its links, but start no server.")
def demo(port: int, data: str, no_serve: bool) -> None:
    """Rewrite a sample newsletter, print its links, and run the tracker on 127.0.0.1."""
    folder = Path(data).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "stats-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(9) + "\n")
    env = {
        "CLICKTRAIL_CLICK_DOMAIN": f"http://127.0.0.1:{port}",
        "CLICKTRAIL_DATABASE": str(folder / "clicktrail.db"),
        "CLICKTRAIL_STATS_PASSWORD": password_file.read_text().strip(),
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
    echo(f"Raw logs:   CLICKTRAIL_DATABASE={env['CLICKTRAIL_DATABASE']} clicktrail logs clicks")
    if no_serve:
        return
    echo("Starting the tracker (gunicorn, 2 workers); Ctrl-C stops it.")
    sys.stdout.flush()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    os.execve(str(gunicorn), [str(gunicorn), "--workers", "2", "--bind", f"127.0.0.1:{port}",
                              "--access-logfile", "-", "--no-control-socket",
                              "clicktrail.tracker:create_app()"], dict(os.environ))
