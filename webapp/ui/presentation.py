"""How the page looks and reacts: light/dark theme, projector mode, Esc to stop, phone layout.

Browser-side only: nothing here talks to the server. `HEAD` is a script Gradio adds to the
page once its config has loaded; the sidebar buttons call the functions it defines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import gradio as gr

PRIVATE: Literal["private"] = "private"
CSS = (Path(__file__).parent / "presentation.css").read_text(encoding="utf-8")

HEAD = """
<style>
/* Phones: Gradio's 32px page padding is a lot on a 390px screen. Here rather than in
   presentation.css, where Gradio would scope this media query's selectors inside the page. */
@media (max-width: 700px) {
  .gradio-container > .main.app { padding-left: 8px; padding-right: 8px; }
}
</style>
<script>
/* Parley presentation: theme and projector mode (kept in localStorage), Esc stops an answer,
   the sidebar starts closed on phones. Gradio renders the app after this runs, so elements
   are looked up when an event happens, never at load. */
(() => {
  if (window.parleyView) return;  // Gradio may add the head again (dev reload)
  const THEME = "parley-theme";  // "light" | "dark"; unset: Gradio follows the system
  const PROJECTOR = "parley-projector";  // "on" | "off"
  const PHONE = window.matchMedia("(max-width: 700px)");
  const body = document.body;

  const load = (key) => { try { return localStorage.getItem(key); } catch { return null; } };
  const save = (key, value) => { try { localStorage.setItem(key, value); } catch {} };
  let theme = load(THEME);
  let projector = load(PROJECTOR) === "on";

  // Gradio puts the `dark` class on <body> from ?__theme= or the system preference, and again
  // whenever the system preference changes. A stored choice wins, unless the URL names a theme.
  function applyTheme() {
    const fromUrl = new URL(location.href).searchParams.get("__theme");
    if (fromUrl || (theme !== "dark" && theme !== "light")) return;
    const dark = theme === "dark";
    if (body.classList.contains("dark") !== dark) body.classList.toggle("dark", dark);
  }

  function toggleTheme() {
    theme = body.classList.contains("dark") ? "light" : "dark";
    save(THEME, theme);
    const url = new URL(location.href);
    if (url.searchParams.has("__theme")) {  // the choice just made replaces the URL's
      url.searchParams.delete("__theme");
      history.replaceState(history.state, "", url);
    }
    applyTheme();
  }

  function toggleProjector() {
    projector = !projector;
    save(PROJECTOR, projector ? "on" : "off");
    body.classList.toggle("parley-projector", projector);
  }

  // Shown on screen: not display:none itself or inside a hidden tab.
  const shown = (el) => el !== null && !el.disabled && el.getClientRects().length > 0;

  // The stop button of whatever is streaming now, or null.
  function stopButton() {
    const chat = document.querySelector("#message button.stop-button");
    if (shown(chat)) return chat;
    // Compare's Stop is always there; its prompt shows Gradio's progress while a run streams.
    const compare = document.querySelector("#compare-stop");
    const running = document.querySelector("#compare-prompt .generating");
    return shown(compare) && running !== null ? compare : null;
  }

  // Esc stops a streaming answer. Only then: otherwise Esc keeps its usual job (closing
  // dropdowns and dialogs), and a key a component already handled is left alone.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
    const stop = stopButton();
    if (stop === null) return;
    event.preventDefault();
    stop.click();
  });

  // Phones: the sidebar would cover the whole chat, so it starts closed (once, at load),
  // and closes again after a conversation is picked or a new chat started.
  function closeSidebar() {
    const sidebar = document.querySelector("#sidebar");
    if (sidebar && sidebar.classList.contains("open")) {
      sidebar.querySelector(".toggle-button")?.click();
    }
  }
  if (PHONE.matches) {
    const waitForSidebar = new MutationObserver(() => {
      if (!document.querySelector("#sidebar")) return;
      waitForSidebar.disconnect();
      // Gradio opens it just after rendering it: close it on the frame after next.
      requestAnimationFrame(() => requestAnimationFrame(closeSidebar));
    });
    waitForSidebar.observe(body, { childList: true, subtree: true });
  }
  document.addEventListener("click", (event) => {
    const picked = event.target.closest?.("#conversations label, #new-chat");
    if (PHONE.matches && picked) closeSidebar();
  });

  new MutationObserver(applyTheme).observe(body, { attributes: true, attributeFilter: ["class"] });
  applyTheme();
  body.classList.toggle("parley-projector", projector);
  window.parleyView = { toggleTheme, toggleProjector };
})();
</script>
"""


def build_view_controls() -> None:
    """Sidebar buttons that switch the theme and projector mode, in the browser only.

    Their texts stay fixed strings: the translation layer looks components up by them.
    """
    with gr.Row(elem_id="view-controls"):
        theme = gr.Button("◐ Dark / light", size="sm", elem_id="theme-toggle")
        projector = gr.Button("⤢ Projector mode", size="sm", elem_id="projector-toggle")
    theme.click(None, None, None, js="() => window.parleyView?.toggleTheme()",
                api_visibility=PRIVATE)
    projector.click(None, None, None, js="() => window.parleyView?.toggleProjector()",
                    api_visibility=PRIVATE)
