"""The web app's documents, kept in one SQLite file (the standard library's sqlite3).

Every write is one transaction in WAL mode, so a killed server leaves the file consistent (the last committed
revision of each document, whole), and concurrent autosaves queue on SQLite's write lock instead of failing. Each
document carries a `revision` that every save increments: a save that names the revision it started from is
refused with `RevisionConflict` when another save got there first, so two windows never silently overwrite each
other. A document also has a separate `share_id`: the read-only link `/d/<share_id>` shows it without handing
out the id that edits it.

    store = DocumentStore(default_db_path())
    doc = store.create("Once upon a time")
    store.update(doc.id, doc.text + ", there was", revision=doc.revision)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# A document is prose typed by hand; 1 MiB of UTF-8 is several novels' chapters and keeps every save a small write.
DEFAULT_MAX_DOCUMENT_BYTES = 1 << 20
# Ids are 16 random url-safe characters (96 bits): unguessable, so a share link is the only way to a document.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16}")
_TITLE_CHARS = 80  # a derived title
MAX_TITLE_CHARS = 200  # a given one
# How long a writer waits for another's transaction before SQLite gives up (autosaves are tiny, so this is ample).
_BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id       TEXT PRIMARY KEY,
    share_id TEXT NOT NULL UNIQUE,
    title    TEXT NOT NULL,
    text     TEXT NOT NULL,
    revision INTEGER NOT NULL,
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_by_update ON documents (updated DESC);
"""


class DocumentNotFound(LookupError):
    """No document has this id (or the id is not one this store could have made)."""

    def __init__(self, doc_id: str):
        super().__init__(f"No document with this id. Received: id={doc_id!r}")
        self.doc_id = doc_id


class DocumentTooLarge(ValueError):
    """The text is over the store's size limit."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"A document should be at most {limit} bytes of UTF-8. Received: {size} bytes")
        self.size, self.limit = size, limit


class InvalidDocument(ValueError):
    """The text or title cannot be stored as given; `param` names which."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class RevisionConflict(RuntimeError):
    """A save named the revision it started from, but the stored document has moved on."""

    def __init__(self, doc_id: str, expected: int, current: int):
        super().__init__(
            f"Document {doc_id!r} was saved elsewhere: it is at revision {current}. Received: revision={expected}"
        )
        self.doc_id, self.expected, self.current = doc_id, expected, current


@dataclass(frozen=True)
class Document:
    id: str
    share_id: str
    title: str
    text: str
    revision: int
    created: float  # unix seconds
    updated: float

    def to_dict(self) -> dict:
        return {"object": "document", **asdict(self)}

    def shared_dict(self) -> dict:
        """What a share link shows: the text and its title, not the id that edits it."""
        return {"object": "shared_document", "share_id": self.share_id, "title": self.title, "text": self.text,
                "revision": self.revision, "updated": self.updated}


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def default_db_path() -> Path:
    """Where `gpt2-serve` keeps documents unless told (`--db`): the user's data directory, per the XDG spec."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "gpt2" / "documents.sqlite3"


def derive_title(text: str) -> str:
    """The first non-blank line, shortened at a word boundary: what the list shows for a document."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(line) <= _TITLE_CHARS:
        return line
    cut = line[:_TITLE_CHARS].rsplit(" ", 1)[0] or line[:_TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


class DocumentStore:
    """Documents in the SQLite file at `path` (created, with its folder, on first use).

    One connection per call: sqlite3 connections are not shared across threads, and opening one is ~50 µs, nothing
    beside an HTTP round trip. Safe to use from many threads and processes at once.
    """

    def __init__(self, path: str | os.PathLike, *, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES):
        if max_document_bytes < 1:
            raise ValueError(f"max_document_bytes should be >= 1. Received: max_document_bytes={max_document_bytes}")
        self.path = Path(path)
        self.max_document_bytes = max_document_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            # WAL: readers never block the writer and a crash mid-write leaves the last commit intact. The mode is
            # stored in the file, so setting it once here holds for every later connection.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # NORMAL in WAL mode: a killed process loses nothing committed; a power cut may lose the last commits
            # but never leaves a torn document.
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE takes the write lock up front, so a read-then-write (the revision check) cannot race."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _checked_title(self, text: str, title: str | None) -> str:
        """Check the text and the title; return the title to store (the first line when none is given)."""
        for name, value in (("text", text), ("title", title)):
            if value is None and name == "title":
                continue
            if not isinstance(value, str):
                raise TypeError(f"{name} should be a str. Received: {name} of type {type(value).__name__}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:  # a lone surrogate, which a JSON \uXXXX escape can carry
                raise InvalidDocument(name, f"{name} should be valid Unicode. "
                                            f"Received: {value[e.start:e.end]!r} at {e.start}") from e
        size = len(text.encode("utf-8"))
        if size > self.max_document_bytes:
            raise DocumentTooLarge(size, self.max_document_bytes)
        if title is not None and len(title) > MAX_TITLE_CHARS:
            raise InvalidDocument("title", f"title should be at most {MAX_TITLE_CHARS} characters. "
                                           f"Received: {len(title)} characters")
        return title or derive_title(text)

    def create(self, text: str = "", *, title: str | None = None) -> Document:
        title = self._checked_title(text, title)
        now = time.time()
        doc = Document(_new_id(), _new_id(), title, text, 1, now, now)
        with self._transaction() as conn:
            conn.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)", tuple(asdict(doc).values()))
        return doc

    def get(self, doc_id: str) -> Document:
        return self._get("id", doc_id)

    def get_shared(self, share_id: str) -> Document:
        """The document whose share link is `/d/<share_id>`."""
        return self._get("share_id", share_id)

    def _get(self, column: str, key: str) -> Document:
        if not isinstance(key, str) or not ID_PATTERN.fullmatch(key):
            raise DocumentNotFound(key)
        with self._connect() as conn:
            row = conn.execute(f"SELECT * FROM documents WHERE {column} = ?", (key,)).fetchone()
        if row is None:
            raise DocumentNotFound(key)
        return Document(*row)

    def update(self, doc_id: str, text: str, *, title: str | None = None, revision: int | None = None) -> Document:
        """Replace the text (and title); with `revision`, only if the stored document is still at that revision."""
        title = self._checked_title(text, title)
        if not isinstance(doc_id, str) or not ID_PATTERN.fullmatch(doc_id):
            raise DocumentNotFound(doc_id)
        with self._transaction() as conn:
            row = conn.execute("SELECT share_id, revision, created FROM documents WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                raise DocumentNotFound(doc_id)
            share_id, current, created = row
            if revision is not None and revision != current:
                raise RevisionConflict(doc_id, revision, current)
            doc = Document(doc_id, share_id, title, text, current + 1, created, time.time())
            conn.execute("UPDATE documents SET title = ?, text = ?, revision = ?, updated = ? WHERE id = ?",
                         (doc.title, doc.text, doc.revision, doc.updated, doc_id))
        return doc

    def delete(self, doc_id: str) -> None:
        if not isinstance(doc_id, str) or not ID_PATTERN.fullmatch(doc_id):
            raise DocumentNotFound(doc_id)
        with self._transaction() as conn:
            if conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount == 0:
                raise DocumentNotFound(doc_id)

    def list(self, *, limit: int = 500) -> list[dict]:
        """Summaries (everything but the text, plus its size in bytes), the most recently updated first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, share_id, title, revision, created, updated, length(CAST(text AS BLOB)) FROM documents"
                " ORDER BY updated DESC LIMIT ?", (limit,)).fetchall()
        keys = ("id", "share_id", "title", "revision", "created", "updated", "size")
        return [{"object": "document", **dict(zip(keys, row))} for row in rows]
