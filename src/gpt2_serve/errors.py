"""The one error shape every route answers with, OpenAI's: `{"error": {"message", "type", "param", "code"}}`.

Handlers here turn every failure -- our own `APIError`, FastAPI's validation errors, Starlette's 404/405, and any
unexpected exception -- into that shape with the right status, and never put a traceback in a response (the
traceback goes to the log).
"""

from __future__ import annotations

import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

# status -> OpenAI's error type
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 503: "unavailable_error"}


class APIError(Exception):
    """A request that cannot be served: `status` and the four OpenAI fields."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or _TYPES.get(status, "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid(param: str, message: str, value) -> APIError:
    """400 in the project's wording: "`param` should ... Received: param=value"."""
    return APIError(400, f"`{param}` {message}. Received: {param}={show(value)}", param=param)


def show(value, limit: int = 200) -> str:
    """A received value as the client wrote it (JSON), cut short when long."""
    text = json.dumps(value) if isinstance(value, (dict, list, str, bool, type(None))) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _param_of(loc) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    # pydantic names the union member it tried ("str", "list[int]"...); the user only knows the field and index
    parts = [p for p in parts if not any(c in p for c in "[]") and p not in ("str", "int", "float", "bool")]
    return ".".join(parts) or None


def validation_error(errors) -> APIError:
    """The first pydantic error as a 400 naming the field and the received value."""
    if not errors:
        return APIError(400, "The request is not valid")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return APIError(400, f"The body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    param = _param_of(first.get("loc", ()))
    message = first.get("msg", "is not valid")
    if message.startswith("Value error, "):  # our own validators wrote the whole sentence, naming the field first
        message = message[len("Value error, "):]
        named = re.match(r"`([\w.]+)`", message)
        return APIError(400, message, param=param or (named.group(1) if named else None))
    if param is None:
        return APIError(400, f"The request body should be a JSON object. Received: {show(first.get('input'))}")
    if first.get("type") == "missing":
        return APIError(400, f"`{param}` is required", param=param)
    message = message[0].lower() + message[1:]
    return invalid(param, message.replace("Input should", "should").replace("input should", "should"),
                   first.get("input"))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return validation_error(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404:
            message = f"No route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return APIError(exc.status_code, message).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return APIError(500, f"Internal server error ({type(exc).__name__})").response()
