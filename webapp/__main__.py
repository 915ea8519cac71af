"""`python -m webapp`: read settings, build Parley, serve it."""

from __future__ import annotations

import logging
import sys

from webapp.capabilities import CapabilityFileError
from webapp.config import ConfigError, load_settings
from webapp.server import build, launch_kwargs


def main() -> int:
    if sys.argv[1:2] == ["users"]:
        from webapp.cli import main as users

        return users(sys.argv[2:])
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"Parley cannot start: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; keep the log to our own lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        app = build(settings)
    except (CapabilityFileError, ConfigError) as exc:
        print(f"Parley cannot start: {exc}", file=sys.stderr)
        return 2
    if not any(p.api_key for p in settings.providers):
        logging.getLogger("webapp").warning(
            "no API key configured: set SILICONFLOW_API_KEY or JIEKOU_API_KEY in .env, or paste "
            "a key in the page (kept for that browser session only)")
    app.demo.launch(**launch_kwargs(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
