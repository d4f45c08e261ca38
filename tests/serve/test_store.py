"""The document store on a real SQLite file: round trips, revisions, limits, and consistency under concurrent
writers and a writer killed mid-stream."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gpt2_serve.store import (DocumentNotFound, DocumentStore, DocumentTooLarge, InvalidDocument, RevisionConflict,
                              default_db_path, derive_title)

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def store(tmp_path):
    return DocumentStore(tmp_path / "docs.sqlite3")


def test_round_trip_and_revisions(store):
    doc = store.create("  \nOnce upon a time\nthere was a model.")
    assert (doc.title, doc.revision, len(doc.id), len(doc.share_id)) == ("Once upon a time", 1, 16, 16)
    assert doc.id != doc.share_id
    assert store.get(doc.id) == doc
    later = store.update(doc.id, "The end.", revision=1)
    assert (later.revision, later.title, later.text, later.created) == (2, "The end.", "The end.", doc.created)
    assert later.updated >= doc.updated
    assert store.get(doc.id) == later
    assert store.get_shared(doc.share_id) == later
    assert store.update(doc.id, "Forced.").revision == 3  # no revision given: last writer wins
    titled = store.create("body", title="My title")
    assert store.update(titled.id, "new body", title="Kept").title == "Kept"


def test_list_is_newest_first_with_sizes(store):
    a = store.create("first")
    b = store.create("é" * 10)
    store.update(a.id, "first, edited")
    listed = store.list()
    assert [d["id"] for d in listed] == [a.id, b.id]
    assert [d["size"] for d in listed] == [len("first, edited"), 20]  # bytes of UTF-8, not characters
    assert "text" not in listed[0] and listed[0]["share_id"] == a.share_id


def test_delete(store):
    doc = store.create("gone soon")
    store.delete(doc.id)
    with pytest.raises(DocumentNotFound):
        store.get(doc.id)
    with pytest.raises(DocumentNotFound):
        store.delete(doc.id)
    assert store.list() == []


@pytest.mark.parametrize("bad", ["", "short", "x" * 17, "../../etc/passwd", "a' OR '1'='1", "é" * 16, None, 42])
def test_bad_ids_are_not_found(store, bad):
    store.create("something")
    for call in (store.get, store.get_shared, store.delete, lambda i: store.update(i, "text")):
        with pytest.raises(DocumentNotFound, match="Received: id="):
            call(bad)


def test_unknown_well_formed_id_is_not_found(store):
    doc = store.create("x")
    with pytest.raises(DocumentNotFound):
        store.get("A" * 16)
    with pytest.raises(DocumentNotFound):
        store.get(doc.share_id)  # a share id never opens the document for editing
    with pytest.raises(DocumentNotFound):
        store.get_shared(doc.id)


def test_stale_revision_is_refused_and_changes_nothing(store):
    doc = store.create("v1")
    store.update(doc.id, "v2 from window A", revision=1)
    with pytest.raises(RevisionConflict, match=r"at revision 2\. Received: revision=1") as info:
        store.update(doc.id, "v2 from window B", revision=1)
    assert (info.value.expected, info.value.current) == (1, 2)
    assert store.get(doc.id).text == "v2 from window A"


def test_size_limit_counts_utf8_bytes_and_writes_nothing(tmp_path):
    store = DocumentStore(tmp_path / "d.sqlite3", max_document_bytes=10)
    doc = store.create("é" * 5)  # exactly 10 bytes
    with pytest.raises(DocumentTooLarge, match=r"at most 10 bytes of UTF-8\. Received: 12 bytes"):
        store.update(doc.id, "é" * 6)
    with pytest.raises(DocumentTooLarge):
        store.create("x" * 11)
    assert store.get(doc.id).text == "é" * 5 and len(store.list()) == 1
    with pytest.raises(ValueError, match="max_document_bytes should be >= 1. Received: max_document_bytes=0"):
        DocumentStore(tmp_path / "e.sqlite3", max_document_bytes=0)


def test_invalid_unicode_is_refused(store):
    with pytest.raises(ValueError, match=r"text should be valid Unicode\. Received: '\\ud800' at 3"):
        store.create("abc\ud800")
    with pytest.raises(TypeError, match="text should be a str. Received: text of type bytes"):
        store.create(b"abc")
    with pytest.raises(InvalidDocument, match="title should be valid Unicode") as info:
        store.create("fine", title="bad \udfff")
    assert info.value.param == "title"
    with pytest.raises(InvalidDocument, match="title should be at most 200 characters. Received: 201 characters"):
        store.create("fine", title="t" * 201)
    assert store.list() == []


def test_titles():
    assert derive_title("") == ""
    assert derive_title("\n\n  Chapter One  \nbody") == "Chapter One"
    long = "word " * 40
    title = derive_title(long)
    assert title.endswith("…") and len(title) <= 81 and not title[:-1].endswith(" ")


def test_default_path_follows_xdg_and_is_created_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "gpt2" / "documents.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = default_db_path()
    assert path == tmp_path / "home" / ".local" / "share" / "gpt2" / "documents.sqlite3"
    assert not path.parent.exists()
    DocumentStore(path).create("first use")
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_concurrent_autosaves_from_threads_lose_nothing(store):
    """Eight writers each append to one document 15 times, retrying on conflict as the page does: every append
    survives and the revision counts every save."""
    doc = store.create("")
    errors = []

    def writer(name):
        try:
            for i in range(15):
                while True:
                    current = store.get(doc.id)
                    try:
                        store.update(doc.id, current.text + f"{name}{i};", revision=current.revision)
                        break
                    except RevisionConflict:
                        continue
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(chr(65 + t),)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = store.get(doc.id)
    assert final.revision == 1 + 8 * 15
    pieces = final.text.rstrip(";").split(";")
    assert sorted(pieces) == sorted(f"{chr(65 + t)}{i}" for t in range(8) for i in range(15))


_WRITER = textwrap.dedent("""
    import sys
    from gpt2_serve.store import DocumentStore, RevisionConflict
    store = DocumentStore(sys.argv[1])
    doc_id, count = sys.argv[2], int(sys.argv[3])
    for i in range(count):
        # Each text names its own revision and spans several pages, so a torn or misplaced write would show.
        while True:
            rev = store.get(doc_id).revision + 1
            try:
                store.update(doc_id, f"{rev}:" + sys.argv[4] * (1000 + 37 * (rev % 200)), revision=rev - 1)
                break
            except RevisionConflict:
                continue
        if count > 10_000 and i == 20:
            print("started", flush=True)
""")


def _run_writer(path, doc_id, count, letter):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), doc_id, str(count), letter],
                            env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, text=True)


def _check_consistent(path):
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for summary in DocumentStore(path).list():
        doc = DocumentStore(path).get(summary["id"])
        head, body = doc.text.split(":", 1)
        assert int(head) == doc.revision
        assert len(body) == 1000 + 37 * (doc.revision % 200) and len(set(body)) == 1


def test_concurrent_processes_all_commit(tmp_path):
    path = tmp_path / "shared.sqlite3"
    doc = DocumentStore(path).create("1:" + "x" * (1000 + 37))
    writers = [_run_writer(path, doc.id, 40, letter) for letter in "abc"]
    for w in writers:
        w.communicate(timeout=120)
        assert w.returncode == 0
    _check_consistent(path)
    assert DocumentStore(path).get(doc.id).revision == 1 + 3 * 40
    assert len(DocumentStore(path).list()) == 1


def test_killed_writer_leaves_a_consistent_database(tmp_path):
    path = tmp_path / "killed.sqlite3"
    store = DocumentStore(path)
    doc = store.create("1:" + "k" * (1000 + 37))
    writer = _run_writer(path, doc.id, 10**9, "k")
    assert writer.stdout.readline().strip() == "started"
    time.sleep(0.3)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    _check_consistent(path)
    reached = store.get(doc.id).revision
    assert reached > 20
    after = store.update(doc.id, f"{reached + 1}:" + "k" * (1000 + 37 * ((reached + 1) % 200)), revision=reached)
    assert after.revision == reached + 1
    _check_consistent(path)
