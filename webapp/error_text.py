"""User-facing wording for provider errors: the cause and the fix, naming the provider.

Shared by the UI, the /chat API and the saved error of a failed answer (which is what the
user saw), so it lives outside webapp/ui.
"""

from __future__ import annotations

from webapp import provider as p


def describe_error(exc: p.ProviderError, *, partial: bool = False, retried: bool = True) -> str:
    """One or two sentences for the chat: what went wrong, and what to do about it.

    `retried` says whether the request went through the retry policy (chat requests do,
    model listing does not).
    """
    gave_up = " and retries did not get through" if retried else ""
    who = exc.provider
    status = f" ({exc.status})" if exc.status else ""
    detail = f" The provider said: “{exc.detail}”." if exc.detail else ""
    if isinstance(exc, p.AuthenticationError):
        text = f"{who} rejected the API key{status}: check {exc.key_env} in .env, or paste a key "
        text += "under Settings → API key."
    elif isinstance(exc, p.PermissionDenied):
        text = (
            f"{who} refused the request{status}: the account may be unverified or out of "
            f"balance; check it on the {who} console.{detail}"
        )
    elif isinstance(exc, p.NotFoundError):
        text = (
            f"{who} answered “not found”{status}: the base URL or path is wrong; check "
            f"{exc.key_env.replace('_API_KEY', '_BASE_URL')} in .env.{detail}"
        )
    elif isinstance(exc, p.BadRequest):
        text = (
            f"{who} refused the request{status}.{detail} Check the model id and the "
            "parameters under Settings."
        )
    elif isinstance(exc, p.RateLimited):
        text = (
            f"{who} is rate-limiting this key{status}{gave_up}; wait a minute and try "
            f"again, or lower the request rate.{detail}"
        )
    elif isinstance(exc, p.ServerError):
        said = f": “{exc.detail}”." if exc.detail else "."
        again = " A retry got the same answer." if exc.attempts > 1 else ""
        text = (
            f"{who} answered with a server error{status}{said}{again} If the request uses "
            "unusual parameters (such as response_format or tools), check them under "
            "Settings; otherwise try again later or pick another model."
        )
    elif isinstance(exc, p.ServerOverloaded):
        text = (
            f"{who}'s model service is overloaded{status}{gave_up}; try again shortly or "
            f"pick another model.{detail}"
        )
    elif isinstance(exc, p.GatewayTimeout):
        text = f"{who}'s gateway timed out{status}{gave_up}; try again, or pick a faster model."
    elif isinstance(exc, p.RequestTimeout) and exc.timeout_s is not None:
        text = (
            f"{who} did not answer within {exc.timeout_s:g} s (READ_TIMEOUT){gave_up}; "
            "check the network and try again, or raise READ_TIMEOUT in .env if this model "
            "is slow to start."
        )
    elif isinstance(exc, p.RequestTimeout):
        text = f"{who} did not answer in time; check the network or try again."
    elif isinstance(exc, p.ConnectionFailed):
        text = (
            f"Could not connect to {who}: check the network and "
            f"{exc.key_env.replace('_API_KEY', '_BASE_URL')} in .env."
        )
    elif isinstance(exc, p.StreamTimeout) and exc.timeout_s is not None:
        silence = (
            f"went silent for {exc.timeout_s:g} s in the middle of the answer"
            if partial
            else f"accepted the request but sent no answer for {exc.timeout_s:g} s"
        )
        again = ", on a second try too" if exc.attempts > 1 and not partial else ""
        text = (
            f"{who} {silence} (the READ_TIMEOUT limit){again}, so Parley stopped waiting. "
            "If this model often pauses that long (long prompts, reasoning models), raise "
            "READ_TIMEOUT in .env; otherwise try again."
        )
    elif isinstance(exc, p.StreamInterrupted):
        text = f"The connection to {who} broke while the answer was streaming."
    elif isinstance(exc, p.UpstreamStreamError):
        text = f"{who} reported an error in the middle of the answer.{detail}"
    else:
        text = f"{who} sent a response Parley could not read{status}.{detail}"
    if partial:
        text += " The partial answer above is kept; use Retry to try again."
    return text
