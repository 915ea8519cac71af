"""Parley: a Gradio chat UI for OpenAI-compatible LLM providers."""
