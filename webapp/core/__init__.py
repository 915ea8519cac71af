"""The core: one turn as typed events, the parameter table, what a model accepts.

No Gradio, no SQL, no I/O of its own (the engine calls the provider and the tools it is given).
"""
