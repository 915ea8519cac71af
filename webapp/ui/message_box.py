"""The chat's message box takes uploads only, never links as files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import gradio as gr
from gradio_client.utils import is_http_url_like

LINKS_REFUSED = (
    "Attach images by uploading, pasting or dropping them; put image and video "
    "links under “Attach a link”."
)


def uploads_only(box: gr.MultimodalTextbox) -> gr.MultimodalTextbox:
    """Refuse URLs named as the box's files.

    Gradio would download a URL sent as one of the box's files (a crafted event can do that),
    so the server would fetch whatever the sender names. Links go in their own field, and only
    the provider fetches them. Done on the instance, not with a subclass: Gradio writes a .pyi
    stub next to the module of every Component subclass it sees.
    """
    move: Callable[[str | Path | None], Awaitable[str | None]]
    move = box.async_move_resource_to_block_cache

    async def checked(url_or_file_path: str | Path | None) -> str | None:
        if url_or_file_path is not None and is_http_url_like(str(url_or_file_path)):
            raise gr.Error(LINKS_REFUSED)
        return await move(url_or_file_path)

    box.async_move_resource_to_block_cache = checked  # type: ignore[method-assign]
    return box
