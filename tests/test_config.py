"""Settings from `.env` plus the environment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from webapp.config import ConfigError, Secret, Settings, load_settings

NO_DOTENV = None


def settings(**environ: str) -> Settings:
    return load_settings(environ, dotenv_path=NO_DOTENV)


def config_error(**environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        settings(**environ)
    return str(info.value)


def test_defaults() -> None:
    s = settings()
    assert (s.host, s.port) == ("127.0.0.1", 7860)
    assert s.database_url == "sqlite:///./data/parley.db"
    assert [p.name for p in s.providers] == ["siliconflow", "jiekou"]
    sf, jk = s.providers
    assert sf.base_url == "https://api.siliconflow.cn/v1"
    assert (sf.kind, sf.label, sf.key_env) == ("siliconflow", "SiliconFlow", "SILICONFLOW_API_KEY")
    assert sf.models_params == (("type", "text"), ("sub_type", "chat"))
    assert jk.base_url == "https://api.jiekou.ai/openai/v1"
    assert (jk.kind, jk.requires_max_tokens) == ("jiekou", True)
    assert not sf.api_key and not jk.api_key
    assert s.default_provider == "siliconflow"  # no keys: the first configured
    assert (s.connect_timeout_s, s.read_timeout_s, s.max_retries) == (10.0, 120.0, 3)
    assert (s.env, s.log_level, s.capabilities_file, s.default_model) == (
        "development",
        "INFO",
        "",
        "",
    )


def test_a_missing_dotenv_file_is_fine(tmp_path: Path) -> None:
    s = load_settings({}, dotenv_path=tmp_path / "absent.env")
    assert s.port == 7860


def test_dotenv_values_are_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "PORT=8000\nHOST=0.0.0.0\nALLOWED_HOSTS=chat.example.com\nSILICONFLOW_API_KEY=sk-from-file\n"
        "DATABASE_URL=postgresql+psycopg://u@db/parley\nLOG_LEVEL=debug\n",
        encoding="utf-8",
    )
    s = load_settings({"PORT": "9000"}, dotenv_path=dotenv)
    assert s.port == 9000
    assert s.host == "0.0.0.0"
    assert s.database_url == "postgresql+psycopg://u@db/parley"
    assert s.log_level == "DEBUG"
    assert s.provider("siliconflow").api_key.get() == "sk-from-file"
    s = load_settings({"SILICONFLOW_API_KEY": "sk-env"}, dotenv_path=dotenv)
    assert s.provider("siliconflow").api_key.get() == "sk-env"


def test_base_url_overrides_strip_the_trailing_slash() -> None:
    s = settings(
        SILICONFLOW_BASE_URL="https://api.siliconflow.com/v1/",
        JIEKOU_BASE_URL=" http://127.0.0.1:9999/openai// ",
    )
    assert s.provider("siliconflow").base_url == "https://api.siliconflow.com/v1"
    assert s.provider("jiekou").base_url == "http://127.0.0.1:9999/openai"


@pytest.mark.parametrize("variable", ["SILICONFLOW_BASE_URL", "JIEKOU_BASE_URL"])
def test_bad_base_url_scheme(variable: str) -> None:
    message = config_error(**{variable: "api.example.com/v1"})
    assert message.startswith(f"{variable}='api.example.com/v1' must start with http://")


def test_extra_providers() -> None:
    s = settings(
        EXTRA_PROVIDERS="local, Ollama",
        LOCAL_BASE_URL="http://127.0.0.1:8000/v1/",
        LOCAL_API_KEY="sk-local",
        LOCAL_LABEL="My vLLM",
        LOCAL_MODELS="llama-3.1-8b, qwen3-8b,,",
        OLLAMA_BASE_URL="http://localhost:11434/v1",
    )
    assert [p.name for p in s.providers] == ["siliconflow", "jiekou", "local", "ollama"]
    local = s.provider("local")
    assert local.base_url == "http://127.0.0.1:8000/v1"
    assert local.api_key.get() == "sk-local"
    assert (local.label, local.kind, local.key_env) == ("My vLLM", "openai", "LOCAL_API_KEY")
    assert local.catalog == ("llama-3.1-8b", "qwen3-8b")
    assert local.default_model == "llama-3.1-8b"
    ollama = s.provider("ollama")
    assert (ollama.label, ollama.catalog, ollama.default_model) == ("ollama", (), "")
    assert not ollama.api_key


def test_extra_provider_without_base_url() -> None:
    message = config_error(EXTRA_PROVIDERS="local")
    assert "LOCAL_BASE_URL is not set" in message
    assert message.startswith("EXTRA_PROVIDERS lists 'local'")


def test_extra_provider_with_bad_url_scheme() -> None:
    message = config_error(EXTRA_PROVIDERS="local", LOCAL_BASE_URL="localhost:8000")
    assert message.startswith("LOCAL_BASE_URL='localhost:8000' must start with http://")


@pytest.mark.parametrize("name", ["my-server", "9lives", "a b", "siliconflow", "jiekou", "x" * 33])
def test_extra_provider_bad_names(name: str) -> None:
    message = config_error(EXTRA_PROVIDERS=name)
    assert message.startswith(f"EXTRA_PROVIDERS names {name.lower()!r}")


@pytest.mark.parametrize("port", ["abc", "80.5"])
def test_port_not_a_number(port: str) -> None:
    assert config_error(PORT=port) == f"PORT={port!r} is not a whole number: fix it in .env"


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_port_out_of_range(port: str) -> None:
    assert config_error(PORT=port).startswith(f"PORT={port} is out of range 1–65535")


def test_port_boundaries() -> None:
    assert settings(PORT="1").port == 1
    assert settings(PORT="65535").port == 65535


def test_other_bad_numbers_name_their_variable() -> None:
    assert config_error(READ_TIMEOUT="soon").startswith("READ_TIMEOUT='soon' is not a number")
    assert config_error(MAX_RETRIES="x").startswith("MAX_RETRIES='x' is not a whole number")


def test_unknown_default_provider() -> None:
    message = config_error(DEFAULT_PROVIDER="openai")
    assert message.startswith("DEFAULT_PROVIDER='openai' is not one of siliconflow, jiekou")


def test_default_provider_is_explicit_or_the_first_with_a_key() -> None:
    assert settings(JIEKOU_API_KEY="k").default_provider == "jiekou"
    assert settings(JIEKOU_API_KEY="k", SILICONFLOW_API_KEY="k").default_provider == "siliconflow"
    extra = settings(EXTRA_PROVIDERS="local", LOCAL_BASE_URL="http://h/v1", LOCAL_API_KEY="k")
    assert extra.default_provider == "local"
    assert settings(JIEKOU_API_KEY="  ").default_provider == "siliconflow"
    chosen = settings(DEFAULT_PROVIDER="Jiekou", SILICONFLOW_API_KEY="k")
    assert chosen.default_provider == "jiekou"
    assert chosen.default_provider_config.name == "jiekou"


def test_unknown_provider_lookup_names_the_configured_ones() -> None:
    with pytest.raises(
        ConfigError, match="Unknown provider 'x'; configured providers: siliconflow, jiekou"
    ):
        settings().provider("x")


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.providers[0].base_url = "http://evil"  # type: ignore[misc]
    assert isinstance(s.providers, tuple)


def test_keys_never_show_in_repr_or_str() -> None:
    s = settings(
        SILICONFLOW_API_KEY="sk-sf-SECRET-1",
        JIEKOU_API_KEY="sk-jk-SECRET-2",
        EXTRA_PROVIDERS="local",
        LOCAL_BASE_URL="http://h/v1",
        LOCAL_API_KEY="sk-local-SECRET-3",
    )
    texts = [repr(s), str(s)] + [f(p) for p in s.providers for f in (repr, str)]
    for text in texts:
        assert "SECRET" not in text
    assert "Secret('***')" in repr(s.provider("local"))
    assert [p.api_key.get() for p in s.providers] == [
        "sk-sf-SECRET-1",
        "sk-jk-SECRET-2",
        "sk-local-SECRET-3",
    ]


def test_secret() -> None:
    assert repr(Secret("abc")) == "Secret('***')"
    assert str(Secret("abc")) == "Secret('***')"
    assert f"{Secret('abc')}" == "Secret('***')"
    assert repr(Secret("")) == "Secret('')"
    assert bool(Secret("abc")) and not Secret("")
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert Secret("a") != "a"


def test_load_settings_does_not_write_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PORT", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("PORT=8123\n", encoding="utf-8")
    assert load_settings({}, dotenv_path=dotenv).port == 8123
    assert "PORT" not in os.environ


def test_extra_provider_listed_twice_is_refused() -> None:
    message = config_error(EXTRA_PROVIDERS="local,LOCAL", LOCAL_BASE_URL="http://127.0.0.1:1/v1")
    assert "EXTRA_PROVIDERS names local more than once" in message


def test_tool_settings_defaults_and_parsing() -> None:
    settings = load_settings({}, dotenv_path=None)
    assert (
        settings.tools_modules,
        settings.default_tools,
        settings.tool_timeout_s,
        settings.tool_max_rounds,
        settings.tool_max_result_chars,
        settings.http_get_allowed_hosts,
    ) == ((), "none", 30.0, 8, 20_000, ())
    settings = load_settings(
        {
            "TOOLS_MODULES": " a.b , /opt/t.py ,",
            "TOOL_TIMEOUT": "2.5",
            "HTTP_GET_ALLOWED_HOSTS": "Wiki.Internal, *.docs.example.com",
            "DEFAULT_TOOLS": "calculator",
        },
        dotenv_path=None,
    )
    assert settings.tools_modules == ("a.b", "/opt/t.py")
    assert settings.tool_timeout_s == 2.5 and settings.default_tools == "calculator"
    assert settings.http_get_allowed_hosts == ("wiki.internal", "*.docs.example.com")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TOOL_TIMEOUT", "0", "TOOL_TIMEOUT=0 must be more than 0"),
        ("TOOL_TIMEOUT", "nan", "TOOL_TIMEOUT=nan must be more than 0"),
        ("TOOL_TIMEOUT", "soon", "TOOL_TIMEOUT='soon' is not a number"),
        ("TOOL_MAX_ROUNDS", "0", "TOOL_MAX_ROUNDS=0 is out of range 1–100"),
        ("TOOL_MAX_RESULT_CHARS", "5", "TOOL_MAX_RESULT_CHARS=5 is out of range"),
    ],
)
def test_bad_tool_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({name: value}, dotenv_path=None)


# ---- ALLOWED_HOSTS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", ("localhost", "127.0.0.1", "[::1]")),
        ("localhost", ("localhost", "127.0.0.1", "[::1]")),
        ("::1", ("localhost", "127.0.0.1", "[::1]")),
        ("127.0.0.2", ("localhost", "127.0.0.1", "[::1]", "127.0.0.2")),
    ],
)
def test_on_loopback_allowed_hosts_defaults_to_loopback_names(
    host: str, expected: tuple[str, ...]
) -> None:
    assert settings(HOST=host).allowed_hosts == expected


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "chat.example.com"])
def test_bound_elsewhere_allowed_hosts_must_be_set(host: str) -> None:
    message = config_error(HOST=host)
    assert message.startswith(f"HOST={host} serves other machines, so ALLOWED_HOSTS must list")
    assert "ALLOWED_HOSTS=* accepts every Host" in message and "DNS rebinding" in message


def test_allowed_hosts_are_read_lowercased_and_star_means_any() -> None:
    s = settings(HOST="0.0.0.0", ALLOWED_HOSTS=" Chat.Example.com, *.corp.test,10.0.0.5,[::1] ")
    assert s.allowed_hosts == ("chat.example.com", "*.corp.test", "10.0.0.5", "[::1]")
    assert settings(HOST="0.0.0.0", ALLOWED_HOSTS="*").allowed_hosts == ("*",)


@pytest.mark.parametrize(
    "entry",
    [
        "chat.example.com:443",
        "https://chat.example.com",
        "::1",
        "a.*.example.com",
        "*example.com",
        "chat.example.com/app",
        "[not-an-address]",
        "bad host",
    ],
)
def test_malformed_allowed_hosts_are_refused_with_the_fix(entry: str) -> None:
    message = config_error(HOST="0.0.0.0", ALLOWED_HOSTS=entry)
    assert message.startswith(f"ALLOWED_HOSTS entry {entry!r} is not a host name")
    assert "without scheme or port" in message


def test_one_rule_picks_the_model_of_a_request_that_names_none() -> None:
    s = settings(
        DEFAULT_MODEL="Qwen/Qwen3-8B",
        EXTRA_PROVIDERS="local",
        LOCAL_BASE_URL="http://127.0.0.1:8000/v1",
        LOCAL_MODELS="a, b",
    )
    assert s.default_model_for("siliconflow") == "Qwen/Qwen3-8B"  # DEFAULT_MODEL, its provider
    assert s.default_model_for("jiekou") == "deepseek/deepseek-v3.2"  # the provider's own
    assert s.default_model_for("local") == "a"  # the first of its listed models
    assert settings().default_model_for("siliconflow") == "Qwen/Qwen3-32B"
    with pytest.raises(ConfigError):
        s.default_model_for("nowhere")
