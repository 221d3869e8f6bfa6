"""Errors of async-request: one base class and one subclass per failure a caller can handle.

Which HTTP answer each refusal gets is decided once, in `problems.problem_for`.
"""

from __future__ import annotations


class AsyncRequestError(Exception):
    """Base class of every error raised by async-request."""


class ConfigurationError(AsyncRequestError):
    """A setting is missing or has a wrong value; the message names it."""


class AuthenticationError(AsyncRequestError):
    """The caller's token or channel name is missing, invalid or expired."""


class InvalidChannelError(AuthenticationError):
    """An anonymous channel name does not match the allowed length and characters."""


class AnonymousDisabledError(AuthenticationError):
    """An anonymous channel was used while ASYNC_REQUEST_ALLOW_ANONYMOUS is off."""


class RequestRefusedError(AsyncRequestError):
    """A request cannot be deferred as sent (method, declared length); nothing was kept."""


class MethodNotDeferrableError(RequestRefusedError):
    """The method (CONNECT, TRACE, a made-up verb) cannot run in the background."""


class BadContentLengthError(RequestRefusedError):
    """The Content-Length header is not a number."""


class CallbackRefusedError(RequestRefusedError):
    """X-Async-Request-Callback names a URL this server will not call (host, scheme, form)."""


class TooLargeError(RequestRefusedError):
    """A part of the request is above a limit; `size`, `limit` and `setting` say which."""

    def __init__(self, detail: str, *, size: int | None = None, limit: int | None = None,
                 setting: str | None = None) -> None:
        super().__init__(detail)
        self.size = size
        self.limit = limit
        self.setting = setting

    def members(self) -> dict[str, int | str]:
        """What the problem document adds: the size, the limit and the setting, when known."""
        found = {"size": self.size, "limit": self.limit, "setting": self.setting}
        return {name: value for name, value in found.items() if value is not None}


class BodyTooLargeError(TooLargeError):
    """The request body is above ASYNC_REQUEST_MAX_BODY_BYTES (or, sealed, the broker's
    message limit)."""


class HeadersTooLargeError(TooLargeError):
    """The request's headers (and query string) are above ASYNC_REQUEST_MAX_HEADER_BYTES, or
    sealed they make a message above KAFKA_MAX_MESSAGE_BYTES: no retry can succeed."""


class TooManyInFlightError(RequestRefusedError):
    """The owner has ASYNC_REQUEST_MAX_INFLIGHT_PER_OWNER operations not finished; none queued."""


class UnknownOperationError(AsyncRequestError):
    """No operation with this id belongs to the caller (unknown, malformed, or another's)."""


class OperationGoneError(AsyncRequestError):
    """The caller's operation has expired: its record and result are gone (410, not 404)."""


class OperationStateError(AsyncRequestError):
    """The operation is in a state that does not allow what was asked (cancel a completed one)."""


class BadQueryError(AsyncRequestError):
    """A query parameter (state, limit, cursor) has a wrong value; the message names it."""


class StoreUnavailableError(AsyncRequestError):
    """Redis (the operation store) could not be reached."""


class EnqueueError(AsyncRequestError):
    """The message broker did not take the task; nothing was queued."""


class EnvelopeError(AsyncRequestError):
    """A queued request cannot be decoded (wrong version, bad seal, missing body)."""


class ReplayTimeoutError(AsyncRequestError):
    """The replayed request ran longer than its limit (ASYNC_REQUEST_ROUTE_TIMEOUTS or
    ASYNC_REQUEST_REPLAY_TIMEOUT_SEC); the message names which."""


class ReplayCancelledError(AsyncRequestError):
    """The owner cancelled the operation while it ran; the replay was told, then stopped."""


class ReplayInterruptedError(AsyncRequestError):
    """An earlier run of a non-idempotent request died mid-way; it is not run again."""


class EmbeddedBrokerError(AsyncRequestError):
    """The development broker (tansu, extra `embedded`) is not installed or did not start."""
