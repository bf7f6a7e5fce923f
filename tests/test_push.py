"""`cards push` against a fake AnkiConnect whose imports a real Anki collection performs."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cards.cli import app

collection = pytest.importorskip("anki.collection")

from fakeanki import FakeAnkiConnect, import_package  # noqa: E402

EPISODE = "ada-quill-on-reactor-talk"
KEY = "s3cret-anki-key-4f9a"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch):
    monkeypatch.delenv("ANKICONNECT_KEY", raising=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The conftest example generated offline and approved, made once and copied per test."""
    from conftest import offline_workspace

    return offline_workspace(tmp_path_factory.mktemp("template"), ["approve", "--episode", EPISODE, "--all"])


@pytest.fixture
def ws(tmp_path: Path, template: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "ws"))


@pytest.fixture
def col(tmp_path: Path):
    (tmp_path / "anki").mkdir()
    c = collection.Collection(str(tmp_path / "anki" / "collection.anki2"))
    yield c
    c.close()


def push(ws: Path, url: str, *more: str, ok: bool = True):
    return run("push", "-w", str(ws), "--anki-url", url, *more, ok=ok)


def pushed(ws: Path, url: str, *more: str) -> dict:
    (row,) = json.loads(push(ws, url, "--json", *more).stdout)
    return row


def notes(col) -> dict:
    return {n.guid: n for n in (col.get_note(i) for i in col.find_notes(""))}


def test_push_twice_adds_the_notes_once(ws, col):
    with FakeAnkiConnect(col) as anki:
        first = pushed(ws, anki.url)
        assert (first["new"], first["pushed"]) == (2, True)
        assert Path(first["path"]).is_absolute()  # importPackage takes a path on Anki's machine
        guids = set(notes(col))
        assert len(guids) == 2
        second = pushed(ws, anki.url)
        assert (second["new"], second["unchanged"]) == (0, 2)
        assert set(notes(col)) == guids
        found = anki.handle({"action": "findNotes", "version": 6, "params": {"query": "deck:Podcasts::*"}})
        assert found["error"] is None and len(found["result"]) == 2
        # version is asked first, then the import; no key was set, so none was sent
        assert [r["action"] for r in anki.requests[:4]] == ["version", "importPackage"] * 2
        assert all(r["version"] == 6 and "key" not in r for r in anki.requests)


def test_push_and_file_import_never_duplicate_each_other(ws, col, tmp_path):
    (row,) = json.loads(run("export", "-w", str(ws), "--json").stdout)
    import_package(col, row["path"])  # File > Import
    assert len(notes(col)) == 2
    with FakeAnkiConnect(col) as anki:
        again = pushed(ws, anki.url)
    assert again["unchanged"] == 2
    assert len(notes(col)) == 2
    # and the other way round, into a second collection
    (tmp_path / "other").mkdir()
    other = collection.Collection(str(tmp_path / "other" / "collection.anki2"))
    try:
        with FakeAnkiConnect(other) as anki:
            pushed(ws, anki.url)
        import_package(other, row["path"])
        assert set(notes(other)) == set(notes(col))
    finally:
        other.close()


def test_an_edit_made_in_anki_is_kept_until_the_card_changes_here(ws, col, monkeypatch):
    with FakeAnkiConnect(col) as anki:
        pushed(ws, anki.url)
        note = next(iter(notes(col).values()))
        note["Extra"] = "my own remark"
        col.update_note(note)
        again = pushed(ws, anki.url)
        assert again["unchanged"] == 2
        assert col.get_note(note.id)["Extra"] == "my own remark"
        # Editing the card in cards changes it: the next push updates the note. (Anki keeps
        # whole seconds; the edit here is made a few seconds later than the one in Anki.)
        from cards.store import Store

        monkeypatch.setattr(Store, "default_clock", staticmethod(lambda: time.time() + 5))
        run("edit", note.guid, "--front", "The Kemmerer reactor runs at {{c1::345 megawatts}} electric.",
            "-w", str(ws))
        changed = pushed(ws, anki.url)
        assert changed["updated"] == 1
        assert col.get_note(note.id)["Text"] == "The Kemmerer reactor runs at {{c1::345 megawatts}} electric."
        assert len(notes(col)) == 2


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


def test_anki_not_running_is_one_line_and_nothing_is_recorded(ws):
    result = push(ws, _closed_port(), ok=False)
    assert result.exit_code == 5
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert "cannot reach Anki at http://127.0.0.1:" in result.stderr
    assert "is Anki running, with the AnkiConnect add-on installed?" in result.stderr
    assert not (ws / f"{EPISODE}.apkg").exists()
    # Nothing was marked as given to Anki: an export afterwards still calls the cards new.
    (row,) = json.loads(run("export", "-w", str(ws), "--json").stdout)
    assert row["new"] == 2


def test_a_server_that_is_not_ankiconnect_is_one_line(ws, fake_http):
    result = push(ws, fake_http, ok=False)
    assert result.exit_code == 5 and result.stderr.count("\n") == 1
    assert "is this AnkiConnect?" in result.stderr


@pytest.fixture
def fake_http():
    """A web server that answers every POST with an HTML page (another program on the port)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_api_key_is_sent_but_never_shown(ws, col, monkeypatch, tmp_path):
    with FakeAnkiConnect(col, key=KEY) as anki:
        missing = push(ws, anki.url, ok=False)
        assert missing.exit_code == 5 and missing.stderr.count("\n") == 1
        assert "needs an API key; set ANKICONNECT_KEY" in missing.stderr

        monkeypatch.setenv("ANKICONNECT_KEY", "wrong-key-123")
        wrong = push(ws, anki.url, ok=False)
        assert wrong.exit_code == 5 and "refused the API key" in wrong.stderr and "wrong-key" not in wrong.output

        monkeypatch.setenv("ANKICONNECT_KEY", KEY)
        anki.requests.clear()
        result = push(ws, anki.url)
        assert KEY not in result.output
        assert [r["action"] for r in anki.requests] == ["version", "requestPermission", "importPackage"]
        assert all(r["key"] == KEY for r in anki.requests)
        assert len(notes(col)) == 2

        # The key may also sit in cards.toml, under [anki].
        monkeypatch.delenv("ANKICONNECT_KEY")
        (tmp_path / "cards.toml").write_text(f'[anki]\nkey = "{KEY}"\nurl = "{anki.url}"\n', encoding="utf-8")
        from_file = run("push", "-w", str(ws), "--json")
        assert json.loads(from_file.stdout)[0]["unchanged"] == 2 and KEY not in from_file.output
    # Never written anywhere in the workspace.
    for path in ws.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_an_old_ankiconnect_is_one_line(ws, col):
    with FakeAnkiConnect(col, version=4) as anki:
        result = push(ws, anki.url, ok=False)
    assert result.exit_code == 5 and result.stderr.count("\n") == 1
    assert "too old (API version 4; 6 or newer is needed)" in result.stderr
    assert len(notes(col)) == 0


def test_push_prints_the_same_counts_as_export(ws, col):
    with FakeAnkiConnect(col) as anki:
        out = push(ws, anki.url).stdout
    assert "Pushed to Anki" in out
    assert EPISODE[:15] in out and "new" in out and "unchanged" in out


def test_a_url_with_a_password_is_shown_masked(ws):
    url = _closed_port().replace("http://", "http://me:hunter2secret@")
    result = push(ws, url, ok=False)
    assert result.exit_code == 5 and "hunter2secret" not in result.output


def test_push_with_audio_fills_ankis_media_folder(ws, col, tmp_path):
    pytest.importorskip("av")
    from cards.audio import tone

    sound = tone(tmp_path / "reactor.wav", 68.0, codec="pcm_s16le")
    with FakeAnkiConnect(col) as anki:
        row = pushed(ws, anki.url, "-e", EPISODE, "--audio", str(sound))
    assert row["clips"] == 2
    media = sorted(p.name for p in Path(col.media.dir()).iterdir())
    assert len(media) == 2 and all(m.startswith(f"cards-{EPISODE}-") for m in media)
    assert sorted(n["Source"][len("[sound:"):].split("]")[0] for n in notes(col).values()) == media


def test_a_server_that_does_not_speak_http_is_one_line(ws):
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def babble():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.close()

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    result = push(ws, f"http://127.0.0.1:{listener.getsockname()[1]}", ok=False)
    listener.close()
    assert result.exit_code == 5 and result.stderr.count("\n") == 1 and "Traceback" not in result.output


@pytest.mark.parametrize("url", ["localhost:8765", "ftp://127.0.0.1:21/", "http://[::1", "http://127.0.0.1:99999",
                                 "http://"])
def test_an_address_that_is_not_one_is_a_bad_setting(ws, url):
    result = push(ws, url, ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "not an AnkiConnect address" in result.stderr and "Traceback" not in result.output


def test_a_proxy_in_the_environment_is_not_used(ws, col, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", _closed_port())  # a proxy would be handed the key; this one is dead
    monkeypatch.setenv("http_proxy", _closed_port())
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("ANKICONNECT_KEY", KEY)
    with FakeAnkiConnect(col, key=KEY) as anki:
        assert pushed(ws, anki.url)["new"] == 2


def test_an_import_anki_refuses_is_one_clean_line(ws, col, monkeypatch):
    monkeypatch.setenv("ANKICONNECT_KEY", KEY)
    with FakeAnkiConnect(col, key=KEY, import_error=f"bad package\n\x1b[31m{KEY}\x1b[0m") as anki:
        result = push(ws, anki.url, ok=False)
    assert result.exit_code == 5 and result.stderr.count("\n") == 1
    assert "AnkiConnect refused importPackage: bad package" in result.stderr
    assert KEY not in result.output and "\x1b" not in result.output
