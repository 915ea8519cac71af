/* Parley's page script, served as /parley/page.js (a file, so the Content-Security-Policy
   needs no inline script or eval for it). Theme and projector mode (kept in localStorage), Esc
   stops an answer, the sidebar starts closed on phones, "load image" links in model output,
   whole titles as the sidebar's tooltips, and Sign out as a POST. Gradio renders the app after
   this runs, so elements are looked up when an event happens, never at load. */
(() => {
  if (window.parleyView) return;  // Gradio may add the head again (dev reload)
  const THEME = "parley-theme";  // "light" | "dark"; unset: Gradio follows the system
  const PROJECTOR = "parley-projector";  // "on" | "off"
  const IMAGE = "/parley/image";  // webapp/safe_markup.py IMAGE_ENDPOINT
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

  // "Load image" links (model output never loads an image by itself): the click fetches the
  // picture through the server's checked endpoint and shows it in place of the link.
  async function loadImage(link, url) {
    const note = document.createElement("span");
    note.className = "parley-image-note";
    note.textContent = "⏳ loading image…";
    link.replaceWith(note);
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error((await response.text()).slice(0, 200));
      const picture = document.createElement("img");
      picture.className = "parley-loaded-image";
      picture.alt = link.textContent.replace(/^🖼 load image:\s*/u, "");
      picture.src = URL.createObjectURL(await response.blob());
      note.replaceWith(picture);
    } catch (error) {
      note.textContent = `⚠ image not loaded: ${error.message || "the server could not get it"}`;
    }
  }

  // Sign out is a POST: a GET to /logout is refused, so no image or link can sign anyone out.
  function signOut() {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/logout";
    body.append(form);
    form.submit();
  }

  document.addEventListener("click", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    if (target.closest("#theme-toggle")) toggleTheme();
    else if (target.closest("#projector-toggle")) toggleProjector();
    else if (target.closest("#sign-out")) signOut();
    else if (PHONE.matches && target.closest("#conversations label, #new-chat")) closeSidebar();
  });
  // Capturing: the link's own handling (opening it) must not run first.
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
    if (link === null || event.button !== 0 || event.ctrlKey || event.metaKey) return;
    const url = new URL(link.getAttribute("href"), location.href);
    if (url.origin !== location.origin || url.pathname !== IMAGE) return;
    event.preventDefault();
    event.stopPropagation();
    loadImage(link, url.pathname + url.search);
  }, true);

  // The live answer: while a run streams, the chat shows a placeholder (.parley-live) and the
  // text arrives from /parley/live/<conversation> (webapp/live_view.py) as settled Markdown
  // blocks (HTML rendered on the server) and plain-text deltas, appended in place: the cost of
  // an update is what is new, never the whole answer. Gradio's own final render replaces it.
  const LIVE = "/parley/live/";

  let labels = {};

  function liveSegment(root, segments, lane, index) {
    const key = `${lane}:${index}`;
    let seg = segments.get(key);
    if (seg) return seg;
    const box = document.createElement("div");
    box.className = "parley-live-segment";
    const head = document.createElement("div");
    head.className = "parley-live-choice";
    head.hidden = true;
    box.append(head);
    const thinking = document.createElement("details");
    thinking.className = "parley-live-thinking";
    thinking.open = true;
    thinking.hidden = true;
    const summary = document.createElement("summary");
    summary.textContent = `${labels.thinking || "Thinking"}…`;
    const reasoning = document.createTextNode("");
    const reasoningBox = document.createElement("div");
    reasoningBox.className = "parley-live-reasoning";
    reasoningBox.append(reasoning);
    thinking.append(summary, reasoningBox);
    const content = document.createElement("div");
    content.className = "parley-live-content";
    const tail = document.createElement("div");
    tail.className = "parley-live-tail";
    const tailText = document.createTextNode("");
    tail.append(tailText);
    content.append(tail);
    const tools = document.createElement("div");
    tools.className = "parley-live-tools";
    box.append(thinking, content, tools);
    root.append(box);
    seg = { head, thinking, reasoning, content, tail, tailText, tools };
    segments.set(key, seg);
    return seg;
  }

  function liveTools(seg, items) {
    seg.tools.replaceChildren(...items.map((item) => {
      const block = document.createElement("details");
      block.className = "parley-live-tool";
      const title = document.createElement("summary");
      title.textContent = item.title;
      const body = document.createElement("pre");
      body.textContent = item.result == null ? item.arguments
        : `${item.arguments}\n→ ${item.result}`;
      block.append(title, body);
      if (item.hint) {
        const hint = document.createElement("div");
        hint.className = "parley-live-hint";
        hint.textContent = item.hint;
        block.append(hint);
        block.open = true;
      }
      return block;
    }));
  }

  // A block still being written can grow without end (a long code block, one huge
  // paragraph): appending to one big text node would lay all of it out again each time, so
  // its finished lines move into blocks of their own and only the last part keeps growing.
  const FREEZE_AT = 4096;
  function freezeTail(seg) {
    const text = seg.tailText.data;
    if (text.length < FREEZE_AT) return;
    let cut = text.lastIndexOf("\n", text.length - 1);
    if (cut < FREEZE_AT / 2) cut = text.lastIndexOf(" ", text.length - 1);
    if (cut < FREEZE_AT / 2) return;
    const frozen = document.createElement("div");
    frozen.className = "parley-live-tail parley-live-frozen";
    frozen.textContent = text.slice(0, cut + 1);
    seg.tail.before(frozen);
    seg.tailText.data = text.slice(cut + 1);
  }

  function scroller(el) {
    for (let node = el.parentElement; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (/(auto|scroll)/.test(style.overflowY) && node.scrollHeight > node.clientHeight) {
        return node;
      }
    }
    return null;
  }

  function connectLive(root) {
    root.dataset.connected = "1";
    let segments = new Map();
    let note = null;
    // The conversation's id is in a class (Gradio's sanitizer drops data-* attributes).
    const named = [...root.classList].find((name) => /^parley-live-[0-9a-f]{32}$/.test(name));
    if (named === undefined) return;
    const lang = root.classList.contains("parley-live-lang-zh") ? "zh" : "en";
    const source = new EventSource(`${LIVE}${named.slice("parley-live-".length)}?lang=${lang}`);
    source.addEventListener("open", () => {  // (re)connected: the feed starts from the start
      segments = new Map();
      note = null;
      root.replaceChildren();
    });
    source.onmessage = (message) => {
      if (!root.isConnected) { source.close(); return; }
      const event = JSON.parse(message.data);
      if (event.done) { source.close(); root.classList.add("parley-live-done"); return; }
      if (event.labels) labels = event.labels;
      const box = scroller(root);
      const atBottom = box === null || box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      if (event.note !== undefined) {
        if (note === null) {
          note = document.createElement("div");
          note.className = "parley-live-note";
          root.prepend(note);
        }
        note.textContent = `⏳ ${event.note}`;
      }
      if (event.lane !== undefined) {
        if (note !== null) { note.remove(); note = null; }
        const seg = liveSegment(root, segments, event.lane, event.seg);
        if (event.header) { seg.head.textContent = event.header; seg.head.hidden = false; }
        if (event.reasoning) { seg.thinking.hidden = false; seg.reasoning.appendData(event.reasoning); }
        if (event.blocks) {
          for (const html of event.blocks) seg.tail.insertAdjacentHTML("beforebegin", html);
          seg.thinking.open = false;
        }
        if (event.tail !== undefined) {
          for (const frozen of seg.content.querySelectorAll(".parley-live-frozen")) frozen.remove();
          seg.tailText.data = event.tail;
        }
        if (event.more) { seg.tailText.appendData(event.more); seg.thinking.open = false; }
        freezeTail(seg);
        if (event.tools) liveTools(seg, event.tools);
      }
      if (atBottom && box !== null) box.scrollTop = box.scrollHeight;
    };
    source.onerror = () => {
      if (!root.isConnected) source.close();  // replaced by the final answer
    };
  }

  function connectLiveAnswers() {
    for (const root of document.querySelectorAll(".parley-live:not([data-connected])")) {
      connectLive(root);
    }
  }

  // The open conversation goes in the address bar (?c=…), so a reload (or a copied link)
  // reopens it, and an answer still streaming there is followed live. The sidebar's selected
  // entry is the open conversation; its list is re-rendered whenever the server updates it.
  function keepConversationInUrl() {
    const list = document.querySelector("#conversations");
    // Before the list first loads, the address's own ?c= is what the server opens.
    if (list === null || list.querySelector("input[type=radio]") === null) return;
    const picked = list.querySelector("input[type=radio]:checked");
    const url = new URL(location.href);
    if (picked && picked.value) url.searchParams.set("c", picked.value);
    else url.searchParams.delete("c");
    if (url.href !== location.href) history.replaceState(history.state, "", url);
  }
  // The sidebar cuts long titles with "…" (style.css): each entry's tooltip is its whole title.
  function titleConversations() {
    for (const label of document.querySelectorAll("#conversations label")) {
      const title = label.textContent.trim();
      if (label.title !== title) label.title = title;
    }
  }
  let urlPending = false;
  new MutationObserver(() => {
    if (urlPending) return;
    urlPending = true;
    requestAnimationFrame(() => {
      urlPending = false;
      keepConversationInUrl();
      connectLiveAnswers();
      titleConversations();
    });
  }).observe(body, { childList: true, subtree: true, characterData: true, attributes: true,
                     attributeFilter: ["class", "checked"] });
  document.addEventListener("change", keepConversationInUrl);

  new MutationObserver(applyTheme).observe(body, { attributes: true, attributeFilter: ["class"] });
  applyTheme();
  body.classList.toggle("parley-projector", projector);
  window.parleyView = { toggleTheme, toggleProjector };
})();
