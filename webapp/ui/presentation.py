"""How the page looks and reacts: light/dark theme, projector mode, Esc to stop, phone layout.

Browser-side only: nothing here talks to the server. `HEAD` is what Gradio adds to the page
once its config has loaded: a style and webapp/ui/page.js (served by webapp/web.py), which
handles the sidebar buttons' clicks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import gradio as gr

CSS = (Path(__file__).parent / "presentation.css").read_text(encoding="utf-8")

SCRIPT = (Path(__file__).parent / "page.js").read_text(encoding="utf-8")
SCRIPT_PATH = "/parley/page.js"  # served by webapp/web.py
# The version in the URL lets browsers keep the script until it changes.
SCRIPT_URL = f"{SCRIPT_PATH}?v={hashlib.sha256(SCRIPT.encode()).hexdigest()[:12]}"

HEAD = f"""
<style>
/* Phones: Gradio's 32px page padding is a lot on a 390px screen. Here rather than in
   presentation.css, where Gradio would scope this media query's selectors inside the page. */
@media (max-width: 700px) {{
  .gradio-container > .main.app {{ padding-left: 8px; padding-right: 8px; }}
}}
</style>
<script src="{SCRIPT_URL}"></script>
"""


def build_view_controls() -> None:
    """Sidebar buttons that switch the theme and projector mode, in the browser only.

    Their texts stay fixed strings: the translation layer looks components up by them.
    """
    # No Gradio events: page.js handles their clicks (a `js=` event would need 'unsafe-eval').
    with gr.Row(elem_id="view-controls"):
        gr.Button("◐ Dark / light", size="sm", elem_id="theme-toggle")
        gr.Button("⤢ Projector mode", size="sm", elem_id="projector-toggle")
