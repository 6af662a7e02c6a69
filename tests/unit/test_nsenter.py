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


@pytest.mark.parametrize(
    ("recorded", "now", "same"),
    [
        ("12/1:0c000000aa", "12/1:0c000000aa", True),
        # the same inode number, another file (the generation in the handle differs)
        ("12/1:0c000000aa", "12/1:0c000000bb", False),
        ("12/1:0c000000aa", "13/1:0d000000aa", False),
        # recorded without a handle (an older hostnet's journal; a filesystem without
        # handles): the inode numbers decide, as before
        ("12", "12/1:0c000000aa", True),
        ("12", "12", True),
        ("12", "13", False),
        # recorded with one, read without (open_tree refused): no telling, so not taken
        # for it (a review found recovery deleting another's namespace that way)
        ("12/1:0c000000aa", "12", False),
        ("12", None, False),  # no file there
    ],
)
def test_reservation_tokens_compare_by_handle_where_both_have_one(
    recorded: str, now: str | None, same: bool
) -> None:
    assert nsenter.same_token(recorded, now) is same


def test_a_token_is_unique_only_where_it_can_be_read_back_under_a_mount(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nsenter, "_open_tree_ok", True)
    assert nsenter.token_is_unique("12/1:0c000000aa")
    assert not nsenter.token_is_unique("12")
    monkeypatch.setattr(nsenter, "_open_tree_ok", False)  # (refused here)
    assert not nsenter.token_is_unique("12/1:0c000000aa")
