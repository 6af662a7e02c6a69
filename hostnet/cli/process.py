"""This process and its children: signals, and commands run inside namespaces.

Signals matter to commands that set things up and must take them down again. Three
rules, so that Ctrl-C or ``kill`` never leaves a namespace, veth or firewall rule behind:

1. While a command works, SIGTERM and SIGHUP raise :class:`Interrupted` in the main
   thread, the way SIGINT raises KeyboardInterrupt, so ``finally`` blocks (and the
   executor's rollback) run instead of the process dying mid-plan.
2. While a command waits for a child it started (``ns exec``, ``run``), it behaves like a
   shell: Ctrl-C reaches the child through the terminal's process group, so we ignore it
   and wait; SIGTERM and SIGHUP sent to us are passed on to the child.
3. While a command cleans up, signals are remembered instead of acted on; the first one
   is raised when the cleanup is done.

Signal handlers can only be installed from the main thread; elsewhere (a test calling
``main()`` from a worker thread) these helpers change nothing.
"""

from __future__ import annotations

import errno
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hostnet import errors

if TYPE_CHECKING:
    from hostnet.cli.context import Context
    from hostnet.namespace import Namespace

#: What ``kill`` and a closing terminal send; SIGINT is Python's KeyboardInterrupt.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):  # a sibling of KeyboardInterrupt
    """A terminating signal arrived (``signum``); not an Exception, so that no
    ``except Exception`` swallows it on the way out."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _handlers(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    if not _main_thread():
        yield
        return
    restore = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted` while the block runs (rule 1)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    with _handlers(dict.fromkeys(TERMINATING, interrupt)):
        yield


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Cleanup that must not be cut short (rule 3): SIGINT, SIGTERM and SIGHUP that
    arrive during the block are raised after it, unless it already raises."""
    pending: list[int] = []

    def remember(signum: int, _frame: object) -> None:
        pending.append(signum)

    with _handlers(dict.fromkeys((signal.SIGINT, *TERMINATING), remember)):
        yield
    if pending:
        if pending[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(pending[0])


def wait_child(proc: subprocess.Popen[Any]) -> int:
    """Wait for the child like a shell does (rule 2). The exit code is the child's, or
    128 + signal if a signal killed it."""

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    with _handlers({signal.SIGINT: signal.SIG_IGN, **dict.fromkeys(TERMINATING, forward)}):
        code = proc.wait()
    return 128 - code if code < 0 else code


def command_argv(raw: Sequence[str], command: str, usage: str) -> list[str]:
    """The command after ``--`` (argparse keeps or drops the ``--`` depending on the
    version); a ValidationError showing the usage of ``command`` when there is none."""
    argv = list(raw)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise errors.ValidationError(f"{command} needs a command: hostnet {command} {usage}")
    return argv


def start(ctx: Context, ns: Namespace, argv: Sequence[str]) -> subprocess.Popen[Any] | int:
    """Start ``argv`` in ``ns`` with our stdin, stdout and stderr (no shell). A command
    that cannot be started is reported and its exit code returned, like a shell does:
    127 not found, 126 not executable."""
    # The child writes to the same file descriptors: let our buffered output go first.
    ctx.stdout.flush()
    ctx.stderr.flush()
    try:
        return ns.popen(argv)
    except OSError as exc:
        if isinstance(exc, errors.HostnetError):
            raise
        ctx.error(f"cannot run {argv[0]!r} in namespace {ns.name!r}: {exc.strerror or exc}")
        return 127 if exc.errno == errno.ENOENT else 126  # like a shell, and docker exec


__all__ = [
    "Interrupted",
    "command_argv",
    "deferred_signals",
    "signals_as_exceptions",
    "start",
    "wait_child",
]
