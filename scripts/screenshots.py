"""Take the README's screenshots: the Compare view, and the Chinese UI.

    .venv/bin/python -m scripts.screenshots        # writes docs/screenshots/*.png

Runs the real app against the fake OpenAI-compatible server of the test suite (nothing leaves
127.0.0.1), drives it with Debian's Chromium, and saves what a person would see. Chinese text
needs a CJK font: `apt-get install -y fonts-noto-cjk` (scripts/test installs it).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.browser import CHROMIUM, LAUNCH_ARGS, pick_compare_model, wait_until
from tests.conftest import RunningApp, start_app
from tests.fake_openai import ErrorReply, FakeOpenAI, Reply

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PRICES = [
    {
        "match": "Qwen/Qwen3-32B",
        "provider": "siliconflow",
        "input": 1,
        "output": 4,
        "currency": "CNY",
    },
    {"match": "deepseek-ai/DeepSeek-V3", "input": 2, "output": 8, "currency": "CNY"},
]
QUESTION = "In two sentences: why do streamed answers feel faster?"
ANSWERS = {
    "Qwen/Qwen3-32B": Reply(
        reasoning="The user wants a short explanation. Key idea: perceived latency is the time "
        "to the first visible token, not to the last one.",
        content="Streaming shows the **first words within a fraction of a second**, so you "
        "start reading while the rest is generated. The total time is the same, but "
        "the wait you notice is only the time to the first token.",
        prompt_tokens=38,
        chunk_words=1,
        first_delay=0.35,
        delay=0.03,
    ),
    "deepseek-ai/DeepSeek-V3": Reply(
        content="Because you can read along: the answer appears as it is produced instead of "
        "all at once at the end. Perceived speed follows the first token, and streaming "
        "brings it forward.",
        prompt_tokens=36,
        chunk_words=1,
        first_delay=0.15,
        delay=0.05,
    ),
}
ZH_QUESTION = "用 Python 写一个函数，判断一个数是不是质数。"
ZH_ANSWER = Reply(
    reasoning="先处理小于 2 的数，再只检查到平方根即可。",
    content="可以只检查到平方根：\n\n```python\ndef is_prime(n: int) -> bool:\n"
    "    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n"
    "        if n % i == 0:\n            return False\n        i += 1\n"
    "    return True\n```\n\n时间复杂度是 **O(√n)**。",
    prompt_tokens=30,
    chunk_chars=6,
    delay=0.01,
)


def compare_view(app: RunningApp, page: Page) -> None:
    fake = app.fake
    for model, reply in ANSWERS.items():
        fake.enqueue(reply, model=model)
    fake.enqueue(
        ErrorReply(
            429,
            '{"message": "Request was rejected due to rate limiting. TPM limit reached."}',
            delay=0.2,
        ),
        model="zai-org/GLM-4.6",
    )
    page.goto(app.url)
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare-model-0 input")).not_to_have_value("")
    page.locator("#compare-count label", has_text="3").click()
    for column, model in enumerate([*ANSWERS, "zai-org/GLM-4.6"]):
        pick_compare_model(page, column, model)
    page.locator("#compare-prompt textarea").fill(QUESTION)
    page.locator("#compare-send").click()
    expect(page.locator("#compare-best-0")).to_be_visible(timeout=30_000)
    expect(page.locator("#compare-best-1")).to_be_visible()
    page.locator("#compare-best-0").click()
    expect(page.locator("#compare-header-0")).to_contain_text("★")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=OUT / "compare.png", full_page=False)


def chinese_chat(app: RunningApp, page: Page) -> None:
    app.fake.enqueue(ZH_ANSWER)
    page.goto(app.url)
    expect(page.locator("#new-chat")).to_have_text("+ 新对话")
    box = page.locator("#message textarea")
    box.fill(ZH_QUESTION)
    box.press("Enter")
    expect(page.locator("#chatbot")).to_contain_text("首 token", timeout=30_000)
    title = page.locator("#chatbot .thought-group .title").first
    if "expanded" not in (title.get_attribute("class") or ""):
        title.click()  # show the reasoning too
    expect(title).to_have_class(re.compile(r"\bexpanded\b"))
    block = page.locator("#chatbot .thought-group").first
    wait_until(page, "el => el.getAnimations({subtree: true}).length === 0", block.element_handle())
    page.screenshot(path=OUT / "chat-zh.png", full_page=False)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI() as fake:
        fake.models = [*ANSWERS, "zai-org/GLM-4.6", "Qwen/Qwen2.5-VL-72B-Instruct"]
        prices = Path(folder) / "prices.json"
        prices.write_text(json.dumps(PRICES), encoding="utf-8")
        app = start_app(fake, Path(folder) / "parley.db", PRICES_FILE=str(prices), MAX_RETRIES="0")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                shots = (("en-US", 1120, compare_view), ("zh-CN", 900, chinese_chat))
                for locale, height, shoot in shots:
                    context = browser.new_context(
                        locale=locale, viewport={"width": 1440, "height": height}
                    )
                    shoot(app, context.new_page())
                    context.close()
                browser.close()
        finally:
            app.close()
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} in {OUT}")


if __name__ == "__main__":
    main()
