"""One sign-in for the chat and its share page, which Gradio mounts as two apps."""

from __future__ import annotations

from gradio.routes import App as GradioApp


def share_sign_in(chat: GradioApp, share: GradioApp) -> None:
    """Make a sign-in on either app count on both: one token table, one cookie name.

    Gradio 6.31 gives each mounted app its own random cookie name (`access-token-{cookie_id}`,
    set for the whole site) and its own in-memory table of tokens, so someone signed in to the
    chat was asked to sign in again to open a share link. Both apps check passwords with the
    same Accounts; signing out of either (Gradio drops the user's tokens from the table and
    the cookie) now signs out of both.
    """
    share.cookie_id = chat.cookie_id
    share.tokens = chat.tokens
