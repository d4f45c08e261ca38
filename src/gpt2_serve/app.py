"""create_app: the FastAPI app wired from its parts (routes, errors, auth, body limit, metrics, the web page).

    >>> from gpt2_serve.app import create_app
    >>> from gpt2_serve.engine import Engine
    >>> app = create_app(Engine("./my-checkpoint"), api_key="secret")      # doctest: +SKIP
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI

from . import web
from .errors import APIError, install_handlers
from .metrics import Metrics
from .routes import model_router, open_router, require_key

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
# /metrics counts requests under these route names; anything else (the page, documents) is "other", so a scraper
# never sees one label per document id
_COUNTED = ("/v1/completions", "/v1/models", "/tokenize", "/detokenize", "/autocomplete", "/health", "/metrics")


def create_app(engine, *, api_key: str | None = None, db_path=None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The server for `engine` (an `Engine`, loaded or loading). With `api_key`, every route that runs the model
    needs `Authorization: Bearer <api_key>`; /health and /metrics stay open. With `db_path`, the web app's
    page and documents (gpt2_serve.web, when installed) are mounted too."""
    app = FastAPI(title="gpt2-serve", docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.metrics = metrics = Metrics()
    install_handlers(app)
    guarded = [Depends(require_key(api_key))]  # every route that runs the model or touches documents
    app.include_router(model_router(engine, metrics), dependencies=guarded)
    app.include_router(open_router(engine, metrics))
    if db_path is not None:
        web.mount(app, db_path=db_path, dependencies=guarded)
    app.add_middleware(_Counted, metrics=metrics)
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    metrics.watch(engine)
    return app


class _BodyLimit:
    """413 for a body over `limit` bytes, by its Content-Length or, when chunked, as soon as it grows past it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(int(declared), scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                from starlette.exceptions import HTTPException

                raise HTTPException(413, f"The request body exceeds the limit of {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _too_large(self, size, scope, receive, send):
        error = APIError(413, f"The request body has {size} bytes, over the limit of {self.limit} bytes",
                         code="request_too_large")
        await error.response()(scope, receive, send)


class _Counted:
    """Counts every response by route and status for /metrics."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in _COUNTED else "other"
        status = 500

        async def tracked(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            self.metrics.requests.labels(route=route, status=str(status)).inc()
