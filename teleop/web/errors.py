"""Exception types of the web AR page."""

from __future__ import annotations

from teleop.errors import TeleopError


class ARPageError(TeleopError):
    """Base class of the AR page's errors."""


class ARPageConfigError(ARPageError):
    """A configuration value of the AR page is wrong; the message names the field."""


class TokenRequired(ARPageConfigError):
    """The server would listen beyond localhost without an access token."""


class BadClientMessage(ARPageError):
    """A WebSocket message from a browser that is dropped; `reason` is the counter it goes to."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class BrowserUnavailable(ARPageError):
    """No headless Chromium could be started (not installed, or it died on start-up)."""
