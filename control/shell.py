"""``dhtctl shell``: the seed's interactive client, on top of the control plane.

One line per command, words as positional arguments (a bytes or map argument takes the rest of
the line), history kept in the state directory. Usage comes from the command table.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from typing import Any, Final

import typer

from control.cli_options import (
    Options,
    UsageFailure,
    control_endpoint,
    curve_keys,
    meta_arg,
    node_id_arg,
)
from control.client import ControlClient
from control.cluster_state import state_root
from control.commands import COMMANDS, ArgType, CommandSpec
from control.errors import ControlError, RemoteError
from control.render import render_result, short, to_json

HISTORY_FILE: Final = "dhtctl_history"
HISTORY_LINES: Final = 1000

SHELL_COMMANDS: Final = tuple(c for c in COMMANDS if c != "shutdown")


class Shell:
    """The seed's interactive client, on top of the control plane."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.client = ControlClient(
            control_endpoint(opts), timeout_s=opts.timeout, curve=curve_keys(opts)
        )
        self.node = opts.node_selector

    def call(self, cmd: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return self.client.request(cmd, args, node=self.node)

    def run(self) -> None:
        try:
            me = self.call("id", {})
            prompt = f"dht[{short(me.get('id'))}]> "
            history = _History()
            with history:
                for line in _read_lines(prompt):
                    if not self.execute(line):
                        break
        finally:
            self.client.close()

    def execute(self, line: str) -> bool:
        """Run one line; False to leave the shell."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            typer.echo(f"error: {exc}")
            return True
        if not words:
            return True
        cmd, rest = words[0], words[1:]
        if cmd in ("quit", "exit"):
            return False
        if cmd == "help":
            typer.echo(self.help_text())
            return True
        spec = COMMANDS.get(cmd)
        if spec is None or cmd not in SHELL_COMMANDS:
            typer.echo(f"error: unknown command {cmd!r} (try 'help')")
            return True
        try:
            args = _shell_args(spec, rest)
            result = self.call(cmd, args)
        except (UsageFailure, ControlError) as exc:
            message = exc.message if isinstance(exc, RemoteError) else str(exc)
            typer.echo(f"error: {message}")
            return True
        typer.echo(to_json(result) if self.opts.json else render_result(cmd, result))
        return True

    @staticmethod
    def help_text() -> str:
        lines = []
        for name in SHELL_COMMANDS:
            spec = COMMANDS[name]
            usage = " ".join(
                a.name.upper() if a.required else f"[{a.name.upper()}]" for a in spec.args
            )
            lines.append(f"  {(name + ' ' + usage).strip():<28} {spec.help}")
        lines.append(f"  {'quit | exit':<28} leave the shell")
        return "commands:\n" + "\n".join(lines)


def _shell_args(spec: CommandSpec, words: list[str]) -> dict[str, Any]:
    """Positional words -> arguments; a bytes argument takes the rest of the line."""
    args: dict[str, Any] = {}
    rest = list(words)
    for arg in spec.args:
        if not rest:
            if arg.required:
                raise UsageFailure(f"usage: {spec.name} " + " ".join(a.name for a in spec.args))
            break
        if arg.type is ArgType.BYTES:
            args[arg.name] = " ".join(rest).encode("utf-8")
            rest = []
        elif arg.type is ArgType.NODE_ID:
            args[arg.name] = node_id_arg(rest.pop(0))
        elif arg.type in (ArgType.PORT, ArgType.UINT):
            word = rest.pop(0)
            try:
                args[arg.name] = int(word)
            except ValueError:
                raise UsageFailure(f"{arg.name} must be a number, got {word!r}") from None
        elif arg.type is ArgType.MAP:
            args[arg.name] = meta_arg(" ".join(rest))
            rest = []
        else:
            args[arg.name] = rest.pop(0)
    if rest:
        raise UsageFailure(f"too many arguments for {spec.name}")
    return args


def _read_lines(prompt: str) -> Iterator[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            typer.echo("")
            return
        except KeyboardInterrupt:
            typer.echo("")


class _History:
    """readline history in the state dir; silently absent without readline or a writable dir."""

    def __init__(self) -> None:
        self.path = state_root() / HISTORY_FILE
        try:
            import readline
        except ImportError:
            self.readline: Any = None
        else:
            self.readline = readline

    def __enter__(self) -> _History:
        if self.readline is not None:
            try:
                self.readline.read_history_file(str(self.path))
            except OSError:
                pass
            self.readline.set_history_length(HISTORY_LINES)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.readline is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(str(self.path))
        except OSError:
            pass
