"""The executor on the fake kernel: journal, rollback, tolerant teardown, recovery.

The central property: a failure at any op leaves the kernel and the store exactly as they
were before the call (DESIGN: setup either completes or is rolled back).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostnet import errors
from hostnet.backends.fake import FakeKernel
from hostnet.controller import Controller
from hostnet.executor import Executor, Recovered
from hostnet.ops import (
    AddAddress,
    AddLink,
    AddRoute,
    BindPort,
    CreateNamespace,
    DeleteNamespace,
    DelLink,
    NftBatch,
    Op,
    Plan,
    SetLinkUp,
    SetSysctl,
    UnbindPort,
    plan_to_json,
)
from hostnet.policy.security import SecurityPolicy
from hostnet.stores.local import LocalStore, Tx
from hostnet.testing import FaultyBackend, InjectedFault

_TABLE = {"table": {"family": "inet", "name": "hostnet"}}

#: A plan touching every kind of kernel object the fake models.
PLAN: Plan = (
    CreateNamespace(ns="app"),
    AddLink(ns=None, name="veth-app", kind="veth", peer="eth0", peer_ns="app", mtu=1400, up=True),
    AddAddress(ns=None, ifname="veth-app", address="10.9.0.1/24"),
    AddAddress(ns="app", ifname="eth0", address="10.9.0.2/24"),
    SetLinkUp(ns="app", name="eth0", up=True, was_up=False),
    AddRoute(ns="app", dst="0.0.0.0/0", gateway="10.9.0.1"),
    SetSysctl(ns=None, key="net/ipv4/ip_forward", value="1", previous="0"),
    NftBatch(
        ns=None,
        commands=json.dumps({"nftables": [{"add": _TABLE}]}),
        undo=json.dumps({"nftables": [{"delete": _TABLE}]}),
    ),
    BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
    BindPort(ns=None, protocol="udp", address="127.0.0.1", port=5353),
)


def _prepare(owner: str, plan: Plan = PLAN):
    """A prepare step like the Controller's: pending records, then the plan."""

    def prepare(tx: Tx) -> Plan:
        tx.add_namespace("app", "", created=True, owner=owner)
        tx.reserve_port("", "tcp", "0.0.0.0", 8080, owner, "app")
        tx.allocate("net1", "10.9.0.2", owner)
        return plan

    return prepare


def _commit(tx: Tx, plan: Plan) -> None:
    tx.activate("namespaces", "name", "app")


@pytest.fixture
def store(tmp_path: Path):
    s = LocalStore(tmp_path / "state")
    yield s
    s.close()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def dead() -> int:
    return dead_pid()


# -- setup ------------------------------------------------------------------------------


def test_successful_apply_leaves_nothing_pending(store: LocalStore) -> None:
    kernel = FakeKernel(seed=1)
    executor = Executor(kernel, store)
    assert executor.apply(_prepare("o1"), owner="o1", commit=_commit) == PLAN
    assert store.read(lambda tx: tx.journals()) == []
    assert store.read(lambda tx: tx.namespace("app"))["state"] == "active"
    snap = kernel.observe("app")
    assert snap.addresses_of("eth0") == ("10.9.0.2/24",)
    assert any(r.is_default for r in snap.routes)
    assert kernel.sysctl(None, "net/ipv4/ip_forward") == "1"
    assert {(s.protocol, s.port) for s in kernel.bound_sockets(None)} == {
        ("tcp", 8080),
        ("udp", 5353),
    }


def test_a_fixed_plan_needs_no_prepare(store: LocalStore) -> None:
    kernel = FakeKernel()
    Executor(kernel, store).apply((CreateNamespace(ns="x"),), owner="o")
    assert kernel.namespaces() == ("x",)
    assert store.read(lambda tx: tx.journals()) == []


@pytest.mark.parametrize("index", range(len(PLAN)))
def test_failure_at_any_op_leaves_kernel_and_store_as_before(
    store: LocalStore, index: int
) -> None:
    kernel = FakeKernel(seed=1)
    kernel.bind_external(None, "tcp", "0.0.0.0", 22, pid=1, process="sshd")
    backend = FaultyBackend(kernel, fail_at=index)
    kernel_before, store_before = kernel.dump(), store.dump()
    committed = []
    with pytest.raises(InjectedFault) as info:
        Executor(backend, store).apply(
            _prepare("o1"), owner="o1", commit=lambda tx, plan: committed.append(plan)
        )
    assert info.value.index == index
    assert any("rolled back" in note for note in info.value.__notes__)
    assert kernel.dump() == kernel_before
    assert store.dump() == store_before
    assert committed == []


class _InterruptedAfter:
    """A backend that applies op ``index`` and is then interrupted (Ctrl-C, a SIGTERM
    turned into an exception) before the executor could count the op as done."""

    def __init__(self, kernel: FakeKernel, index: int) -> None:
        self.kernel, self.index, self.seen = kernel, index, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.kernel, name)

    def apply(self, op: object) -> None:
        self.kernel.apply(op)  # type: ignore[arg-type]
        self.seen += 1
        if self.seen == self.index + 1:
            raise KeyboardInterrupt


@pytest.mark.parametrize("index", range(len(PLAN)))
def test_an_interrupt_just_after_an_op_rolls_that_op_back_too(
    store: LocalStore, index: int
) -> None:
    """A DNAT added by the kernel and not yet counted when the interrupt came stayed
    behind and sent a later workload's traffic elsewhere (found on the kernel); so did
    a namespace (op 0), until it was made on a reservation of its name."""
    kernel = FakeKernel(seed=1)
    kernel_before, store_before = kernel.dump(), store.dump()
    with pytest.raises(KeyboardInterrupt):
        Executor(_InterruptedAfter(kernel, index), store).apply(  # type: ignore[arg-type]
            PLAN, owner="o1"
        )
    assert kernel.dump() == kernel_before
    assert store.dump() == store_before


class _InterruptedOnCommit:
    """A store whose first write transaction commits and is then interrupted (Ctrl-C,
    a SIGTERM turned into an exception) before the caller gets on: the journaling one."""

    def __init__(self, store: LocalStore) -> None:
        self.store, self.fired = store, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self.store.transaction() as tx:
            yield tx
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def test_an_interrupt_as_the_setup_journal_commits_forgets_it(store: LocalStore) -> None:
    """In a process that lives on (a REPL, a test runner), the journal stayed open: its
    records held, and shared setup blocked everyone, until the process exited."""
    kernel = FakeKernel()
    kernel_before, store_before = kernel.dump(), store.dump()
    with pytest.raises(KeyboardInterrupt):
        Executor(kernel, _InterruptedOnCommit(store)).apply(  # type: ignore[arg-type]
            _prepare("o1"), owner="o1", commit=_commit
        )
    assert (kernel.dump(), store.dump()) == (kernel_before, store_before)
    Executor(kernel, store).apply(_prepare("o1"), owner="o1", commit=_commit)  # (again)


class _InterruptedAt:
    """A backend interrupted before it applies op ``index``."""

    def __init__(self, kernel: FakeKernel, index: int) -> None:
        self.kernel, self.index, self.seen = kernel, index, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.kernel, name)

    def apply(self, op: object) -> None:
        self.seen += 1
        if self.seen == self.index + 1:
            raise KeyboardInterrupt
        self.kernel.apply(op)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ["on-commit", 0, 1])
def test_an_interrupted_teardown_is_finished_by_a_retry_or_gc(
    store: LocalStore, where: str | int
) -> None:
    """In a process that lives on, its journal stayed open: the records stayed (a
    disconnect again said nothing, a connect said AlreadyConnected) and no gc, in this
    process or another, finished it until the process exited."""
    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="a"))
    kernel.apply(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=9000))
    _records(store, "o1")
    plan: Plan = (
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=9000),
        DeleteNamespace(ns="a"),
    )
    backend = kernel if where == "on-commit" else _InterruptedAt(kernel, int(where))
    interrupted = _InterruptedOnCommit(store) if where == "on-commit" else store
    with pytest.raises(KeyboardInterrupt):
        Executor(backend, interrupted).teardown(  # type: ignore[arg-type]
            plan, owners=["o1"], what="t"
        )
    (journal,) = store.read(lambda tx: tx.journals())
    assert journal["failed"]  # (not a live process's work in flight)
    (report,) = Executor(kernel, store).recover()  # (gc; this process is alive)
    assert report.kind == "teardown" and report.errors == ()
    assert kernel.namespaces() == () and kernel.bound_sockets(None) == ()
    dump = store.dump()
    assert dump["namespaces"] == dump["ports"] == dump["journal"] == []


def test_failure_in_prepare_changes_nothing(store: LocalStore) -> None:
    kernel = FakeKernel()
    before = kernel.dump(), store.dump()

    def prepare(tx: Tx) -> Plan:
        tx.add_namespace("app", "", created=True, owner="o1")
        raise errors.ExhaustedError("no port left")

    with pytest.raises(errors.ExhaustedError):
        Executor(kernel, store).apply(prepare, owner="o1")
    assert (kernel.dump(), store.dump()) == before


def test_without_a_store_setup_is_still_rolled_back() -> None:
    kernel = FakeKernel()
    before = kernel.dump()
    with pytest.raises(InjectedFault):
        Executor(FaultyBackend(kernel, fail_at=3), None).apply(PLAN, owner="o")
    assert kernel.dump() == before
    Executor(kernel, None).apply(PLAN, owner="o")
    assert kernel.namespaces() == ("app",)


def test_rollback_errors_are_collected_into_apply_error(store: LocalStore) -> None:
    kernel = FakeKernel()
    plan: Plan = (
        CreateNamespace(ns="app"),
        BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
        BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8081),
        SetSysctl(ns=None, key="net/ipv4/ip_forward", value="1", previous="0"),
    )
    kernel_before, store_before = kernel.dump(), store.dump()
    # the last op fails, and so does every UnbindPort of the rollback
    backend = FaultyBackend(kernel, fail_at=3, fail_kinds={"UnbindPort"})
    with pytest.raises(errors.ApplyError) as info:
        Executor(backend, store).apply(_prepare("o1", plan), owner="o1")
    err = info.value
    assert err.op == plan[3]
    assert isinstance(err.cause, InjectedFault) and err.cause.index == 3
    assert len(err.rollback_errors) == 2
    assert all(isinstance(e, InjectedFault) for e in err.rollback_errors)
    assert "rollback also failed" in str(err)
    # what could be undone was: the namespace is gone, the ports are still held
    assert kernel.namespaces() == ()
    assert len(kernel.bound_sockets(None, [8080, 8081])) == 2
    # the records stay, and the journal now holds exactly the inverses still to do
    (journal,) = store.read(lambda tx: tx.journals())
    assert journal["failed"] and journal["kind"] == "teardown"
    assert [op["op"] for op in journal["plan"]] == ["UnbindPort", "UnbindPort"]
    assert store.dump() != store_before
    # once the backend works again, recovery finishes the rollback
    backend.fail_kinds = frozenset()
    (report,) = Executor(backend, store).recover()
    assert report.kind == "teardown" and report.owners == ("o1",) and report.errors == ()
    assert kernel.dump() == kernel_before
    assert store.dump() == store_before


def test_recovering_a_failed_setup_never_undoes_the_op_that_failed(store: LocalStore) -> None:
    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="theirs"))  # made by someone else meanwhile
    plan: Plan = (
        BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
        CreateNamespace(ns="theirs"),  # fails: it exists
    )
    backend = FaultyBackend(kernel, fail_kinds={"UnbindPort"})
    with pytest.raises(errors.ApplyError) as info:
        Executor(backend, store).apply(plan, owner="o1")
    assert isinstance(info.value.cause, errors.NamespaceExists)
    backend.fail_kinds = frozenset()
    Executor(backend, store).recover()
    assert kernel.bound_sockets(None) == ()
    assert kernel.namespaces() == ("theirs",)


# -- teardown ---------------------------------------------------------------------------


def _records(store: LocalStore, *owners: str) -> None:
    with store.transaction() as tx:
        for i, owner in enumerate(owners):
            tx.add_namespace(f"ns{i}", "", created=True, owner=owner)
            tx.reserve_port("", "tcp", "0.0.0.0", 9000 + i, owner, f"w{i}")


def test_teardown_keeps_going_and_reports_every_error(store: LocalStore) -> None:
    kernel = FakeKernel()
    for ns in ("a", "b"):
        kernel.apply(CreateNamespace(ns=ns))
    for port in (9000, 9001):
        kernel.apply(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=port))
    _records(store, "o1", "o2")
    plan: Plan = (
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=9000),
        DeleteNamespace(ns="a"),
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=9001),
        DeleteNamespace(ns="gone"),  # already gone: counts as done
        DeleteNamespace(ns="b"),
    )
    backend = FaultyBackend(kernel, fail_kinds={"UnbindPort"})
    with pytest.raises(errors.TeardownError) as info:
        Executor(backend, store).teardown(plan, owners=["o1", "o2"], what="tear down test")
    err = info.value
    assert err.what == "tear down test"
    assert len(err.errors) == 2
    assert [e.index for e in err.errors] == [0, 2]
    assert "2 step(s) failed" in str(err)
    assert kernel.namespaces() == ()  # the steps after each failure ran
    # the records stay until the teardown really finished
    assert len(store.read(lambda tx: tx.namespaces())) == 2
    (journal,) = store.read(lambda tx: tx.journals())
    assert journal["kind"] == "teardown" and journal["failed"]
    backend.fail_kinds = frozenset()
    (report,) = Executor(backend, store).recover()
    assert report.kind == "teardown" and report.errors == ()
    assert kernel.bound_sockets(None) == ()
    assert store.read(lambda tx: tx.namespaces()) == []
    assert store.read(lambda tx: tx.ports()) == []
    assert store.read(lambda tx: tx.journals()) == []


def test_not_found_during_teardown_counts_as_done(store: LocalStore) -> None:
    kernel = FakeKernel()
    _records(store, "o1")
    plan: Plan = (
        DeleteNamespace(ns="never-existed"),
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=9000),
        SetLinkUp(ns="never-existed", name="eth0", up=False, was_up=True),
    )
    Executor(kernel, store).teardown(plan, owners=["o1"], what="t")
    dump = store.dump()
    assert dump["namespaces"] == dump["ports"] == dump["journal"] == []
    assert all(rows == [] for rows in dump.values())


# -- recovery ---------------------------------------------------------------------------


def _journal(
    store: LocalStore, *, kind: str, plan: Plan, owners, done: int, pid: int, places=None
) -> str:
    with store.transaction() as tx:
        tx.journal_begin(
            id=f"{kind}-journal",
            kind=kind,
            owner=json.dumps(list(owners)),
            pid=pid,
            started=12345.0,
            plan=plan_to_json(plan),
            places=places,
        )
    store.journal_progress(f"{kind}-journal", done)
    return f"{kind}-journal"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(done=st.integers(min_value=0, max_value=len(PLAN)), in_flight_applied=st.booleans())
def test_recover_rolls_back_the_setup_of_a_dead_process(
    dead: int, done: int, in_flight_applied: bool
) -> None:
    pid = dead
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        try:
            kernel = FakeKernel(seed=3)
            kernel_before, store_before = kernel.dump(), store.dump()
            # the dead process recorded, journaled and applied part of its plan...
            with store.transaction() as tx:
                _prepare("o1")(tx)
            journal = _journal(store, kind="setup", plan=PLAN, owners=["o1"], done=done, pid=pid)
            applied = done + 1 if in_flight_applied else done  # op #done was in flight
            for op in PLAN[:applied]:
                kernel.apply(op)
            # ...and a new process cleans up after it
            report = Executor(kernel, store).recover()
            assert report == [
                Recovered(
                    journal=journal,
                    kind="setup",
                    owners=("o1",),
                    ops=min(done + 1, len(PLAN)),
                    names=("namespace app",),  # what o1 stood for, said before forgotten
                )
            ]
            assert kernel.dump() == kernel_before
            assert store.dump() == store_before
            assert Executor(kernel, store).recover() == []  # nothing left to do
        finally:
            store.close()


#: A bridge endpoint's plan: its address and route live on the veth the first op makes.
ENDPOINT: Plan = (
    AddLink(
        ns=None,
        name="veth-app",
        kind="veth",
        peer="eth0",
        peer_ns="app",
        mac="02:00:00:00:00:01",
        up=True,
        peer_up=True,
    ),
    AddAddress(ns="app", ifname="eth0", address="10.9.0.2/24"),
    AddRoute(ns="app", dst="0.0.0.0/0", gateway="10.9.0.1", ifname="eth0"),
    NftBatch(
        ns=None,
        commands=json.dumps({"nftables": [{"add": _TABLE}]}),
        undo=json.dumps({"nftables": [{"delete": _TABLE}]}),
    ),
)


def _progress_seen(plan: Plan) -> list[int]:
    """The progress the journal held while each op of ``plan`` was applied, as the
    executor records it (what a process killed during that op leaves behind)."""
    seen: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)

        class Watching(FakeKernel):
            def apply(self, op: Any) -> None:
                seen.extend(j["done"] for j in store.read(lambda tx: tx.journals()))
                super().apply(op)

        try:
            kernel = Watching()
            kernel.apply(CreateNamespace(ns="app"))  # (no journal: not seen)
            Executor(kernel, store).apply(plan, owner="o1")
        finally:
            store.close()
    return seen


def test_progress_is_recorded_after_every_op_but_the_last() -> None:
    # Not skipped before ops that go with a recorded link (tried in session 12, see
    # docs/decisions.md): a recovery that cannot delete the link would leave them.
    assert _progress_seen(ENDPOINT) == [0, 1, 2, 3]


@pytest.mark.parametrize("in_flight_applied", [False, True])
@pytest.mark.parametrize("crash", range(len(ENDPOINT)))
def test_recovery_after_a_crash_at_any_op_of_an_endpoint_leaves_nothing(
    dead: int, crash: int, in_flight_applied: bool
) -> None:
    done = _progress_seen(ENDPOINT)[crash]
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        try:
            kernel = FakeKernel()
            kernel.apply(CreateNamespace(ns="app"))
            kernel_before, store_before = kernel.dump(), store.dump()
            _journal(store, kind="setup", plan=ENDPOINT, owners=["o1"], done=done, pid=dead)
            for op in ENDPOINT[: crash + (1 if in_flight_applied else 0)]:
                kernel.apply(op)
            (report,) = Executor(kernel, store).recover()
            assert report.errors == ()
            assert kernel.dump() == kernel_before
            assert store.dump() == store_before
        finally:
            store.close()


@pytest.mark.parametrize("crash", range(len(ENDPOINT)))
def test_a_setup_journal_marked_failed_unread_is_rolled_back_with_its_op_in_doubt(
    dead: int, crash: int
) -> None:
    # A recovery that cannot read a journal (an older hostnet meeting an op it does
    # not know) marks it failed; the one that reads it later must still undo the op
    # the dead process was applying (found by a review: [0, done) was undone).
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        try:
            kernel = FakeKernel()
            kernel.apply(CreateNamespace(ns="app"))
            kernel_before = kernel.dump()
            journal = _journal(
                store, kind="setup", plan=ENDPOINT, owners=["o1"], done=crash, pid=dead
            )
            with store.transaction() as tx:
                tx.journal_fail(journal)
            for op in ENDPOINT[: crash + 1]:  # op #done was applied when it died
                kernel.apply(op)
            (report,) = Executor(kernel, store).recover()
            assert report.errors == ()
            assert kernel.dump() == kernel_before
            assert store.read(lambda tx: tx.journals()) == []
        finally:
            store.close()


@pytest.mark.parametrize(
    ("reserved", "then", "left"),
    [
        # it took the name (recorded), and made its namespace or died first: deleted
        ("token", "made on it", False),
        ("token", "bare file", False),
        # it died before taking the name (or before recording it)...
        (None, "another's", True),  # ...and someone made theirs meanwhile: kept
        (None, "bare file", False),  # ...just after: its empty file is removed
    ],
)
def test_recovery_deletes_only_a_namespace_made_on_its_reservation(
    store: LocalStore, dead: int, reserved: str | None, then: str, left: bool
) -> None:
    """Recovery deleted, by name, a namespace someone else made after the process died
    before making its own (found by a SIGKILL fuzz on the kernel)."""
    kernel = FakeKernel()
    plan: Plan = (CreateNamespace(ns="app"),)
    places = {"@reserves": "1"}
    token = kernel.reserve_namespace("app")
    if reserved is not None:
        places["@reserved:app"] = token
    if then == "made on it":
        kernel.apply(plan[0])
    elif then == "another's":
        kernel.apply(DeleteNamespace(ns="app"))
        kernel.apply(CreateNamespace(ns="app"))  # (on a file of its own)
    _journal(store, kind="setup", plan=plan, owners=["ns:app"], done=0, pid=dead, places=places)
    (report,) = Executor(kernel, store).recover()
    assert report.errors == ()
    assert kernel.has_namespace("app") == left
    assert store.read(lambda tx: tx.journals()) == []


def _places_written(store: LocalStore) -> list[dict[str, str]]:
    """What ``store.journal_place`` is given from now on, call by call."""
    seen: list[dict[str, str]] = []
    real = store.journal_place

    def journal_place(id: str, done: int, places: Mapping[str, str]) -> None:
        seen.append(dict(places))
        real(id, done, places)

    store.journal_place = journal_place  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("unique", [True, False])
def test_a_namespace_made_last_records_its_mount_only_if_its_token_is_not_unique(
    store: LocalStore, unique: bool
) -> None:
    """The mount of a namespace the plan's last op made tells it from one made later
    under its name by someone else, for a recovery; a token no later file can have
    does that alone, and the journal then skips the write (the closing transaction is
    next)."""
    kernel = FakeKernel()
    kernel.reservation_is_unique = lambda token: unique  # type: ignore[method-assign]
    kernel.namespace_mount = lambda name: f"mount-of-{name}"  # type: ignore[method-assign]
    kernel.mount_view = lambda: "view"  # type: ignore[method-assign]
    seen = _places_written(store)
    Executor(kernel, store).apply((CreateNamespace(ns="app"),), owner="ns:app")
    assert kernel.has_namespace("app")
    assert [sorted(p) for p in seen] == (
        [["@reserved:app"]] if unique else [["@reserved:app"], ["@view", "app"]]
    )


def test_a_token_is_journaled_in_two_parts_an_older_recovery_reads(
    store: LocalStore, dead: int
) -> None:
    """A token with a handle ("FILE/HANDLE") recorded whole was one an older hostnet's
    recovery could never match (it compares the file part it knows): it left the
    namespace and forgot it (a review). The file part is recorded as before, the
    handle apart, and a recovery joins them again."""
    kernel = FakeKernel()
    reserve = kernel.reserve_namespace

    def with_handle(name: str) -> str:
        return f"{reserve(name)}/1:0c000000aa"

    kernel.reserve_namespace = with_handle  # type: ignore[method-assign]
    seen = _places_written(store)
    Executor(kernel, store).apply((CreateNamespace(ns="app"),), owner="ns:app")
    file = seen[0]["@reserved:app"]
    assert "/" not in file and seen[0]["@handle:app"] == "1:0c000000aa"
    # a recovery of it (died after the create) deletes it with the token joined again
    token = f"{file}/1:0c000000aa"
    plan: Plan = (CreateNamespace(ns="app"),)
    places = {"@reserves": "1", "@reserved:app": file, "@handle:app": "1:0c000000aa"}
    _journal(store, kind="setup", plan=plan, owners=["ns:app"], done=0, pid=dead, places=places)
    deleted: list[str | None] = []
    real_apply = kernel.apply

    def apply(op: Op) -> None:
        if isinstance(op, DeleteNamespace):
            deleted.append(op.token)
            return
        real_apply(op)

    kernel.apply = apply  # type: ignore[method-assign]
    (report,) = Executor(kernel, store).recover()
    assert report.errors == () and deleted == [token]


def test_a_recovery_that_failed_is_retried_in_full(store: LocalStore, dead: int) -> None:
    """A setup whose recovery failed stayed a failed setup, which a retry takes as
    "exactly what completed": the op in doubt (a namespace made on its reservation,
    whose delete failed) was left, and the journal ended (found by a review)."""
    kernel = FakeKernel()
    plan: Plan = (CreateNamespace(ns="app"),)
    token = kernel.reserve_namespace("app")
    kernel.apply(plan[0])  # made; the process died before counting it
    places = {"@reserves": "1", "@reserved:app": token}
    _journal(store, kind="setup", plan=plan, owners=["ns:app"], done=0, pid=dead, places=places)
    backend = FaultyBackend(kernel, fail_kinds={"DeleteNamespace"})
    (first,) = Executor(backend, store).recover()
    assert first.errors != () and kernel.has_namespace("app")
    backend.fail_kinds = frozenset()
    (second,) = Executor(backend, store).recover()
    assert second.errors == () and not kernel.has_namespace("app")
    assert store.read(lambda tx: tx.journals()) == []


def test_recover_finishes_the_teardown_of_a_dead_process(store: LocalStore) -> None:
    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="app"))
    kernel.apply(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080))
    with store.transaction() as tx:
        tx.add_namespace("app", "", created=True, owner="ns:app")
        tx.activate("namespaces", "name", "app")
        tx.reserve_port("", "tcp", "0.0.0.0", 8080, "ep1", "app")
    plan: Plan = (
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
        DeleteNamespace(ns="app"),
    )
    # it died after the first op
    kernel.apply(plan[0])
    _journal(store, kind="teardown", plan=plan, owners=["ep1", "ns:app"], done=1, pid=dead_pid())
    (report,) = Executor(kernel, store).recover()
    assert (report.kind, report.owners, report.ops, report.errors) == (
        "teardown",
        ("ep1", "ns:app"),
        2,
        (),
    )
    assert kernel.namespaces() == ()
    assert kernel.bound_sockets(None) == ()
    assert store.read(lambda tx: tx.namespaces()) == []
    assert store.read(lambda tx: tx.ports()) == []
    assert store.read(lambda tx: tx.journals()) == []


def test_recover_leaves_the_journal_of_a_live_process_alone(store: LocalStore) -> None:
    import psutil

    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="app"))
    parent = os.getppid()
    with store.transaction() as tx:
        tx.journal_begin(
            id="live",
            kind="setup",
            owner='["o1"]',
            pid=parent,
            started=psutil.Process(parent).create_time(),
            plan=plan_to_json((CreateNamespace(ns="app"),)),
        )
    assert Executor(kernel, store).recover() == []
    assert kernel.namespaces() == ("app",)
    assert len(store.read(lambda tx: tx.journals())) == 1


def test_a_failed_journal_is_retried_by_one_process_at_a_time(tmp_path: Path) -> None:
    import psutil

    kernel = FakeKernel()
    first, second = LocalStore(tmp_path), LocalStore(tmp_path)
    retrier = Executor(kernel, first)
    other = Executor(kernel, second)
    other.pid = os.getppid()  # another live process on the same state directory
    other.started = psutil.Process(other.pid).create_time()
    with first.transaction() as tx:  # a teardown that ended with errors earlier
        tx.journal_begin(
            id="failed",
            kind="teardown",
            owner='["x"]',
            pid=retrier.pid,
            started=retrier.started,
            plan=plan_to_json((DeleteNamespace(ns="gone"),)),
        )
        tx.journal_fail("failed")
    seen: list[object] = []
    meanwhile: list[list[Recovered]] = []
    apply = kernel.apply

    def watching(op: object) -> None:
        seen.append(op)
        meanwhile.append(other.recover())  # the other process polls while we retry
        apply(op)  # type: ignore[arg-type]

    kernel.apply = watching  # type: ignore[method-assign]
    try:
        (done,) = retrier.recover()
    finally:
        kernel.apply = apply  # type: ignore[method-assign]
    assert meanwhile == [[]] and len(seen) == 1  # the op ran once, by one process
    assert done.journal == "failed" and done.errors == ()  # "gone" counts as done
    assert first.read(lambda tx: tx.journals()) == []
    # a waiter that only takes over dead processes' work leaves failed journals alone
    with first.transaction() as tx:
        tx.journal_begin(
            id="failed2",
            kind="teardown",
            owner='["y"]',
            pid=other.pid,
            started=other.started,
            plan=plan_to_json((DeleteNamespace(ns="gone"),)),
        )
        tx.journal_fail("failed2")
    assert retrier.recover(failed=False) == []
    assert [r.journal for r in retrier.recover()] == ["failed2"]
    first.close()
    second.close()


def test_a_controller_recovers_on_start(tmp_path: Path) -> None:
    kernel = FakeKernel()
    store = LocalStore(tmp_path)
    with store.transaction() as tx:
        tx.add_namespace("app", "", created=True, owner="ns:app")
    _journal(
        store,
        kind="setup",
        plan=(CreateNamespace(ns="app"),),
        owners=["ns:app"],
        done=0,
        pid=dead_pid(),
    )
    kernel.apply(CreateNamespace(ns="app"))  # it was in flight, and it happened
    store.close()
    with Controller(backend=kernel, state_dir=tmp_path) as ctl:
        assert [r.kind for r in ctl.recovered] == ["setup"]
        assert kernel.namespaces() == ()
        assert ctl.namespaces() == []
        assert ctl.audit() == []


# -- plans from the Controller, with a fault at every op --------------------------------


def _faulty_controller(tmp: str, kernel: FakeKernel, **kw) -> tuple[Controller, FaultyBackend]:
    backend = FaultyBackend(kernel)
    ctl = Controller(backend=backend, state_dir=tmp, **kw)
    return ctl, backend


def _fail_every_op(ctl: Controller, backend: FaultyBackend, call, n_ops: int) -> object:
    """Run ``call`` with a fault at op 0, 1, ... n_ops-1: each leaves no trace. Then run
    it without a fault, check that its plan had exactly ``n_ops`` ops, return its result."""
    kernel = backend.inner
    for k in range(n_ops):
        before = kernel.dump(), ctl.store.dump(), ctl.endpoints()
        backend.fail_at = backend.calls + k
        with pytest.raises(InjectedFault):
            call()
        assert (kernel.dump(), ctl.store.dump(), ctl.endpoints()) == before, f"fault at op {k}"
    backend.fail_at = None
    calls = backend.calls
    result = call()
    assert backend.calls - calls == n_ops
    return result


def test_create_namespace_fails_cleanly(tmp_path: Path) -> None:
    kernel = FakeKernel()
    ctl, backend = _faulty_controller(str(tmp_path), kernel)
    with ctl:
        _fail_every_op(ctl, backend, lambda: ctl.create_namespace("app1"), 1)
        assert kernel.namespaces() == ("app1",)


def test_attach_none_fails_cleanly(tmp_path: Path) -> None:
    kernel = FakeKernel()
    ctl, backend = _faulty_controller(str(tmp_path), kernel)
    with ctl:
        ns = ctl.create_namespace("app1")
        kernel.apply(SetLinkUp(ns="app1", name="lo", up=False, was_up=True))  # plan: lo up
        _fail_every_op(ctl, backend, lambda: ctl.attach(ns, driver="none"), 1)
        assert kernel.observe("app1").link("lo").up


held_ports = st.sets(
    st.tuples(st.sampled_from(["tcp", "udp"]), st.integers(min_value=20000, max_value=20040)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=held_ports, other=held_ports)
def test_attach_host_with_held_ports_fails_cleanly_at_every_op(wanted, other) -> None:
    kernel = FakeKernel()
    with tempfile.TemporaryDirectory() as tmp:
        ctl, backend = _faulty_controller(
            tmp, kernel, policy=SecurityPolicy(allow_host_network=True)
        )
        with ctl:
            # another workload already holds some ports (they may overlap: then the
            # attach is refused before any op, which must leave no trace either)
            ctl.attach("other", driver="host", ports=[f"{p}/{t}" for t, p in other], hold=True)
            specs = [f"127.0.0.1:{p}/{t}" for t, p in sorted(wanted)]

            def call() -> object:
                return ctl.attach("web", driver="host", ports=specs, hold=True)

            if wanted & other:
                before = kernel.dump(), ctl.store.dump()
                with pytest.raises(errors.PortInUse):
                    call()
                assert (kernel.dump(), ctl.store.dump()) == before
                return
            ep = _fail_every_op(ctl, backend, call, len(wanted))
            assert {(r.protocol, r.port) for r in ep.reserved} == wanted
            bound = {(s.protocol, s.address, s.port) for s in kernel.bound_sockets(None)}
            assert {(t, "127.0.0.1", p) for t, p in wanted} <= bound


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wanted=held_ports, data=st.data())
def test_detach_host_with_a_fault_reports_it_and_gc_finishes(wanted, data) -> None:
    kernel = FakeKernel()
    with tempfile.TemporaryDirectory() as tmp:
        ctl, backend = _faulty_controller(
            tmp, kernel, policy=SecurityPolicy(allow_host_network=True)
        )
        with ctl:
            clean_kernel, clean_store = kernel.dump(), ctl.store.dump()
            ctl.attach("web", driver="host", ports=[f"{p}/{t}" for t, p in wanted], hold=True)
            k = data.draw(st.integers(min_value=0, max_value=len(wanted) - 1))
            backend.fail_at = backend.calls + k
            with pytest.raises(errors.TeardownError) as info:
                ctl.detach("web")
            assert len(info.value.errors) == 1
            # every other port was released; the failed one is still held and recorded
            assert len(kernel.bound_sockets(None)) == 1
            assert len(ctl.ports()) == len(wanted)
            backend.fail_at = None
            report = ctl.gc()
            assert [r["kind"] for r in report["recovered"]] == ["teardown"]
            assert kernel.dump() == clean_kernel
            assert ctl.store.dump() == clean_store


@pytest.mark.parametrize("there_before", [True, False])
def test_recovery_skips_ops_in_a_namespace_made_again_since(
    store: LocalStore, there_before: bool
) -> None:
    # a failed teardown waits for gc; meanwhile the name "app" comes to stand for
    # another namespace (deleted and made again, or made where there was none): its
    # eth0 is not hostnet's, while the op in the root namespace is still done
    kernel = FakeKernel()
    kernel.apply(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080))
    if there_before:
        kernel.apply(CreateNamespace(ns="app"))
        kernel.apply(AddLink(ns="app", name="eth0", kind="veth", peer="eth1"))
    plan: Plan = (
        DelLink(ns="app", name="eth0"),
        UnbindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080),
    )
    faulty = FaultyBackend(kernel, fail_kinds={"DelLink", "UnbindPort"})
    with pytest.raises(errors.TeardownError):
        Executor(faulty, store).teardown(plan, owners=["ep1"], what="disconnect")
    if there_before:
        kernel.apply(DeleteNamespace(ns="app"))
    kernel.apply(CreateNamespace(ns="app"))
    kernel.apply(AddLink(ns="app", name="eth0", kind="veth", peer="eth1"))
    (report,) = Executor(kernel, store).recover()
    assert (report.ops, report.skipped, report.errors) == (1, 1, ())
    assert kernel.observe("app").link("eth0") is not None
    assert kernel.bound_sockets(None) == ()
    assert store.read(lambda tx: tx.journals()) == []


def test_recovery_acts_in_the_namespace_journaled(store: LocalStore) -> None:
    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="app"))
    kernel.apply(AddLink(ns="app", name="eth0", kind="veth", peer="eth1"))
    faulty = FaultyBackend(kernel, fail_kinds={"DelLink"})
    with pytest.raises(errors.TeardownError):
        Executor(faulty, store).teardown(
            (DelLink(ns="app", name="eth0"),), owners=["ep1"], what="disconnect"
        )
    (report,) = Executor(kernel, store).recover()
    assert (report.ops, report.skipped, report.errors) == (1, 0, ())
    assert kernel.observe("app").link("eth0") is None


def test_mounts_read_in_another_mount_namespace_are_not_judged(store: LocalStore) -> None:
    # a bind mount has another id in each mount namespace: a journal written in
    # another one cannot say whether the name moved, and its ops run as they are
    kernel = FakeKernel()
    kernel.apply(CreateNamespace(ns="app"))
    kernel.apply(AddLink(ns="app", name="eth0", kind="veth", peer="eth1"))
    plan: Plan = (DelLink(ns="app", name="eth0"), DeleteNamespace(ns="app", mount="elsewhere"))
    with store.transaction() as tx:
        tx.journal_begin(
            id="j",
            kind="teardown",
            owner="[]",
            pid=dead_pid(),
            started=1.0,
            plan=plan_to_json(plan),
            places={"app": "a mount seen elsewhere", "@view": "another mount namespace"},
        )
    (report,) = Executor(kernel, store).recover()
    assert (report.ops, report.skipped, report.errors) == (2, 0, ())
    assert "app" not in kernel.namespaces()


def live_journal(store: LocalStore, id: str, owner: str) -> None:
    """An empty setup journal of ``owner`` that a live process (pytest's parent) holds."""
    with store.transaction() as tx:
        tx.journal_begin(
            id=id,
            kind="setup",
            owner=json.dumps([owner]),
            pid=os.getppid(),
            started=psutil.Process(os.getppid()).create_time(),
            plan=[],
        )


def test_a_change_waits_for_a_firewall_rebuild_of_a_live_process(store: LocalStore) -> None:
    # the rebuild replays the records as they were when it began: a change journaled
    # meanwhile could be undone by it, or undo it
    kernel = FakeKernel()
    live_journal(store, "rebuild", "restore:host")
    executor = Executor(kernel, store)
    executor.rebuild_wait = 0.05
    with pytest.raises(errors.Busy, match="rebuild"):
        executor.apply((CreateNamespace(ns="app"),), owner="ns:app")
    assert kernel.namespaces() == ()
    with store.transaction() as tx:
        tx.journal_end("rebuild")
    executor.apply((CreateNamespace(ns="app"),), owner="ns:app")
    assert kernel.namespaces() == ("app",)


def test_an_interrupt_before_a_link_is_made_spares_one_of_that_name(store: LocalStore) -> None:
    """Interrupted before the kernel made the link (or not, the executor cannot tell),
    the rollback deletes a link of that name only if it has the MAC hostnet gave it: a
    bridge made since under the planned name is someone else's."""

    class Interrupted(_InterruptedAfter):
        def apply(self, op: object) -> None:
            self.seen += 1
            if self.seen == 1:
                raise KeyboardInterrupt  # before anything reaches the kernel
            self.kernel.apply(op)  # type: ignore[arg-type]  # the rollback's

    kernel = FakeKernel(seed=1)
    kernel.apply(AddLink(ns=None, name="br-taken", kind="bridge", mac="02:00:00:00:00:07"))
    before = kernel.dump()
    ours = AddLink(ns=None, name="br-taken", kind="bridge", mac="02:00:00:00:00:08")
    backend = Interrupted(kernel, 0)
    with pytest.raises(KeyboardInterrupt):
        Executor(backend, store).apply((ours,), owner="o1")  # type: ignore[arg-type]
    assert backend.seen == 2  # the rollback ran
    assert kernel.dump() == before


def test_gc_says_whose_work_it_finished(tmp_path: Path) -> None:
    """`ctl.recovered` and `gc` name the workload and network of a journal they finish
    or roll back (the owners alone are ids of records that are gone by then)."""
    kernel = FakeKernel(seed=1)
    ctl, backend = _faulty_controller(str(tmp_path), kernel, forwarding=True)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    web.connect(ctl.create_namespace("app"))
    backend.fail_at = backend.calls  # the disconnect's first op fails: left to gc
    with pytest.raises(errors.TeardownError):
        web.disconnect("app")
    backend.fail_at = None
    (done,) = ctl.gc()["recovered"]
    assert (done["kind"], done["errors"], done["names"]) == ("teardown", [], ["app on web"])
    ctl.close()
