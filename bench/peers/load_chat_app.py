"""Gradio's own chat app, the peer everybody starts from: `gr.load_chat` on the upstream.

Run: .venv/bin/python -m bench.peers.load_chat_app --upstream http://127.0.0.1:9100/v1 --port 7870

As the Gradio docs show it, with one change for a fair load test: the queue's concurrency
limit is lifted (Gradio's default of 1 would make every user wait for the one before) and
max_threads raised to Parley's value, so it can stream to 100 users at once.
Needs the `openai` package (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse

import gradio as gr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9100/v1")
    parser.add_argument("--model", default="bench/model")
    parser.add_argument("--port", type=int, default=7870)
    args = parser.parse_args(argv)
    demo = gr.load_chat(args.upstream, model=args.model, token="bench", streaming=True)
    demo.queue(default_concurrency_limit=None, max_size=2000)
    demo.launch(
        server_name="127.0.0.1", server_port=args.port, max_threads=400, show_error=True, quiet=True
    )


if __name__ == "__main__":
    main()
