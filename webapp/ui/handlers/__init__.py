"""Event handlers: thin adapters between Gradio events and the services.

The Chat tab's ChatUI (`chat.py`) is one class in four files by concern: what it shares
(`base.py`), turns (`turns.py`), conversations and versions (`conversations.py`) and the
settings column (`settings.py`); what each event updates is named in `events.py`. The
Compare tab's handlers are `compare.py`."""
