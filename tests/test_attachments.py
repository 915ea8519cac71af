"""Image and video attachments: checking uploads and links, what reaches the provider, what is
stored, and what export and import keep.

Unit tests for webapp.core.attachments and the capability table; ChatService turns against the fake
upstream on a real database (SQLite and PostgreSQL); export and import round trips.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from PIL import Image, ImageFile

from storage import message_rows, transfer
from storage import repository as repo
from tests.fake_openai import FakeOpenAI, Reply
from tests.services import stored_path
from webapp.app import export, import_file
from webapp.app.chat import ChatService, TurnRefused, TurnUpdate
from webapp.app.chat_request import Action, EditMessage, NewMessage, Regenerate, TurnSettings
from webapp.app.import_file import ImportRefused
from webapp.core import attachments
from webapp.core.attachments import AttachmentError, Limits
from webapp.core.capabilities import CapabilityTable

Call = Callable[..., Any]

VISION = "Qwen/Qwen2.5-VL-72B-Instruct"  # images and video
TEXT_ONLY = "Qwen/Qwen3-8B"
LIMITS = Limits(max_bytes=1024 * 1024, max_count=3)
HOSTILE_NAME = "a](javascript:alert(1)).png"


def picture(
    fmt: str = "PNG", size: tuple[int, int] = (6, 4), mode: str = "RGB", color: Any = (200, 40, 30)
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt)
    return out.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def decoded(url: str) -> Image.Image:
    """The image inside a base64 data URL (fully decoded)."""
    head, _, body = url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64"), head
    image = Image.open(io.BytesIO(base64.b64decode(body, validate=True)))
    image.load()
    return image


def with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose header claims another size (with a correct CRC, so it still opens)."""
    assert png[12:16] == b"IHDR"
    header = png[12:29]  # chunk type + 13 data bytes
    header = header[:4] + struct.pack(">II", width, height) + header[12:]
    return png[:12] + header + struct.pack(">I", zlib.crc32(header)) + png[33:]


# ---- uploaded images --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "mode"),
    [
        ("PNG", "image/png", "RGBA"),
        ("JPEG", "image/jpeg", "RGB"),
        ("GIF", "image/gif", "P"),
        ("WEBP", "image/webp", "RGB"),
    ],
)
def test_supported_images_are_accepted_with_their_type_and_a_preview(
    fmt: str, mime: str, mode: str
) -> None:
    raw = picture(fmt, (7, 5), mode, 1 if mode == "P" else None)
    item = attachments.image_from_bytes(raw, f"photo.{fmt.lower()}", LIMITS)
    assert item["kind"] == "image"
    assert item["mime"] == mime
    assert item["name"] == f"photo.{fmt.lower()}"
    assert (item["width"], item["height"], item["size"]) == (7, 5, len(raw))
    assert base64.b64decode(item["data"], validate=True) == raw
    preview = decoded(item["preview"])
    assert preview.size == (7, 5)


def test_the_type_comes_from_the_bytes_not_the_name() -> None:
    item = attachments.image_from_bytes(picture("JPEG"), "looks-like.png", LIMITS)
    assert item["mime"] == "image/jpeg"


def test_the_preview_is_a_small_thumbnail_and_the_data_the_full_image() -> None:
    raw = picture("PNG", (1200, 600))
    item = attachments.image_from_bytes(raw, "wide.png", LIMITS)
    assert decoded(item["preview"]).size == (attachments.PREVIEW_PX, attachments.PREVIEW_PX // 2)
    assert decoded(data_url(base64.b64decode(item["data"]))).size == (1200, 600)
    assert len(item["preview"]) < len(item["data"])


def test_a_camera_jpeg_with_a_multi_picture_segment_is_a_jpeg() -> None:
    # Pillow calls such files (common from phones) MPO; every other reader sees a JPEG.
    out = io.BytesIO()
    first, second = Image.new("RGB", (8, 6), "green"), Image.new("RGB", (8, 6), "blue")
    first.save(out, "MPO", save_all=True, append_images=[second])
    raw = out.getvalue()
    assert Image.open(io.BytesIO(raw)).format == "MPO"
    item = attachments.image_from_bytes(raw, "IMG_0001.JPG", LIMITS)
    assert item["mime"] == "image/jpeg"


def test_the_file_name_is_reduced_to_its_last_part() -> None:
    item = attachments.image_from_bytes(picture(), "../../etc/cat.png", LIMITS)
    assert item["name"] == "cat.png"
    assert attachments.image_from_bytes(picture(), "", LIMITS)["name"] == "image"


def test_an_image_over_the_size_limit_is_refused_naming_the_setting() -> None:
    raw = picture("PNG", (64, 64))
    limits = Limits(max_bytes=len(raw) - 1)
    with pytest.raises(AttachmentError, match="ATTACH_MAX_MB") as refused:
        attachments.image_from_bytes(raw, "big.png", limits)
    message = str(refused.value)
    assert message.startswith("big.png is ")
    # Just over the limit: the figures shown must differ, or the message contradicts itself.
    assert f"{len(raw):,} bytes" in message and f"{len(raw) - 1:,} bytes" in message
    assert attachments.image_from_bytes(raw, "big.png", Limits(max_bytes=len(raw)))


def test_a_small_limit_is_shown_as_it_is_not_as_zero_megabytes() -> None:
    limits = Limits.from_mb(0.01, 4)  # 10 KB
    with pytest.raises(AttachmentError) as refused:
        attachments.image_from_bytes(b"x" * 50_000, "big.png", limits)
    message = str(refused.value)
    assert "0.0 MB" not in message
    assert "10.2 KB (ATTACH_MAX_MB)" in message and "48.8 KB" in message
    with pytest.raises(AttachmentError, match=r"is 6\.0 MB; images may be at most 5\.0 MB"):
        attachments.image_from_bytes(b"x" * (6 * 1024 * 1024), "huge.png", Limits())


def test_an_over_size_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(picture("PNG", (64, 64)))

    def no_reading(self: Path) -> bytes:
        raise AssertionError("the file was read")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(AttachmentError, match=r"^big\.png is .*ATTACH_MAX_MB"):
        attachments.image_from_file(path, Limits(max_bytes=10))


def test_image_from_file_reads_an_upload(tmp_path: Path) -> None:
    raw = picture("PNG")
    path = tmp_path / "shot.png"
    path.write_bytes(raw)
    item = attachments.image_from_file(path, LIMITS)
    assert (item["name"], item["mime"]) == ("shot.png", "image/png")
    assert base64.b64decode(item["data"]) == raw
    with pytest.raises(AttachmentError, match="could not be read"):
        attachments.image_from_file(tmp_path / "gone.png", LIMITS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Dear diary, today I renamed a text file to .png\n", "is not an image Parley can read"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b"<script>alert(1)</script></svg>",
            "is not an image Parley can read",
        ),
        (b"", "is not an image Parley can read"),
        (picture("BMP"), "is not a PNG, JPEG, GIF or WebP image (it is BMP)"),
        (picture("TIFF"), "(it is TIFF)"),
    ],
    ids=["text", "svg", "empty", "bmp", "tiff"],
)
def test_files_that_are_not_supported_images_are_refused(raw: bytes, expected: str) -> None:
    with pytest.raises(AttachmentError) as refused:
        attachments.image_from_bytes(raw, "upload.png", LIMITS)
    assert str(refused.value).startswith("upload.png ")
    assert expected in str(refused.value)


def noisy(fmt: str) -> bytes:
    """An image that does not compress away, so cutting it loses pixel data."""
    image = Image.frombytes("RGB", (120, 90), random.Random(7).randbytes(120 * 90 * 3))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_a_truncated_image_is_refused_as_damaged(fmt: str) -> None:
    raw = noisy(fmt)
    assert attachments.image_from_bytes(raw, "whole.img", LIMITS)["size"] == len(raw)
    with pytest.raises(AttachmentError, match=r"^cut\.img is damaged and cannot be read \("):
        attachments.image_from_bytes(raw[: len(raw) // 2], "cut.img", LIMITS)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (8000, 8000, "is 8000×8000 pixels; at most 50,000,000 pixels are accepted"),
        (10_000, 10_000, "has far too many pixels; at most 50,000,000 are accepted"),
        (100_000, 100_000, "has far too many pixels; at most 50,000,000 are accepted"),
    ],
    ids=["over-our-limit", "pillow-warns", "pillow-refuses"],
)
def test_a_header_claiming_huge_dimensions_is_refused_without_decoding(
    width: int, height: int, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = with_ihdr_size(picture("PNG", (1, 1)), width, height)
    assert Image.open(io.BytesIO(picture("PNG", (1, 1)))).size == (1, 1)

    def no_decoding(self: Any) -> Any:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(AttachmentError) as refused:
        attachments.image_from_bytes(bomb, "bomb.png", LIMITS)
    assert str(refused.value).startswith("bomb.png ")
    assert expected in str(refused.value)


# ---- links ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        ("https://example.com/cat.png", "", "image_url"),
        ("  https://example.com/cat.png\n", "", "image_url"),
        ("http://example.com/clip.mp4", "", "video_url"),
        ("https://example.com/CLIP.WebM", "", "video_url"),
        ("https://example.com/watch?file=clip.mp4", "", "image_url"),  # the path decides
        ("https://example.com/stream", "video", "video_url"),
        ("https://example.com/clip.mp4", "image", "image_url"),
        ("https://例え.jp/画像.png", "", "image_url"),
    ],
)
def test_http_links_are_attached_as_image_or_video(url: str, kind: str, expected: str) -> None:
    assert attachments.link(url, kind) == {"kind": expected, "url": url.strip()}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("javascript:alert(1)", "is not an http(s) link"),
        ("JavaScript://example.com/%0aalert(1)", "is not an http(s) link"),
        ("data:image/png;base64,iVBORw0KGgo=", "is not an http(s) link"),
        ("file:///etc/passwd", "is not an http(s) link"),
        ("ftp://example.com/cat.png", "is not an http(s) link"),
        ("//example.com/cat.png", "is not an http(s) link"),
        ("https:///cat.png", "is not an http(s) link"),
        ("https://user:secret@example.com/cat.png", "user name or password"),
        ("https://user@example.com/cat.png", "user name or password"),
        ("https://example.com/a cat.png", "spaces, quotes"),
        ('https://example.com/a".png', "spaces, quotes"),
        ("https://example.com/a'.png", "spaces, quotes"),
        ("https://example.com/<b>.png", "angle brackets"),
        ("https://example.com/a`.png", "spaces, quotes"),
        ("https://example.com/\x00.png", "control characters"),
        ("https://example.com/\u200b.png", "control characters"),
        ("https://[not-ipv6/cat.png", "is not a valid link"),
        ("https://example.com:99999/cat.png", "is not a valid link"),
        ("https://example.com/" + "a" * 2100, "longer than 2048 characters"),
    ],
)
def test_unsafe_or_malformed_links_are_refused(url: str, expected: str) -> None:
    with pytest.raises(AttachmentError) as refused:
        attachments.link(url)
    assert expected in str(refused.value)


def test_an_unknown_link_kind_is_refused() -> None:
    with pytest.raises(AttachmentError, match="Unknown link kind 'audio'"):
        attachments.link("https://example.com/a.mp3", "audio")


def test_the_count_limit_counts_images_and_links_together() -> None:
    items = [attachments.link(f"https://example.com/{i}.png") for i in range(3)]
    attachments.check_count(items, LIMITS)
    with pytest.raises(AttachmentError, match=r"^4 attachments: at most 3 .*ATTACH_MAX_COUNT"):
        attachments.check_count([*items, attachments.link("https://example.com/v.mp4")], LIMITS)


# ---- restore (imports) -----------------------------------------------------------------------


def test_restore_decodes_the_image_again_and_remakes_everything_else() -> None:
    original = attachments.image_from_bytes(picture("PNG", (30, 20)), "pic.png", LIMITS)
    tampered = {
        **original,
        "preview": "javascript:alert(1)",
        "mime": "text/html",
        "width": 1,
        "height": 99999,
        "size": 3,
        "onload": "alert(1)",
        "name": "../../x/pic.png",
    }
    restored = attachments.restore(tampered, LIMITS)
    assert restored == original
    assert attachments.restore(attachments.link("https://e.com/v.mp4"), LIMITS) == {
        "kind": "video_url",
        "url": "https://e.com/v.mp4",
    }
    assert attachments.restore({"kind": "image_url", "url": "https://e.com/v.mp4"}, LIMITS) == {
        "kind": "image_url",
        "url": "https://e.com/v.mp4",
    }


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("image", "an attachment must be an object"),
        ({"kind": "audio", "url": "https://e.com/a.mp3"}, "unknown attachment kind 'audio'"),
        ({"url": "https://e.com/a.png"}, "unknown attachment kind None"),
        ({"kind": "image"}, 'needs its "data" (base64)'),
        ({"kind": "image", "data": 12}, 'needs its "data" (base64)'),
        (
            {"kind": "image", "data": "not base64!"},
            'image attachment\'s "data" is not valid base64',
        ),
        ({"kind": "image", "data": "iVBORw0KGgo"}, "is not valid base64"),  # bad padding
        (
            {
                "kind": "image",
                "data": base64.b64encode(b"<html>hi</html>").decode(),
                "name": "x.png",
            },
            "x.png is not an image Parley can read",
        ),
        ({"kind": "image", "data": base64.b64encode(picture("BMP")).decode()}, "(it is BMP)"),
        ({"kind": "image", "data": "A" * (LIMITS.max_bytes * 2)}, "within the size limit"),
        ({"kind": "image_url", "url": "javascript:alert(1)"}, "is not an http(s) link"),
        ({"kind": "video_url", "url": None}, 'needs a "url" string'),
    ],
)
def test_restore_refuses_anything_it_cannot_check(item: Any, expected: str) -> None:
    with pytest.raises(AttachmentError) as refused:
        attachments.restore(item, LIMITS)
    assert expected in str(refused.value)


# ---- provider parts and Markdown ---------------------------------------------------------------


def test_content_parts_put_the_text_first_then_images_and_video() -> None:
    raw = picture("JPEG")
    image = attachments.image_from_bytes(raw, "a.jpg", LIMITS)
    linked = attachments.link("https://e.com/b.png")
    video = attachments.link("https://e.com/c.mp4")
    assert attachments.content_parts("Compare", [image, linked, video]) == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": data_url(raw, "image/jpeg")}},
        {"type": "image_url", "image_url": {"url": "https://e.com/b.png"}},
        {"type": "video_url", "video_url": {"url": "https://e.com/c.mp4"}},
    ]
    assert attachments.content_parts("", [linked]) == [
        {"type": "image_url", "image_url": {"url": "https://e.com/b.png"}}
    ]


def _rendered(markdown: str) -> tuple[list[dict[str, str]], list[str]]:
    """The images (attributes) and link targets a Markdown renderer makes of `markdown`."""
    images, links = [], []
    for token in MarkdownIt("commonmark").parse(markdown):
        for child in token.children or []:
            if child.type == "image":
                images.append({"src": str(child.attrs["src"]), "alt": child.content})
            if child.type == "link_open":
                links.append(str(child.attrs["href"]))
    return images, links


def test_markdown_shows_the_preview_and_exports_the_full_image() -> None:
    raw = picture("PNG", (600, 400))
    image = attachments.image_from_bytes(raw, "cat.png", LIMITS)
    shown, _ = _rendered(attachments.markdown([image]))
    assert shown == [{"src": image["preview"], "alt": "cat.png"}]
    full, _ = _rendered(attachments.markdown([image], full=True))
    assert full == [{"src": data_url(raw), "alt": "cat.png"}]


def test_markdown_escapes_a_hostile_file_name() -> None:
    image = attachments.image_from_bytes(picture(), HOSTILE_NAME, LIMITS)
    assert image["name"] == HOSTILE_NAME  # kept as given; only its Markdown is made safe
    for full in (False, True):
        text = attachments.markdown([image], full=full)
        images, links = _rendered(text)
        assert len(images) == 1 and links == []
        assert images[0]["src"].startswith("data:image/")
        assert "javascript" not in images[0]["src"]
        assert "](" not in images[0]["alt"] and "(" not in images[0]["alt"]


def test_markdown_shows_links_as_plain_links() -> None:
    items = [attachments.link("https://e.com/a_b*c.png"), attachments.link("https://e.com/v.mp4")]
    text = attachments.markdown(items)
    images, links = _rendered(text)
    assert images == []  # a linked image is not fetched by the reader's browser
    assert links == ["https://e.com/a_b*c.png", "https://e.com/v.mp4"]
    assert "video" in text
    assert attachments.summary(items) == "1 image, 1 video link"
    assert attachments.summary([items[0], items[0]]) == "2 images"


# ---- capabilities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "vision", "video"),
    [
        ("Qwen/Qwen3-8B", False, False),
        ("Qwen/Qwen3-235B-A22B-Instruct-2507", False, False),
        ("Qwen/Qwen2.5-72B-Instruct", False, False),
        ("deepseek-ai/DeepSeek-V3", False, False),
        ("deepseek-ai/DeepSeek-R1", False, False),
        ("moonshotai/Kimi-K2-Instruct", False, False),
        ("zai-org/GLM-4.6", False, False),
        ("Qwen/Qwen2.5-VL-72B-Instruct", True, True),
        ("Qwen/Qwen3-VL-235B-A22B-Instruct", True, True),
        ("Qwen/Qwen3-Omni-30B-A3B-Instruct", True, True),
        ("zai-org/GLM-4.5V", True, True),
        ("THUDM/GLM-4.1V-9B-Thinking", True, None),
        ("deepseek-ai/deepseek-vl2", True, None),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", True, None),
        ("gpt-4o", None, None),
        ("fake/model-a", None, None),
    ],
)
def test_vision_and_video_capabilities(model: str, vision: bool | None, video: bool | None) -> None:
    caps = CapabilityTable().lookup(model, "siliconflow", "siliconflow")
    assert (caps.vision, caps.video) == (vision, video)
    assert CapabilityTable().lookup(model).vision == vision  # not tied to one provider


# ---- turns through ChatService (fake upstream, SQLite and PostgreSQL) --------------------------


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"ATTACH_MAX_COUNT": "3"}


def turn(model: str = VISION) -> TurnSettings:
    return TurnSettings(provider="siliconflow", model=model)


async def run(
    service: ChatService, uid: int, conversation_id: str | None, action: Action, model: str = VISION
) -> TurnUpdate:
    last = None
    async for update in service.stream_turn(
        user_id=uid, conversation_id=conversation_id, action=action, turn=turn(model)
    ):
        last = update
    assert last is not None
    assert last.state == "complete", last.error
    return last


async def local_user(service: ChatService) -> int:
    user = await service.db(lambda s: repo.ensure_user(session=s, username="local"))
    assert user.id is not None
    return user.id


def sent(fake: FakeOpenAI) -> list[list[dict[str, Any]]]:
    """The messages of each chat request the fake upstream received."""
    return [r["json"]["messages"] for r in fake.requests if r["path"].endswith("/chat/completions")]


RAW_PNG = picture("PNG", (5, 3), "RGBA", (0, 128, 255, 200))


def png_attachment() -> dict[str, Any]:
    return attachments.image_from_bytes(RAW_PNG, "dot.png", LIMITS)


async def test_an_attached_png_reaches_the_provider_as_a_data_url_after_the_text(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    item = png_attachment()
    update = await run(service, uid, None, NewMessage("What is in the picture?", (item,)))
    assert sent(fake)[-1][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in the picture?"},
            {
                "type": "image_url",
                "image_url": {
                    "url": "data:image/png;base64," + base64.b64encode(RAW_PNG).decode("ascii")
                },
            },
        ],
    }
    assert update.notes == []
    # Reloading the conversation keeps the attachment exactly as it was checked.
    path = await stored_path(service, uid, update.conversation_id)
    assert [m.role for m in path] == ["user", "assistant"]
    assert path[0].attachments == [item]
    assert path[0].content == "What is in the picture?"


async def test_an_image_alone_is_sent_without_a_text_part(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    update = await run(service, uid, None, NewMessage("", (png_attachment(),)))
    assert sent(fake)[-1][-1] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": data_url(RAW_PNG)}}],
    }
    # With no text, the picture's name titles the conversation (not "New chat").
    listed = await service.db(lambda s: repo.list_conversations(session=s, user_id=uid))
    assert [(c.id, c.title) for c in listed] == [(update.conversation_id, png_attachment()["name"])]


async def test_a_video_link_reaches_a_video_model_as_a_video_url_part(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    video = attachments.link("https://cdn.example.com/clip.mp4")
    picture_link = attachments.link("https://cdn.example.com/still.jpg")
    update = await run(service, uid, None, NewMessage("Describe", (video, picture_link)))
    assert sent(fake)[-1][-1]["content"] == [
        {"type": "text", "text": "Describe"},
        {"type": "video_url", "video_url": {"url": "https://cdn.example.com/clip.mp4"}},
        {"type": "image_url", "image_url": {"url": "https://cdn.example.com/still.jpg"}},
    ]
    path = await stored_path(service, uid, update.conversation_id)
    assert path[0].attachments == [video, picture_link]


async def test_an_unknown_model_may_take_images(service: ChatService, fake: FakeOpenAI) -> None:
    uid = await local_user(service)
    await run(service, uid, None, NewMessage("Hi", (png_attachment(),)), model="fake/model-a")
    assert sent(fake)[-1][-1]["content"][1]["type"] == "image_url"


async def _nothing_stored_or_sent(service: ChatService, fake: FakeOpenAI, uid: int) -> None:
    assert sent(fake) == []
    listed = await service.db(lambda s: repo.list_conversations(session=s, user_id=uid))
    assert listed == []


@pytest.mark.parametrize(
    ("model", "item", "expected"),
    [
        (TEXT_ONLY, "image", f"{TEXT_ONLY} does not accept images"),
        (TEXT_ONLY, "image_link", f"{TEXT_ONLY} does not accept images"),
        (TEXT_ONLY, "video_link", f"{TEXT_ONLY} does not accept video"),
        ("deepseek-ai/DeepSeek-V3", "image", "deepseek-ai/DeepSeek-V3 does not accept images"),
    ],
)
async def test_attachments_a_model_does_not_take_are_refused_before_anything_happens(
    service: ChatService, fake: FakeOpenAI, model: str, item: str, expected: str
) -> None:
    uid = await local_user(service)
    attached = {
        "image": png_attachment(),
        "image_link": attachments.link("https://e.com/a.png"),
        "video_link": attachments.link("https://e.com/a.mp4"),
    }[item]
    with pytest.raises(TurnRefused, match=expected) as refused:
        await run(service, uid, None, NewMessage("What is this?", (attached,)), model=model)
    assert "Pick a" in str(refused.value)  # the user learns what to do instead
    await _nothing_stored_or_sent(service, fake, uid)


async def test_too_many_attachments_are_refused_before_anything_happens(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    items = tuple(attachments.link(f"https://e.com/{i}.png") for i in range(4))
    with pytest.raises(TurnRefused, match=r"4 attachments: at most 3 .*ATTACH_MAX_COUNT"):
        await run(service, uid, None, NewMessage("Many", items))
    await _nothing_stored_or_sent(service, fake, uid)


async def test_a_text_only_model_later_gets_the_earlier_message_as_text_with_a_note(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    first = await run(service, uid, None, NewMessage("Look at this", (png_attachment(),)))
    second = await run(
        service, uid, first.conversation_id, NewMessage("Now in words"), model=TEXT_ONLY
    )
    assert sent(fake)[-1] == [
        {"role": "user", "content": "Look at this"},
        {"role": "assistant", "content": "Echo: Look at this"},
        {"role": "user", "content": "Now in words"},
    ]
    assert len(second.notes) == 1 and "takes no images" in second.notes[0]
    assert TEXT_ONLY in second.notes[0]
    # The attachment stays stored: a vision model sees it again on the next turn.
    await run(service, uid, first.conversation_id, NewMessage("And now?"))
    assert sent(fake)[-1][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": data_url(RAW_PNG)},
    }


async def test_regenerate_resends_the_image_and_edit_keeps_it(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    item = png_attachment()
    fake.enqueue(Reply(content="A dot."), Reply(content="A blue dot."))
    first = await run(service, uid, None, NewMessage("What is it?", (item,)))
    await run(service, uid, first.conversation_id, Regenerate())
    image_part = {"type": "image_url", "image_url": {"url": data_url(RAW_PNG)}}
    assert sent(fake)[-1] == [
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image_part]}
    ]
    path = await stored_path(service, uid, first.conversation_id)
    assert path[-1].content == "A blue dot."

    await run(service, uid, first.conversation_id, EditMessage(path[0].id, "What colour is it?"))
    assert sent(fake)[-1] == [
        {"role": "user", "content": [{"type": "text", "text": "What colour is it?"}, image_part]}
    ]
    edited = await stored_path(service, uid, first.conversation_id)
    assert edited[0].id != path[0].id
    assert edited[0].content == "What colour is it?"
    assert edited[0].attachments == [item]
    assert path[0].attachments == [item]  # the original version keeps its image too


async def test_an_image_only_message_can_be_edited_to_add_text_and_keeps_the_image(
    service: ChatService, fake: FakeOpenAI
) -> None:
    uid = await local_user(service)
    first = await run(service, uid, None, NewMessage("", (png_attachment(),)))
    path = await stored_path(service, uid, first.conversation_id)
    await run(service, uid, first.conversation_id, EditMessage(path[0].id, "Which colour?"))
    assert sent(fake)[-1][-1]["content"][1]["type"] == "image_url"


@pytest.mark.parametrize("action", ["regenerate", "edit"])
async def test_answering_an_image_question_again_with_a_text_only_model_is_refused(
    service: ChatService, fake: FakeOpenAI, action: str
) -> None:
    uid = await local_user(service)
    first = await run(service, uid, None, NewMessage("What is it?", (png_attachment(),)))
    path = await stored_path(service, uid, first.conversation_id)
    again: Action = Regenerate() if action == "regenerate" else EditMessage(path[0].id, "Hm?")
    with pytest.raises(TurnRefused, match="does not accept images"):
        await run(service, uid, first.conversation_id, again, model=TEXT_ONLY)
    assert len(sent(fake)) == 1


# ---- export and import -------------------------------------------------------------------------


def _conversation_with_attachments(call: Call, user_id: int) -> tuple[str, list[dict[str, Any]]]:
    items = [
        attachments.image_from_bytes(RAW_PNG, HOSTILE_NAME, LIMITS),
        attachments.link("https://e.com/still.png"),
        attachments.link("https://e.com/clip.mp4"),
    ]
    conversation = call(
        repo.create_conversation,
        user_id=user_id,
        title="Pictures",
        provider="siliconflow",
        model=VISION,
    )
    question = call(
        message_rows.add_message,
        user_id=user_id,
        conversation_id=conversation.id,
        parent_id=None,
        role="user",
        content="What are these?",
        attachments=items,
    )
    call(
        message_rows.add_message,
        user_id=user_id,
        conversation_id=conversation.id,
        parent_id=question.id,
        role="assistant",
        content="A dot, a still and a clip.",
        model=VISION,
    )
    return conversation.id, items


def test_markdown_export_holds_the_full_image(call: Call, alice: int) -> None:
    conversation_id, items = _conversation_with_attachments(call, alice)
    conversation, messages = call(
        transfer.export_conversation, user_id=alice, conversation_id=conversation_id
    )
    text = export.conversation_markdown(conversation, messages)
    images, links = _rendered(text)
    assert [i["src"] for i in images] == [data_url(RAW_PNG)]
    assert items[0]["preview"] not in text
    assert "https://e.com/still.png" in links and "https://e.com/clip.mp4" in links
    assert not any("javascript" in href for href in links)  # the hostile name is only alt text
    assert text.index(data_url(RAW_PNG)) < text.index("What are these?")


def test_json_export_and_import_keep_the_attachments(call: Call, alice: int, bob: int) -> None:
    conversation_id, items = _conversation_with_attachments(call, alice)
    conversation, messages = call(
        transfer.export_conversation, user_id=alice, conversation_id=conversation_id
    )
    document = export.conversation_json(conversation, messages)
    assert document["messages"][0]["attachments"] == items
    imported = import_file.parse_import(json.dumps(document))
    new_id = call(transfer.import_conversation, user_id=bob, imported=imported)
    _, copied = call(transfer.export_conversation, user_id=bob, conversation_id=new_id)
    assert copied[0].attachments == items
    assert base64.b64decode(copied[0].attachments[0]["data"]) == RAW_PNG
    assert copied[1].attachments is None


def test_import_remakes_a_tampered_preview_from_the_image(call: Call, alice: int) -> None:
    conversation_id, items = _conversation_with_attachments(call, alice)
    conversation, messages = call(
        transfer.export_conversation, user_id=alice, conversation_id=conversation_id
    )
    document = export.conversation_json(conversation, messages)
    document["messages"][0]["attachments"][0]["preview"] = "javascript:alert(1)"
    document["messages"][0]["attachments"][0]["mime"] = "text/html"
    imported = import_file.parse_import(json.dumps(document))
    assert imported.messages[0]["attachments"] == items


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"data": base64.b64encode(b"MZ\x90\x00 not an image").decode()},
            "is not an image Parley can read",
        ),
        ({"data": "%%%not-base64%%%"}, 'attachment\'s "data" is not valid base64'),
        ({"data": base64.b64encode(noisy("PNG")[:9000]).decode()}, "dot.png is damaged"),
        (
            {"kind": "image_url", "url": "javascript:alert(document.cookie)"},
            "is not an http(s) link",
        ),
        ({"kind": "video_url", "url": "file:///etc/passwd"}, "is not an http(s) link"),
        ({"kind": "script"}, "unknown attachment kind 'script'"),
    ],
    ids=["not-an-image", "bad-base64", "truncated", "javascript-url", "file-url", "unknown-kind"],
)
def test_an_import_with_a_tampered_attachment_is_refused_naming_the_message(
    change: dict[str, Any], expected: str
) -> None:
    link = attachments.link("https://e.com/a.png")
    image = attachments.image_from_bytes(RAW_PNG, "dot.png", LIMITS)
    document = {
        "format": "parley.conversation.v1",
        "exported_at": "2030-01-01T00:00:00Z",
        "conversation": {
            "title": "T",
            "created_at": "2024-05-01T09:00:00Z",
            "current_leaf_id": "m2",
        },
        "messages": [
            {
                "id": "m1",
                "parent_id": None,
                "role": "user",
                "content": "q",
                "created_at": "2024-05-01T10:00:01Z",
            },
            {
                "id": "m2",
                "parent_id": "m1",
                "role": "user",
                "content": "q2",
                "attachments": [link, {**image, **change}],
                "created_at": "2024-05-01T10:00:02Z",
            },
        ],
    }
    with pytest.raises(ImportRefused) as refused:
        import_file.parse_import(json.dumps(document))
    message = str(refused.value)
    assert message.startswith('message 2 (id "m2"), attachment 2: '), message
    assert expected in message


def test_an_image_accepted_under_a_raised_limit_can_be_imported_back() -> None:
    image = Image.frombytes("RGB", (1500, 1400), random.Random(3).randbytes(1500 * 1400 * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    raw = out.getvalue()
    assert 5 * 1024 * 1024 < len(raw) < 8 * 1024 * 1024
    item = attachments.image_from_bytes(raw, "big.png", Limits.from_mb(8, 4))  # ATTACH_MAX_MB=8
    document = {
        "format": "parley.conversation.v1",
        "conversation": {"title": "T", "current_leaf_id": "m1"},
        "messages": [
            {
                "id": "m1",
                "parent_id": None,
                "role": "user",
                "content": "q",
                "attachments": [item],
                "created_at": "2024-05-01T10:00:01Z",
            }
        ],
    }
    imported = import_file.parse_import(json.dumps(document))
    assert imported.messages[0]["attachments"] == [item]
