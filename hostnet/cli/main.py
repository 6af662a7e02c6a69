"""``hostnet``: the command line. Parse, call the Controller, print.

Exit codes: 0 success; 1 a hostnet error (printed as ``hostnet: error: ...``, never a
traceback); 2 a usage or validation error; ``ns exec`` and ``run`` exit with their
command's code (126 not executable, 127 not found) and with 125 for hostnet's own
errors, as ``docker run``; ``demo`` exits 1 when a check failed. A signal N that ends
hostnet (Ctrl-C, SIGTERM, SIGHUP) or the command of ``run``/``ns exec``: hostnet takes
down what it set up, then dies of N itself (a shell's $? is 128 + N; ``main`` returns
128 + N, and the console script and ``python -m`` die of it).

Tests call :func:`main` with an argv list and may pass ``controller_factory`` to share one
backend (a FakeKernel) between calls::

    kernel = FakeKernel()
    factory = lambda opts: open_controller(opts, backend=kernel)
    main(["--backend", "fake", "ns", "create", "app1"], controller_factory=factory)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from hostnet import errors
from hostnet.cli.commands import COMMANDS, GROUPS, Command
from hostnet.cli.context import Context, ControllerFactory, ControllerOptions, open_controller
from hostnet.cli.process import (
    Interrupted,
    deferred_signals,
    note_signal,
    signals_as_exceptions,
)
from hostnet.policy.security import SecurityPolicy

if TYPE_CHECKING:  # generic only in typeshed, not at runtime
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, before or after the command words.

    The top-level parser holds the defaults; each subparser repeats the options with
    SUPPRESS as default, so a value given after the command wins and an absent one does
    not overwrite the value given before it."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        default=default(None),
        help="where hostnet keeps its state (default: $HOSTNET_STATE_DIR or /var/lib/hostnet)",
    )
    group.add_argument(
        "--host",
        metavar="NS",
        default=default(None),
        help="the namespace that plays the host (default: the current one)",
    )
    group.add_argument(
        "--backend",
        choices=("auto", "netlink", "fake"),
        default=default("auto"),
        help="netlink (or auto, the default): the kernel; fake: in memory, gone when the "
        "command exits",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print machine-readable JSON instead of tables",
    )
    group.add_argument(
        "--allow-host-network",
        action="store_true",
        default=default(False),
        help="let the security policy admit host networking",
    )
    group.add_argument(
        "--allow-forwarding",
        action="store_true",
        default=default(False),
        help="let bridge networks turn on IP forwarding in the host namespace (restored "
        "with the last network); needed for outbound traffic and for ports published to "
        "other machines",
    )


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors exit with ``usage_exit``: 2, or a command's
    code for hostnet's own errors (125 for `run` and `ns exec`, as `docker run`)."""

    usage_exit = 2

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        command = getattr(parsed, "_command", None)
        if extras and command is not None and command.own_errors:
            # (unrecognized arguments are the top parser's to say, after the command's
            # parser is done: said with the command's code)
            self.usage_exit = command.own_errors
        leaf = getattr(parsed, "_parser", None)
        if extras and isinstance(leaf, _Parser) and leaf is not self:
            # said by the command's parser, with its usage: the flags it does take
            leaf.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The argparse tree for ``commands`` (each leaf parser has ``_command`` set)."""
    root = _Parser(
        prog="hostnet",
        description="Docker's network drivers without a daemon: namespaces, networks, "
        "ports and policy over netlink and nftables.",
    )
    _global_options(root, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)

    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {(): root}
    groups: set[tuple[str, ...]] = set()
    subparsers: dict[tuple[str, ...], Subparsers] = {}
    for command in commands:
        words = tuple(command.name.split())
        for depth in range(1, len(words) + 1):
            path, leaf = words[:depth], depth == len(words)
            if path in parsers:
                if leaf or path not in groups:
                    raise ValueError(f"command {command.name!r} clashes with another")
                continue
            parent = path[:-1]
            if parent not in subparsers:
                subparsers[parent] = parsers[parent].add_subparsers(
                    title="commands",
                    metavar="COMMAND",
                    dest=f"_word{depth}",
                    required=True,
                    parser_class=_Parser,
                )
            text = command.help if leaf else GROUPS.get(path[-1], "")
            parser = subparsers[parent].add_parser(
                path[-1],
                aliases=list(command.aliases) if leaf else [],
                parents=[common],
                help=text,
                description=text,
            )
            if leaf:
                command.arguments(parser)
                parser.set_defaults(_command=command, _parser=parser)
                if command.own_errors is not None:
                    parser.usage_exit = command.own_errors  # type: ignore[attr-defined]
            else:
                groups.add(path)
            parsers[path] = parser
    return root


def main(
    argv: Sequence[str] | None = None,
    *,
    controller_factory: ControllerFactory | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    command: Command = args._command
    options = ControllerOptions(
        state_dir=args.state_dir,
        host=args.host,
        backend=args.backend,
        policy=SecurityPolicy(allow_host_network=args.allow_host_network),
        recover=command.recover,
        forwarding=True if args.allow_forwarding else None,
    )
    ctx = Context(
        options,
        json_output=args.json,
        factory=controller_factory or open_controller,
        stdout=stdout,
        stderr=stderr,
    )
    with warnings.catch_warnings(), signals_as_exceptions():
        _show_hostnet_warnings(ctx)
        try:
            try:
                return command.run(ctx, args)
            finally:
                with deferred_signals():
                    ctx.close()
        except errors.ValidationError as exc:
            ctx.error(str(exc))
            return command.own_errors or 2
        except errors.HostnetError as exc:
            ctx.error(str(exc))
            return command.own_errors or 1
        except KeyboardInterrupt:
            note_signal(signal.SIGINT)
            return 130
        except Interrupted as exc:
            note_signal(exc.signum)
            return exc.exit_code
        except BrokenPipeError:  # `hostnet network inspect web | head`
            _silence_stdout(ctx.stdout)
            return 128 + signal.SIGPIPE


def _silence_stdout(stream: TextIO) -> None:
    """Point ``stream`` at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's StringIO)
        pass


def _show_hostnet_warnings(ctx: Context) -> None:
    """Print HostnetWarnings as one ``hostnet: warning:`` line each (call inside
    warnings.catch_warnings, which restores the previous behaviour)."""
    warnings.simplefilter("always", errors.HostnetWarning)
    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, errors.HostnetWarning):
            ctx.warn(str(message))
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


if __name__ == "__main__":
    from hostnet.cli.process import die_of_the_signal

    exit_code = main()
    die_of_the_signal(exit_code)
    sys.exit(exit_code)
