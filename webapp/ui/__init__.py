"""Gradio UI: layout, event wiring, and rendering engine events as chat messages."""
