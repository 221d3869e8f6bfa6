"""Errors of async-request: one base class and one subclass per failure a caller can handle."""

from __future__ import annotations


class AsyncRequestError(Exception):
    """Base class of every error raised by async-request."""


class ConfigurationError(AsyncRequestError):
    """A setting is missing or has a wrong value; the message names it."""


class AuthenticationError(AsyncRequestError):
    """The caller's token or channel name is missing, invalid or expired."""


class InvalidChannelError(AuthenticationError):
    """An anonymous channel name does not match the allowed length and characters."""


class EnqueueError(AsyncRequestError):
    """The request could not be queued (broker or Redis unreachable); nothing was kept."""


class EnvelopeError(AsyncRequestError):
    """A queued request cannot be decoded (wrong version, bad seal, missing body)."""


class ReplayTimeoutError(AsyncRequestError):
    """The replayed request ran longer than ASYNC_REQUEST_REPLAY_TIMEOUT_SEC."""


class ReplayInterruptedError(AsyncRequestError):
    """An earlier run of a non-idempotent request died mid-way; it is not run again."""


class RegistryUnavailableError(AsyncRequestError):
    """Redis (task registry and results) could not be reached."""
