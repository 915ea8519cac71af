"""SQLModel tables: users, conversations and the tree of messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import JSON, Column, DateTime, Dialect, Index, Text, TypeDecorator, event
from sqlmodel import Field, SQLModel

from storage.schemas import AS_STORED, StoredTimings, StoredToolCall, StoredUsage

MESSAGE_ROLES = frozenset({"system", "user", "assistant", "tool"})
MESSAGE_STATES = frozenset({"complete", "streaming", "stopped", "error", "interrupted"})


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a new 32-character lowercase hex id."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC in the database; always hand back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to naive UTC (naive values are taken as UTC)."""
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach the UTC zone to a naive value read back from the database."""
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _timestamp(*, index: bool = False) -> Any:
    """Return a non-null UTC timestamp field defaulting to now."""
    return Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False, index=index)


def username_key(name: str) -> str:
    """A user name as names are matched: case does not count ("ALICE" is "alice")."""
    return name.casefold()


USERNAME_KEY_MAX = 450  # casefold makes a character at most three


class User(SQLModel, table=True):
    """A person using Parley: the local user, an account, or a name from the SSO proxy."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=150)  # as first spelled
    # The name without case, set on insert; unique, so "ALICE" never becomes a second account.
    # None only for names that differed from an older one only in case when migration 0007
    # added it: those still match their exact spelling.
    username_key: str | None = Field(
        default=None, unique=True, index=True, max_length=USERNAME_KEY_MAX
    )
    is_admin: bool = False
    password_hash: str | None = Field(default=None, max_length=200)  # argon2; None: no login
    disabled: bool = False
    rpm_limit: int | None = None  # requests per minute; None: no limit
    daily_token_limit: int | None = None  # tokens per UTC day; None: no limit
    created_at: datetime = _timestamp()

    def __repr__(self) -> str:  # never print the password hash
        return f"User(id={self.id!r}, username={self.username!r}, admin={self.is_admin!r})"


@event.listens_for(User, "before_insert")
def _key_new_user(_mapper: object, _connection: object, user: User) -> None:
    if user.username_key is None:
        user.username_key = username_key(user.username)


class ShareLink(SQLModel, table=True):
    """A revocable, read-only link to one conversation."""

    __tablename__ = "share_links"

    token: str = Field(primary_key=True, max_length=64)
    conversation_id: str = Field(
        foreign_key="conversations.id",
        ondelete="CASCADE",
        nullable=False,
        max_length=32,
        index=True,
    )
    user_id: int = Field(foreign_key="users.id", nullable=False)
    created_at: datetime = _timestamp()
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Conversation(SQLModel, table=True):
    """A chat: its settings and the tip of its active branch."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_id_updated_at", "user_id", "updated_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="users.id", nullable=False)
    title: str = Field(default="New chat", max_length=200)
    system_prompt: str = Field(default="", sa_type=Text)
    provider: str = ""
    model: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    current_leaf_id: str | None = Field(default=None, max_length=32)
    mode: str = Field(default="chat", max_length=20)  # chat | compare (side-by-side models)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Message(SQLModel, table=True):
    """One node of a conversation's message tree."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_created_at", "conversation_id", "created_at"),
        Index("ix_messages_user_id_created_at", "user_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    conversation_id: str = Field(
        foreign_key="conversations.id", ondelete="CASCADE", nullable=False, max_length=32
    )
    user_id: int = Field(foreign_key="users.id", index=True, nullable=False)
    parent_id: str | None = Field(default=None, index=True, max_length=32)
    role: str
    content: str = Field(default="", sa_type=Text)
    reasoning: str = Field(default="", sa_type=Text)
    tool_calls: Annotated[list[StoredToolCall] | None, AS_STORED] = Field(
        default=None, sa_column=Column(JSON)
    )
    tool_call_id: str | None = None
    name: str | None = None  # a tool result's tool name
    tool_status: str | None = Field(default=None, max_length=20)  # how a tool call ended
    provider: str = ""
    model: str = ""
    parameters: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    usage: Annotated[StoredUsage | None, AS_STORED] = Field(default=None, sa_column=Column(JSON))
    timings: Annotated[StoredTimings | None, AS_STORED] = Field(
        default=None, sa_column=Column(JSON)
    )
    finish_reason: str | None = None
    state: str = Field(default="complete", index=True)
    # The Parley process streaming this answer (webapp/app/cluster.py): when it dies, another
    # marks the row interrupted. Only meaningful while the state is "streaming".
    owner: str | None = Field(default=None, max_length=80)
    error: str | None = Field(default=None, sa_type=Text)  # JSON record or text: error_info.py
    feedback: int | None = None
    choice_index: int = 0
    batch_id: str | None = Field(default=None, max_length=32)  # choices made together (n>1)
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    imported: bool = False  # came from an import file: not counted as the user's usage
    preferred: bool = False  # compare mode: the answer the user marked best
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Preset(SQLModel, table=True):
    """A named set of chat settings: the user's own, or a team preset published by an admin."""

    __tablename__ = "presets"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="users.id", nullable=False, index=True)  # the owner
    name: str = Field(max_length=100)
    team: bool = Field(default=False, index=True)  # visible to everyone; only admins publish
    system_prompt: str = Field(default="", sa_type=Text)
    provider: str = ""
    model: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    tools: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tool_choice: str = Field(default="auto", max_length=100)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class DeletedUsage(SQLModel, table=True):
    """What the answers of a deleted conversation used, so that deleting a conversation neither
    resets the user's limits nor hides usage from the admin's table. One row per answer."""

    __tablename__ = "deleted_usage"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", nullable=False, index=True)
    model: str = ""
    usage: Annotated[StoredUsage | None, AS_STORED] = Field(default=None, sa_column=Column(JSON))
    state: str = Field(default="complete", max_length=20)
    request: bool = True  # stood for one upstream request (see storage.accounts)
    created_at: datetime = _timestamp(index=True)  # when the answer was made


class ApiKey(SQLModel, table=True):
    """A personal key for Parley's OpenAI-compatible API (and MCP); only its SHA-256 is kept.

    Keys are 32 random bytes, so a fast hash is enough (no password-style stretching): the
    stored hash cannot be turned back into a key, and lookups stay a few microseconds."""

    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="users.id", nullable=False, index=True)  # the owner
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)  # the key's first characters, shown to tell keys apart
    key_hash: str = Field(max_length=64, unique=True, index=True)  # sha256 hex
    created_at: datetime = _timestamp()
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
