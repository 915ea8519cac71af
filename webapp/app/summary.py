"""A new chat that starts from a summary of a conversation that outgrew the model's context.

The summary is an ordinary answer in the old conversation (the user sees it stream, and the
oldest turns that do not fit are left out of that request); this starts the new chat from it:
its system prompt is the old one plus the summary, with the old chat's provider, model and
parameters, so the question that did not fit can be asked there.
"""

from __future__ import annotations

from sqlmodel import Session

from storage import repository as repo
from webapp.i18n import t

SUMMARY_REQUEST = (
    "Summarize our conversation so far for a new chat that continues it: the "
    "goal, the facts and decisions so far, and any open questions. Write only "
    "the summary."
)
SUMMARY_HEADING = "Summary of an earlier conversation (“{title}”):"
CONTINUED_TITLE = "{title} (continued)"


class SummaryMissing(Exception):
    """The conversation's last answer is not a finished summary (failed or stopped)."""


def start_from_summary(
    session: Session, user_id: int, conversation_id: str, lang: str, max_chars: int
) -> str:
    """Create the new conversation from the old one's last answer; returns its id."""
    thread = repo.load_thread(session=session, user_id=user_id, conversation_id=conversation_id)
    old, path = thread.conversation, thread.path
    last = path[-1] if path else None
    if (
        last is None
        or last.role != "assistant"
        or last.state != "complete"
        or not (last.content.strip())
    ):
        raise SummaryMissing(conversation_id)
    heading = t(SUMMARY_HEADING, lang).format(title=old.title)
    system = "\n\n".join(part for part in (old.system_prompt.strip(), heading) if part)
    system = f"{system}\n{last.content.strip()}"[:max_chars]
    title = t(CONTINUED_TITLE, lang).format(title=old.title)[:200]
    new = repo.create_conversation(
        session=session,
        user_id=user_id,
        title=title,
        system_prompt=system,
        provider=old.provider,
        model=old.model,
        parameters=old.parameters,
    )
    return new.id
