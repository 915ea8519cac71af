"""The Chat tab's handlers as one object: ChatUI, the four concerns put together."""

from __future__ import annotations

from webapp.ui.handlers.conversations import ConversationEvents
from webapp.ui.handlers.settings import SettingsEvents
from webapp.ui.handlers.turns import TurnEvents


class ChatUI(TurnEvents, ConversationEvents, SettingsEvents):
    """Every Chat-tab event handler (the sidebar's and the settings column's too); the
    wiring (webapp/ui/chat_tab.py, sidebar.py, settings_panel.py) hooks them to the page."""
