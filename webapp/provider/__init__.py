"""The wire to OpenAI-compatible providers: HTTP, SSE, the error tree, model lists, prices."""
