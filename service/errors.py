"""Service errors and the handlers that turn them (and validation errors) into JSON."""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, PyMongoError

from service.accounts.passwords import PasswordHasherBusy
from service.core import metrics
from service.core.logs import request_extra
from service.core.schemas import ErrorDetail

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying when the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5
# ... and when the password hashing queue is full (a hash takes ~0.1-0.3 s).
PASSWORD_HASH_BUSY_RETRY_AFTER_SECONDS = 1
# ... and when a worker parses as many import files as it takes (one takes ~0.1-0.4 s).
IMPORTS_BUSY_RETRY_AFTER_SECONDS = 1


class ServiceError(Exception):
    """Base of the errors routes and dependencies raise; one handler maps them to HTTP."""

    status_code: ClassVar[int] = status.HTTP_500_INTERNAL_SERVER_ERROR
    detail: ClassVar[str] = "Internal server error"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.detail)
        self.message = detail or self.detail
        # The class's headers plus this instance's (Retry-After, say).
        self.response_headers = {**(self.headers or {}), **(headers or {})} or None


class BadRequest(ServiceError):
    status_code = status.HTTP_400_BAD_REQUEST
    detail = "Bad request"


class Unauthorized(ServiceError):
    status_code = status.HTTP_401_UNAUTHORIZED
    detail = "Could not validate credentials"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    """403: a member of the list whose role doesn't allow this (to anyone else it is a 404)."""

    status_code = status.HTTP_403_FORBIDDEN
    detail = "Your role in this list doesn't allow this"


class NotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    detail = "Not found"


class Conflict(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    detail = "Conflict"


class TooManyRequests(ServiceError):
    """429 with `Retry-After`: the seconds until the caller's window closes."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    detail = "Too many attempts; try again later"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class PreconditionFailed(ServiceError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    detail = "Precondition failed"


class UnprocessableContent(ServiceError):
    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    detail = "Unprocessable content"


class Gone(ServiceError):
    status_code = status.HTTP_410_GONE
    detail = "Gone"


class PayloadTooLarge(ServiceError):
    status_code = status.HTTP_413_CONTENT_TOO_LARGE
    detail = "Request body too large"


class UnsupportedMediaType(ServiceError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    detail = "Unsupported media type: send the body as JSON, with Content-Type: application/json"


class ServiceUnavailable(ServiceError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    detail = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """503 while the database can't be reached in time; clients retry after a while."""

    detail = "Database unavailable"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}


class PasswordHashingBusy(ServiceUnavailable):
    """503 when PASSWORD_HASH_QUEUE requests already wait to have a password hashed."""

    detail = "Too many password checks at once; try again shortly"
    headers: ClassVar[dict[str, str] | None] = {
        "Retry-After": str(PASSWORD_HASH_BUSY_RETRY_AFTER_SECONDS)
    }


class ImportsBusy(ServiceUnavailable):
    """503 when a worker already parses (or has waiting) as many import files as it takes
    (transfer/parsing.py): a burst of large imports must not take every thread or all memory."""

    detail = "Too many imports at once; try again shortly"
    headers: ClassVar[dict[str, str] | None] = {
        "Retry-After": str(IMPORTS_BUSY_RETRY_AFTER_SECONDS)
    }


# OpenAPI's `headers` entry for an answer with Retry-After (503s, 429s).
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}


def error_responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting these errors in OpenAPI."""
    return {
        error.status_code: {"model": ErrorDetail, "description": error.detail} for error in errors
    }


async def service_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # noqa: S101 -- registered for ServiceError only
    return JSONResponse({"detail": exc.message}, exc.status_code, headers=exc.response_headers)


async def validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    """422 in FastAPI's usual shape, minus anything that could repeat what was sent."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 -- registered for it only
    # `input` (and `ctx`, for some errors) repeat the submitted value, a password say:
    # the message and location are enough for a client.
    errors = [
        {key: value for key, value in error.items() if key in {"type", "loc", "msg"}}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def database_unavailable(exc: PyMongoError) -> bool:
    """Whether a driver error means "can't reach the database in time", not a bug."""
    # ConnectionFailure covers server selection timeouts, network errors and a primary that
    # stepped down; `timeout` covers pymongo.timeout() deadlines and maxTimeMS expiry.
    return isinstance(exc, ConnectionFailure) or exc.timeout


async def database_error_handler(_: Request, exc: Exception) -> JSONResponse:
    """503 (with Retry-After) while the database is unreachable; a generic 500 otherwise."""
    assert isinstance(exc, PyMongoError)  # noqa: S101 -- registered for PyMongoError only
    if database_unavailable(exc):
        metrics.DB_UNAVAILABLE.inc()
        logger.warning("database unavailable: %s", type(exc).__name__, extra=request_extra())
        return await service_error_handler(_, DatabaseUnavailable())
    # The driver's message may quote data: it goes to the log (with the request id the log
    # formatter adds), never to the client.
    logger.error("database error", exc_info=exc, extra=request_extra())
    return await service_error_handler(_, ServiceError())


async def password_hasher_busy_handler(request: Request, exc: Exception) -> JSONResponse:
    """The hashing queue is full (security.PasswordHasher): 503 with Retry-After."""
    assert isinstance(exc, PasswordHasherBusy)  # noqa: S101 -- registered for it only
    return await service_error_handler(request, PasswordHashingBusy())


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on the app."""
    app.add_exception_handler(ServiceError, service_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(PyMongoError, database_error_handler)
    app.add_exception_handler(PasswordHasherBusy, password_hasher_busy_handler)
