"""The one exception tree of clicktrail; rendered as JSON under /api, as a page elsewhere."""

from __future__ import annotations

SHOWN = 100  # characters of a bad value an error message repeats


class ClicktrailError(Exception):
    """Root of every error clicktrail raises on purpose."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(ClicktrailError):
    """A setting has a bad value; start-up stops."""


class BadInput(ClicktrailError):
    """Input that cannot be accepted (a message, a request field, a CLI argument)."""


class StoreUnavailable(ClicktrailError):
    """The event store cannot be written now; the event goes to the spool."""

    status = 503


def shown(value: str, limit: int = SHOWN) -> str:
    """Quote a bad value for an error message, cut to ``limit`` characters with an ellipsis."""
    # Whoever sent 500 KB of junk in a field needs its start to find it, not all of it back.
    return repr(value if len(value) <= limit else value[:limit] + "…")
