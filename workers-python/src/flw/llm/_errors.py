"""The errors ``flw.llm`` raises: one base class, a subclass per consequence.

``ConfigError`` is fixed by setting the environment or an argument;
``APIError`` is the endpoint's answer (with its status and body);
``TimeoutError`` and ``ConnectionError`` are the network's, and are also the
builtin exceptions of the same name; ``Cancelled`` means the flw call that
made the request was cancelled.
"""

from __future__ import annotations

import builtins
from typing import Any


class LLMError(Exception):
    """Base class of every error ``flw.llm`` raises."""


class ConfigError(LLMError):
    """No endpoint or model is configured, or the configuration is invalid."""


class APIError(LLMError):
    """The endpoint answered with an error status.

    ``status`` is the HTTP status (200 for an error event inside a stream),
    ``body`` the parsed JSON body, or its text when it is not JSON.
    """

    def __init__(self, message: str, status: int, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class TimeoutError(LLMError, builtins.TimeoutError):
    """No byte came from the endpoint within ``timeout`` seconds."""


class ConnectionError(LLMError, builtins.ConnectionError):
    """The network failed: refused, reset, closed early, TLS (after retries)."""


class Cancelled(LLMError):
    """The flw call that made the request was cancelled; the connection is closed."""
