"""Settings: `.env` plus the environment, read once into a frozen, typed object."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from webapp.tools.mcp_config import McpConfigError, McpServerConfig, load_mcp_servers


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One OpenAI-compatible endpoint."""

    name: str  # stable id: "siliconflow", "jiekou", or an extra provider's name
    label: str  # shown to users: "SiliconFlow"
    base_url: str  # ends without a slash, e.g. https://api.siliconflow.cn/v1
    key_env: str  # the variable that holds its key, named in error messages
    api_key: Secret = field(default_factory=lambda: Secret(""))
    kind: str = "openai"  # "siliconflow" | "jiekou" | "openai": selects wire quirks
    models_params: tuple[tuple[str, str], ...] = ()  # query for GET /models
    requires_max_tokens: bool = False  # jiekou.ai marks max_tokens as required
    catalog: tuple[str, ...] = ()  # fallback model ids when listing fails
    default_model: str = ""


SILICONFLOW_CATALOG = (
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-14B",
    "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "Qwen/Qwen3-235B-A22B-Instruct-2507",
    "Qwen/Qwen3-235B-A22B-Thinking-2507",
    "Qwen/Qwen2.5-72B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "deepseek-ai/DeepSeek-V3.2",
    "deepseek-ai/DeepSeek-V3.1-Terminus",
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-V3",
    "moonshotai/Kimi-K2-Instruct-0905",
    "moonshotai/Kimi-K2-Thinking",
    "zai-org/GLM-4.6",
    "zai-org/GLM-4.5V",
    "tencent/Hunyuan-A13B-Instruct",
    "MiniMaxAI/MiniMax-M2.1",
    "openai/gpt-oss-120b",
)

JIEKOU_CATALOG = (
    "deepseek/deepseek-v3.2",
    "deepseek/deepseek-r1",
    "qwen/qwen3-32b",
    "qwen/qwen3-235b-a22b-instruct-2507",
    "moonshotai/kimi-k2-instruct",
    "zai-org/glm-4.6",
)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # ALLOWED_HOSTS when HOST is loopback
PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Parley reads from its environment, once, at start-up."""

    host: str = "127.0.0.1"
    port: int = 7860
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host headers served ("*": any)
    database_url: str = "sqlite:///./data/parley.db"
    providers: tuple[ProviderConfig, ...] = ()
    default_provider: str = ""
    default_model: str = ""
    capabilities_file: str = ""
    prices_file: str = ""  # JSON list of per-model prices for the Compare view's cost figures
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0  # longest silence tolerated inside a stream
    max_retries: int = 3
    max_upload_mb: int = 10
    attach_max_mb: float = 5.0  # one image attached to a message
    attach_max_count: int = 4  # images and links attached to one message
    max_message_chars: int = 100_000  # one message or system prompt
    env: str = "development"
    log_level: str = "INFO"
    tools_modules: tuple[str, ...] = ()  # extra tool modules (dotted names or .py paths)
    default_tools: str = "none"  # tools a new conversation offers: none | all | a,b
    tool_timeout_s: float = 30.0
    tool_max_rounds: int = 8
    tool_max_result_chars: int = 20_000
    tool_approval_timeout_s: float = 600.0
    max_runs_per_user: int = 4  # answers one user may have streaming at once
    max_runs: int = 500  # answers streaming at once on this server
    run_unwatched_timeout_s: float = 600.0  # an answer nobody watches is stopped after this
    shutdown_grace_s: float = 30.0  # on SIGTERM, streaming answers get this long to finish
    # REDIS_URL: several Parley processes share run slots, run ownership and Stop through it
    # (webapp/app/redis_cluster.py); empty: one process, everything in its memory.
    redis_url: str = field(default="", repr=False)  # may hold a password
    run_lease_s: float = 15.0  # a process silent this long is dead: its answers are interrupted
    gradio_tuning_off: tuple[str, ...] = ()  # GRADIO_TUNING_OFF: patches left out, or "all"
    http_get_allowed_hosts: tuple[str, ...] = ()  # http_get is off unless hosts are listed
    auth_mode: str = "none"  # none | accounts | header
    auth_header: str = "X-Forwarded-User"  # header mode: the header the proxy sets
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")  # who may set that header
    share_requires_login: bool = True
    metrics_allowed: tuple[str, ...] = PRIVATE_NETWORKS  # who may read /metrics
    login_max_failures: int = 5  # failed sign-ins per user name (and per address) ...
    login_lockout_s: float = 300.0  # ... before sign-in is refused for this long
    mcp_servers_file: str = (
        ""  # MCP_SERVERS_FILE: {"mcpServers": {...}} (webapp/tools/mcp_config.py)
    )
    mcp_servers: tuple[McpServerConfig, ...] = ()  # read from it, ${VAR} replaced
    mcp_start_timeout_s: float = 10.0  # one server's connect + initialize + tools/list

    def provider(self, name: str) -> ProviderConfig:
        for provider in self.providers:
            if provider.name == name:
                return provider
        known = ", ".join(p.name for p in self.providers)
        raise ConfigError(f"Unknown provider {name!r}; configured providers: {known}")

    @property
    def default_provider_config(self) -> ProviderConfig:
        return self.provider(self.default_provider)

    def default_model_for(self, provider_name: str) -> str:
        """The model a request that names none uses on this provider: DEFAULT_MODEL on the
        default provider, else the provider's own default (may be "": the user must pick)."""
        provider = self.provider(provider_name)
        if provider.name == self.default_provider and self.default_model:
            return self.default_model
        return provider.default_model


def _int(values: Mapping[str, str], name: str, default: int) -> int:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number: fix it in .env") from None


def _float(values: Mapping[str, str], name: str, default: float) -> float:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: fix it in .env") from None


def _url(values: Mapping[str, str], name: str, default: str) -> str:
    url = values.get(name, "").strip() or default
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={url!r} must start with http:// or https://: fix it in .env")
    return url.rstrip("/")


def _builtin_providers(values: Mapping[str, str]) -> list[ProviderConfig]:
    return [
        ProviderConfig(
            name="siliconflow",
            label="SiliconFlow",
            base_url=_url(values, "SILICONFLOW_BASE_URL", "https://api.siliconflow.cn/v1"),
            key_env="SILICONFLOW_API_KEY",
            api_key=Secret(values.get("SILICONFLOW_API_KEY", "").strip()),
            kind="siliconflow",
            models_params=(("type", "text"), ("sub_type", "chat")),
            catalog=SILICONFLOW_CATALOG,
            default_model="Qwen/Qwen3-32B",
        ),
        ProviderConfig(
            name="jiekou",
            label="jiekou.ai",
            base_url=_url(values, "JIEKOU_BASE_URL", "https://api.jiekou.ai/openai/v1"),
            key_env="JIEKOU_API_KEY",
            api_key=Secret(values.get("JIEKOU_API_KEY", "").strip()),
            kind="jiekou",
            requires_max_tokens=True,
            catalog=JIEKOU_CATALOG,
            default_model="deepseek/deepseek-v3.2",
        ),
    ]


def _extra_providers(values: Mapping[str, str]) -> list[ProviderConfig]:
    names = [n.strip().lower() for n in values.get("EXTRA_PROVIDERS", "").split(",") if n.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"EXTRA_PROVIDERS names {', '.join(duplicates)} more than once: "
            "list each provider once in .env"
        )
    extras = []
    for name in names:
        if not _NAME_RE.match(name) or name in ("siliconflow", "jiekou"):
            raise ConfigError(
                f"EXTRA_PROVIDERS names {name!r}: use lowercase letters, digits and _, "
                "and not a built-in provider's name"
            )
        prefix = name.upper()
        if not values.get(f"{prefix}_BASE_URL", "").strip():
            raise ConfigError(
                f"EXTRA_PROVIDERS lists {name!r} but {prefix}_BASE_URL is not set: "
                f"add {prefix}_BASE_URL=http://host:port/v1 to .env"
            )
        catalog = tuple(
            m.strip() for m in values.get(f"{prefix}_MODELS", "").split(",") if m.strip()
        )
        extras.append(
            ProviderConfig(
                name=name,
                label=values.get(f"{prefix}_LABEL", "").strip() or name,
                base_url=_url(values, f"{prefix}_BASE_URL", ""),
                key_env=f"{prefix}_API_KEY",
                api_key=Secret(values.get(f"{prefix}_API_KEY", "").strip()),
                kind="openai",
                catalog=catalog,
                default_model=catalog[0] if catalog else "",
            )
        )
    return extras


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
) -> Settings:
    """Merge `.env` (if present) under the environment and build a frozen Settings.

    Long: one line or two per setting, in the order .env.example documents them."""
    values: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    providers = _builtin_providers(values) + _extra_providers(values)
    names = [p.name for p in providers]
    default_provider = values.get("DEFAULT_PROVIDER", "").strip().lower()
    if default_provider and default_provider not in names:
        raise ConfigError(
            f"DEFAULT_PROVIDER={default_provider!r} is not one of {', '.join(names)}: "
            "fix it in .env"
        )
    if not default_provider:
        # The first provider with a key, else the first one configured.
        keyed = [p.name for p in providers if p.api_key]
        default_provider = keyed[0] if keyed else names[0]

    max_upload_mb = _int(values, "MAX_UPLOAD_MB", 10)
    attach_max_mb = _positive(values, "ATTACH_MAX_MB", 5.0)
    if attach_max_mb > max_upload_mb:
        raise ConfigError(
            f"ATTACH_MAX_MB={attach_max_mb:g} is more than MAX_UPLOAD_MB="
            f"{max_upload_mb}, the largest upload accepted: lower it or raise "
            "MAX_UPLOAD_MB in .env"
        )
    env = values.get("ENV", "development").strip().lower() or "development"
    port = _int(values, "PORT", 7860)
    if not 0 < port < 65536:
        raise ConfigError(f"PORT={port} is out of range 1–65535: fix it in .env")
    host = values.get("HOST", "").strip() or "127.0.0.1"
    return Settings(
        host=host,
        port=port,
        allowed_hosts=_allowed_hosts(values, host),
        database_url=values.get("DATABASE_URL", "").strip() or "sqlite:///./data/parley.db",
        providers=tuple(providers),
        default_provider=default_provider,
        default_model=values.get("DEFAULT_MODEL", "").strip(),
        capabilities_file=values.get("CAPABILITIES_FILE", "").strip(),
        prices_file=values.get("PRICES_FILE", "").strip(),
        connect_timeout_s=_float(values, "CONNECT_TIMEOUT", 10.0),
        read_timeout_s=_float(values, "READ_TIMEOUT", 120.0),
        max_retries=_int(values, "MAX_RETRIES", 3),
        max_upload_mb=max_upload_mb,
        attach_max_mb=attach_max_mb,
        attach_max_count=_bounded(values, "ATTACH_MAX_COUNT", 4, 1, 20),
        # At most storage.field_limits.TEXT_MAX, the longest text any field stores.
        max_message_chars=_bounded(values, "MAX_MESSAGE_CHARS", 100_000, 1, 10_000_000),
        env=env,
        log_level=values.get("LOG_LEVEL", "INFO").strip().upper() or "INFO",
        tools_modules=_list(values, "TOOLS_MODULES"),
        default_tools=values.get("DEFAULT_TOOLS", "").strip() or "none",
        tool_timeout_s=_positive(values, "TOOL_TIMEOUT", 30.0),
        tool_max_rounds=_bounded(values, "TOOL_MAX_ROUNDS", 8, 1, 100),
        tool_max_result_chars=_bounded(values, "TOOL_MAX_RESULT_CHARS", 20_000, 100, 10_000_000),
        tool_approval_timeout_s=_positive(values, "TOOL_APPROVAL_TIMEOUT", 600.0),
        max_runs_per_user=_bounded(values, "MAX_RUNS_PER_USER", 4, 1, 1000),
        max_runs=_bounded(values, "MAX_RUNS", 500, 1, 100_000),
        run_unwatched_timeout_s=_positive(values, "RUN_UNWATCHED_TIMEOUT", 600.0),
        redis_url=values.get("REDIS_URL", "").strip(),
        run_lease_s=_positive(values, "RUN_LEASE", 15.0),
        shutdown_grace_s=_positive(values, "SHUTDOWN_GRACE", 30.0),
        gradio_tuning_off=_list(values, "GRADIO_TUNING_OFF"),
        http_get_allowed_hosts=tuple(h.lower() for h in _list(values, "HTTP_GET_ALLOWED_HOSTS")),
        auth_mode=_choice(values, "AUTH_MODE", ("none", "accounts", "header")),
        auth_header=values.get("AUTH_HEADER", "").strip() or "X-Forwarded-User",
        trusted_proxies=_networks(values, "TRUSTED_PROXIES", ("127.0.0.1/32", "::1/128")),
        share_requires_login=_bool(values, "SHARE_REQUIRES_LOGIN", True),
        metrics_allowed=_networks(values, "METRICS_ALLOWED", PRIVATE_NETWORKS),
        login_max_failures=_bounded(values, "LOGIN_MAX_FAILURES", 5, 1, 1000),
        login_lockout_s=_positive(values, "LOGIN_LOCKOUT", 300.0),
        mcp_servers_file=values.get("MCP_SERVERS_FILE", "").strip(),
        mcp_servers=_mcp_servers(values),
        mcp_start_timeout_s=_positive(values, "MCP_START_TIMEOUT", 10.0),
    )


def _mcp_servers(values: Mapping[str, str]) -> tuple[McpServerConfig, ...]:
    """The servers of MCP_SERVERS_FILE; a bad file stops start-up like any bad setting."""
    path = values.get("MCP_SERVERS_FILE", "").strip()
    if not path:
        return ()
    try:
        return load_mcp_servers(path, values)
    except McpConfigError as exc:
        raise ConfigError(f"{exc}: fix the file, or unset MCP_SERVERS_FILE in .env") from None


_HOST_NAME = re.compile(
    r"(\*\.)?[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}"
    r"[a-z0-9_])?)*\.?"
)


def _allowed_hosts(values: Mapping[str, str], host: str) -> tuple[str, ...]:
    """ALLOWED_HOSTS, checked; unset, loopback names when HOST is loopback, else an error."""
    items = tuple(item.lower() for item in _list(values, "ALLOWED_HOSTS"))
    if not items:
        if not _loopback(host):
            raise ConfigError(
                f"HOST={host} serves other machines, so ALLOWED_HOSTS must list the names "
                "and addresses people use to reach Parley, e.g. ALLOWED_HOSTS=chat.example.com"
                " (without ports); requests for any other Host get 400. ALLOWED_HOSTS=* "
                "accepts every Host, which lets any web page reach Parley through DNS "
                "rebinding: fix it in .env"
            )
        bound = f"[{host}]" if ":" in host else host.lower()
        return LOOPBACK_HOSTS + (() if bound in LOOPBACK_HOSTS else (bound,))
    for item in items:
        if item != "*" and not _valid_host_pattern(item):
            raise ConfigError(
                f"ALLOWED_HOSTS entry {item!r} is not a host name: list names or addresses "
                "without scheme or port (chat.example.com, *.example.com, 10.0.0.5, [::1]), "
                "or * for any: fix it in .env"
            )
    return items


def _valid_host_pattern(item: str) -> bool:
    if item.startswith("[") and item.endswith("]"):
        try:
            return ipaddress.ip_address(item[1:-1]).version == 6
        except ValueError:
            return False
    return bool(_HOST_NAME.fullmatch(item))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (the server is reachable only from here)."""
    return _loopback(host)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _choice(values: Mapping[str, str], name: str, options: tuple[str, ...]) -> str:
    value = values.get(name, "").strip().lower() or options[0]
    if value not in options:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(options)}: fix it in .env")
    return value


def _bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    raw = values.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false: fix it in .env")


def _networks(values: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    items = _list(values, name) or default
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"{name} entry {item!r} is not an IP address or network (e.g. 10.0.0.0/8): "
                "fix it in .env"
            ) from None
    return items


def _list(values: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of non-empty, stripped items."""
    return tuple(item.strip() for item in values.get(name, "").split(",") if item.strip())


def _bounded(values: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    number = _int(values, name, default)
    if not low <= number <= high:
        raise ConfigError(f"{name}={number} is out of range {low}–{high}: fix it in .env")
    return number


def _positive(values: Mapping[str, str], name: str, default: float) -> float:
    number = _float(values, name, default)
    if not number > 0 or number == float("inf"):  # also refuses NaN
        raise ConfigError(f"{name}={number:g} must be more than 0: fix it in .env")
    return number
