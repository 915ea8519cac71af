"""Security review of image attachments, the language layer and the usage query (b27f740,
d3b40d2): each test shows one problem found in review and passes once it is fixed.

The event tests speak Gradio's queue protocol to the production stack (FastAPI + mounted
Gradio under uvicorn, via the `sqlite_app` fixture), as a hostile browser could: POST
/gradio_api/queue/join with the message box's value written by hand, then read the SSE stream.
Memory is measured in a child process (its peak resident size), so other tests do not count.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import json
import os
import secrets
import struct
import subprocess
import sys
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio import processing_utils
from PIL import Image
from sqlmodel import select

from storage import accounts, message_rows
from storage import repository as repo
from storage.models import Message, utc_now
from tests.conftest import RunningApp
from webapp.app.import_file import ImportRefused, parse_import
from webapp.app.limits import LimitReached, check_limits
from webapp.config import load_settings
from webapp.core import attachments
from webapp.i18n import pick_language
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.session import SessionState
from webapp.ui.translate import Translations

Call = Any
VISION = "Qwen/Qwen2.5-VL-72B-Instruct"
ROOT = Path(__file__).resolve().parent.parent


# ---- helpers ---------------------------------------------------------------------------------


def png_bytes(width: int, height: int, rgba: bool = True) -> bytes:
    """A valid, all-black PNG of any size, made row by row (little memory, a small file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" * (width * (4 if rgba else 3) + 1)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def small_png(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (7, 5), color).save(out, "PNG")
    return out.getvalue()


PEAK_SCRIPT = """
import json, resource, sys, threading
from webapp.core import attachments
raw = open(sys.argv[1], "rb").read()
limits = attachments.Limits(max_bytes=5 * 1024 * 1024, max_count=4)
outcomes = []
def check():
    try:
        attachments.image_from_bytes(raw, "upload.png", limits)
        outcomes.append("accepted")
    except attachments.AttachmentError as exc:
        outcomes.append("refused: " + str(exc))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
threads = [threading.Thread(target=check) for _ in range(int(sys.argv[2]))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"peak_mb": peak // 1024, "outcomes": outcomes}))
"""


def peak_memory(tmp_path: Path, raw: bytes, threads: int = 1) -> dict[str, Any]:
    """Check `raw` as an upload (in `threads` threads at once) in a child process: the extra
    memory it took at its peak, in MB, and what each check said."""
    path = tmp_path / "upload.bin"
    path.write_bytes(raw)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path), str(threads)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def file_data(path: str | Path) -> dict[str, Any]:
    """A file named in an event the way the browser names an upload."""
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def send_event(app: RunningApp, box: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """Run the chat's send event with this message box value (and a vision model), speaking the
    queue protocol. Returns whether it succeeded, its error, and the toasts it showed."""
    with httpx.Client(timeout=timeout) as http:
        config = http.get(app.url + "config").json()
        by_id = {c["id"]: c for c in config["components"]}
        box_id = next(
            c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "message"
        )
        send = next(
            d
            for d in config["dependencies"]
            if [box_id, "submit"] in [list(t) for t in d["targets"]] and box_id in d["inputs"]
        )
        values = {"message": box, "model": VISION, "attach-url": ""}
        data = [
            values.get(
                by_id[i].get("props", {}).get("elem_id"), by_id[i].get("props", {}).get("value")
            )
            for i in send["inputs"]
        ]
        session_hash = secrets.token_hex(8)
        http.post(
            app.url + "gradio_api/queue/join",
            json={
                "data": data,
                "fn_index": send["id"],
                "trigger_id": box_id,
                "session_hash": session_hash,
                "event_data": None,
            },
        ).raise_for_status()
        toasts = []
        with http.stream(
            "GET", app.url + "gradio_api/queue/data", params={"session_hash": session_hash}
        ) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "log":
                    toasts.append(str(message.get("log")))
                if message.get("msg") == "process_completed":
                    output = message.get("output") or {}
                    return {
                        "success": message.get("success"),
                        "error": output.get("error"),
                        "toasts": toasts,
                    }
    raise AssertionError("the send event never completed")


def stored_attachments(app: RunningApp) -> list[Any]:
    with repo_session(app) as session:
        return [m.attachments for m in session.exec(select(Message)).all() if m.attachments]


@contextlib.contextmanager
def repo_session(app: RunningApp) -> Any:
    from storage.db import session_factory, unit_of_work

    with unit_of_work(session_factory(app.parley.engine)) as session:
        yield session


# ---- 1. files named in the send event that were never uploaded ------------------------------
# Gradio checks that a file named in an event was uploaded only when `blocks.has_launched` is
# true, and mount_gradio_app (webapp/web.py) never sets it: the check is skipped, any path the
# server can read is copied into Gradio's cache and handed to `ChatUI.send`.


def test_a_send_cannot_attach_a_server_image_that_was_never_uploaded(
    sqlite_app: RunningApp, tmp_path: Path
) -> None:
    secret = tmp_path / "private-scan.png"  # any image the server can read, outside the uploads
    secret.write_bytes(small_png((1, 2, 3)))
    outcome = send_event(
        sqlite_app, {"text": "What is in this picture?", "files": [file_data(secret)]}
    )
    sent = json.dumps([r["json"] for r in sqlite_app.fake.requests])
    assert base64.b64encode(secret.read_bytes()).decode() not in sent, (
        "a server file reached the provider as the user's image"
    )
    assert stored_attachments(sqlite_app) == [], "a server file was stored in the conversation"
    assert outcome["success"] is False, outcome


def test_a_send_naming_a_server_file_does_not_copy_it_into_the_gradio_cache(
    sqlite_app: RunningApp, tmp_path: Path
) -> None:
    # The copy happens before any file-type check: the SQLite database, .env or a key file
    # would land in the cache (the same folder /gradio_api/file= serves from).
    secret = tmp_path / f"credentials-{secrets.token_hex(6)}.txt"
    secret.write_text("API_KEY=very-secret\n")
    send_event(sqlite_app, {"text": "hi", "files": [file_data(secret)]})
    copies = list(Path(gr.utils.get_upload_folder()).glob(f"*/{secret.name}"))
    assert copies == [], f"copied into Gradio's cache: {copies}"


def test_refusals_tell_nothing_about_files_on_the_server(
    sqlite_app: RunningApp, tmp_path: Path
) -> None:
    large = tmp_path / "exists.jpg"
    with large.open("wb") as out:
        out.truncate(7_000_000)
    missing = tmp_path / "absent.jpg"
    replies = []
    for path in (large, missing):
        outcome = send_event(sqlite_app, {"text": "hi", "files": [file_data(path)]})
        replies.append(json.dumps(outcome).replace(str(path), "<path>"))
    # As it is, one says "exists.jpg is 6.7 MB; images may be at most 5.0 MB", the other
    # "could not be read: No such file or directory": an oracle for any path's size.
    assert replies[0] == replies[1]


def test_a_send_naming_a_pipe_does_not_freeze_the_server(
    sqlite_app: RunningApp, tmp_path: Path
) -> None:
    # Gradio hashes and copies the named file on the event loop itself: a pipe (or /dev/zero,
    # which never ends) stops every user's page, stream and /healthz.
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    sender = threading.Thread(
        target=lambda: send_event(sqlite_app, {"text": "hi", "files": [file_data(pipe)]}),
        daemon=True,
    )
    sender.start()
    status: int | None = None
    try:
        time.sleep(1.5)  # no signal to wait for: the server is blocked inside open()
        with httpx.Client(timeout=5) as http, contextlib.suppress(httpx.TimeoutException):
            status = http.get(sqlite_app.url + "healthz").status_code
    finally:
        deadline = time.monotonic() + 30
        while sender.is_alive() and time.monotonic() < deadline:
            try:  # release a server blocked on the pipe: write and close it
                writer = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
                os.write(writer, b"not an image")
                os.close(writer)
            except OSError as exc:
                assert exc.errno == errno.ENXIO  # nobody is reading it (yet)
            sender.join(0.2)
    assert status == 200, "the server stopped answering while Gradio read the named pipe"


def test_a_send_does_not_make_the_server_download_a_link_named_as_a_file(
    sqlite_app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "The provider fetches it; Parley never does" (webapp/core/attachments.py). An http(s) `path`
    # skips even Gradio's upload check; Gradio then downloads it, with no size limit, into its
    # cache. The download is replaced here (no network): only whether it is tried matters.
    fetched: list[str] = []

    async def download(url: str, cache_dir: str) -> str:
        fetched.append(url)
        raise OSError("no network in tests")

    monkeypatch.setattr(processing_utils, "async_ssrf_protected_download", download)
    send_event(
        sqlite_app, {"text": "hi", "files": [file_data("https://files.example/huge-download.png")]}
    )
    assert fetched == []


# ---- 2. memory and CPU spent checking images -------------------------------------------------


def test_a_thin_image_cannot_make_the_check_take_gigabytes(tmp_path: Path) -> None:
    raw = png_bytes(1, 50_000_000)  # 1 × 50,000,000 pixels: under MAX_PIXELS, ~240 KB
    assert len(raw) < 300_000
    result = peak_memory(tmp_path, raw)
    # As it was: accepted, after ~3.2 GB and ~4.5 s of CPU (the preview's resize).
    assert result["peak_mb"] < 300, result


def test_a_large_jpeg_is_checked_without_decoding_it_at_full_size(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (7071, 7071), (90, 90, 90)).save(out, "JPEG", quality=5)
    assert len(out.getvalue()) < 5 * 1024 * 1024
    result = peak_memory(tmp_path, out.getvalue())
    assert result["outcomes"] == ["accepted"]
    # As it was: ~190 MB (a full decode plus a full copy for the preview) for a 0.8 MB file.
    assert result["peak_mb"] < 80, result


def test_concurrent_checks_of_large_images_hold_bounded_memory(tmp_path: Path) -> None:
    raw = png_bytes(7071, 7071)  # 50 megapixels RGBA in ~190 KB
    result = peak_memory(tmp_path, raw, threads=6)  # asyncio.to_thread runs min(32, cpus + 4)
    assert result["outcomes"] == ["accepted"] * 6
    # As it was: ~3.5 GB for six such uploads at once (~580 MB each, all decoded together).
    assert result["peak_mb"] < 1200, result


def test_the_attachment_count_is_checked_before_any_image_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ChatUI._attachments (webapp/ui/handlers/turns.py) decodes every file, then counts them: a send
    # naming hundreds of uploaded images decodes them all before it is refused.
    settings = load_settings({"ATTACH_MAX_COUNT": "4"}, dotenv_path=None)
    paths = []
    for number in range(30):
        path = tmp_path / f"{number}.png"
        path.write_bytes(small_png())
        paths.append(str(path))
    decoded: list[str] = []
    check = attachments.image_from_bytes

    def counting(raw: bytes, name: str, limits: attachments.Limits) -> attachments.Attachment:
        decoded.append(name)
        return check(raw, name, limits)

    monkeypatch.setattr(attachments, "image_from_bytes", counting)
    with pytest.raises(attachments.AttachmentError, match="30 attachments"):
        ChatUI._attachments(SimpleNamespace(settings=settings), paths, "", "auto")  # type: ignore[arg-type]
    assert len(decoded) <= settings.attach_max_count, f"{len(decoded)} images decoded first"


def test_an_import_cannot_buy_minutes_of_cpu_with_small_images() -> None:
    # Imports take 20 images per message at up to 20 MB each (IMPORT_ATTACHMENT_LIMITS) and
    # decode every one: 90 all-black 50-megapixel PNGs fit in a 17 MB file.
    image = {
        "kind": "image",
        "name": "black.png",
        "data": base64.b64encode(png_bytes(7071, 7071, rgba=False)).decode("ascii"),
    }
    messages = [
        {
            "id": f"m{number}",
            "parent_id": f"m{number - 1}" if number else None,
            "role": "user",
            "content": "q",
            "attachments": [image] * 18,
            "created_at": f"2024-05-01T10:00:{number:02d}Z",
        }
        for number in range(5)
    ]
    document = json.dumps(
        {
            "format": "parley.conversation.v1",
            "conversation": {"title": "T", "current_leaf_id": "m4"},
            "messages": messages,
        }
    )
    assert len(document) < 20_000_000  # MAX_IMPORT_BYTES
    started = time.process_time()
    with contextlib.suppress(ImportRefused):
        parse_import(document)
    # As it is: ~30 s of CPU on one worker thread per such upload.
    assert time.process_time() - started < 10


# ---- 3. the language stored in the browser -------------------------------------------------


@pytest.mark.parametrize("stored", [["zh"], {"lang": "zh"}, 7, None, ""])
def test_any_stored_language_value_falls_back_to_the_browser_language(stored: Any) -> None:
    # gr.BrowserState passes the browser's value through unchanged: any JSON can arrive.
    assert pick_language(stored, "zh-CN,zh;q=0.9") == "zh"
    translations = Translations([])
    request = SimpleNamespace(headers={"accept-language": "en-GB"})
    state = SessionState()
    assert translations.on_load(request, state, stored)[0] == "en"  # type: ignore[arg-type]
    assert translations.switch(stored, state)[0] == "en"


# ---- 4. usage limits -----------------------------------------------------------------------


def test_deleting_a_conversation_does_not_reset_the_limits_or_the_admin_table(
    call: Call, alice: int
) -> None:
    """Usage is counted from answer rows; deleting a conversation deletes them. What those
    answers used is kept (deleted_usage), so a user cannot delete their way past a limit."""
    call(accounts.update_account, username="alice", daily_token_limit=1000, rpm_limit=2)
    conversation = call(repo.create_conversation, user_id=alice, title="t")
    question = call(
        message_rows.add_message,
        user_id=alice,
        conversation_id=conversation.id,
        parent_id=None,
        role="user",
        content="q",
    )
    for _ in range(2):
        call(
            message_rows.add_message,
            user_id=alice,
            conversation_id=conversation.id,
            parent_id=question.id,
            role="assistant",
            content="a",
            model="m",
            usage={"prompt_tokens": 200, "completion_tokens": 400, "total_tokens": 600},
        )
    since = utc_now() - timedelta(minutes=1)

    def counted() -> tuple[int, int, list[tuple[str, str, int, int, int]]]:
        rows = call(accounts.usage_since, since=since)
        return (
            call(accounts.tokens_since, user_id=alice, since=since),
            call(accounts.requests_since, user_id=alice, since=since),
            [(r.username, r.model, r.requests, r.prompt_tokens, r.completion_tokens) for r in rows],
        )

    before = counted()
    assert before == (1200, 2, [("alice", "m", 2, 400, 800)])
    with pytest.raises(LimitReached):
        call(check_limits, user_id=alice)
    call(repo.delete_conversation, user_id=alice, conversation_id=conversation.id)
    assert counted() == before
    with pytest.raises(LimitReached):
        call(check_limits, user_id=alice)
