"""The one CLI toolkit every entry point uses (``dht-node``, ``dht-signaling``, ``orchestrate.py``,
``python -m supervisor``, the simulator): typer apps with one ``--help`` style, shared value
parsers, and one way to fail.

Rules every entry point follows:

- ``make_app(name, help)`` builds the app: ``-h``/``--help``, no shell-completion options, no
  rich boxes, no pretty tracebacks.
- Values are checked by the parsers below, passed as ``typer.Option(parser=...)``. A parser takes
  the raw text (or the default, which may already be typed) and raises ``typer.BadParameter``
  with a short reason; typer names the option in front of it.
- ``run(app, argv, prog)`` runs the app and returns the exit code: 0 ok, whatever the command
  returns or raises as ``typer.Exit``, and 2 for a usage error, printed as ONE line on stderr
  (``prog: error: Invalid value for '--peers': must be a positive integer, got '0'``).
  ``usage_error(message)`` raises the same from inside a command.

This module imports typer and the standard library only (never ``control``, ``signaling`` or
``supervisor``) so that every package may use it.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NoReturn, TypeVar

import typer

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_PORT: Final = 65535
CLUSTER_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENDPOINT_RE: Final = re.compile(
    r"^tcp://(?:[^\s:/\[\]]+|\[[0-9A-Fa-f:.]+\]):(\d+|\*)$|^(?:ipc|inproc)://\S+$"
)

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)
Parser = Callable[[Any], _T]


class UsageFailure(typer.BadParameter):
    """A usage error found outside typer's own parsing (exit 2, one line)."""

    def format_message(self) -> str:
        return self.message


def make_app(name: str, help: str | None, *, epilog: str | None = None) -> typer.Typer:
    """A typer app in the project's one style (see the module docstring)."""
    return typer.Typer(
        name=name,
        help=help,
        epilog=epilog,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )


def usage_error(message: str) -> NoReturn:
    """Stop the command as a usage error: ``run`` prints ``prog: error: message``, exit 2."""
    raise UsageFailure(message)


def run(app: typer.Typer, argv: Sequence[str] | None = None, *, prog: str) -> int:
    """Run ``app`` on ``argv`` (default ``sys.argv[1:]``); return the exit code, never raise
    ``SystemExit``. Usage errors print one line on stderr and return 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name=prog, standalone_mode=False)
    except typer.TyperException as exc:  # click's ClickException/UsageError family
        print(f"{prog}: error: {_one_line(exc.format_message())}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_FAILED))
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else EXIT_OK


def _one_line(message: str) -> str:
    return " ".join(message.split())


# -- parsers ------------------------------------------------------------------------------------


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise typer.BadParameter(f"must be a positive integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise typer.BadParameter(f"must be a positive integer, got {value!r}") from None


def int_range(lo: int, hi: int | None = None, *, what: str = "an integer") -> Parser[int]:
    """A parser for an integer in ``lo..hi`` (``hi`` None: no upper bound)."""

    def parse(value: Any) -> int:
        try:
            number = _as_int(value)
        except typer.BadParameter:
            raise typer.BadParameter(f"must be {what}, got {value!r}") from None
        if number < lo:
            raise typer.BadParameter(f"must be {what}, got {number}")
        if hi is not None and number > hi:
            bound = "" if str(hi) in what else f" (at most {hi})"
            raise typer.BadParameter(f"must be {what}{bound}, got {number}")
        return number

    return parse


_positive_int: Final = int_range(1, what="a positive integer")
_port: Final = int_range(0, MAX_PORT, what="a port number (an integer in 0..65535)")


def positive_int(value: Any) -> int:
    """An integer >= 1."""
    return _positive_int(value)


def peer_count(max_peers: int) -> Parser[int]:
    """A peer count or peer index: 1..``max_peers``."""
    return int_range(1, max_peers, what="a positive integer")


def port(value: Any) -> int:
    """A TCP/UDP port, 0 (any) included."""
    return _port(value)


def optional_port(value: Any) -> int | None:
    """A port, or None for an empty value (an unset environment variable)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return port(value)


def positive_float(value: Any) -> float:
    """A number > 0."""
    number = _as_float(value, "a positive number")
    if not number > 0:
        raise typer.BadParameter(f"must be a positive number, got {number}")
    return number


def non_negative_float(value: Any) -> float:
    """A finite number >= 0."""
    number = _as_float(value, "a number >= 0")
    if not 0.0 <= number < float("inf"):
        raise typer.BadParameter(f"must be a number >= 0, got {number}")
    return number


def fraction(value: Any) -> float:
    """A number in [0, 1)."""
    number = _as_float(value, "a number in [0, 1)")
    if not 0.0 <= number < 1.0:
        raise typer.BadParameter(f"must be a number in [0, 1), got {number}")
    return number


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise typer.BadParameter(f"must be {what}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"must be {what}, got {value!r}") from None


def one_of(choices: Sequence[str]) -> Parser[str]:
    """One of ``choices`` (case-insensitive; returned as listed)."""
    by_key = {c.lower(): c for c in choices}

    def parse(value: Any) -> str:
        found = by_key.get(str(value).strip().lower())
        if found is None:
            raise typer.BadParameter(f"must be one of {', '.join(choices)}, got {value!r}")
        return found

    return parse


def enum_of(kind: type[_E]) -> Parser[_E]:
    """A member of the enum ``kind``, named by its value (case-insensitive)."""
    by_key = {str(m.value).lower(): m for m in kind}
    names = ", ".join(str(m.value) for m in kind)

    def parse(value: Any) -> _E:
        if isinstance(value, kind):
            return value
        found = by_key.get(str(value).strip().lower())
        if found is None:
            raise typer.BadParameter(f"must be one of {names}, got {value!r}")
        return found

    return parse


def log_level(value: Any) -> str:
    """A logging level name, case-insensitive; returned upper-case."""
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"log level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def cluster_name(value: Any) -> str:
    """A cluster name: letters, digits, '.', '_', '-'; at most 63; used in paths and labels."""
    name = str(value)
    if not CLUSTER_NAME_RE.match(name):
        raise typer.BadParameter(
            f"invalid cluster name {name!r}: use letters, digits, '.', '_' or '-' (max 63)"
        )
    return name


def endpoint(value: Any) -> str:
    """A ZeroMQ endpoint: ``tcp://HOST:PORT`` (port or ``*``), ``ipc://…`` or ``inproc://…``."""
    text = str(value).strip()
    match = ENDPOINT_RE.match(text)
    if match is None:
        raise typer.BadParameter(f"not an endpoint (tcp://HOST:PORT): {text!r}")
    number = match.group(1)
    if number is not None and number != "*" and int(number) > MAX_PORT:
        raise typer.BadParameter(f"port out of range in {text!r}")
    return text


def from_env(env: Mapping[str, str], names: Sequence[str], parse: Parser[_T]) -> _T | None:
    """The first non-blank environment variable of ``names`` parsed by ``parse``; None when
    all are unset. A bad value is a usage error naming the variable."""
    for name in names:
        raw = env.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            return parse(raw)
        except typer.BadParameter as exc:
            raise UsageFailure(f"{name}: {exc.message}") from None
    return None
