"""The provider error tree and the one function that maps an HTTP status to it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

DETAIL_LIMIT = 500


class ProviderError(Exception):
    """A failure talking to an OpenAI-compatible provider; wording is left to the UI."""

    kind = "provider_error"
    default_retryable = False

    def __init__(
        self,
        provider: str = "",
        key_env: str = "",
        *,
        status: int | None = None,
        detail: str = "",
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.provider = provider  # the provider's label, e.g. "SiliconFlow"
        self.key_env = key_env  # e.g. "SILICONFLOW_API_KEY"
        self.status = status
        self.detail = detail[:DETAIL_LIMIT]
        self.retryable = self.default_retryable if retryable is None else retryable
        # At most this many retries for this error, below the policy's own limit (None: the
        # policy decides). A 500 and a silent stream are tried again once, not four times.
        self.max_retries: int | None = None
        self.retry_after_s = retry_after_s  # from a Retry-After header, when one came
        self.attempts = 1  # how many requests were made before giving up
        self.timeout_s: float | None = None  # the read timeout (READ_TIMEOUT) that ran out
        super().__init__(self._summary())

    def _summary(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.provider or 'provider'} {self.kind}{status}{detail}"

    def __str__(self) -> str:
        return self._summary()


class BadRequest(ProviderError):
    """400/422: the provider refused the request's content or parameters."""

    kind = "bad_request"


class AuthenticationError(ProviderError):
    """401: the API key is missing or wrong."""

    kind = "authentication"


class PermissionDenied(ProviderError):
    """403: the account may not use this (unverified, out of balance, model not allowed)."""

    kind = "permission_denied"


class NotFoundError(ProviderError):
    """404: wrong base URL, path or model."""

    kind = "not_found"


class RateLimited(ProviderError):
    """429: too many requests or tokens per minute."""

    kind = "rate_limited"
    default_retryable = True


class ServerError(ProviderError):
    """500: the provider failed on this request. Often deterministic (a schema it cannot handle),
    so it is retried once at most, and not at all when its message names a request problem."""

    kind = "server_error"
    default_retryable = True


class ServerOverloaded(ProviderError):
    """502/503: the provider's gateway or model service is down or overloaded."""

    kind = "server_overloaded"
    default_retryable = True


class GatewayTimeout(ProviderError):
    """504: the provider's gateway gave up waiting for the model."""

    kind = "gateway_timeout"
    default_retryable = True


class RequestTimeout(ProviderError):
    """No response headers within the timeout (or HTTP 408)."""

    kind = "timeout"
    default_retryable = True


class ConnectionFailed(ProviderError):
    """The connection could not be made or broke before any response."""

    kind = "connection_failed"
    default_retryable = True


class StreamInterrupted(ProviderError):
    """The stream broke or went silent after it started; the partial answer is the caller's."""

    kind = "stream_interrupted"


class StreamTimeout(StreamInterrupted):
    """The stream started, then sent nothing for longer than the read timeout (READ_TIMEOUT)."""

    kind = "stream_timeout"


class UpstreamStreamError(ProviderError):
    """The provider sent an error object instead of (or in the middle of) the answer."""

    kind = "upstream_error"


class MalformedResponse(ProviderError):
    """The provider answered with something that is not an OpenAI-compatible response."""

    kind = "malformed_response"


_STATUS_CLASSES: dict[int, type[ProviderError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    408: RequestTimeout,
    422: BadRequest,
    429: RateLimited,
    500: ServerError,
    502: ServerOverloaded,
    503: ServerOverloaded,
    504: GatewayTimeout,
}


# Words a 500's message uses when the request itself is the problem (retrying cannot help).
_REQUEST_PROBLEM = re.compile(
    r"invalid|schema|parameter|param\b|validat|malformed|must be|required|unsupported|"
    r"not supported|bad request|unknown field|unrecognized|json|too long|exceed|context length",
    re.IGNORECASE,
)


def names_request_problem(detail: str) -> bool:
    """True when an error message blames the request (bad schema, parameter, length)."""
    return bool(_REQUEST_PROBLEM.search(detail))


def message_from_payload(payload: Any) -> str:
    """The human message inside a decoded error body, or "" when there is none."""
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error")
    if isinstance(error, dict):
        found = message_from_payload(error)
        if found:
            return found
    elif isinstance(error, str) and error:
        return error
    for key in ("message", "detail", "msg", "error_msg"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict | list) and value:
            return json.dumps(value, ensure_ascii=False)
    return ""


def extract_detail(body_text: str) -> str:
    """The provider's own message from an error body: JSON object, bare JSON string or text."""
    text = body_text.strip()
    if not text:
        return ""
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:DETAIL_LIMIT]
    message = message_from_payload(payload)
    return (message or text).strip()[:DETAIL_LIMIT]


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms", "").strip()
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(
    provider: str,
    status: int,
    body_text: str,
    headers: Mapping[str, str] | None = None,
    *,
    key_env: str = "",
) -> ProviderError:
    """Map a non-200 response to the error tree (the only place statuses are interpreted)."""
    cls = _STATUS_CLASSES.get(status)
    retryable: bool | None = None
    detail = extract_detail(body_text)
    if cls is None:
        cls = ProviderError
        retryable = False
    elif cls is ServerError and names_request_problem(detail):
        retryable = False
    error = cls(
        provider,
        key_env,
        status=status,
        detail=detail,
        retryable=retryable,
        retry_after_s=parse_retry_after(headers),
    )
    if cls is ServerError:
        error.max_retries = 1
    return error
