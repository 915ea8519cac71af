"""Use cases: what a user or a program does (chat, compare, API turns, conversations).

Each writes its first rows in one unit of work, then hands the answer to a run owned by the
server. No Gradio, no HTTP.
"""
