"""The Write With Transformer page and its documents API, mounted onto the server's FastAPI app.

    GET  /                       the editor (static/index.html)
    GET  /d/<share_id>           the same page, showing a document read-only (404 when there is no such document)
    GET  /static/...             its CSS and JS: every asset comes from the package, so the page works offline
    GET  /api/documents          summaries, most recently updated first
    POST /api/documents          {"text", "title"?} -> 201 and the document
    GET  /api/documents/<id>     the document
    PUT  /api/documents/<id>     {"text", "title"?, "revision"?} -> the document at its next revision; 409 when
                                 "revision" is given and another save got there first
    DELETE /api/documents/<id>
    GET  /api/shared/<share_id>  what a share link shows: title and text, not the id that edits the document

Errors come in the OpenAI shape, {"error": {"message", "type", "param", "code"}}: 400 for a malformed body, 404 for
an unknown or malformed id, 409 for a revision conflict, 413 for a document over the size limit.

    app = FastAPI()
    mount(app, db_path=default_db_path())
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .errors import APIError, show
from .store import (DEFAULT_MAX_DOCUMENT_BYTES, DocumentNotFound, DocumentStore, DocumentTooLarge,
                    InvalidDocument, RevisionConflict, default_db_path)

STATIC_DIR = Path(__file__).parent / "static"
# The page loads nothing from elsewhere; saying so to the browser also keeps a shared document's text inert.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_BODY_FIELDS = {"text": str, "title": (str, type(None)), "revision": (int, type(None))}


async def _read_body(request: Request, limit: int) -> dict:
    """The JSON body as a dict of known fields, refusing (413) a body past `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"The request body should be at most {limit} bytes. Received: {declared} bytes",
                       code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"The request body should be at most {limit} bytes. Received: more than that",
                           code="request_too_large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # RecursionError: [[[[... nested
        raise APIError(400, f"The request body should be a JSON object. Received: invalid JSON ({e})") from e
    if not isinstance(body, dict):
        raise APIError(400, f"The request body should be a JSON object. Received: {show(body, 80)}")
    for key, value in body.items():
        if key not in _BODY_FIELDS:
            raise APIError(400, f"Unknown field `{key}`: a document takes text, title and revision. "
                                f"Received: {key}={show(value, 80)}", param=key)
        # bool is an int to isinstance, but `"revision": true` is a client bug worth naming.
        if not isinstance(value, _BODY_FIELDS[key]) or isinstance(value, bool):
            expected = {"text": "a string", "title": "a string or null", "revision": "an integer or null"}[key]
            raise APIError(400, f"`{key}` should be {expected}. Received: {key}={show(value, 80)}", param=key)
    if "text" not in body:
        raise APIError(400, "`text` is required. Received: no text field", param="text")
    return body


def mount(app: FastAPI, *, db_path: str | os.PathLike | None = None,
          max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES, dependencies: Sequence = ()) -> DocumentStore:
    """Add the page, its assets and the documents API to `app`; documents live in SQLite at `db_path` (default:
    `default_db_path()`, in the user's data directory). `dependencies` (FastAPI `Depends(...)`, e.g. the server's
    API-key check) guard /api/documents; the page, its assets and share links stay open. Returns the store (also at
    `app.state.documents`)."""
    store = DocumentStore(default_db_path() if db_path is None else db_path, max_document_bytes=max_document_bytes)
    app.state.documents = store
    # A JSON string spends at most 6 bytes (a \\uXXXX escape) per byte of text; the text's own size is checked after.
    body_limit = 6 * max_document_bytes + 4096
    page = STATIC_DIR / "index.html"

    async def call(fn, *args, **kwargs):
        """Run a store call off the event loop (it blocks on SQLite) and turn its errors into OpenAI-shaped ones."""
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except DocumentNotFound as e:
            raise APIError(404, str(e), param="id", code="document_not_found") from e
        except DocumentTooLarge as e:
            raise APIError(413, str(e), param="text", code="document_too_large") from e
        except RevisionConflict as e:
            raise APIError(409, str(e), param="revision", code="revision_conflict",
                           type="invalid_request_error") from e
        except InvalidDocument as e:
            raise APIError(400, str(e), param=e.param) from e

    def route(method: str, path: str, status: int = 200, guarded: bool = True):
        """Register `handler` answering JSON, and its APIError in the error shape (also on an app without the
        server's exception handlers)."""
        def register(handler):
            async def endpoint(request: Request):
                try:
                    return JSONResponse(await handler(request, **request.path_params), status)
                except APIError as e:
                    return e.response()
            app.add_api_route(path, endpoint, methods=[method], include_in_schema=False, name=handler.__name__,
                              dependencies=list(dependencies) if guarded else None)
            return handler
        return register

    @route("GET", "/api/documents")
    async def list_documents(request):
        return {"object": "list", "data": await call(store.list)}

    @route("POST", "/api/documents", status=201)
    async def create_document(request):
        body = await _read_body(request, body_limit)
        return (await call(store.create, body["text"], title=body.get("title"))).to_dict()

    @route("GET", "/api/documents/{doc_id}")
    async def get_document(request, doc_id):
        return (await call(store.get, doc_id)).to_dict()

    @route("PUT", "/api/documents/{doc_id}")
    async def update_document(request, doc_id):
        body = await _read_body(request, body_limit)
        doc = await call(store.update, doc_id, body["text"], title=body.get("title"), revision=body.get("revision"))
        return doc.to_dict()

    @route("DELETE", "/api/documents/{doc_id}")
    async def delete_document(request, doc_id):
        await call(store.delete, doc_id)
        return {"object": "document.deleted", "id": doc_id, "deleted": True}

    @route("GET", "/api/shared/{share_id}", guarded=False)
    async def get_shared_document(request, share_id):
        return (await call(store.get_shared, share_id)).shared_dict()

    @app.get("/", include_in_schema=False)
    async def editor():
        return FileResponse(page, headers=_PAGE_HEADERS)

    @app.get("/d/{share_id}", include_in_schema=False)
    async def shared(share_id: str):
        # The page fetches the text itself; answering 404 here tells link checkers and crawlers the truth too.
        try:
            await run_in_threadpool(store.get_shared, share_id)
            status = 200
        except DocumentNotFound:
            status = 404
        return FileResponse(page, status_code=status, headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return store
