"""User-facing wording for errors, in the user's language: the one mapping, used at the edges.

Services store and pass errors as data (`webapp.provider.error_info.ErrorInfo`,
exceptions); the chat view, Compare, the exports and both APIs turn them into words here.
The English text is the key of the Chinese table (`webapp.i18n`); the provider's own message
is quoted as it came.
"""

from __future__ import annotations

from storage import repository as repo
from storage.db import StorageUnavailable
from webapp.app.turn_runs import TurnRefused
from webapp.core.params import ParamError
from webapp.i18n import t
from webapp.provider.catalog import ModelList
from webapp.provider.error_info import ErrorInfo, parse_error
from webapp.provider.errors import ProviderError

DATABASE_DOWN = (
    "The database is not answering right now, so nothing was saved; try again in "
    "a moment. (If it persists, an admin should check DATABASE_URL and /healthz.)"
)

GAVE_UP = " and retries did not get through"
PARTIAL_KEPT = " The partial answer above is kept; use Retry to try again."
PROVIDER_SAID = " The provider said: “{detail}”."
STATUS = " ({status})"

# kind → template. Placeholders: who, status, detail (the quoted provider message, or ""),
# gave_up, base_env, key_env.
TEMPLATES: dict[str, str] = {
    "authentication": (
        "{who} rejected the API key{status}: check {key_env} in .env, or paste a key under "
        "Settings → API key."
    ),
    "permission_denied": (
        "{who} refused the request{status}: the account may be unverified or out of balance; "
        "check it on the {who} console.{detail}"
    ),
    "not_found": (
        "{who} answered “not found”{status}: the base URL or path is wrong; check {base_env} "
        "in .env.{detail}"
    ),
    "bad_request": (
        "{who} refused the request{status}.{detail} Check the model id and the parameters "
        "under Settings."
    ),
    "rate_limited": (
        "{who} is rate-limiting this key{status}{gave_up}; wait a minute and try again, or "
        "lower the request rate.{detail}"
    ),
    "server_overloaded": (
        "{who}'s model service is overloaded{status}{gave_up}; try again shortly or pick "
        "another model.{detail}"
    ),
    "gateway_timeout": (
        "{who}'s gateway timed out{status}{gave_up}; try again, or pick a faster model."
    ),
    "connection_failed": "Could not connect to {who}: check the network and {base_env} in .env.",
    "stream_interrupted": "The connection to {who} broke while the answer was streaming.",
    "upstream_error": "{who} reported an error in the middle of the answer.{detail}",
    # Parley's own notes ({number}: the rounds, the choices asked for, the minutes)
    "tool_round_limit": (
        "Stopped after {number} rounds of tool calls (the limit, TOOL_MAX_ROUNDS): the last "
        "calls were not run. Ask the model to continue, or raise the limit in .env."
    ),
    "fewer_choices": (
        "The provider returned fewer choices than the {number} requested (n); it may not "
        "support n > 1."
    ),
    "unwatched": (
        "Stopped: nobody was watching this answer for {number} minutes (RUN_UNWATCHED_TIMEOUT). "
        "The partial answer is kept; use Retry to try again."
    ),
}
UNREADABLE = "{who} sent a response Parley could not read{status}.{detail}"
SERVER_ERROR = (
    "{who} answered with a server error{status}{said}{again} If the request uses unusual "
    "parameters (such as response_format or tools), check them under Settings; otherwise try "
    "again later or pick another model."
)
SERVER_SAID = ": “{detail}”."
SERVER_AGAIN = " A retry got the same answer."
TIMEOUT = (
    "{who} did not answer within {seconds} s (READ_TIMEOUT){gave_up}; check the network and "
    "try again, or raise READ_TIMEOUT in .env if this model is slow to start."
)
TIMEOUT_UNKNOWN = "{who} did not answer in time; check the network or try again."
SILENT_MIDWAY = (
    "{who} went silent for {seconds} s in the middle of the answer (the READ_TIMEOUT limit), "
    "so Parley stopped waiting. If this model often pauses that long (long prompts, reasoning "
    "models), raise READ_TIMEOUT in .env; otherwise try again."
)
SILENT_FROM_START = (
    "{who} accepted the request but sent no answer for {seconds} s (the READ_TIMEOUT "
    "limit){again}, so Parley stopped waiting. If this model often pauses that long (long "
    "prompts, reasoning models), raise READ_TIMEOUT in .env; otherwise try again."
)
SILENT_AGAIN = ", on a second try too"


def user_message(error: ErrorInfo | ProviderError | str | None, lang: str = "en") -> str:
    """What to tell the user about an error, in `lang`: the cause and the fix.

    `error` is the data (a record, or a provider error not yet recorded: sent through the retry
    policy, nothing shown yet), or the text stored in `messages.error` (a record's JSON, one
    of Parley's notes, or an older row's English text, shown as it is when no translation is
    known).
    """
    if isinstance(error, ProviderError):
        error = ErrorInfo.of(error)
    elif not isinstance(error, ErrorInfo):
        error = parse_error(error)
    if error is None:
        return ""
    if isinstance(error, str):
        return t(error, lang)
    text = _provider_text(error, lang)
    if error.partial:
        text += t(PARTIAL_KEPT, lang)
    return text


def _provider_text(error: ErrorInfo, lang: str) -> str:
    """The sentences for one provider error (without the note on a kept partial answer)."""
    fields = {
        "who": error.provider,
        "status": t(STATUS, lang).format(status=error.status) if error.status else "",
        "detail": t(PROVIDER_SAID, lang).format(detail=error.detail) if error.detail else "",
        "gave_up": t(GAVE_UP, lang) if error.retried else "",
        "key_env": error.key_env,
        "base_env": error.key_env.replace("_API_KEY", "_BASE_URL"),
        "seconds": f"{error.timeout_s:g}" if error.timeout_s is not None else "",
        "number": f"{error.number:g}" if error.number is not None else "",
    }
    kind = error.kind
    if kind == "server_error":
        said = t(SERVER_SAID, lang).format(detail=error.detail) if error.detail else t(".", lang)
        again = t(SERVER_AGAIN, lang) if error.attempts > 1 else ""
        return t(SERVER_ERROR, lang).format(**fields, said=said, again=again)
    if kind == "timeout":
        template = TIMEOUT if error.timeout_s is not None else TIMEOUT_UNKNOWN
        return t(template, lang).format(**fields)
    if kind == "stream_timeout" and error.timeout_s is not None:
        if error.partial:
            return t(SILENT_MIDWAY, lang).format(**fields)
        again = t(SILENT_AGAIN, lang) if error.attempts > 1 else ""
        return t(SILENT_FROM_START, lang).format(**fields, again=again)
    if kind == "stream_timeout":
        kind = "stream_interrupted"
    return t(TEMPLATES.get(kind, UNREADABLE), lang).format(**fields)


def refusal_message(exc: Exception, lang: str = "en") -> tuple[str, str]:
    """(title, message) for a request refused before anything was sent, in `lang`."""
    if isinstance(exc, ParamError):
        return t("Check the parameters", lang), "\n".join(exc.errors)
    if isinstance(exc, repo.NotFound | repo.InvalidId):
        return t("Not found", lang), t("That conversation does not exist or is not yours.", lang)
    if isinstance(exc, StorageUnavailable):
        return t("Database unavailable", lang), t(DATABASE_DOWN, lang)
    if isinstance(exc, TurnRefused):
        return t("Cannot send", lang), t(exc.template, lang).format(**exc.params)
    return t("Cannot send", lang), t(str(exc), lang)


def model_list_note(listing: ModelList, provider: str, lang: str = "en") -> str:
    """The note under the model list: how many came from `provider`, or why the fallback."""
    if listing.error is not None:
        return t("Could not list models, showing the built-in list. ", lang) + user_message(
            listing.error, lang
        )
    if listing.missing_key:
        return t(
            "No API key for {provider} yet: showing the built-in model list. You can also type "
            "a model id.",
            lang,
        ).format(provider=provider)
    return t("{count} models from {provider}.", lang).format(
        count=len(listing.models), provider=provider
    )
