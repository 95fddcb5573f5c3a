"""The API's own errors: a status and a stable `code`, raised anywhere below the handlers
and turned into problem+json by the error middleware (service/api/errors.py)."""

from __future__ import annotations

from service.wire.schemas import FieldError


class ApiError(Exception):
    """An error with a status and a stable `code`, raised anywhere below the handlers."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.errors = errors
        self.headers = headers or {}


def validation_error(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "validation_error",
        "Invalid request",
        f"{field}: {message}",
        errors=[FieldError(field=field, message=message)],
    )
