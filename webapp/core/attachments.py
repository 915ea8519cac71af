"""Images and video links attached to a user message: checked, stored, and sent to a provider.

Images an MCP tool returned are kept in the same form on the tool result's row.

An attachment is a plain dict, stored as is in `messages.attachments` (JSON) and exported:

- an uploaded image: ``{"kind": "image", "name", "mime", "size", "data": <base64>,
  "width", "height", "preview": <small data URL shown in the chat>}``; sent as a base64 data URL;
- a linked image: ``{"kind": "image_url", "url"}``;
- a linked video: ``{"kind": "video_url", "url"}``.

The image's type comes from its bytes (Pillow), never from the file name, and it must decode:
a renamed or truncated file is refused with a message saying why.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

Attachment = dict[str, Any]

# MPO is how Pillow names a JPEG with a multi-picture segment (many phone and camera photos):
# its bytes are a plain JPEG to any other reader.
IMAGE_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
MAX_PIXELS = 50_000_000  # larger images are refused before decoding (decompression bombs)
# Also refused before decoding: a side longer than JPEG and GIF can hold. A file a few hundred KB
# long that claims 1 × 50,000,000 pixels made the preview's resize take over 3 GB of memory.
MAX_SIDE = 65_535
# Decoding a large image takes up to ~400 MB (50 megapixels RGBA, plus the resize's premultiplied
# copy) however small its file. Process-wide on purpose: at most this many are decoded at once,
# whoever sends them, so a burst of such uploads or imports queues instead of exhausting memory.
DECODING = threading.BoundedSemaphore(2)
PREVIEW_PX = 320  # the longest side of the thumbnail shown in the chat
MAX_URL_CHARS = 2048
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v", ".mkv", ".avi")


class AttachmentError(ValueError):
    """An attachment was refused; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much may be attached to one message."""

    max_bytes: int = 5 * 1024 * 1024  # per image
    max_count: int = 4  # images and links together

    @classmethod
    def from_mb(cls, max_mb: float, max_count: int) -> Limits:
        return cls(max_bytes=int(max_mb * 1024 * 1024), max_count=max_count)


def _megabytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _too_big(name: str, size: int, limit: int) -> AttachmentError:
    shown, allowed = _megabytes(size), _megabytes(limit)
    if shown == allowed:  # just over the limit: the rounded figures alone would look equal
        shown, allowed = f"{size:,} bytes", f"{limit:,} bytes"
    return AttachmentError(
        f"{name} is {shown}; images may be at most {allowed} (ATTACH_MAX_MB). Make it smaller "
        "and attach it again."
    )


def _too_many_pixels(name: str, width: int, height: int) -> AttachmentError:
    if max(width, height) > MAX_SIDE:
        allowed = f"images may be at most {MAX_SIDE:,} pixels on a side"
    else:
        allowed = f"at most {MAX_PIXELS:,} pixels are accepted"
    return AttachmentError(
        f"{name} is {width}×{height} pixels; {allowed}. Make it smaller and attach it again."
    )


def image_from_bytes(raw: bytes, name: str, limits: Limits) -> Attachment:
    """Check an uploaded image and describe it as an attachment (with a preview)."""
    name = Path(name).name[:200] or "image"
    if len(raw) > limits.max_bytes:
        raise _too_big(name, len(raw), limits.max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            mime = IMAGE_TYPES.get(image.format or "")
            if mime is None:
                raise AttachmentError(
                    f"{name} is not a PNG, JPEG, GIF or WebP image"
                    + (f" (it is {image.format})" if image.format else "")
                    + ": convert it to one of those."
                )
            width, height = image.size
            if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                raise _too_many_pixels(name, width, height)
            with DECODING:
                if image.format in ("JPEG", "MPO"):
                    # Decode at a fraction of the size (still reading, and so checking, all of
                    # its data): only the preview needs the pixels, and it is small.
                    image.draft(image.mode, (PREVIEW_PX, PREVIEW_PX))
                image.load()  # a truncated or corrupt file fails here
                preview = _preview(image)
    except AttachmentError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow refuses huge headers itself (while opening, before any decoding).
        raise AttachmentError(
            f"{name} has far too many pixels; at most {MAX_PIXELS:,} are accepted. Make it "
            "smaller and attach it again."
        ) from None
    except UnidentifiedImageError:
        raise AttachmentError(
            f"{name} is not an image Parley can read: attach a PNG, JPEG, GIF or WebP file."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise AttachmentError(f"{name} is damaged and cannot be read ({exc}).") from None
    return {
        "kind": "image",
        "name": name,
        "mime": mime,
        "size": len(raw),
        "width": width,
        "height": height,
        "data": base64.b64encode(raw).decode("ascii"),
        "preview": preview,
    }


def _preview(image: Image.Image) -> str:
    """A small thumbnail as a data URL: shown in the chat instead of the full image.

    Shrinks `image` itself: a copy would hold a second full-size image in memory."""
    image.thumbnail((PREVIEW_PX, PREVIEW_PX))
    thumb: Image.Image = image
    has_alpha = thumb.mode in ("RGBA", "LA", "P")
    thumb = thumb.convert("RGBA" if has_alpha else "RGB")
    out = io.BytesIO()
    if has_alpha:
        thumb.save(out, "PNG", optimize=True)
        mime = "image/png"
    else:
        thumb.save(out, "JPEG", quality=80)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def image_from_file(path: str | Path, limits: Limits, name: str = "") -> Attachment:
    """Check an uploaded file (Gradio's temporary copy) and describe it as an attachment."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:  # refuse before reading a huge file into memory
            raise _too_big(Path(name or path.name).name[:200], size, limits.max_bytes)
        raw = path.read_bytes()
    except OSError as exc:
        raise AttachmentError(
            f"The upload {name or path.name} could not be read: {exc.strerror}; attach it again."
        ) from None
    return image_from_bytes(raw, name or path.name, limits)


def link(url: str, kind: str = "") -> Attachment:
    """A linked image or video. The provider fetches it; Parley never does."""
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise AttachmentError(f"That link is longer than {MAX_URL_CHARS} characters.")
    if any(c.isspace() or not c.isprintable() or c in "<>\"'`\\" for c in url):
        raise AttachmentError(
            "A link may not contain spaces, quotes, angle brackets or control characters."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        raise AttachmentError(f"{url[:80]} is not a valid link.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AttachmentError(
            f"{url[:80]} is not an http(s) link: attach an image or video by its https:// address."
        )
    if parts.username or parts.password:
        raise AttachmentError("Links with a user name or password in them are not attached.")
    if not kind:
        kind = "video" if parts.path.lower().endswith(VIDEO_SUFFIXES) else "image"
    if kind not in ("image", "video"):
        raise AttachmentError(f"Unknown link kind {kind!r}: use image or video.")
    return {"kind": f"{kind}_url", "url": url}


def check_count(attachments: Sequence[object], limits: Limits) -> None:
    """Refuse more than ATTACH_MAX_COUNT attachments (files, links or checked attachments)."""
    if len(attachments) > limits.max_count:
        raise AttachmentError(
            f"{len(attachments)} attachments: at most {limits.max_count} may go with one message "
            "(ATTACH_MAX_COUNT). Remove some and send again."
        )


class PixelBudget:
    """How many pixels one import file may still have decoded.

    Every imported image is decoded again, and a small file can hold many large, highly
    compressible images (90 black 50-megapixel PNGs fit in 17 MB): the budget bounds the work
    one file can cost, counted from each image's header before it is decoded."""

    def __init__(self, pixels: int = 10 * MAX_PIXELS) -> None:
        self.left = pixels

    def spend(self, raw: bytes) -> None:
        try:
            with Image.open(io.BytesIO(raw)) as image:  # reads the header only
                width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            return  # image_from_bytes refuses it with the reason
        self.left -= width * height
        if self.left < 0:
            raise AttachmentError(
                "the file's images hold too many pixels in all to import at once; import its "
                "conversations one at a time"
            )


def restore(item: Any, limits: Limits, budget: PixelBudget | None = None) -> Attachment:
    """Check an attachment read from an imported file, rebuilding it from its data.

    Nothing in the file is trusted: the image is decoded again and its preview remade."""
    if not isinstance(item, dict):
        raise AttachmentError("an attachment must be an object")
    kind = item.get("kind")
    if kind in ("image_url", "video_url"):
        url = item.get("url")
        if not isinstance(url, str):
            raise AttachmentError('a linked attachment needs a "url" string')
        return link(url, kind.removesuffix("_url"))
    if kind != "image":
        raise AttachmentError(f"unknown attachment kind {kind!r}")
    data = item.get("data")
    if not isinstance(data, str) or len(data) > limits.max_bytes * 4 // 3 + 4:
        raise AttachmentError(
            'an image attachment needs its "data" (base64), within the size limit'
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError('an image attachment\'s "data" is not valid base64') from None
    if budget is not None:
        budget.spend(raw)
    name = item.get("name")
    return image_from_bytes(raw, name if isinstance(name, str) else "image", limits)


def has_images(attachments: Iterable[Attachment]) -> bool:
    return any(a.get("kind") in ("image", "image_url") for a in attachments)


def has_video(attachments: Iterable[Attachment]) -> bool:
    return any(a.get("kind") == "video_url" for a in attachments)


def content_parts(text: str, attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    """The OpenAI-format content of a user message with attachments (text first)."""
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "text": text})
    for item in attachments:
        kind = item.get("kind")
        if kind == "image":
            url = f"data:{item['mime']};base64,{item['data']}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "image_url":
            parts.append({"type": "image_url", "image_url": {"url": item["url"]}})
        elif kind == "video_url":
            parts.append({"type": "video_url", "video_url": {"url": item["url"]}})
    return parts


def tool_images_message(
    results: Iterable[tuple[str, Sequence[Attachment]]],
) -> dict[str, Any] | None:
    """The user message that shows a model the images tools returned, sent after the round's
    tool messages (those carry text only); `results` are (tool name, images). None: no images.
    """
    parts: list[dict[str, Any]] = []
    for name, images in results:
        shown = content_parts("", [a for a in images if a.get("kind") == "image"])
        if shown:
            parts.append({"type": "text", "text": f"The images returned by tool {name}:"})
            parts += shown
    return {"role": "user", "content": parts} if parts else None


def markdown(attachments: Sequence[Attachment], *, full: bool = False) -> str:
    """Attachments as Markdown: thumbnails (or, for exports, the full image) and links."""
    lines = []
    for item in attachments:
        kind = item.get("kind")
        if kind == "image":
            alt = _alt(str(item.get("name", "image")))
            source = (
                f"data:{item['mime']};base64,{item['data']}"
                if full
                else str(item.get("preview", ""))
            )
            lines.append(f"![{alt}]({source})")
        elif kind in ("image_url", "video_url"):
            icon = "🎬 video" if kind == "video_url" else "🖼 image"
            lines.append(f"{icon}: <{item['url']}>")
    return "\n\n".join(lines)


def _alt(name: str) -> str:
    """A file name made safe to sit inside Markdown's ![…]."""
    return "".join(c for c in name if c not in "[]()<>\\`*_!\n\r")[:80] or "image"


def summary(attachments: Sequence[Attachment]) -> str:
    """One line for places that show no images: '2 images, 1 video link'."""
    images = sum(1 for a in attachments if a.get("kind") in ("image", "image_url"))
    videos = sum(1 for a in attachments if a.get("kind") == "video_url")
    parts = []
    if images:
        parts.append(f"{images} image" + ("s" if images > 1 else ""))
    if videos:
        parts.append(f"{videos} video link" + ("s" if videos > 1 else ""))
    return ", ".join(parts)
