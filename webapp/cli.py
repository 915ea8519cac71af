"""`python -m webapp users ...`: manage accounts from the command line (no server needed)."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from sqlmodel import Session

from storage import accounts, api_keys
from storage.db import make_engine, migrate, session_factory, unit_of_work
from webapp.app.auth import hash_password
from webapp.config import load_settings

PasswordSource = Callable[[str], str]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m webapp users", description="Manage Parley accounts (AUTH_MODE=accounts)."
    )
    sub = top.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create an account (asks for the password)")
    add.add_argument("username")
    add.add_argument("--admin", action="store_true", help="may see usage and set limits")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    sub.add_parser("list", help="list users, their role, state and limits")
    for name, text in (("disable", "refuse sign-in and every request"), ("enable", "allow again")):
        item = sub.add_parser(name, help=text)
        item.add_argument("username")
    reset = sub.add_parser("reset", help="set a new password")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true")
    admin = sub.add_parser("admin", help="grant or revoke admin")
    admin.add_argument("username")
    admin.add_argument("--revoke", action="store_true")
    limits = sub.add_parser("limits", help="set per-user limits (0 removes a limit)")
    limits.add_argument("username")
    limits.add_argument("--rpm", type=int, help="requests per minute")
    limits.add_argument("--tokens-per-day", type=int, help="tokens per UTC day")
    key = sub.add_parser("key", help="make an API key for the /v1 API (printed once)")
    key.add_argument("username")
    key.add_argument("--name", default="command line", help="what the key is for")
    keys = sub.add_parser("keys", help="list a user's API keys")
    keys.add_argument("username")
    revoke = sub.add_parser("revoke-key", help="revoke one of a user's API keys")
    revoke.add_argument("username")
    revoke.add_argument("key_id")
    return top


def _password(args: argparse.Namespace, stdin: TextIO, ask: PasswordSource) -> str:
    if args.password_stdin:
        return stdin.readline().rstrip("\r\n")
    first = ask(f"Password for {args.username}: ")
    if ask("Repeat it: ") != first:
        raise accounts.AccountError("The passwords differ; nothing was changed.")
    return first


def _limit(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise accounts.AccountError("Limits are whole numbers ≥ 0 (0 removes the limit).")
    return value or None


def _key_commands(args: argparse.Namespace, session: Session, out: TextIO) -> None:
    """key, keys and revoke-key: the user must exist (sign-in or SSO made them)."""
    user = accounts.require_user(session=session, username=args.username)
    assert user.id is not None
    if args.command == "key":
        try:
            _, secret = api_keys.create_key(session=session, user_id=user.id, name=args.name)
        except (api_keys.KeyRefused, ValueError) as exc:
            raise accounts.AccountError(str(exc)) from None
        print(secret, file=out)
    elif args.command == "keys":
        for row in api_keys.list_keys(session=session, user_id=user.id):
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never used"
            print(
                f"{row.id}\t{row.name}\t{row.prefix}…\t{row.created_at:%Y-%m-%d}\t{used}", file=out
            )
    elif not api_keys.revoke_key(session=session, user_id=user.id, key_id=args.key_id):
        raise accounts.AccountError(f"{args.username} has no key {args.key_id}.")
    else:
        print(f"Revoked key {args.key_id} of {args.username}.", file=out)


def run(
    args: argparse.Namespace, session: Session, out: TextIO, stdin: TextIO, ask: PasswordSource
) -> None:
    """Carry out one command in one session."""
    if args.command in ("key", "keys", "revoke-key"):
        _key_commands(args, session, out)
    elif args.command == "add":
        password = _password(args, stdin, ask)
        accounts.create_account(
            session=session,
            username=args.username,
            password_hash=hash_password(password),
            is_admin=args.admin,
        )
        print(f"Created {'admin ' if args.admin else ''}{args.username}.", file=out)
    elif args.command == "list":
        for user in accounts.list_users(session=session):
            flags = [
                "admin" if user.is_admin else "user",
                "disabled" if user.disabled else "enabled",
                "password" if user.password_hash else "no password",
            ]
            if user.rpm_limit:
                flags.append(f"{user.rpm_limit} req/min")
            if user.daily_token_limit:
                flags.append(f"{user.daily_token_limit:,} tokens/day")
            print(f"{user.username}\t{', '.join(flags)}", file=out)
    elif args.command in ("disable", "enable"):
        accounts.update_account(
            session=session, username=args.username, disabled=args.command == "disable"
        )
        print(f"{args.username} is now {args.command}d.", file=out)
    elif args.command == "reset":
        password = _password(args, stdin, ask)
        accounts.update_account(
            session=session, username=args.username, password_hash=hash_password(password)
        )
        print(f"New password set for {args.username}.", file=out)
    elif args.command == "admin":
        accounts.update_account(session=session, username=args.username, is_admin=not args.revoke)
        print(f"{args.username} is {'no longer' if args.revoke else 'now'} an admin.", file=out)
    elif args.command == "limits":
        changes = {}
        if args.rpm is not None:
            changes["rpm_limit"] = _limit(args.rpm)
        if args.tokens_per_day is not None:
            changes["daily_token_limit"] = _limit(args.tokens_per_day)
        if not changes:
            raise accounts.AccountError("Give --rpm and/or --tokens-per-day.")
        accounts.update_account(session=session, username=args.username, **changes)
        print(f"Limits updated for {args.username}.", file=out)


def main(
    argv: Sequence[str],
    out: TextIO = sys.stdout,
    stdin: TextIO = sys.stdin,
    ask: PasswordSource = getpass.getpass,
) -> int:
    """Entry point for `python -m webapp users ...`; returns the exit status."""
    args = parser().parse_args(list(argv))
    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        with unit_of_work(session_factory(engine)) as session:
            run(args, session, out, stdin, ask)
    except accounts.AccountError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if settings.auth_mode != "accounts" and args.command in ("add", "reset"):
        print(
            f"Note: AUTH_MODE is {settings.auth_mode!r}; set AUTH_MODE=accounts in .env for "
            "passwords to be asked.",
            file=out,
        )
    return 0
