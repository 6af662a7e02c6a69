"""This process and its children: signals, and commands run inside namespaces.

Signals matter to commands that set things up and must take them down again. Three
rules, so that Ctrl-C or ``kill`` never leaves a namespace, veth or firewall rule behind:

1. While a command works, SIGTERM, SIGHUP and the others of :data:`TERMINATING` raise
   :class:`Interrupted` in the main thread, the way SIGINT raises KeyboardInterrupt,
   so ``finally`` blocks (and the executor's rollback) run instead of the process
   dying mid-plan. Long commands call
   :func:`check_interrupted` between steps, for a signal whose exception Python
   swallowed.
2. While a command waits for a child it started (``ns exec``, ``run``), it passes the
   signals sent to it on to the child (:data:`FORWARDED`: SIGINT, SIGTERM, SIGHUP,
   SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH) and waits, like ``docker run``. Only
   the terminal's own (Ctrl-C, Ctrl-\\, hangup, a resize) are not passed on: the
   terminal sends them to its whole foreground process group, the child included, so
   the child has them already.
3. While a command cleans up, signals are remembered instead of acted on; the first one
   is raised when the cleanup is done.

Signal handlers can only be installed from the main thread; elsewhere (a test calling
``main()`` from a worker thread) these helpers change nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hostnet import errors

if TYPE_CHECKING:
    from hostnet.cli.context import Context
    from hostnet.namespace import Namespace
    from hostnet.network import HostWorkload

#: Signals that end a program by default and that a user or a supervisor sends: while
#: a command works they raise Interrupted, so its cleanup runs (SIGINT is Python's
#: KeyboardInterrupt). ``kill`` and a closing terminal send the first two.
TERMINATING = (
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)

#: Signals passed on to a child while waiting for it (rule 2): every one a user or a
#: supervisor sends to a program, not those of job control (stop, continue) or of the
#: child itself (SIGCHLD), and not SIGKILL or SIGSTOP, which cannot be caught.
FORWARDED = (signal.SIGINT, *TERMINATING, signal.SIGWINCH)


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


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


# Signals that arrived while a command worked. Python runs a handler wherever the main
# thread happens to be, and some places swallow what it raises ("Exception ignored in"):
# at-fork hooks while subprocess starts a child, __del__ methods, weakref callbacks.
# check_interrupted() raises such a signal again at a point where stopping is safe.
_received: list[int] = []


def _ours(signum: signal.Signals) -> bool:
    """Whether to handle ``signum``: not when our parent made us ignore it (``nohup``,
    or SIGINT for a background job of a non-interactive shell)."""
    return signal.getsignal(signum) is not signal.SIG_IGN


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted`, SIGINT KeyboardInterrupt, while the
    block runs (rule 1); see :func:`check_interrupted`."""
    _received.clear()

    def interrupt(signum: int, _frame: object) -> None:
        _received.append(signum)
        _raise_for(signum)

    signums = [s for s in (signal.SIGINT, *TERMINATING) if _ours(s)]
    with _handlers(dict.fromkeys(signums, interrupt)):
        yield


def check_interrupted() -> None:
    """Raise the first signal that arrived during :func:`signals_as_exceptions`, in case
    its exception was swallowed where it was first raised. Call it between steps."""
    if _received:
        _raise_for(_received[0])


@contextmanager
def deferred_signals(*, reraise: bool = True) -> Iterator[None]:
    """Work that must not be cut short (rule 3): SIGINT, SIGTERM and SIGHUP that arrive
    during the block are raised after it, unless it already raises. With
    ``reraise=False`` they are left for :func:`check_interrupted` (and
    :func:`wait_child`) instead: for starting a child, whose Popen must reach the
    caller whatever happens, and during which Python would swallow the exception."""
    pending: list[int] = []

    def remember(signum: int, _frame: object) -> None:
        pending.append(signum)

    signums = [s for s in (signal.SIGINT, *TERMINATING) if _ours(s)]
    with _handlers(dict.fromkeys(signums, remember)):
        yield
    if pending and not reraise:
        _received.extend(pending)
    elif pending:
        _raise_for(pending[0])


#: The signal that ended the command ``wait_child`` waited for last, or hostnet itself
#: (``note_signal``): what ``die_of_the_signal`` dies of.
_ended_by: list[int] = []


def note_signal(signum: int) -> None:
    """hostnet is ending because of signal ``signum`` (Ctrl-C, SIGTERM), once it has
    taken down what it set up: ``die_of_the_signal`` dies of it."""
    _ended_by[:] = [signum]


def die_of_the_signal(code: int) -> None:
    """When ``code`` (the exit code hostnet is about to exit with) is 128 + N for the
    signal N that ended the command ``run`` or ``ns exec`` waited for, or hostnet itself,
    die of N, everything being taken down by now; else return. The caller then sees
    what it sees of any program a signal ends, as with `ip netns exec` (which execs the
    command): a shell puts back the terminal modes it saved (a command killed in raw
    mode left no echo, no Ctrl-C), and stops a loop or script on Ctrl-C (bash goes on
    after a child that exited 130, taking it for one that handled the signal). $? is
    128 + N either way. Only from the main thread, at the very end."""
    if not _ended_by or code != 128 + _ended_by[0]:
        return
    signum = _ended_by[0]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # (SIGQUIT, SIGSEGV...: no core)
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    # (a signal whose default is to be ignored: it cannot have ended anything)


def wait_child(proc: subprocess.Popen[Any]) -> int:
    """Wait for the child, passing signals on to it (rule 2). The exit code is the
    child's, or 128 + signal if a signal killed it."""

    def forward(signum: int, _frame: object) -> None:  # one that reached another thread
        proc.send_signal(signum)

    signums = FORWARDED
    with _handlers(dict.fromkeys(signums, forward)):
        # A signal that came while the child was being started is its too (a Ctrl-C
        # then may reach it twice: once from the terminal, once from us; lost, the
        # command would run to its end).
        for signum in _received:
            proc.send_signal(signum)
        _received.clear()
        if _main_thread():
            _wait_forwarding(proc, signums)
        code = proc.wait()
    _ended_by[:] = [-code] if code < 0 else []
    return 128 - code if code < 0 else code


#: The si_code of a signal the kernel sent, such as the terminal's Ctrl-C or hangup.
_SI_KERNEL = 0x80


def _wait_forwarding(proc: subprocess.Popen[Any], signums: Sequence[int]) -> None:
    """Wait for ``proc``, sending it each of ``signums`` that arrives, except those the
    terminal sent (which reached the child too). A Python handler cannot tell who sent
    a signal, so they are blocked and taken with sigtimedwait, which can; SIGCHLD, also
    blocked, wakes the wait when the child exits."""
    waited = {*signums, signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        while proc.poll() is None:
            info = signal.sigtimedwait(waited, 1.0)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if info.si_code != _SI_KERNEL:
                proc.send_signal(info.si_signo)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def command_argv(raw: Sequence[str], command: str, usage: str) -> list[str]:
    """The command after ``--`` (argparse keeps or drops the ``--`` depending on the
    version); a ValidationError showing the usage of ``command`` when there is none."""
    argv = list(raw)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise errors.ValidationError(f"{command} needs a command: hostnet {command} {usage}")
    return argv


def start(
    ctx: Context, ns: Namespace | HostWorkload, argv: Sequence[str]
) -> subprocess.Popen[Any] | int:
    """Start ``argv`` in ``ns`` with our stdin, stdout and stderr (no shell). A command
    that cannot be started is reported and its exit code returned, like a shell does:
    127 not found, 126 not executable."""
    # The child writes to the same file descriptors: let our buffered output go first.
    for stream in (ctx.stdout, ctx.stderr):
        if stream is not None:  # (None: started with that descriptor closed)
            stream.flush()
    try:
        with deferred_signals(reraise=False):  # wait_child passes them on
            return ns.popen(argv)
    except OSError as exc:
        if isinstance(exc, errors.HostnetError):
            raise
        from hostnet.network import HostWorkload

        where = "the host network" if isinstance(ns, HostWorkload) else f"namespace {ns.name!r}"
        ctx.error(f"cannot run {argv[0]!r} in {where}: {exc.strerror or exc}")
        return 127 if exc.errno == errno.ENOENT else 126  # like a shell, and docker exec


__all__ = [
    "Interrupted",
    "check_interrupted",
    "command_argv",
    "deferred_signals",
    "signals_as_exceptions",
    "start",
    "wait_child",
]
