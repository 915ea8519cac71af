"""Team-server mode end to end: accounts, header sign-in, isolation between users, throttled
sign-in, disabled users, limits, share links, the admin's usage, metrics, export and import.

Every test runs the production stack (FastAPI + Gradio under uvicorn, via start_app) on
loopback against the fake upstream and a real SQLite file. Accounts are made with the real
`python -m webapp users` entry point (webapp.cli.main) on the same file. UI handlers are the
app's own ChatUI and TeamUI instances, taken from the running Blocks' wired events, called
with a gr.Request naming the user as Gradio would pass it.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import secrets
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
import uvicorn
from gradio_client.exceptions import AppError
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, col, select

from storage import accounts, api_keys
from storage import repository as repo
from storage.db import make_engine, session_factory, unit_of_work
from storage.models import Conversation, Message, ShareLink, User, utc_now
from tests.conftest import RunningApp, free_port, start_app
from tests.fake_openai import FakeOpenAI, Reply
from webapp import cli
from webapp.app.auth import Accounts, LoginThrottle
from webapp.server import Parley, build
from webapp.ui import controls
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.session import SessionState
from webapp.ui.share_page import GONE
from webapp.ui.team import TeamUI
from webapp.web import ServerThread, create_app, uvicorn_config

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "root": "root-password-333"}
SERVER_KEY = "test-key-siliconflow"  # what start_app sets as SILICONFLOW_API_KEY
MODEL = "Qwen/Qwen3-32B"  # SiliconFlow's default model
PARAMS = tuple(controls.show({}))  # every parameter control "not set"


# ---- fixtures and helpers --------------------------------------------------------------------


@dataclass
class Team:
    """A SQLite file with accounts made by the CLI, and the apps started on it."""

    db: Path
    fake: FakeOpenAI
    apps: list[RunningApp] = field(default_factory=list)

    def users(self, *argv: str, stdin: str = "") -> str:
        """Run `python -m webapp users ARGV` in-process; return what it printed."""
        out = io.StringIO()

        def no_prompt(_: str) -> str:
            raise AssertionError("the CLI asked for a password interactively")

        status = cli.main(list(argv), out, stdin=io.StringIO(stdin), ask=no_prompt)
        assert status == 0, f"users {' '.join(argv)} exited {status}: {out.getvalue()}"
        return out.getvalue()

    def add(self, name: str, *flags: str) -> None:
        self.users("add", name, "--password-stdin", *flags, stdin=PASSWORDS[name] + "\n")

    def start(self, **env: str) -> RunningApp:
        running = start_app(self.fake, self.db, **{"AUTH_MODE": "accounts", **env})
        self.apps.append(running)
        return running


@pytest.fixture
def team(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Team]:
    """alice and bob have accounts; the CLI and the app share one SQLite file."""
    db = tmp_path / "team.db"
    # cli.main reads load_settings(): the environment plus ./.env. Run it where no .env is.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("AUTH_MODE", "accounts")
    created = Team(db, fake_openai)
    created.add("alice")
    created.add("bob")
    try:
        yield created
    finally:
        for running in created.apps:
            running.close()


def login(app: RunningApp, name: str, password: str | None = None) -> Any:
    return app.client(auth=(name, PASSWORDS[name] if password is None else password))


def page_config(html: str) -> dict[str, Any]:
    """The config Gradio embeds in its page (window.gradio_config = {...};)."""
    found = re.search(r"window\.gradio_config = (\{.*?\});</script>", html)
    assert found, "no embedded config"
    return dict(json.loads(found.group(1)))


def chat(client: Any, message: str, conversation_id: str = "") -> tuple[str, str]:
    answer, cid = client.predict(message, conversation_id, "", "{}", api_name="/chat")
    return answer, cid


def completions(app: RunningApp) -> list[dict[str, Any]]:
    """The chat requests that reached the fake upstream."""
    return [r for r in app.fake.requests if r["path"].endswith("/chat/completions")]


def db_session(app: RunningApp) -> AbstractContextManager[Session]:
    return unit_of_work(session_factory(app.parley.engine))


def user_id(app: RunningApp, name: str) -> int:
    with db_session(app) as session:
        user = accounts.require_user(session=session, username=name)
        assert user.id is not None
        return user.id


def snapshot(app: RunningApp, conversation_id: str) -> dict[str, Any]:
    """Everything stored about one conversation, whoever owns it: row, messages, share links."""
    with db_session(app) as session:
        conversation = session.get(Conversation, conversation_id)
        messages = session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.created_at), col(Message.id))
        ).all()
        links = session.exec(
            select(ShareLink).where(ShareLink.conversation_id == conversation_id)
        ).all()
        return {
            "conversation": conversation.model_dump() if conversation else None,
            "messages": [m.model_dump() for m in messages],
            "links": [link.model_dump() for link in links],
        }


def handlers(app: RunningApp) -> tuple[ChatUI, TeamUI]:
    """The running app's own ChatUI and TeamUI: the objects its wired events call."""
    owners = {getattr(fn.fn, "__self__", None) for fn in app.parley.demo.fns.values()}
    chat_ui = next(o for o in owners if isinstance(o, ChatUI))
    team_ui = next(o for o in owners if isinstance(o, TeamUI))
    assert team_ui.page is chat_ui.page  # one PageContext under every panel
    return chat_ui, team_ui


def as_user(name: str) -> gr.Request:
    """What Gradio passes to a handler for a signed-in user."""
    return gr.Request(username=name)


def file_of(team_ui: TeamUI, update: Any) -> str:
    """The text of the file a TeamUI export links to (by its download link's token)."""
    found = re.search(r'/download/([A-Za-z0-9_-]+)"', update["value"])
    assert found, f"no download link in {update['value']!r}"
    (path,) = team_ui.downloads.root.glob(f"*-{found.group(1)}/*")
    return path.read_text(encoding="utf-8")


async def opened(chat_ui: ChatUI, name: str, conversation_id: str) -> SessionState:
    """A tab of `name` with the conversation opened from the sidebar."""
    state = SessionState()
    await chat_ui.open(conversation_id, state, as_user(name))
    assert state.conversation_id == conversation_id
    return state


# ---- 1. accounts: sign-in and what an anonymous caller gets ----------------------------------


def test_the_command_line_and_api_keys_find_a_user_whatever_the_case(team: Team) -> None:
    """`users key ALICE` makes a key of alice's account, which acts as "alice"; a second
    spelling of a name cannot become a second account."""
    secret = team.users("key", "ALICE", "--name", "laptop").strip()
    team.users("limits", "Alice", "--rpm", "7")
    refused = cli.main(
        ["add", "ALICE", "--password-stdin"], io.StringIO(), stdin=io.StringIO("another-password\n")
    )
    assert refused == 1
    engine = make_engine(f"sqlite:///{team.db}")
    try:
        with unit_of_work(session_factory(engine)) as session:
            owner = api_keys.owner_of(session=session, secret=secret)
            users = accounts.list_users(session=session)
    finally:
        engine.dispose()
    assert owner is not None and owner.username == "alice"
    assert [(user.username, user.rpm_limit) for user in users] == [("alice", 7), ("bob", None)]


def test_accounts_sign_in_chat_and_anonymous_requests_are_refused(team: Team) -> None:
    """Gradio 6 with `auth=`: the page itself answers 200 but is only the login form (its
    embedded config says auth_required and holds no components); everything else is 401."""
    app = team.start()
    answer, conversation_id = chat(login(app, "alice"), "Hello from the team server")
    assert answer == "Echo: Hello from the team server"
    with db_session(app) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.user_id == user_id(app, "alice")

    # A wrong password (and an unknown name) fails to connect: /login answers 400.
    with pytest.raises(ValueError, match="Could not login"):
        login(app, "alice", "not-alices-password")
    with pytest.raises(ValueError, match="Could not login"):
        app.client(auth=("mallory", "any-password-at-all"))
    assert (
        httpx.post(
            app.url + "login", data={"username": "alice", "password": "wrong-pw!"}
        ).status_code
        == 400
    )

    page = httpx.get(app.url, timeout=10)
    assert page.status_code == 200
    config = page_config(page.text)
    assert config["auth_required"] is True, "expected the login page"
    assert config["components"] == [] and config["dependencies"] == []
    assert "Hello from the team server" not in page.text and conversation_id not in page.text
    for path in ("config", "gradio_api/info", "gradio_api/openapi.json"):
        assert httpx.get(app.url + path, timeout=10).status_code == 401, path
    for path in ("gradio_api/queue/join", "gradio_api/call/chat"):
        response = httpx.post(
            app.url + path,
            timeout=10,
            json={"data": ["hi", "", "", "{}"], "fn_index": 0, "session_hash": "anonymous"},
        )
        assert response.status_code == 401, path
    with pytest.raises(ValueError, match="credentials were not provided"):
        app.client()  # gradio_client without auth cannot even load the config
    assert httpx.get(app.url + "healthz", timeout=10).status_code == 200  # probes need no login
    assert len(completions(app)) == 1


# ---- 2. isolation between users --------------------------------------------------------------


async def outcome(call: Awaitable[Any] | AsyncIterator[Any]) -> str:
    """What one handler call did: raised (which error), warned (the toast), or nothing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if inspect.isasyncgen(call):
                async for _ in call:
                    pass
            else:
                assert inspect.isawaitable(call)
                await call
        except gr.Error as exc:
            return f"gr.Error: {exc.message}"
        except Exception as exc:  # any other refusal: record its type
            return f"{type(exc).__name__}"
    toasts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return f"warning: {toasts[0]}" if toasts else "returned"


NOT_YOURS = "That conversation does not exist or is not yours."
REFUSALS = (
    "AppError: does not exist or is not yours",  # the /chat API
    f"gr.Error: {NOT_YOURS}",  # a handler's error toast
    "gr.Error:",  # any handler error toast
    "NotFound",  # the repository refused (Gradio shows a bare "Error" in production)
    "InvalidId",
    f"warning: {NOT_YOURS}",  # a turn refused before anything was sent
    "warning: No tool call is waiting for approval.",  # nothing of alice's to decide
)


async def test_bob_cannot_read_continue_or_change_alices_conversation(team: Team) -> None:
    """Every way bob could reach alice's conversation, and what each one does.

    Alice makes a conversation through /chat. Bob then tries each entry point. For the UI
    handlers bob's tab state is FORGED to hold alice's conversation id, her message ids and
    her answer as the focused message (state lives on the server, so a real tab cannot do
    this; the handlers must still check ownership themselves).

    | attempt by bob                              | outcome                                   |
    |---------------------------------------------|-------------------------------------------|
    | /chat API with alice's conversation_id      | AppError "does not exist or is not yours" |
    | open(alice_id) in a fresh tab               | gr.Error "… does not exist or is not yours"|
    | send (forged state)                         | refusal toast "… is not yours", no turn   |
    | regenerate (forged state)                   | refusal toast "… is not yours", no turn   |
    | edit alice's question (forged state)        | refusal toast "… is not yours", no turn   |
    | rename (forged state)                       | repo.NotFound raised (generic error)      |
    | delete (forged state)                       | repo.NotFound raised (generic error)      |
    | undo (forged state)                         | repo.NotFound raised (generic error)      |
    | feedback on alice's answer                  | repo.NotFound raised (generic error)      |
    | focus alice's answer (version switcher)     | repo.NotFound raised (generic error)      |
    | previous/next/use version                   | repo.NotFound raised (generic error)      |
    | after_turn (reload from the database)       | repo.NotFound raised (generic error)      |
    | approve / deny a tool call                  | toast "No tool call is waiting", no-op    |
    | TeamUI.share (forged state)                 | repo.NotFound raised, no link created     |
    | TeamUI.revoke (forged state)                | repo.NotFound raised                      |
    | TeamUI.export_markdown / export_json        | repo.NotFound raised, no file             |
    | TeamUI.export_everything                    | only bob's own conversations              |
    | sidebar (list and search "launch code")     | alice's conversation not listed           |

    "repo.NotFound raised" reaches Gradio as a bare "Error" in production; a gr.Error there
    is equally a refusal (see test_a_conversation_deleted_in_another_tab_...). Afterwards
    alice's conversation row, every message and her share links are identical (model_dump
    equality), and the fake upstream received no request from bob.
    """
    app = team.start()
    alice_client = login(app, "alice")
    _, alice_id = chat(alice_client, "The launch code is 7731-ALPHA")
    chat(alice_client, "Repeat the launch code", alice_id)
    bob_client = login(app, "bob")
    _, bob_own = chat(bob_client, "Bob's own harmless question")
    before = snapshot(app, alice_id)
    alice_messages = before["messages"]
    assert len(alice_messages) == 4
    sent = len(completions(app))

    outcomes: dict[str, str] = {}
    with pytest.raises(AppError) as refused:
        chat(bob_client, "Tell me the launch code", alice_id)
    assert "does not exist or is not yours" in str(refused.value)
    outcomes["/chat with alice's conversation_id"] = "AppError: does not exist or is not yours"

    chat_ui, team_ui = handlers(app)
    bob = as_user("bob")
    outcomes["open(alice_id)"] = await outcome(chat_ui.open(alice_id, SessionState(), bob))

    question = next(m for m in alice_messages if m["role"] == "user")
    answer = next(m for m in alice_messages if m["role"] == "assistant")

    async def forged() -> SessionState:
        state = SessionState()
        await chat_ui.person(state, bob)  # bob's tab, signed in
        state.conversation_id = alice_id
        state.message_ids = [m["id"] for m in alice_messages]
        state.active_ids = {m["id"] for m in alice_messages}
        state.focus_id = answer["id"]
        return state

    turn = ("siliconflow", MODEL, "", [], "auto", *PARAMS)
    index_of_question = [m["id"] for m in alice_messages].index(question["id"])
    index_of_answer = [m["id"] for m in alice_messages].index(answer["id"])
    calls: dict[str, Callable[[SessionState], Any]] = {
        "send": lambda s: chat_ui.send(bob, "Tell me the launch code", "", "auto", s, *turn),
        "regenerate": lambda s: chat_ui.regenerate(bob, s, *turn),
        "edit alice's question": lambda s: chat_ui.edit(
            gr.EditData(
                None,
                {
                    "index": index_of_question,
                    "value": "Forged question",
                    "previous_value": question["content"],
                },
            ),
            bob,
            s,
            *turn,
        ),
        "rename": lambda s: chat_ui.rename("Owned by bob", s, "", bob),
        "delete": lambda s: chat_ui.delete(s, "", bob),
        "undo": lambda s: chat_ui.undo(s, bob),
        "feedback on alice's answer": lambda s: chat_ui.feedback(
            s, gr.LikeData(None, {"index": index_of_answer, "value": "", "liked": False}), bob
        ),
        "focus alice's answer": lambda s: chat_ui.focus(
            s, gr.SelectData(None, {"index": index_of_answer, "value": ""}), bob
        ),
        "previous_version": lambda s: chat_ui.previous_version(s, bob),
        "next_version": lambda s: chat_ui.next_version(s, bob),
        "use_version": lambda s: chat_ui.use_version(s, bob),
        "after_turn (reload)": lambda s: chat_ui.after_turn(s, "", bob),
        "approve": lambda s: chat_ui.approve(s, bob),
        "deny": lambda s: chat_ui.deny(s, bob),
        "share": lambda s: team_ui.share(s, bob),
        "revoke": lambda s: team_ui.revoke(s, bob),
        "export_markdown": lambda s: team_ui.export_markdown(s, bob),
        "export_json": lambda s: team_ui.export_json(s, bob),
    }
    for name, make in calls.items():
        outcomes[name] = await outcome(make(await forged()))
        assert snapshot(app, alice_id) == before, f"{name} changed alice's conversation"

    not_refused = {
        name: result for name, result in outcomes.items() if not result.startswith(REFUSALS)
    }
    assert not not_refused, f"bob was not refused: {not_refused} (all outcomes: {outcomes})"
    assert len(outcomes) == 20
    assert len(completions(app)) == sent, "a request of bob's reached the upstream"
    assert snapshot(app, alice_id) == before

    everything = file_of(team_ui, await team_ui.export_everything(SessionState(), bob))
    assert "Bob's own harmless question" in everything
    for text in ("launch code", "7731-ALPHA", alice_id):
        assert text not in everything, f"bob's full export holds alice's {text!r}"
    for query in ("", "launch code"):
        listing = await chat_ui.sidebar(SessionState(), query, bob)
        ids = [cid for _, cid in listing["choices"]]
        assert alice_id not in ids
        assert ids == ([bob_own] if not query else [])


# ---- 3. sign-in throttling -------------------------------------------------------------------


def sign_in_status(app: RunningApp, name: str, password: str, address: str) -> int:
    """POST /login as Gradio's login form does, from `address` (the test server's uvicorn
    takes the client address from X-Forwarded-For when the peer is 127.0.0.1, as behind
    nginx)."""
    return httpx.post(
        app.url + "login",
        data={"username": name, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=10,
    ).status_code


def test_wrong_passwords_lock_the_name_at_their_address_not_for_its_owner(team: Team) -> None:
    """A stranger's failed sign-ins lock alice's name where they come from (the right password
    included), never alice out from her own address: the lock is per name *and* address."""
    app = team.start(LOGIN_MAX_FAILURES="3", LOGIN_LOCKOUT="60")
    stranger, owner = "192.0.2.66", "192.0.2.7"
    assert [sign_in_status(app, "alice", f"wrong-{i}-password", stranger) for i in range(3)] == [
        400,
        400,
        400,
    ]
    assert sign_in_status(app, "alice", PASSWORDS["alice"], stranger) == 400, (
        "after LOGIN_MAX_FAILURES failures from an address, the right password from there "
        "must be refused too"
    )
    assert sign_in_status(app, "alice", PASSWORDS["alice"], owner) == 200, (
        "a stranger's failures locked alice out from her own address (webapp/app/auth.py "
        "Accounts keys the throttle by name only)"
    )
    answer, _ = chat(login(app, "alice"), "Still mine?")  # gradio_client, from 127.0.0.1
    assert answer == "Echo: Still mine?"
    # Another name from the stranger's address is not locked by alice's failures.
    assert sign_in_status(app, "bob", PASSWORDS["bob"], stranger) == 200


def test_one_address_spraying_many_names_is_stopped(team: Team) -> None:
    app = team.start(LOGIN_MAX_FAILURES="3", LOGIN_LOCKOUT="60")
    statuses = []
    for i in range(100):  # a different name each time: no per-name lock is ever reached
        statuses.append(sign_in_status(app, f"guess{i}", "password-guess", "198.51.100.9"))
        if statuses[-1] != 400:
            break
    assert statuses[-1] == 429, "one address may try names without limit"
    assert len(statuses) > 3 + 1, "the address limit should be above the per-name one"
    assert sign_in_status(app, "alice", PASSWORDS["alice"], "198.51.100.9") == 429
    assert sign_in_status(app, "alice", PASSWORDS["alice"], "198.51.100.10") == 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_throttle_lockout_expires() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, lockout_s=60, clock=clock)
    for _ in range(2):
        throttle.failed("user:alice")
        clock.now += 1
    assert throttle.retry_after("user:alice") == 0  # two failures: still allowed
    throttle.failed("user:alice")  # at t=1002
    assert throttle.retry_after("user:alice") == pytest.approx(58)  # 1000 + 60 - 1002
    assert throttle.retry_after("user:bob") == 0
    clock.now = 1059.5
    assert throttle.retry_after("user:alice") == pytest.approx(0.5)
    clock.now = 1060  # the first failure has aged out: two recent ones remain
    assert throttle.retry_after("user:alice") == 0
    throttle.failed("user:alice")  # three within the window again
    assert throttle.retry_after("user:alice") == pytest.approx(1)  # 1001 + 60 - 1060
    throttle.succeeded("user:alice")
    assert throttle.retry_after("user:alice") == 0


async def test_accounts_refuse_the_right_password_until_the_lockout_expires(team: Team) -> None:
    app = team.start()
    clock = FakeClock()
    check = Accounts(
        session_factory(app.parley.engine), LoginThrottle(max_failures=2, lockout_s=30, clock=clock)
    )
    assert inspect.iscoroutinefunction(check.authenticate)  # Gradio awaits only then
    assert await check.authenticate("alice", PASSWORDS["alice"])
    assert not await check.authenticate("alice", "wrong-password-1")
    assert not await check.authenticate(" Alice ", "wrong-password-2")  # same name, normalised
    assert not await check.authenticate("alice", PASSWORDS["alice"])
    assert await check.authenticate("bob", PASSWORDS["bob"])
    clock.now += 30
    assert await check.authenticate("alice", PASSWORDS["alice"])
    # The app's own sign-in callable is an awaited coroutine function, not a truthy coroutine.
    auth = app.parley.auth_kwargs()["auth"]
    assert inspect.iscoroutinefunction(auth)


# ---- 4. disabled users -----------------------------------------------------------------------


def test_disabling_a_signed_in_user_refuses_their_next_request_and_sign_in(team: Team) -> None:
    app = team.start()
    bob_client = login(app, "bob")
    answer, bob_id = chat(bob_client, "Before")
    assert answer == "Echo: Before"

    assert team.users("disable", "bob") == "bob is now disabled.\n"
    assert "bob\tuser, disabled, password" in team.users("list")
    # Identity trusts cached flags for CACHE_S (5 s). A CLI change happens in another process
    # in production; here the app's own cache entry is dropped instead of waiting it out.
    app.parley.identity.forget("bob")
    sent = len(completions(app))
    with pytest.raises(AppError, match="This account is disabled"):
        chat(bob_client, "After", bob_id)
    with pytest.raises(AppError, match="This account is disabled"):
        chat(bob_client, "A new one")
    assert len(completions(app)) == sent
    with pytest.raises(ValueError, match="Could not login"):
        login(app, "bob")
    assert chat(login(app, "alice"), "Alice is unaffected")[0] == "Echo: Alice is unaffected"

    team.users("enable", "bob")
    app.parley.identity.forget("bob")
    assert chat(login(app, "bob"), "Back again", bob_id)[0] == "Echo: Back again"


# ---- 5. header mode --------------------------------------------------------------------------


def header_app(team: Team, **env: str) -> RunningApp:
    return team.start(AUTH_MODE="header", **env)


def test_header_mode_trusts_the_proxy_header_from_loopback(team: Team) -> None:
    app = header_app(team)  # AUTH_HEADER=X-Forwarded-User, TRUSTED_PROXIES has 127.0.0.1/32
    carol = app.client(headers={"X-Forwarded-User": "carol"})
    answer, carol_id = chat(carol, "Carol's question")
    assert answer == "Echo: Carol's question"
    with db_session(app) as session:
        owner = session.get(Conversation, carol_id)
        assert owner is not None and owner.user_id == user_id(app, "carol")  # made on sight

    dave = app.client(headers={"X-Forwarded-User": "dave"})
    before, sent = snapshot(app, carol_id), len(completions(app))
    with pytest.raises(AppError, match="does not exist or is not yours"):
        chat(dave, "Dave continues", carol_id)
    assert snapshot(app, carol_id) == before and len(completions(app)) == sent
    answer, dave_id = chat(dave, "Dave's own")
    assert dave_id != carol_id
    # carol continues her own
    assert chat(carol, "Again", carol_id) == ("Echo: Again", carol_id)

    # No header: nothing but the health probe answers.
    with pytest.raises(ValueError, match="credentials were not provided"):
        app.client()
    assert httpx.get(app.url, timeout=10).status_code == 401
    assert httpx.get(app.url + "config", timeout=10).status_code == 401
    assert (
        httpx.get(app.url + "config", headers={"X-Forwarded-User": ""}, timeout=10).status_code
        == 401
    )
    assert httpx.get(app.url + "healthz", timeout=10).status_code == 200


def test_header_mode_ignores_the_header_from_an_untrusted_address(team: Team) -> None:
    app = header_app(team, TRUSTED_PROXIES="10.0.0.0/8")  # loopback is not the proxy
    with pytest.raises(ValueError, match="credentials were not provided"):
        app.client(headers={"X-Forwarded-User": "carol"})
    assert (
        httpx.get(app.url + "config", headers={"X-Forwarded-User": "carol"}, timeout=10).status_code
        == 401
    )
    with db_session(app) as session:
        assert accounts.get_user(session=session, username="carol") is None
    assert completions(app) == []


def serve_like_main(parley: Parley) -> ServerThread:
    """Serve as `python -m webapp` does: in header mode uvicorn must not replace the peer
    address with X-Forwarded-For's (the header check needs the proxy's own address)."""
    settings = parley.settings
    config = uvicorn_config(
        create_app(parley),
        settings,
        proxy_headers=settings.auth_mode != "header",
        forwarded_allow_ips=",".join(settings.trusted_proxies),
    )
    config.log_config = None
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        thread.join(0.005)
    return ServerThread(server, thread, f"http://127.0.0.1:{settings.port}/")


def test_header_mode_as_served_by_main_ignores_a_forged_forwarded_for(team: Team) -> None:
    """A caller on loopback claims to be the trusted proxy 10.0.0.5 via X-Forwarded-For."""
    app = header_app(team, TRUSTED_PROXIES="10.0.0.0/8")
    parley = build(replace(app.settings, port=free_port()))
    served = serve_like_main(parley)
    try:
        forged = {"X-Forwarded-User": "admin", "X-Forwarded-For": "10.0.0.5"}
        assert httpx.get(served.url + "config", headers=forged, timeout=10).status_code == 401
        assert httpx.get(served.url + "healthz", timeout=10).status_code == 200
    finally:
        served.stop()
        parley.engine.dispose()


# ---- 6. limits -------------------------------------------------------------------------------


def test_requests_per_minute_limit_from_the_cli(team: Team) -> None:
    app = team.start()
    assert team.users("limits", "alice", "--rpm", "1") == "Limits updated for alice.\n"
    assert "alice\tuser, enabled, password, 1 req/min" in team.users("list")
    alice = login(app, "alice")
    answer, conversation_id = chat(alice, "First")
    assert answer == "Echo: First"
    sent = len(completions(app))
    with pytest.raises(AppError, match="limit of 1 requests per minute"):
        chat(alice, "Second", conversation_id)
    with pytest.raises(AppError, match="limit of 1 requests per minute"):
        chat(alice, "A new conversation")
    assert len(completions(app)) == sent
    assert [m["content"] for m in snapshot(app, conversation_id)["messages"]] == [
        "First",
        "Echo: First",
    ]  # the refused message was not stored
    assert chat(login(app, "bob"), "Bob has no limit")[0] == "Echo: Bob has no limit"

    team.users("limits", "alice", "--rpm", "0")  # 0 removes the limit
    assert chat(alice, "Third", conversation_id)[0] == "Echo: Third"


def test_tokens_per_day_limit_from_the_cli(team: Team) -> None:
    app = team.start()
    team.users("limits", "bob", "--tokens-per-day", "10")
    bob = login(app, "bob")
    assert chat(bob, "One question that uses tokens")[0] == "Echo: One question that uses tokens"
    with db_session(app) as session:
        used = accounts.tokens_since(
            session=session,
            user_id=user_id(app, "bob"),
            since=utc_now().replace(hour=0, minute=0, second=0, microsecond=0),
        )
    assert used > 10, "the fake's usage should exceed the limit in one answer"
    with pytest.raises(AppError, match=f"You have used {used:,} tokens today; your limit is 10"):
        chat(bob, "Another one")
    assert chat(login(app, "alice"), "Alice has no limit")[0] == "Echo: Alice has no limit"


# ---- 7. share links --------------------------------------------------------------------------


def share_view(app: RunningApp, token: str, http: httpx.Client) -> tuple[str, str]:
    """Do what the share page's browser code does: load its config, then run its load event
    with the page's query string. Returns (title markdown, the chat as JSON text)."""
    config = http.get(app.url + "share/config")
    config.raise_for_status()
    load = next(
        d for d in config.json()["dependencies"] if any(t[1] == "load" for t in d["targets"])
    )
    session_hash = secrets.token_hex(8)
    joined = http.post(
        app.url + "share/gradio_api/queue/join",
        params={"token": token},
        json={
            "data": [],
            "fn_index": load["id"],
            "session_hash": session_hash,
            "event_data": None,
            "trigger_id": None,
        },
    )
    joined.raise_for_status()
    with http.stream(
        "GET", app.url + "share/gradio_api/queue/data", params={"session_hash": session_hash}
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                assert message["success"], message
                *_, title, chatbot = message["output"]["data"]  # after the header line
                return title, json.dumps(chatbot)
    raise AssertionError("the share page's load event never completed")


def token_in(note: str) -> str:
    found = re.search(r"/share/\?token=([\w-]+)", note)
    assert found, note
    return found.group(1)


def shared(app: RunningApp, token: str) -> tuple[Conversation, list[Message]]:
    with db_session(app) as session:
        thread = accounts.shared_conversation(session=session, token=token)
    return thread.conversation, thread.messages


async def test_share_link_lifecycle_when_sign_in_is_required(team: Team) -> None:
    app = team.start()  # SHARE_REQUIRES_LOGIN defaults to true
    assert app.settings.share_requires_login
    _, conversation_id = chat(login(app, "alice"), "What is the boiling point of water?")
    chat_ui, team_ui = handlers(app)
    alice = as_user("alice")
    state = await opened(chat_ui, "alice", conversation_id)

    note = await team_ui.share(state, alice)
    assert "people who can sign in to Parley" in note
    token = token_in(note)
    conversation, messages = shared(app, token)
    assert conversation.id == conversation_id
    assert [m.content for m in messages] == [
        "What is the boiling point of water?",
        "Echo: What is the boiling point of water?",
    ]

    with httpx.Client(timeout=10) as anonymous:
        page = anonymous.get(app.url + "share/", params={"token": token})
        assert page.status_code == 200 and page_config(page.text)["auth_required"] is True
        assert "boiling point" not in page.text
        with pytest.raises(httpx.HTTPStatusError, match="401"):
            share_view(app, token, anonymous)
    with httpx.Client(timeout=10) as signed_in:  # bob, a colleague, signs in on the page
        assert (
            signed_in.post(
                app.url + "share/login", data={"username": "bob", "password": PASSWORDS["bob"]}
            ).status_code
            == 200
        )
        title, chatbot = share_view(app, token, signed_in)
        assert title.startswith("### What is the boiling point of water?")
        assert "read-only" in title and "Echo: What is the boiling point of water?" in chatbot

        assert await team_ui.revoke(state, alice) == "Revoked 1 link."
        with pytest.raises(repo.NotFound):
            shared(app, token)
        assert share_view(app, token, signed_in)[0] == GONE
        assert await team_ui.revoke(state, alice) == "No live links."

        second = token_in(await team_ui.share(state, alice))
        assert shared(app, second)[0].id == conversation_id
        await chat_ui.delete(state, "", alice)
        with pytest.raises(repo.NotFound):
            shared(app, second)
        assert share_view(app, second, signed_in)[0] == GONE
        assert snapshot(app, conversation_id) == {"conversation": None, "messages": [], "links": []}


async def test_share_link_without_sign_in_when_the_admin_allows_it(team: Team) -> None:
    app = team.start(SHARE_REQUIRES_LOGIN="false")
    _, conversation_id = chat(login(app, "alice"), "Public question")
    chat_ui, team_ui = handlers(app)
    state = await opened(chat_ui, "alice", conversation_id)
    note = await team_ui.share(state, as_user("alice"))
    assert "anyone with the link" in note
    token = token_in(note)
    with httpx.Client(timeout=10) as anonymous:
        title, chatbot = share_view(app, token, anonymous)
        assert title.startswith("### Public question") and "Echo: Public question" in chatbot
        assert share_view(app, "not-a-token", anonymous)[0] == GONE
        # The rest of Parley still needs a sign-in.
        assert anonymous.get(app.url + "config").status_code == 401


# ---- 8. the admin's usage and limits ---------------------------------------------------------


async def test_usage_and_limits_are_for_admins_only(team: Team) -> None:
    team.add("root", "--admin")
    app = team.start()
    alice_client = login(app, "alice")
    _, conversation_id = chat(alice_client, "One")
    chat(alice_client, "Two", conversation_id)
    chat(login(app, "bob"), "Bob's")
    chat_ui, team_ui = handlers(app)
    alice, root = as_user("alice"), as_user("root")

    with pytest.raises(gr.Error, match="Only admins"):
        await team_ui.usage("Last 24 hours", SessionState(), alice)
    with pytest.raises(gr.Error, match="Only admins"):
        await team_ui.set_limits("alice", "100", "", SessionState(), alice)
    assert (await team_ui.admin_visible(SessionState(), alice))["visible"] is False
    assert (await team_ui.admin_visible(SessionState(), root))["visible"] is True

    with db_session(app) as session:
        answers = session.exec(
            select(Message, User.username)
            .join(User, col(User.id) == col(Message.user_id))
            .where(Message.role == "assistant")
        ).all()
    expected: dict[str, list[int]] = {}
    for message, name in answers:
        row = expected.setdefault(name, [0, 0, 0])
        row[0] += 1
        row[1] += message.usage["prompt_tokens"]
        row[2] += message.usage["completion_tokens"]
    rows = await team_ui.usage("Last 24 hours", SessionState(), root)
    assert rows == [[name, MODEL, *values, 0] for name, values in sorted(expected.items())]
    assert rows[0][:3] == ["alice", MODEL, 2] and rows[0][3] == 22

    assert await team_ui.set_limits("alice", "2", "", SessionState(), root) == (
        "alice: 2 requests/min, no token limit."
    )
    with pytest.raises(AppError, match="limit of 2 requests per minute"):
        chat(alice_client, "Three", conversation_id)
    with pytest.raises(gr.Error, match="whole number"):
        await team_ui.set_limits("alice", "-1", "", SessionState(), root)
    with pytest.raises(gr.Error, match="No user named 'nobody'"):
        await team_ui.set_limits("nobody", "1", "", SessionState(), root)
    assert await team_ui.set_limits("alice", "", "", SessionState(), root) == (
        "alice: no request limit, no token limit."
    )
    assert chat(alice_client, "Three", conversation_id)[0] == "Echo: Three"


# ---- 9. metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_and_tokens_without_naming_users(team: Team) -> None:
    app = team.start()
    app.fake.enqueue(Reply(content="Twelve characters", prompt_tokens=17))
    chat(login(app, "alice"), "Count me")
    response = httpx.get(app.url + "metrics", timeout=10)
    assert response.status_code == 200
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return values.get((name, tuple(sorted(labels.items()))))

    assert (
        value("parley_requests_total", provider="siliconflow", model=MODEL, status="complete") == 1
    )
    with db_session(app) as session:
        stored = session.exec(select(Message).where(Message.role == "assistant")).one()
    assert stored.usage is not None
    assert value("parley_tokens_total", provider="siliconflow", model=MODEL, kind="prompt") == 17
    assert (
        value("parley_tokens_total", provider="siliconflow", model=MODEL, kind="completion")
        == stored.usage["completion_tokens"]
        > 0
    )
    for name in ("alice", "bob"):
        assert name not in response.text, "metrics must not carry user names"


# ---- 10. export and import -------------------------------------------------------------------


async def test_export_to_import_round_trip_between_users_holds_no_keys(team: Team) -> None:
    """Alice exports, bob imports: bob gets a new conversation of his own, alice's is as it
    was, and no API key (the server's, or one alice pasted into her tab) is in any export
    or anywhere in the SQLite files (main file, -wal, -shm)."""
    app = team.start()
    alice_client = login(app, "alice")
    app.fake.enqueue(Reply(content="Paris.", reasoning="The capital of France."))
    _, conversation_id = chat(alice_client, "Capital of France?")
    chat(alice_client, "And of Italy?", conversation_id)
    chat_ui, team_ui = handlers(app)
    alice, bob = as_user("alice"), as_user("bob")

    # One more turn from alice's tab with a key she pasted under Settings → API key.
    pasted = "sk-pasted-by-alice-5f1e0c"
    state = await opened(chat_ui, "alice", conversation_id)
    state.api_keys["siliconflow"] = pasted
    async for _ in chat_ui.send(
        alice, "And of Spain?", "", "auto", state, "siliconflow", MODEL, "", [], "auto", *PARAMS
    ):
        pass
    assert completions(app)[-1]["headers"]["authorization"] == f"Bearer {pasted}"
    assert completions(app)[0]["headers"]["authorization"] == f"Bearer {SERVER_KEY}"
    before = snapshot(app, conversation_id)
    assert len(before["messages"]) == 6

    exported_json = file_of(team_ui, await team_ui.export_json(state, alice))
    exported_md = file_of(team_ui, await team_ui.export_markdown(state, alice))
    exported_all = file_of(team_ui, await team_ui.export_everything(state, alice))
    for name, text in (
        ("JSON", exported_json),
        ("Markdown", exported_md),
        ("everything", exported_all),
    ):
        assert "And of Spain?" in text, name
        for secret in (SERVER_KEY, pasted):
            assert secret not in text, f"the {name} export holds {secret!r}"
        assert "alice" not in text.lower(), f"the {name} export names its user"

    upload = team.db.parent / "alice-export.json"
    upload.write_text(exported_json, encoding="utf-8")
    bob_state = SessionState()
    listing = await team_ui.import_file(str(upload), bob_state, "", bob)
    ((title, new_id),) = listing["choices"]
    assert new_id != conversation_id and title.endswith("(imported)")
    with db_session(app) as session:
        imported = session.get(Conversation, new_id)
        assert imported is not None and imported.user_id == user_id(app, "bob")
        copied = repo.load_messages(
            session=session, user_id=user_id(app, "bob"), conversation_id=new_id
        )
    assert [(m.role, m.content, m.reasoning) for m in copied] == [
        (m["role"], m["content"], m["reasoning"]) for m in before["messages"]
    ]
    assert not {m.id for m in copied} & {m["id"] for m in before["messages"]}
    assert snapshot(app, conversation_id) == before, "importing changed alice's conversation"
    # bob can continue his copy; alice's stays hers.
    assert chat(login(app, "bob"), "And of Portugal?", new_id)[0] == "Echo: And of Portugal?"
    assert snapshot(app, conversation_id) == before

    files = [p for p in team.db.parent.iterdir() if p.name.startswith(team.db.name)]
    assert team.db in files and any(p.name.endswith("-wal") for p in files), files
    for path in files:
        data = path.read_bytes()
        for secret in (SERVER_KEY, pasted):
            assert secret.encode() not in data, f"{path.name} holds {secret!r}"


# ---- found bugs: these fail until the app is fixed -------------------------------------------


async def test_imported_answers_do_not_count_as_the_importers_usage(team: Team) -> None:
    """Bob imports alice's export: he made no request, so neither the admin's usage table
    nor his limits may count the imported answers (they keep their usage and timestamps)."""
    team.add("root", "--admin")
    app = team.start()
    alice_client = login(app, "alice")
    _, conversation_id = chat(alice_client, "Capital of France?")
    chat(alice_client, "And of Italy?", conversation_id)
    chat_ui, team_ui = handlers(app)
    state = await opened(chat_ui, "alice", conversation_id)
    upload = team.db.parent / "alice.json"
    exported = await team_ui.export_json(state, as_user("alice"))
    upload.write_text(file_of(team_ui, exported), "utf-8")
    await team_ui.import_file(str(upload), SessionState(), "", as_user("bob"))

    rows = await team_ui.usage("Last 24 hours", SessionState(), as_user("root"))
    bob = user_id(app, "bob")
    now = utc_now()
    with db_session(app) as session:
        requests = accounts.requests_since(
            session=session, user_id=bob, since=now - timedelta(minutes=1)
        )
        tokens = accounts.tokens_since(
            session=session,
            user_id=bob,
            since=now.replace(hour=0, minute=0, second=0, microsecond=0),
        )
    assert ([r for r in rows if r[0] == "bob"], requests, tokens) == ([], 0, 0), (
        "BUG: imported answers count as the importer's usage (storage/accounts.py "
        "usage_since/requests_since/tokens_since count every assistant row by created_at, "
        "and storage/transfer.py keeps the file's created_at and usage). Bob shows "
        f"{rows}, {requests} requests in the last minute, {tokens} tokens today."
    )
    team.users("limits", "bob", "--rpm", "1")
    try:
        chat(login(app, "bob"), "Bob's first real request")
    except AppError as exc:
        pytest.fail(f"BUG: bob's first request is refused after an import: {exc}")


def test_a_successful_sign_in_does_not_reset_the_address_limit(team: Team) -> None:
    """Name spraying from one address, with the attacker's own account signing in now and
    then: the address limit must still stop it."""
    app = team.start(LOGIN_MAX_FAILURES="3", LOGIN_LOCKOUT="60")
    statuses: list[int] = []
    for i in range(100):
        if i % 5 == 4:
            sign_in_status(app, "bob", PASSWORDS["bob"], "198.51.100.7")
        statuses.append(sign_in_status(app, f"guess{i}", "password-guess", "198.51.100.7"))
        if statuses[-1] != 400:
            break
    assert statuses[-1] == 429, (
        f"BUG: {len(statuses)} failed sign-ins from one address were all checked: "
        "webapp/app/auth.py LoginAddressGuard calls throttle.succeeded(address) on any 200, so "
        "one good sign-in (the attacker's own account) clears the address's failures."
    )


async def test_a_conversation_deleted_in_another_tab_is_refused_with_a_message(team: Team) -> None:
    """Alice has the conversation open in two tabs and deletes it in one; the buttons of the
    other tab must say why they do nothing. A bare repo.NotFound reaches Gradio, which shows
    a message-less "Error" in production (show_error is off) and logs a traceback."""
    app = team.start()
    _, conversation_id = chat(login(app, "alice"), "Soon gone")
    chat_ui, team_ui = handlers(app)
    alice = as_user("alice")
    first = await opened(chat_ui, "alice", conversation_id)
    stale = await opened(chat_ui, "alice", conversation_id)
    await chat_ui.delete(first, "", alice)
    calls = {
        "rename": chat_ui.rename("New title", stale, "", alice),
        "delete": chat_ui.delete(stale, "", alice),
        "undo": chat_ui.undo(stale, alice),
        "use_version": chat_ui.use_version(stale, alice),
        "after_turn": chat_ui.after_turn(stale, "", alice),
        "share": team_ui.share(stale, alice),
        "revoke": team_ui.revoke(stale, alice),
        "export_markdown": team_ui.export_markdown(stale, alice),
        "export_json": team_ui.export_json(stale, alice),
    }
    outcomes = {name: await outcome(call) for name, call in calls.items()}
    bare = {name: result for name, result in outcomes.items() if not result.startswith("gr.Error")}
    assert not bare, (
        f"BUG: these handlers let repo.NotFound escape instead of a gr.Error: {bare} "
        "(webapp/ui/handlers/ rename/delete/undo/switch_version/_reload and "
        "webapp/ui/team.py share/revoke/export do not catch NotFound/InvalidId as open() does)"
    )
