"""The page's routes and the documents API, mounted on a bare FastAPI app and called through its ASGI test client
(a real SQLite file underneath)."""

import json
import re
from html.parser import HTMLParser

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from gpt2_serve.web import STATIC_DIR, mount

LIMIT = 2000  # bytes of UTF-8 per document in these tests


@pytest.fixture
def client(tmp_path):
    app = FastAPI()
    mount(app, db_path=tmp_path / "docs.sqlite3", max_document_bytes=LIMIT)
    with TestClient(app) as c:
        yield c


def assert_error(response, status, *, code=None, param=None, message=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == {401: "authentication_error", 404: "not_found_error"}.get(
        status, "invalid_request_error")
    assert (body["error"]["code"], body["error"]["param"]) == (code, param)
    if message:
        assert re.search(message, body["error"]["message"]), body["error"]["message"]


def test_document_life_cycle(client):
    created = client.post("/api/documents", json={"text": "Hello there.\nMore."})
    assert created.status_code == 201
    doc = created.json()
    assert {k: doc[k] for k in ("object", "title", "text", "revision")} == {
        "object": "document", "title": "Hello there.", "text": "Hello there.\nMore.", "revision": 1}
    assert client.get(f"/api/documents/{doc['id']}").json() == doc

    saved = client.put(f"/api/documents/{doc['id']}", json={"text": "Edited", "revision": 1})
    assert saved.status_code == 200 and (saved.json()["revision"], saved.json()["text"]) == (2, "Edited")

    listing = client.get("/api/documents").json()
    assert listing["object"] == "list" and [d["id"] for d in listing["data"]] == [doc["id"]]
    assert listing["data"][0]["size"] == 6 and "text" not in listing["data"][0]

    shared = client.get(f"/api/shared/{doc['share_id']}").json()
    assert shared == {"object": "shared_document", "share_id": doc["share_id"], "title": "Edited",
                      "text": "Edited", "revision": 2, "updated": saved.json()["updated"]}
    assert "id" not in shared  # the share link never reveals the id that edits

    deleted = client.delete(f"/api/documents/{doc['id']}")
    assert deleted.json() == {"object": "document.deleted", "id": doc["id"], "deleted": True}
    assert_error(client.get(f"/api/documents/{doc['id']}"), 404, code="document_not_found", param="id")
    assert client.get("/api/documents").json()["data"] == []


@pytest.mark.parametrize("bad_id", ["AAAAAAAAAAAAAAAA", "nope", "x" * 300, "%2e%2e", "a%20b", "é"])
def test_bad_ids_are_404_in_the_error_shape(client, bad_id):
    for method in ("GET", "DELETE"):
        assert_error(client.request(method, f"/api/documents/{bad_id}"), 404, code="document_not_found",
                     param="id", message="No document with this id. Received: id=")
    assert_error(client.put(f"/api/documents/{bad_id}", json={"text": "x"}), 404, code="document_not_found",
                 param="id")
    assert_error(client.get(f"/api/shared/{bad_id}"), 404, code="document_not_found", param="id")


def test_edit_id_and_share_id_do_not_open_each_other(client):
    doc = client.post("/api/documents", json={"text": "private"}).json()
    assert_error(client.get(f"/api/documents/{doc['share_id']}"), 404, code="document_not_found", param="id")
    assert_error(client.put(f"/api/documents/{doc['share_id']}", json={"text": "defaced"}), 404,
                 code="document_not_found", param="id")
    assert_error(client.get(f"/api/shared/{doc['id']}"), 404, code="document_not_found", param="id")
    assert client.get(f"/api/documents/{doc['id']}").json()["text"] == "private"


def test_stale_revision_is_409(client):
    doc = client.post("/api/documents", json={"text": "v1"}).json()
    client.put(f"/api/documents/{doc['id']}", json={"text": "from A", "revision": 1})
    assert_error(client.put(f"/api/documents/{doc['id']}", json={"text": "from B", "revision": 1}), 409,
                 code="revision_conflict", param="revision", message="at revision 2. Received: revision=1")
    assert client.get(f"/api/documents/{doc['id']}").json()["text"] == "from A"


def test_oversized_documents_are_413(client):
    doc = client.post("/api/documents", json={"text": "é" * (LIMIT // 2)}).json()  # exactly at the limit
    assert doc["revision"] == 1
    too_big = "é" * (LIMIT // 2) + "x"
    assert_error(client.post("/api/documents", json={"text": too_big}), 413, code="document_too_large",
                 param="text", message=f"at most {LIMIT} bytes of UTF-8. Received: {LIMIT + 1} bytes")
    assert_error(client.put(f"/api/documents/{doc['id']}", json={"text": too_big}), 413,
                 code="document_too_large", param="text")
    # A body far past any document is refused from its Content-Length, before it is read.
    huge = json.dumps({"text": "x" * (7 * LIMIT + 5000)})
    assert_error(client.post("/api/documents", content=huge, headers={"content-type": "application/json"}), 413,
                 code="request_too_large", message="request body should be at most")
    assert [d["size"] for d in client.get("/api/documents").json()["data"]] == [LIMIT]


@pytest.mark.parametrize("body, param, message", ids=lambda v: repr(v[:40]) if isinstance(v, bytes) else "", argvalues=[
    (b"{not json", None, "should be a JSON object. Received: invalid JSON"),
    (b"[1, 2]", None, "should be a JSON object. Received: [1, 2]"),
    (b"\xff\xfe", None, "invalid JSON"),
    (b"{}", "text", "`text` is required"),
    (b'{"text": 5}', "text", "`text` should be a string. Received: text=5"),
    (b'{"text": null}', "text", "`text` should be a string. Received: text=null"),
    (b'{"text": "a", "revision": "1"}', "revision", '`revision` should be an integer or null. Received: revision="1"'),
    (b'{"text": "a", "revision": true}', "revision",
     "`revision` should be an integer or null. Received: revision=true"),
    (b'{"text": "a", "title": 3}', "title", "`title` should be a string or null"),
    (b'{"text": "a", "colour": "red"}', "colour", 'Unknown field `colour`: a document takes text, title and revision. '
                                                  'Received: colour="red"'),
    (b'{"text": "bad \\ud800 surrogate"}', "text", "text should be valid Unicode"),
    (b'{"text": "a", "title": "%s"}' % (b"t" * 201), "title", "title should be at most 200 characters"),
    (b"[" * 5000 + b"]" * 5000, None, "invalid JSON"),  # nested past Python's recursion limit
])
def test_malformed_bodies_are_400(client, body, param, message):
    doc = client.post("/api/documents", json={"text": "x"}).json()
    for method, path in (("POST", "/api/documents"), ("PUT", f"/api/documents/{doc['id']}")):
        response = client.request(method, path, content=body, headers={"content-type": "application/json"})
        assert_error(response, 400, param=param, message=re.escape(message))
    assert client.get(f"/api/documents/{doc['id']}").json()["revision"] == 1


def test_the_page_and_its_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'aria-label="Document"' in page.text and 'role="listbox"' in page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/static/nothing.js").status_code == 404


def test_share_page_answers_404_for_unknown_links(client):
    doc = client.post("/api/documents", json={"text": "shared"}).json()
    shared = client.get(f"/d/{doc['share_id']}")
    assert shared.status_code == 200 and shared.text == client.get("/").text
    assert client.get("/d/AAAAAAAAAAAAAAAA").status_code == 404
    assert client.get(f"/d/{doc['id']}").status_code == 404
    assert "text/html" in client.get("/d/nope").headers["content-type"]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href", "action") and value]


def test_every_asset_comes_from_the_package():
    """Works offline: nothing on the page points at another host (no CDN, no web fonts, no remote imports)."""
    parser = _Links()
    parser.feed((STATIC_DIR / "index.html").read_text())
    assert parser.urls and all(url.startswith(("/static/", "#", "data:")) for url in parser.urls), parser.urls
    css = (STATIC_DIR / "app.css").read_text()
    assert "@import" not in css and not re.search(r"url\(", css)
    js = (STATIC_DIR / "app.js").read_text()
    assert not re.search(r"https?://", js) and not re.search(r"^\s*import\b", js, re.M)
    assert sorted(p.name for p in STATIC_DIR.iterdir()) == ["app.css", "app.js", "index.html"]


def test_dependencies_guard_the_documents_but_not_the_page_or_share_links(tmp_path):
    def require_key(request: Request):
        if request.headers.get("authorization") != "Bearer sesame":
            raise HTTPException(401, "no key")

    app = FastAPI()
    mount(app, db_path=tmp_path / "docs.sqlite3", dependencies=[Depends(require_key)])
    client = TestClient(app)
    assert client.post("/api/documents", json={"text": "x"}).status_code == 401
    assert client.get("/api/documents").status_code == 401
    doc = client.post("/api/documents", json={"text": "x"}, headers={"authorization": "Bearer sesame"}).json()
    assert client.get(f"/api/documents/{doc['id']}").status_code == 401
    assert client.get(f"/api/shared/{doc['share_id']}").json()["text"] == "x"
    assert [client.get(p).status_code for p in ("/", f"/d/{doc['share_id']}", "/static/app.js")] == [200] * 3


def test_the_server_puts_documents_behind_its_api_key(tmp_path):
    """gpt2-serve's app (the model is never loaded: documents do not need it) guards /api/documents with its key."""
    from gpt2_serve.app import create_app
    from gpt2_serve.engine import Engine

    client = TestClient(create_app(Engine("never-loaded"), api_key="sesame", db_path=tmp_path / "d.sqlite3"))
    assert_error(client.get("/api/documents"), 401, code="invalid_api_key")
    assert_error(client.post("/api/documents", json={"text": "x"}), 401, code="invalid_api_key")
    key = {"authorization": "Bearer sesame"}
    doc = client.post("/api/documents", json={"text": "x"}, headers=key).json()
    assert_error(client.put(f"/api/documents/{doc['id']}", json={"text": "y"}), 401, code="invalid_api_key")
    assert client.put(f"/api/documents/{doc['id']}", json={"text": "y"}, headers=key).json()["revision"] == 2
    assert client.get(f"/api/shared/{doc['share_id']}").json()["text"] == "y"
    assert [client.get(p).status_code for p in ("/", f"/d/{doc['share_id']}", "/static/app.css")] == [200] * 3


def test_default_database_lives_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    app = FastAPI()
    store = mount(app)
    assert store.path == tmp_path / "data" / "gpt2" / "documents.sqlite3" and store.path.is_file()
    assert app.state.documents is store
