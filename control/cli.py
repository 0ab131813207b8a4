"""``dhtctl``: drive DHT nodes over the control plane.

The node commands are generated from the command table (``control.commands``): one typer command
per ``NodeAPI`` method, its arguments and options from the argument types. Where commands go is
``control.cli_options``; the interactive shell is ``control.shell``.

Output: tables on stdout, ``--json`` for one JSON document (JSON Lines for streams), one error
line on stderr. Exit codes: 0 ok, 1 command failed, 2 usage, 3 unreachable/timeout, 130 Ctrl-C.

Import cost matters (``dhtctl get`` should start fast): only typer, zmq and msgpack are loaded;
never the node runtime, aiortc or docker.
"""

from __future__ import annotations

import inspect
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, NoReturn, TypeVar

import typer

from control.cli_input import hex_bytes, hex_key_address, read_value, text_key
from control.cli_options import (
    DEFAULT_TIMEOUT_S,
    Options,
    UsageFailure,
    control_endpoint,
    curve_keys,
    events_endpoint,
    meta_arg,
    node_id_arg,
)
from control.client import ControlClient, EventSubscriber
from control.commands import COMMAND_LIST, COMMANDS, ArgSpec, ArgType, CommandSpec
from control.errors import ErrorCode, ProtocolError, RemoteError, Timeout, Unreachable
from control.limits import MAX_PORT
from control.render import format_event, render_result, short, to_json
from control.schema import is_node_id_hex
from control.shell import Shell

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


_P = inspect.Parameter


def _option(name: str, kind: object, default: object, *flags: str, **option: Any) -> _P:
    """A keyword-only typer option parameter ``name: kind = default``."""
    return _P(
        name,
        _P.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[kind, typer.Option(*flags, **option)],
    )


_COMMON: Final = [
    _option(
        "node",
        str | None,
        None,
        "--node",
        "-n",
        help="node index (1..N) or 'all' (supervisor only).",
    ),
    _option(
        "endpoint",
        str | None,
        None,
        "--endpoint",
        "-e",
        help="control (or, for watch, events) endpoint.",
    ),
    _option("json", bool, False, "--json", help="print JSON for scripts."),
    _option(
        "timeout",
        float,
        DEFAULT_TIMEOUT_S,
        "--timeout",
        min=0.01,
        help="seconds to wait for a reply.",
    ),
    _option("debug", bool, False, "--debug", help="show tracebacks."),
    _option("cluster", str | None, None, "--cluster", help="cluster name (default: 'default')."),
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


def _register(
    target: typer.Typer,
    name: str,
    help_text: str,
    own: list[inspect.Parameter],
    fn: Callable[..., None],
) -> None:
    """Register ``fn(opts, **own)`` as a command with the common options after ``own``."""
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

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in params}
    callback.__name__ = f"cmd_{name}"
    callback.__doc__ = help_text
    target.command(name, help=help_text)(callback)


def _command(target: typer.Typer, name: str, help_text: str) -> Callable[[F], F]:
    """Register ``fn(opts, ...)`` with the common options appended to its own parameters."""

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "opts"]
        _register(target, name, help_text, own, fn)
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


# -- commands ----------------------------------------------------------------------------------


def _call(opts: Options, cmd: str, **args: Any) -> dict[str, Any]:
    selector = opts.node_selector
    with ControlClient(
        control_endpoint(opts), timeout_s=opts.timeout, curve=curve_keys(opts)
    ) as client:
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


# -- node commands, generated from the command table ----------------------------------------

_HELP_NOTES: Final = {
    "lookup": "; --follow joins and streams new peers",
}


def _cli_param(arg: ArgSpec) -> inspect.Parameter:
    """The typer parameter of a command argument: optional ones are options, others arguments."""
    flag = f"--{arg.name}"
    if arg.type is ArgType.PORT:
        letter = f"-{arg.name[0]}"
        port_range = {"min": 0, "max": MAX_PORT}
        return _option(arg.name, int | None, None, flag, letter, **port_range, help=f"{arg.help}.")
    if arg.type is ArgType.MAP:
        return _option(arg.name, str | None, None, flag, help="JSON object to advertise.")
    help_text = "64 hex digits" if arg.type is ArgType.NODE_ID else None
    value = typer.Argument(metavar=arg.name.upper(), help=help_text)
    return _P(arg.name, _P.KEYWORD_ONLY, annotation=Annotated[str, value])


def _wire_value(arg: ArgSpec, value: Any) -> Any:
    """A command-line value as the command argument it stands for."""
    if arg.type is ArgType.NODE_ID:
        return node_id_arg(value)
    if arg.type is ArgType.BYTES:
        return str(value).encode("utf-8")
    if arg.type is ArgType.MAP:
        return meta_arg(value)
    return value


def _node_command(spec: CommandSpec) -> None:
    def run(opts: Options, **values: Any) -> None:
        args = {a.name: _wire_value(a, values[a.name]) for a in spec.args}
        _show(opts, spec.name, _call(opts, spec.name, **args))

    params = [_cli_param(a) for a in spec.args]
    _register(app, spec.name, spec.help + _HELP_NOTES.get(spec.name, ""), params, run)


TopicArg = Annotated[str, typer.Argument(metavar="TOPIC")]


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
    with EventSubscriber(
        events_endpoint(opts, events), ["topic.peer"], curve=curve_keys(opts)
    ) as sub:
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


# -- records: store, get, put (written out: values from files/stdin, keys in hex) ------------

ValueArg = Annotated[
    str | None, typer.Argument(metavar="VALUE", help="the value; - reads stdin (or --file).")
]
FileOpt = Annotated[
    str | None, typer.Option("--file", "-F", metavar="PATH", help="read the value from a file.")
]
KeyHexOpt = Annotated[
    bool, typer.Option("--key-hex", help="KEY (or NAME) is the hex of arbitrary bytes.")
]
# Commands dhtctl offers through another (written out below): the table entry -> dhtctl command.
SERVED_BY: Final = {
    "store_at": "store",  # store --key-hex
    "get_address": "get",  # get ADDRESS, get --key-hex
    "put_mutable": "put",
    "put_immutable": "put",
}


def cmd_store(
    opts: Options,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    value: ValueArg = None,
    file: FileOpt = None,
    key_hex: KeyHexOpt = False,
) -> None:
    data = read_value(value, file)
    if key_hex:
        _show(opts, "store", _call(opts, "store_at", address=hex_key_address(key), value=data))
    else:
        _show(opts, "store", _call(opts, "store", key=text_key(key), value=data))


def cmd_get(
    opts: Options,
    key: Annotated[str, typer.Argument(metavar="KEY|ADDRESS")],
    key_hex: KeyHexOpt = False,
) -> None:
    if key_hex:
        _show(opts, "get", _call(opts, "get_address", address=hex_key_address(key)))
        return
    if is_node_id_hex(key):  # an address printed by put (any record kind), else a key string
        try:
            _show(opts, "get", _call(opts, "get_address", address=key.lower()))
            return
        except RemoteError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
    _show(opts, "get", _call(opts, "get", key=text_key(key)))


def cmd_put(
    opts: Options,
    args: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME] VALUE", help="see the options.")
    ] = None,
    mutable: Annotated[
        bool, typer.Option("--mutable", help="NAME VALUE: this node's record NAME.")
    ] = False,
    immutable: Annotated[
        bool, typer.Option("--immutable", help="VALUE: stored under its hash.")
    ] = False,
    seq: Annotated[
        int | None, typer.Option("--seq", min=0, help="sequence number (default: next).")
    ] = None,
    cas: Annotated[
        int | None, typer.Option("--cas", min=0, help="only if the holders have this seq.")
    ] = None,
    file: FileOpt = None,
    key_hex: KeyHexOpt = False,
) -> None:
    words = list(args or [])
    if mutable == immutable:
        raise UsageFailure("put needs exactly one of --mutable NAME VALUE or --immutable VALUE")
    if immutable:
        if seq is not None or cas is not None or key_hex:
            raise UsageFailure("--seq, --cas and --key-hex apply to --mutable only")
        if len(words) > 1:
            raise UsageFailure("put --immutable takes one VALUE (or --file PATH)")
        data = read_value(words[0] if words else None, file)
        _show(opts, "put_immutable", _call(opts, "put_immutable", value=data))
        return
    if not words or len(words) > 2:
        raise UsageFailure("put --mutable takes NAME VALUE (or NAME --file PATH)")
    name = hex_bytes(words[0], "name") if key_hex else text_key(words[0]).encode("utf-8")
    data = read_value(words[1] if len(words) > 1 else None, file)
    result = _call(opts, "put_mutable", name=name, value=data, seq=seq, cas=cas)
    _show(opts, "put_mutable", result)


_STORE_NOTE: Final = " (open namespace; VALUE, - for stdin, or --file; --key-hex)"
_command(app, "store", COMMANDS["store"].help + _STORE_NOTE)(cmd_store)
_command(app, "get", COMMANDS["get"].help + ", or of an ADDRESS printed by put")(cmd_get)
_command(
    app, "put", "store an owned record: --mutable NAME VALUE (prints its address), "
    "--immutable VALUE (prints its hash)",
)(cmd_put)  # fmt: skip


def cmd_listen(
    opts: Options,
    key: Annotated[str, typer.Argument(metavar="KEY")],
    events: Annotated[str | None, typer.Option("--events", help="events endpoint.")] = None,
    count: Annotated[
        int | None, typer.Option("--count", "-n", min=1, help="stop after this many updates.")
    ] = None,
) -> None:
    me = _call(opts, "id")["id"]
    with EventSubscriber(
        events_endpoint(opts, events), ["record.updated"], curve=curve_keys(opts)
    ) as sub:
        reply = _call(opts, "listen", key=key)
        if not opts.json:
            typer.echo(f"listening to {key} ({short(reply.get('key_id'))}), Ctrl-C to stop")
        seen = 0
        for event_topic, payload in sub:
            if payload.get("key_id") != reply.get("key_id") or payload.get("node", me) != me:
                continue
            if opts.json:
                typer.echo(to_json({"topic": event_topic, "payload": payload}, indent=None))
            else:
                value = payload.get("value", b"")
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                typer.echo(
                    f"{payload.get('record_ts')} {short(payload.get('publisher'))} "
                    f"via {short(payload.get('source'))}: {text}"
                )
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return


for _spec in COMMAND_LIST:
    if _spec.name == "lookup":  # --follow streams events: written out above
        _command(app, "lookup", _spec.help + _HELP_NOTES["lookup"])(cmd_lookup)
    elif _spec.name == "listen":  # streams record.updated events: written out above
        _command(app, "listen", _spec.help)(cmd_listen)
    elif _spec.name not in {"store", "get", *SERVED_BY}:
        _node_command(_spec)


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
    with EventSubscriber(
        events_endpoint(opts, opts.endpoint), topic or None, curve=curve_keys(opts)
    ) as sub:
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


def main() -> None:
    app(prog_name="dhtctl")


if __name__ == "__main__":
    main()
