"""Presets: the repository on SQLite and PostgreSQL, validation, shipped presets, and the page's
handlers (PresetsUI around a running app's own ChatUI) for several users and an admin."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from gradio.helpers import special_args

from storage import accounts
from storage import presets as store
from storage.db import session_factory, unit_of_work
from storage.models import Preset
from storage.repository import InvalidId, NotFound, ensure_user
from tests.conftest import RunningApp, start_app
from tests.fake_openai import FakeOpenAI
from webapp.app.presets import (
    SHIPPED,
    PresetError,
    PresetValues,
    check,
    choices,
    db_value,
    find_shipped,
    parse_choice,
    shipped_value,
)
from webapp.core.params import PARAMS
from webapp.tools.builtin import register_builtins
from webapp.tools.registry import ToolRegistry
from webapp.ui import controls
from webapp.ui.handlers.chat import ChatUI
from webapp.ui.presets_ui import PresetsUI, build_presets_row, wire_presets
from webapp.ui.session import SessionState

Call = Callable[..., Any]
SKIP = gr.skip()
UNSET = tuple(controls.show({}))  # every parameter control "not set"


# ---- the repository, on both databases -------------------------------------------------------


@pytest.fixture
def users(call: Call) -> dict[str, int]:
    return {name: call(ensure_user, username=name).id for name in ("alice", "bob", "root")}


def save(
    call: Call,
    user_id: int,
    name: str,
    *,
    team: bool = False,
    is_admin: bool = False,
    **values: Any,
) -> Preset:
    return call(
        store.save_preset, user_id=user_id, name=name, team=team, is_admin=is_admin, **values
    )


def names(call: Call, user_id: int) -> list[tuple[str, bool]]:
    return [(p.name, p.team) for p in call(store.list_presets, user_id=user_id)]


def test_a_user_sees_team_presets_first_then_their_own_by_name(
    call: Call, users: dict[str, int]
) -> None:
    save(call, users["alice"], "zebra", system_prompt="Z")
    save(
        call,
        users["alice"],
        "Apple",
        parameters={"temperature": 0.5},
        tools=["calculator"],
        tool_choice="calculator",
        provider="jiekou",
        model="m-1",
    )
    save(call, users["bob"], "bob's own")
    save(call, users["root"], "Support bot", team=True, is_admin=True)
    save(call, users["root"], "Analyst", team=True, is_admin=True)

    assert names(call, users["alice"]) == [
        ("Analyst", True),
        ("Support bot", True),
        ("Apple", False),
        ("zebra", False),
    ]
    assert names(call, users["bob"]) == [
        ("Analyst", True),
        ("Support bot", True),
        ("bob's own", False),
    ]
    apple = call(store.list_presets, user_id=users["alice"])[2]
    stored = call(store.get_preset, user_id=users["alice"], preset_id=apple.id)
    assert (stored.parameters, stored.tools, stored.tool_choice, stored.provider, stored.model) == (
        {"temperature": 0.5},
        ["calculator"],
        "calculator",
        "jiekou",
        "m-1",
    )


def test_another_users_private_preset_is_invisible_and_undeletable(
    call: Call, users: dict[str, int]
) -> None:
    mine = save(call, users["alice"], "Mine", system_prompt="secret")
    for user in ("bob", "root"):  # not even an admin reads or deletes someone's own preset
        with pytest.raises(NotFound):
            call(store.get_preset, user_id=users[user], preset_id=mine.id)
        with pytest.raises(NotFound):
            call(
                store.delete_preset, user_id=users[user], is_admin=user == "root", preset_id=mine.id
            )
    assert names(call, users["alice"]) == [("Mine", False)]
    with pytest.raises(InvalidId):
        call(store.get_preset, user_id=users["alice"], preset_id="not-an-id")
    call(store.delete_preset, user_id=users["alice"], is_admin=False, preset_id=mine.id)
    assert names(call, users["alice"]) == []
    with pytest.raises(NotFound):
        call(store.get_preset, user_id=users["alice"], preset_id=mine.id)


def test_only_admins_publish_or_delete_team_presets(call: Call, users: dict[str, int]) -> None:
    with pytest.raises(PresetError, match="Only admins can publish team presets"):
        save(call, users["bob"], "Team?", team=True, is_admin=False)
    team = save(call, users["root"], "Support bot", team=True, is_admin=True)
    assert call(store.get_preset, user_id=users["bob"], preset_id=team.id).name == "Support bot"
    with pytest.raises(PresetError, match="Only admins can delete team presets"):
        call(store.delete_preset, user_id=users["bob"], is_admin=False, preset_id=team.id)
    assert names(call, users["bob"]) == [("Support bot", True)]
    # Another admin may delete it: team presets belong to the team.
    other_admin = call(
        accounts.create_account, username="ops", password_hash=None, is_admin=True
    ).id
    call(store.delete_preset, user_id=other_admin, is_admin=True, preset_id=team.id)
    assert names(call, users["bob"]) == []


def test_saving_the_same_name_in_the_same_scope_overwrites(
    call: Call, users: dict[str, int]
) -> None:
    first = save(call, users["alice"], "Reviewer", parameters={"temperature": 0.3})
    again = save(call, users["alice"], "  Reviewer ", system_prompt="Be strict.")
    assert again.id == first.id
    assert (again.system_prompt, again.parameters) == ("Be strict.", {})
    assert again.updated_at >= first.updated_at
    # The same name elsewhere is another preset: bob's own, and a team one.
    bobs = save(call, users["bob"], "Reviewer")
    team = save(call, users["root"], "Reviewer", team=True, is_admin=True)
    assert len({first.id, bobs.id, team.id}) == 3
    # Team presets share one scope: a second admin republishing replaces the first's.
    other_admin = call(
        accounts.create_account, username="ops", password_hash=None, is_admin=True
    ).id
    replaced = save(call, other_admin, "Reviewer", team=True, is_admin=True, model="m-2")
    assert replaced.id == team.id and replaced.model == "m-2"
    assert names(call, users["alice"]) == [("Reviewer", True), ("Reviewer", False)]


def test_a_preset_name_is_one_to_a_hundred_characters(call: Call, users: dict[str, int]) -> None:
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(PresetError, match="1–100 characters"):
            save(call, users["alice"], bad)
    assert save(call, users["alice"], "x" * 100).name == "x" * 100
    assert save(call, users["alice"], " two\n words ").name == "two words"


# ---- validation, shipped presets and Dropdown choices ----------------------------------------


@pytest.fixture
def registry() -> ToolRegistry:
    """The built-in tools: calculator, current_time, search_conversations."""
    tools = ToolRegistry()
    register_builtins(tools)
    return tools


def test_check_cleans_parameters_tools_and_tool_choice(registry: ToolRegistry) -> None:
    cleaned = check(
        PresetValues(
            name=" My  reviewer ",
            parameters={
                "temperature": "0.3",
                "max_tokens": "2048",
                "stop": "END\n",
                "enable_thinking": "on",
            },
            tools=("current_time", "calculator"),
            tool_choice="calculator",
            provider=" jiekou ",
        ),
        registry,
    )
    assert cleaned.name == "My reviewer" and cleaned.provider == "jiekou"
    assert cleaned.parameters == {
        "temperature": 0.3,
        "max_tokens": 2048,
        "stop": ["END"],
        "enable_thinking": True,
    }
    assert cleaned.tools == ("calculator", "current_time")  # registry order
    assert cleaned.tool_choice == "calculator"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            PresetValues(parameters={"temperature": 3}),
            "Temperature must be between 0 and 2 (got 3)",
        ),
        (
            PresetValues(parameters={"top_p": 0, "n": 99}),
            "Top-p must be more than 0 and at most 1 (got 0); Choices (n) must be between 1 and 8",
        ),
        (PresetValues(parameters={"temprature": 1}), "Unknown parameter 'temprature'"),
        (
            PresetValues(tools=("calculator", "nope")),
            "The preset names unknown tools 'nope'; available: calculator, current_time, "
            "search_conversations",
        ),
        (
            PresetValues(tools=("calculator",), tool_choice="current_time"),
            "tool_choice 'current_time' is not one of the offered tools (calculator)",
        ),
        (PresetValues(tool_choice="required"), 'tool_choice is "required" but no tool is offered'),
    ],
)
def test_check_refuses_invalid_values_with_a_message(
    registry: ToolRegistry, values: PresetValues, message: str
) -> None:
    with pytest.raises(PresetError) as caught:
        check(values, registry)
    assert message in str(caught.value)


def test_every_shipped_preset_is_valid_and_keeps_provider_and_model(registry: ToolRegistry) -> None:
    assert [s.values.name for s in SHIPPED] == [
        "Precise answers",
        "Creative writing",
        "Step-by-step reasoning",
        "Code reviewer",
        "Calculator and clock",
    ]
    for shipped in SHIPPED:
        cleaned = check(shipped.values, registry)
        assert cleaned.parameters == dict(shipped.values.parameters)
        assert (cleaned.provider, cleaned.model) == ("", "")
    assert find_shipped("precise").values.parameters == {"temperature": 0.2}
    assert find_shipped("creative").values.parameters == {"temperature": 1.0, "top_p": 0.95}
    assert find_shipped("reasoning").values.parameters == {"enable_thinking": True}
    assert find_shipped("reasoning").values.system_prompt
    clock = find_shipped("calculator-clock").values
    assert (clock.tools, clock.tool_choice) == (("calculator", "current_time"), "auto")
    with pytest.raises(PresetError, match="no shipped preset 'gone'"):
        find_shipped("gone")


def test_choices_are_team_then_shipped_then_mine_with_stable_values() -> None:
    stored = [
        Preset(id="a" * 32, user_id=1, name="Support bot", team=True),
        Preset(id="b" * 32, user_id=1, name="My reviewer"),
    ]
    listed = [c.pair() for c in choices(stored)]
    assert listed[0] == ("★ Team: Support bot", "db:" + "a" * 32)
    assert listed[1] == ("Shipped: Precise answers", "shipped:precise")
    assert listed[-1] == ("Mine: My reviewer", "db:" + "b" * 32)
    assert len(listed) == 2 + len(SHIPPED)
    assert parse_choice(shipped_value("precise")) == ("shipped", "precise")
    assert parse_choice(db_value("b" * 32)) == ("db", "b" * 32)
    for bad in ("", "db:", "shipped:", "precise", "other:1"):
        with pytest.raises(PresetError, match="Unknown preset"):
            parse_choice(bad)


# ---- the page's handlers, around a running app's ChatUI --------------------------------------


@pytest.fixture
def app(fake_openai: FakeOpenAI, database_url: str) -> Iterator[RunningApp]:
    """Parley with accounts on each database; root is an admin, alice and bob are not."""
    running = start_app(fake_openai, database_url, AUTH_MODE="accounts")
    with unit_of_work(session_factory(running.parley.engine)) as session:
        accounts.create_account(session=session, username="root", password_hash=None, is_admin=True)
    try:
        yield running
    finally:
        running.close()


def presets_ui(app: RunningApp) -> PresetsUI:
    """A PresetsUI around the running app's own ChatUI (the object its wired events call)."""
    owners = {getattr(fn.fn, "__self__", None) for fn in app.parley.demo.fns.values()}
    return PresetsUI(next(o for o in owners if isinstance(o, ChatUI)).page)


def as_user(name: str) -> gr.Request:
    """What Gradio passes to a handler for a signed-in user."""
    return gr.Request(username=name)


def params(**values: Any) -> tuple[Any, ...]:
    """Control values in PARAMS order, as the page sends them."""
    return tuple(controls.show(values))


async def listed(ui: PresetsUI, name: str) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in (await ui.choices(SessionState(), as_user(name)))["choices"]]


async def test_applying_a_shipped_preset_fills_every_control_and_keeps_provider_and_model(
    app: RunningApp,
) -> None:
    ui = presets_ui(app)
    updates = await ui.apply("shipped:precise", SessionState(), as_user("alice"))
    precise = find_shipped("precise").values
    assert len(updates) == 5 + len(PARAMS)
    assert updates[:5] == (precise.system_prompt, SKIP, SKIP, [], "auto")
    assert updates[5:] == params(temperature=0.2)  # every other parameter is cleared
    assert updates[5:] != UNSET
    clock = await ui.apply("shipped:calculator-clock", SessionState(), as_user("alice"))
    assert clock[3:5] == (["calculator", "current_time"], "auto")
    assert clock[5:] == UNSET
    thinking = await ui.apply("shipped:reasoning", SessionState(), as_user("alice"))
    enable_thinking = [p.name for p in PARAMS].index("enable_thinking")
    assert thinking[5 + enable_thinking] == "on"
    # Nothing picked (the Dropdown cleared): nothing changes.
    assert await ui.apply(None, SessionState(), as_user("alice")) == (SKIP,) * (5 + len(PARAMS))
    with pytest.raises(gr.Error, match="no shipped preset"):
        await ui.apply("shipped:gone", SessionState(), as_user("alice"))


async def test_applying_a_saved_preset_sets_provider_model_tools_and_parameters(
    app: RunningApp,
) -> None:
    ui = presets_ui(app)
    alice = as_user("alice")
    dropdown, status = await ui.save(
        alice,
        SessionState(),
        "Jiekou reviewer",
        False,
        "Review this.",
        "jiekou",
        "my-model",
        ["calculator"],
        "calculator",
        *params(temperature=0.3, stop=["END"], seed=7),
    )
    assert status == "Saved preset “Jiekou reviewer”."
    value = dropdown["value"]
    assert ("Mine: Jiekou reviewer", value) in [tuple(c) for c in dropdown["choices"]]

    updates = await ui.apply(value, SessionState(), alice)
    assert updates[:2] == ("Review this.", "jiekou")
    assert updates[2]["value"] == "my-model"  # the model Dropdown, with jiekou's models listed
    assert updates[3:5] == (["calculator"], "calculator")
    assert updates[5:] == tuple(controls.show({"temperature": 0.3, "stop": ["END"], "seed": 7}))

    # A preset without a provider keeps the current one but may still name a model.
    _, _ = await ui.save(
        alice, SessionState(), "Model only", False, "", "", "other-model", [], "auto", *UNSET
    )
    stored = {label: v for label, v in await listed(ui, "alice")}
    model_only = await ui.apply(stored["Mine: Model only"], SessionState(), alice)
    assert model_only[1:3] == (SKIP, gr.update(value="other-model"))


async def test_saving_refuses_invalid_settings_with_the_reason(app: RunningApp) -> None:
    ui = presets_ui(app)
    alice = as_user("alice")
    with pytest.raises(gr.Error, match=r"Temperature must be between 0 and 2 \(got 3\)"):
        await ui.save(
            alice,
            SessionState(),
            "Hot",
            False,
            "",
            "siliconflow",
            "",
            [],
            "auto",
            *params(temperature=3),
        )
    with pytest.raises(gr.Error, match="names unknown tools 'nope'"):
        await ui.save(
            alice, SessionState(), "Tools", False, "", "siliconflow", "", ["nope"], "auto", *UNSET
        )
    with pytest.raises(gr.Error, match="Give the preset a name"):
        await ui.save(alice, SessionState(), "  ", False, "", "", "", [], "auto", *UNSET)
    with pytest.raises(gr.Error, match="1–100 characters"):
        await ui.save(alice, SessionState(), "x" * 101, False, "", "", "", [], "auto", *UNSET)
    assert [label for label, _ in await listed(ui, "alice")] == [
        f"Shipped: {s.values.name}" for s in SHIPPED
    ]


async def test_private_and_team_presets_between_users_end_to_end(app: RunningApp) -> None:
    ui = presets_ui(app)
    alice, bob, root = as_user("alice"), as_user("bob"), as_user("root")

    dropdown, _ = await ui.save(
        alice,
        SessionState(),
        "My reviewer",
        False,
        "Be picky.",
        "",
        "",
        [],
        "auto",
        *params(temperature=0.1),
    )
    alices = dropdown["value"]
    assert ("Mine: My reviewer", alices) in await listed(ui, "alice")
    assert all("My reviewer" not in label for label, _ in await listed(ui, "bob"))
    with pytest.raises(gr.Error, match="no longer exists or is not yours"):
        await ui.apply(alices, SessionState(), bob)
    with pytest.raises(gr.Error, match="no longer exists or is not yours"):
        await ui.delete(alices, SessionState(), bob)

    # Bob is no admin: he can neither publish a team preset nor see the checkbox.
    with pytest.raises(gr.Error, match="Only admins can publish team presets"):
        await ui.save(bob, SessionState(), "Support bot", True, "", "", "", [], "auto", *UNSET)
    assert (await ui.team_visible(SessionState(), bob))["visible"] is False
    assert (await ui.team_visible(SessionState(), root))["visible"] is True

    dropdown, status = await ui.save(
        root,
        SessionState(),
        "Support bot",
        True,
        "You help our customers.",
        "",
        "",
        ["current_time"],
        "auto",
        *params(temperature=0.4),
    )
    assert status == "Saved team preset “Support bot”."
    team = dropdown["value"]
    for name in ("alice", "bob", "root"):
        assert (await listed(ui, name))[0] == ("★ Team: Support bot", team)
    applied = await ui.apply(team, SessionState(), bob)
    assert applied[0] == "You help our customers."
    assert applied[3:] == (["current_time"], "auto", *params(temperature=0.4))

    with pytest.raises(gr.Error, match="Only admins can delete team presets"):
        await ui.delete(team, SessionState(), bob)
    with pytest.raises(gr.Error, match="Shipped presets cannot be deleted"):
        await ui.delete("shipped:precise", SessionState(), root)
    refreshed, status = await ui.delete(team, SessionState(), root)
    assert status == "Deleted preset “Support bot”."
    assert all(value != team for _, value in refreshed["choices"])
    assert all(value != team for _, value in await listed(ui, "bob"))
    _, status = await ui.delete(alices, SessionState(), alice)
    assert [label for label, _ in await listed(ui, "alice")] == [
        f"Shipped: {s.values.name}" for s in SHIPPED
    ]


# ---- the layout and wiring -------------------------------------------------------------------


async def test_the_presets_row_wires_private_events_and_gradio_injects_the_request(
    app: RunningApp,
) -> None:
    ui = presets_ui(app)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Gradio's "expected N arguments" warning
        with gr.Blocks() as demo:
            state = gr.State(SessionState())
            system, provider, model = gr.Textbox(), gr.Dropdown(), gr.Dropdown()
            tools_box, tool_choice = gr.CheckboxGroup(), gr.Dropdown()
            param_controls = [controls.make_control(p) for p in PARAMS]
            components = build_presets_row(ui)
            settings = SimpleNamespace(
                system=system,
                provider=provider,
                model=model,
                tools_box=tools_box,
                tool_choice=tool_choice,
                params=param_controls,
            )
            wire_presets(components, ui, state=state, settings_panel=settings, demo=demo)
    assert components.dropdown.elem_id == "preset"
    assert [
        c.elem_id
        for c in (
            components.name,
            components.team,
            components.save,
            components.delete,
            components.status,
        )
    ] == ["preset-name", "preset-team", "save-preset", "delete-preset", "preset-status"]
    assert ("Shipped: Precise answers", "shipped:precise") in [
        tuple(c) for c in components.dropdown.choices
    ]
    fns = list(demo.fns.values())
    assert {fn.fn.__name__ for fn in fns if fn.fn is not None} == {
        "apply",
        "save",
        "delete",
        "choices",
        "team_visible",
    }
    assert all(fn.api_visibility == "private" for fn in fns)
    apply = next(fn for fn in fns if fn.fn is not None and fn.fn.__name__ == "apply")
    assert [t[1] for t in apply.targets] == ["select"]  # .input fires twice per pick in Gradio 6.31
    assert len(apply.outputs) == 5 + len(PARAMS)

    # Gradio puts the request into `save`'s first parameter and the inputs after it.
    save_fn = next(fn for fn in fns if fn.fn is not None and fn.fn.__name__ == "save")
    inputs = [SessionState(), "Mine", False, "", "", "", [], "auto", *UNSET]
    assert len(save_fn.inputs) == len(inputs)
    request = as_user("alice")
    args, *_ = special_args(ui.save, list(inputs), request=request)  # type: ignore[arg-type]
    assert args[0] is request and args[1:] == inputs
    dropdown, status = await ui.save(*args)
    assert status == "Saved preset “Mine”."
