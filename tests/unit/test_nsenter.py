"""The short-lived thread that work inside a namespace runs in (no root needed)."""

from __future__ import annotations

import signal
import threading

import pytest

from hostnet.backends.netlink import nsenter


def test_a_signal_taken_by_the_thread_interrupts_the_caller_without_hanging() -> None:
    """Linux may deliver a process-directed signal to the worker thread; Python then
    runs the handler in the main thread right after its wait for the worker returned,
    and the old code waited again, for a lock it held itself: forever."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are the main thread's")
    returned: list[int] = []

    def raising(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    def work() -> int:
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # at the worker
        return 42

    previous = signal.signal(signal.SIGUSR1, raising)
    watchdog = threading.Timer(10, lambda: signal.raise_signal(signal.SIGABRT))
    watchdog.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            returned.append(nsenter.in_fresh_thread(work))
            signal.raise_signal(signal.SIGUSR1)  # (if the handler ran before the return)
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGUSR1, previous)
