"""The one exception tree of clicktrail; rendered as JSON under /api, as a page elsewhere."""

from __future__ import annotations


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
