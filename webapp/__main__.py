"""`python -m webapp`: read settings, build Parley, serve it (or `users ...`: manage accounts)."""

from __future__ import annotations

import logging
import sys

from webapp.config import ConfigError, Settings, load_settings
from webapp.core.capabilities import CapabilityFileError
from webapp.observability import configure_logging
from webapp.process_tuning import freeze_startup_objects, steady_malloc
from webapp.server import build
from webapp.web import create_app, serve

log = logging.getLogger("webapp")


def warn_about(settings: Settings) -> None:
    """Start-up warnings an operator should see."""
    if not any(p.api_key for p in settings.providers):
        log.warning(
            "no API key configured: set SILICONFLOW_API_KEY or JIEKOU_API_KEY in .env, "
            "or paste a key in the page (kept for that browser session only)"
        )
    if settings.auth_mode == "none" and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "AUTH_MODE=none while listening on %s: everyone who can reach this port "
            "shares one history. Set AUTH_MODE=accounts or header for a team.",
            settings.host,
        )


def main() -> int:
    if sys.argv[1:2] == ["users"]:
        from webapp.cli import main as users

        return users(sys.argv[2:])
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Parley cannot start: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_format=settings.env == "production")
    steady_malloc()
    try:
        app = build(settings)
    except (CapabilityFileError, ConfigError) as exc:
        print(f"Parley cannot start: {exc}", file=sys.stderr)
        return 2
    warn_about(settings)
    header_mode = settings.auth_mode == "header"
    web_app = create_app(app)
    freeze_startup_objects()
    # In header mode the peer address must stay the proxy's, so the header check can see it.
    serve(
        web_app,
        settings,
        proxy_headers=not header_mode,
        forwarded_allow_ips=",".join(settings.trusted_proxies),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
