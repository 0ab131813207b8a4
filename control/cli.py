"""``dhtctl``: drive DHT nodes over the control plane.

Where commands go (first match wins):
  --endpoint URL  >  $DHTCTL_ENDPOINT  >  front_endpoint of $DHT_STATE_DIR/<cluster>/cluster.json
  >  tcp://127.0.0.1:5555.
The supervisor front endpoint routes by ``--node N`` (or ``--node all``); without ``--node`` it
sends the command to node 1. Events: (watch --endpoint | lookup --follow --events) >
$DHTCTL_EVENTS > event_endpoint of cluster.json > tcp://127.0.0.1:5556.

Output: tables on stdout, ``--json`` for one JSON document (JSON Lines for streams), one error
line on stderr. Exit codes: 0 ok, 1 command failed, 2 usage, 3 unreachable/timeout, 130 Ctrl-C.

Import cost matters (``dhtctl get`` should start fast): only typer, zmq and msgpack are loaded;
never the node runtime, aiortc or docker.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, TypeVar

import typer

from control.client import ControlClient, EventSubscriber
from control.errors import ControlError, ProtocolError, RemoteError, Timeout, Unreachable
from control.render import format_event, render_result, short, to_json
from control.schema import COMMANDS, ArgType, CommandSpec, is_node_id_hex

DEFAULT_CONTROL_ENDPOINT: Final = "tcp://127.0.0.1:5555"
DEFAULT_EVENTS_ENDPOINT: Final = "tcp://127.0.0.1:5556"
DEFAULT_STATE_DIR: Final = "~/.local/state/webrtc-dht"
DEFAULT_CLUSTER: Final = "default"
DEFAULT_TIMEOUT_S: Final = 10.0
HISTORY_FILE: Final = "dhtctl_history"
HISTORY_LINES: Final = 1000

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130

app = typer.Typer(
    name="dhtctl",
    help="Drive webrtc-dht nodes over their ZeroMQ control plane.\n\n"
    "Commands go to the supervisor of the current cluster (node 1 unless --node N or "
    "--node all), or to one node with --endpoint tcp://HOST:PORT.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cluster_app = typer.Typer(help="Cluster-wide commands (answered by the supervisor).")
app.add_typer(cluster_app, name="cluster")


class UsageFailure(Exception):
    """Bad input detected by dhtctl itself (exit 2)."""


@dataclass(frozen=True, slots=True)
class Options:
    node: str | None
    endpoint: str | None
    json: bool
    timeout: float
    debug: bool
    cluster: str | None

    @property
    def node_selector(self) -> int | str | None:
        if self.node is None:
            return None
        if self.node == "all":
            return "all"
        try:
            index = int(self.node)
        except ValueError:
            index = 0
        if index < 1:
            raise UsageFailure(f"--node must be a node index >= 1 or 'all', got {self.node!r}")
        return index


_P = inspect.Parameter
_COMMON: Final = [
    _P(
        "node",
        _P.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option("--node", "-n", help="node index (1..N) or 'all' (supervisor only)."),
        ],
    ),
    _P(
        "endpoint",
        _P.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option("--endpoint", "-e", help="control (or, for watch, events) endpoint."),
        ],
    ),
    _P(
        "json",
        _P.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option("--json", help="print JSON for scripts.")],
    ),
    _P(
        "timeout",
        _P.KEYWORD_ONLY,
        default=DEFAULT_TIMEOUT_S,
        annotation=Annotated[
            float, typer.Option("--timeout", min=0.01, help="seconds to wait for a reply.")
        ],
    ),
    _P(
        "debug",
        _P.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option("--debug", help="show tracebacks.")],
    ),
    _P(
        "cluster",
        _P.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None, typer.Option("--cluster", help="cluster name (default: 'default').")
        ],
    ),
]

F = TypeVar("F", bound=Callable[..., None])


def _global_options(ctx: typer.Context) -> dict[str, Any]:
    """The common options given before the command name (stored by ``_app_callback``)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, dict) else {}


def _app_callback(ctx: typer.Context, **kwargs: Any) -> None:
    ctx.obj = {k: v for k, v in kwargs.items() if v != _DEFAULTS[k]}


_DEFAULTS: Final = {p.name: p.default for p in _COMMON}
_app_callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_P("ctx", _P.POSITIONAL_OR_KEYWORD, annotation=typer.Context), *_COMMON]
)
_app_callback.__annotations__ = {"ctx": typer.Context, **{p.name: p.annotation for p in _COMMON}}
app.callback()(_app_callback)


def _command(target: typer.Typer, name: str, help_text: str) -> Callable[[F], F]:
    """Register ``fn(opts, ...)`` with the common options appended to its own parameters."""

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "opts"]
        ctx_param = _P("ctx", _P.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        params = [ctx_param, *own, *_COMMON]

        def callback(ctx: typer.Context, **kwargs: Any) -> None:
            given = _global_options(ctx)
            common = {}
            for p in _COMMON:
                value = kwargs.pop(p.name)
                # An option after the command wins; one before it (``dhtctl --node 7 get k``)
                # fills in what the command line after the command left at its default.
                common[p.name] = value if value != p.default else given.get(p.name, value)
            opts = Options(**common)
            _run(opts, lambda: fn(opts, **kwargs))

        callback.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        callback.__annotations__ = {p.name: p.annotation for p in params}
        callback.__name__ = fn.__name__
        callback.__doc__ = help_text
        target.command(name, help=help_text)(callback)
        return fn

    return decorate


def _fail(opts: Options, code: int, message: str) -> NoReturn:
    if opts.debug:
        traceback.print_exc()
    typer.echo(f"dhtctl: {message}", err=True)
    raise typer.Exit(code)


def _run(opts: Options, body: Callable[[], None]) -> None:
    try:
        body()
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RemoteError as exc:
        if opts.json:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.details is not None:
                error["details"] = exc.details
            typer.echo(to_json({"error": error}))
        _fail(opts, EXIT_FAILED, exc.message)
    except (Unreachable, Timeout) as exc:
        _fail(opts, EXIT_UNREACHABLE, str(exc))
    except ProtocolError as exc:
        _fail(opts, EXIT_FAILED, f"bad reply: {exc}")
    except UsageFailure as exc:
        _fail(opts, EXIT_USAGE, str(exc))
    except typer.Exit:
        raise
    except BrokenPipeError:
        raise typer.Exit(EXIT_OK) from None
    except Exception as exc:
        _fail(opts, EXIT_FAILED, f"unexpected error: {type(exc).__name__}: {exc}")


# -- endpoints ---------------------------------------------------------------------------------


def state_dir() -> Path:
    return Path(os.environ.get("DHT_STATE_DIR") or DEFAULT_STATE_DIR).expanduser()


def _cluster_state(opts: Options) -> dict[str, Any] | None:
    name = opts.cluster or os.environ.get("DHTCTL_CLUSTER") or DEFAULT_CLUSTER
    path = state_dir() / name / "cluster.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if opts.cluster is not None:
            raise Unreachable(f"no cluster {name!r} ({path} does not exist)") from None
        return None
    except (OSError, ValueError) as exc:
        raise Unreachable(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else None


def _check_endpoint(endpoint: str) -> str:
    if "://" not in endpoint:
        raise UsageFailure(f"bad endpoint {endpoint!r} (expected e.g. tcp://127.0.0.1:7000)")
    return endpoint


def control_endpoint(opts: Options) -> str:
    if opts.endpoint:
        return _check_endpoint(opts.endpoint)
    if env := os.environ.get("DHTCTL_ENDPOINT"):
        return _check_endpoint(env)
    state = _cluster_state(opts)
    if state is not None and isinstance(state.get("front_endpoint"), str):
        return str(state["front_endpoint"])
    return DEFAULT_CONTROL_ENDPOINT


def events_endpoint(opts: Options, explicit: str | None) -> str:
    if explicit:
        return _check_endpoint(explicit)
    if env := os.environ.get("DHTCTL_EVENTS"):
        return _check_endpoint(env)
    state = _cluster_state(opts)
    if state is not None and isinstance(state.get("event_endpoint"), str):
        return str(state["event_endpoint"])
    return DEFAULT_EVENTS_ENDPOINT


# -- commands ----------------------------------------------------------------------------------


def _node_id_arg(text: str) -> str:
    if not is_node_id_hex(text):
        raise UsageFailure(f"bad node id {text!r}: expected 64 hex digits")
    return text.lower()


def _call(opts: Options, cmd: str, **args: Any) -> dict[str, Any]:
    selector = opts.node_selector
    with ControlClient(control_endpoint(opts), timeout_s=opts.timeout) as client:
        return client.request(cmd, args, node=selector)


def _show(opts: Options, cmd: str, result: Mapping[str, Any]) -> None:
    """Print a result; a ``--node all`` fan-out is printed per node and fails if any failed."""
    if opts.json:
        typer.echo(to_json(result))
    fanout = opts.node == "all" and isinstance(result.get("results"), Mapping)
    failed = []
    if fanout:
        for index, item in result["results"].items():
            if (
                isinstance(item, Mapping)
                and item.get("ok")
                and isinstance(item.get("result"), Mapping)
            ):
                if not opts.json:
                    typer.echo(f"== node {index} ==\n{render_result(cmd, item['result'])}")
            else:
                error = item.get("error", {}) if isinstance(item, Mapping) else {}
                failed.append(f"node {index}: {error.get('message', 'failed')}")
    elif not opts.json:
        typer.echo(render_result(cmd, result))
    if failed:
        for line in failed:
            typer.echo(f"dhtctl: {line}", err=True)
        raise typer.Exit(EXIT_FAILED)


def _simple(name: str) -> None:
    spec = COMMANDS[name]

    def run(opts: Options) -> None:
        _show(opts, name, _call(opts, name))

    run.__name__ = f"cmd_{name}"
    _command(app, name, spec.help)(run)


for _name in ("id", "peers", "rt", "dump", "stats", "topics", "shutdown", "help"):
    _simple(_name)

NodeIdArg = Annotated[str, typer.Argument(metavar="NODE_ID", help="64 hex digits")]


@_command(app, "ping", COMMANDS["ping"].help)
def cmd_ping(opts: Options, node_id: NodeIdArg) -> None:
    _show(opts, "ping", _call(opts, "ping", node_id=_node_id_arg(node_id)))


@_command(app, "find", COMMANDS["find"].help)
def cmd_find(opts: Options, node_id: NodeIdArg) -> None:
    _show(opts, "find", _call(opts, "find", node_id=_node_id_arg(node_id)))


@_command(app, "connect", COMMANDS["connect"].help)
def cmd_connect(opts: Options, node_id: NodeIdArg) -> None:
    _show(opts, "connect", _call(opts, "connect", node_id=_node_id_arg(node_id)))


@_command(app, "disconnect", COMMANDS["disconnect"].help)
def cmd_disconnect(opts: Options, node_id: NodeIdArg) -> None:
    _show(opts, "disconnect", _call(opts, "disconnect", node_id=_node_id_arg(node_id)))


@_command(app, "store", COMMANDS["store"].help + " (VALUE is stored as UTF-8)")
def cmd_store(
    opts: Options,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value: Annotated[str, typer.Argument(metavar="VALUE")],
) -> None:
    _show(opts, "store", _call(opts, "store", key=key, value=value.encode("utf-8")))


@_command(app, "get", COMMANDS["get"].help + " (prints the value; --json for details)")
def cmd_get(opts: Options, key: Annotated[str, typer.Argument(metavar="KEY")]) -> None:
    _show(opts, "get", _call(opts, "get", key=key))


def _meta(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise UsageFailure(f"--meta is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise UsageFailure("--meta must be a JSON object")
    return meta


TopicArg = Annotated[str, typer.Argument(metavar="TOPIC")]
PortOpt = Annotated[
    int | None, typer.Option("--port", "-p", min=0, max=65535, help="service port to advertise.")
]
MetaOpt = Annotated[str | None, typer.Option("--meta", help="JSON object to advertise.")]


@_command(app, "announce", COMMANDS["announce"].help)
def cmd_announce(
    opts: Options, topic: TopicArg, port: PortOpt = None, meta: MetaOpt = None
) -> None:
    _show(opts, "announce", _call(opts, "announce", topic=topic, port=port, meta=_meta(meta)))


@_command(app, "unannounce", COMMANDS["unannounce"].help)
def cmd_unannounce(opts: Options, topic: TopicArg) -> None:
    _show(opts, "unannounce", _call(opts, "unannounce", topic=topic))


@_command(app, "lookup", COMMANDS["lookup"].help + "; --follow joins and streams new peers")
def cmd_lookup(
    opts: Options,
    topic: TopicArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="join the topic and print peers as they appear.")
    ] = False,
    events: Annotated[
        str | None, typer.Option("--events", help="events endpoint for --follow.")
    ] = None,
) -> None:
    if not follow:
        _show(opts, "lookup", _call(opts, "lookup", topic=topic))
        return
    me = _call(opts, "id")["id"]
    with EventSubscriber(events_endpoint(opts, events), ["topic.peer"]) as sub:
        joined = _call(opts, "join", topic=topic, port=None, meta=None)
        if not opts.json:
            typer.echo(f"following {topic} ({short(joined.get('topic_id'))}), Ctrl-C to stop")
        for event_topic, payload in sub:
            if payload.get("topic") != topic or payload.get("node", me) != me:
                continue
            if opts.json:
                typer.echo(to_json({"topic": event_topic, "payload": payload}, indent=None))
            elif event_topic == "topic.peer":
                typer.echo(
                    f"+ {payload.get('peer')} port={payload.get('port')} "
                    f"meta={to_json(payload.get('meta'), indent=None)}"
                )
            else:
                typer.echo(f"- {payload.get('peer')} ({payload.get('reason')})")


@_command(app, "join", COMMANDS["join"].help)
def cmd_join(opts: Options, topic: TopicArg, port: PortOpt = None, meta: MetaOpt = None) -> None:
    _show(opts, "join", _call(opts, "join", topic=topic, port=port, meta=_meta(meta)))


@_command(app, "watch", "stream events, one line each (JSON Lines with --json)")
def cmd_watch(
    opts: Options,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="topic prefix to receive (repeatable; default all)."),
    ] = None,
) -> None:
    selector = opts.node_selector
    index = selector if isinstance(selector, int) else None
    with EventSubscriber(events_endpoint(opts, opts.endpoint), topic or None) as sub:
        for event_topic, payload in sub:
            if index is not None and payload.get("index") != index:
                continue
            if opts.json:
                line = to_json({"topic": event_topic, "payload": payload}, indent=None)
            else:
                line = format_event(event_topic, payload)
            typer.echo(line)
            sys.stdout.flush()


@_command(cluster_app, "status", "per-node state of the cluster (supervisor)")
def cmd_cluster_status(opts: Options) -> None:
    result = _call(opts, "cluster.status")
    _show(opts, "cluster.status", result)


@_command(app, "shell", "interactive shell attached to one node (quit/exit or Ctrl-D to leave)")
def cmd_shell(opts: Options) -> None:
    Shell(opts).run()


# -- shell -------------------------------------------------------------------------------------

SHELL_COMMANDS: Final = tuple(c for c in COMMANDS if c != "shutdown")


class Shell:
    """The seed's interactive client, on top of the control plane."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.client = ControlClient(control_endpoint(opts), timeout_s=opts.timeout)
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
            args[arg.name] = _node_id_arg(rest.pop(0))
        elif arg.type is ArgType.PORT:
            word = rest.pop(0)
            try:
                args[arg.name] = int(word)
            except ValueError:
                raise UsageFailure(f"{arg.name} must be a number, got {word!r}") from None
        elif arg.type is ArgType.MAP:
            args[arg.name] = _meta(" ".join(rest))
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
        self.path = state_dir() / HISTORY_FILE
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


def main() -> None:
    app(prog_name="dhtctl")


if __name__ == "__main__":
    main()
