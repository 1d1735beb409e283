"""One error tree: each leaf maps to an HTTP status in `shared.web` and to an outcome on the bus."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


class AppError(Exception):
    """Something went wrong."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = message or (self.__doc__ or "").strip()
        self.details = details or []
        self.extra = extra or {}
        #: Seconds after which the same request may succeed (the `Retry-After` header).
        self.retry_after = retry_after


class Unauthorized(AppError):
    """Missing or invalid API key."""

    status = 401
    code = "unauthorized"


class PaymentRequired(AppError):
    """The account's balance cannot cover this."""

    status = 402
    code = "insufficient_balance"


class Forbidden(AppError):
    """The request's signature is missing or wrong."""

    status = 403
    code = "forbidden"


class NotFound(AppError):
    """No such object."""

    status = 404
    code = "not_found"


class Conflict(AppError):
    """The object's state does not allow this."""

    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    """The request body is too large."""

    status = 413
    code = "payload_too_large"


class TooManyRequests(AppError):
    """Too many requests of this kind at once: try again later."""

    status = 429
    code = "too_many_requests"


class Unavailable(AppError):
    """A service this request needs does not answer now: try again."""

    status = 503
    code = "unavailable"


class Invalid(AppError):
    """The request is not valid."""

    status = 422
    code = "validation_error"


class Retryable(AppError):
    """A transient failure: try again later."""


class Permanent(AppError):
    """A failure that no retry will mend."""


class Unreachable(ConnectionError):
    """A backing service (PostgreSQL, RabbitMQ) that a process could not reach as it started: which
    one, where (never the credentials), the setting that names it and why. A ConnectionError, so a
    caller that retries connection failures treats it as one."""

    def __init__(self, service: str, url: str, setting: str, cause: BaseException):
        parts = urlsplit(url)
        where = f"{parts.hostname or 'localhost'}" + (f":{parts.port}" if parts.port else "") + parts.path
        reason = str(cause) or type(cause).__name__
        super().__init__(f"cannot reach {service} at {where} ({setting}): {reason}")
