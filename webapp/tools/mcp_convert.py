"""MCP tools and results in Parley's terms: names, schemas, argument checks, result text. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from mcp import types

from webapp.core.attachments import Attachment, AttachmentError, Limits, image_from_bytes
from webapp.core.messages import ToolOutput
from webapp.tools.registry import ToolArgumentsError

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
MAX_TOOL_IMAGES = 4  # images of one result kept to show; each within ATTACH_MAX_MB
SHOWN_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """`SERVER__TOOL`, made to fit the providers' `^[a-zA-Z0-9_-]{1,64}$` and unique in `taken`."""
    name = f"{_INVALID.sub('_', server)}__{_INVALID.sub('_', tool)}"
    if len(name) <= 64 and name not in taken:
        return name
    digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def result_output(result: types.CallToolResult, limits: Limits | None) -> ToolOutput:
    """A tool result as the text the model reads (text, JSON, a line per image/resource) and
    the images kept to show: PNG, JPEG, GIF or WebP, at most `limits.max_count`, each within
    `limits.max_bytes`, checked like an uploaded image. Any other image (every one with
    `limits` None) stays a note.

    Decodes the images (Pillow): call it off the event loop."""
    parts: list[str] = []
    images: list[Attachment] = []
    for item in result.content:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.ImageContent):
            image, why_not = _image(item, limits, len(images) + 1)
            if image is None:
                size = len(item.data) * 3 // 4
                parts.append(
                    f"[image: {item.mimeType}, about {size:,} bytes; not shown: {why_not}]"
                )
            else:
                images.append(image)
                parts.append(
                    f"[image {len(images)}: {image['mime']}, {image['size']:,} bytes; "
                    "shown to the user]"
                )
        elif isinstance(item, types.AudioContent):
            size = len(item.data) * 3 // 4
            parts.append(f"[audio: {item.mimeType}, about {size:,} bytes; not shown here]")
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource link: {item.name} <{item.uri}>]")
        elif isinstance(item, types.EmbeddedResource):
            resource = item.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri} ({resource.mimeType or 'binary'})]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return ToolOutput("\n\n".join(parts) or "(no output)", tuple(images))


def _image(
    item: types.ImageContent, limits: Limits | None, number: int
) -> tuple[Attachment | None, str]:
    """The image as a user-image attachment, or None and why it is not shown."""
    if limits is None:
        return None, "an error result's images are not kept"
    if item.mimeType not in SHOWN_IMAGE_TYPES:
        return None, "only PNG, JPEG, GIF and WebP images are shown"
    if number > limits.max_count:
        return None, f"at most {limits.max_count} images of a result are shown"
    if len(item.data) > limits.max_bytes * 4 // 3 + 4:  # before decoding anything
        return None, f"larger than {limits.max_bytes / (1024 * 1024):g} MB (ATTACH_MAX_MB)"
    try:
        raw = base64.b64decode(item.data, validate=True)
        extension = item.mimeType.removeprefix("image/")
        return image_from_bytes(raw, f"image-{number}.{extension}", limits), ""
    except (binascii.Error, ValueError) as exc:  # AttachmentError is a ValueError
        reason = str(exc) if isinstance(exc, AttachmentError) else "its data is not valid base64"
        return None, reason


def parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """The tool's input schema as the provider's `parameters` (always an object schema)."""
    shown = dict(schema or {})
    shown.setdefault("type", "object")
    shown.setdefault("properties", {})
    return shown


def validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Check arguments against the server's JSON schema (a broken schema checks nothing)."""
    try:
        cls = validators.validator_for(schema)
        cls.check_schema(schema)
        checker: Any = cls(schema)
    except (schema_errors.SchemaError, TypeError):
        checker = None

    def validate(arguments: dict[str, Any]) -> dict[str, Any]:
        if checker is not None:
            problems = [
                f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
                for e in sorted(checker.iter_errors(arguments), key=lambda e: list(e.path))
            ]
            if problems:
                raise ToolArgumentsError(problems[:10])
        return arguments

    return validate
