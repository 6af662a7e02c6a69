"""Two callers on one state directory and one host, interleaved at the worst moment.

Each test runs a call through a backend that, right before a chosen kernel operation
(or a namespace listing), lets a second Controller on the same state directory do
something: what another process could do at that moment. The fake kernel is shared,
so both see the same host.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostnet import errors
from hostnet.backends.fake import FakeKernel
from hostnet.controller import Controller
from hostnet.ops import CreateNamespace, DeleteNamespace, DelLink
from hostnet.testing import FaultyBackend

HOST = "host"


class Interleaving:
    """A backend around a FakeKernel that runs ``meanwhile`` once, right before the
    first operation of kind ``before`` (or before listing namespaces)."""

    def __init__(self, inner: FakeKernel) -> None:
        self.inner = inner
        self.name = inner.name
        self.hooks: dict[str, Callable[[], object]] = {}

    def at(self, before: str, meanwhile: Callable[[], object]) -> None:
        self.hooks[before] = meanwhile

    def _fire(self, what: str) -> None:
        hook = self.hooks.pop(what, None)
        if hook is not None:
            hook()

    def apply(self, op: Any) -> None:
        self._fire(type(op).__name__)
        self.inner.apply(op)

    def namespaces(self) -> tuple[str, ...]:
        listed = self.inner.namespaces()
        self._fire("namespaces")  # the listing is taken; the world moves on
        return listed

    def sysctl(self, ns: str | None, key: str) -> str:
        value = self.inner.sysctl(ns, key)
        self._fire("sysctl")  # read; the world moves on
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def kernel() -> FakeKernel:
    k = FakeKernel(seed=5)
    k.apply(CreateNamespace(ns=HOST))
    return k


def controller(backend: Any, tmp_path: Path) -> Controller:
    return Controller(backend=backend, host=HOST, state_dir=tmp_path / "state", forwarding=True)


@pytest.fixture
def two(kernel: FakeKernel, tmp_path: Path):
    """(this caller's Controller through an Interleaving, the other caller's)."""
    hooked = Interleaving(kernel)
    this, other = controller(hooked, tmp_path), controller(kernel, tmp_path)
    yield this, other, hooked
    this.close()
    other.close()


def test_no_connect_lands_in_a_network_being_emptied(two, kernel: FakeKernel) -> None:
    this, other, hooked = two
    web = other.create_network("web", driver="bridge", subnet="10.1.0.0/24")
    for name in ("x1", "x2"):
        web.connect(other.create_namespace(name))
    late = other.create_namespace("late")
    refused: list[Exception] = []

    def connect_late() -> None:
        try:
            web.connect(late)
        except errors.ConflictError as exc:
            refused.append(exc)

    hooked.at("DelLinkGroup", connect_late)  # the group delete would take its veth too
    assert this.disconnect_all("web") == 2
    assert len(refused) == 1 and "being emptied" in str(refused[0])
    assert web.endpoints() == [] and this.store.dump()["journal"] == []
    ep = web.connect(late)  # once it is done, connects work again
    assert list(kernel.observe("late").addresses_of("eth0")) == [ep.addresses[0]]


def test_no_connect_lands_in_a_namespace_being_deleted(two, kernel: FakeKernel) -> None:
    this, other, hooked = two
    web = other.create_network("web", driver="bridge", subnet="10.1.0.0/24")
    other.create_namespace("app")
    refused: list[Exception] = []

    def connect_app() -> None:
        try:
            web.connect("app", publish=["8080:80"])
        except errors.ConflictError as exc:
            refused.append(exc)

    hooked.at("DeleteNamespace", connect_app)
    this.delete_namespace("app")
    assert len(refused) == 1 and "being deleted" in str(refused[0])
    assert not kernel.has_namespace("app")
    assert this.endpoints() == [] and this.ports() == []
    assert this.store.dump()["addresses"] == []


def test_a_bridge_name_recorded_by_another_network_is_refused_before_journaling(
    kernel: FakeKernel, tmp_path: Path
) -> None:
    ctl = controller(kernel, tmp_path)
    ctl.create_network("a", driver="bridge", subnet="10.1.0.0/24", bridge_name="hnbr0")
    # its bridge is not in the host (yet, or any more): only the record says it is taken
    kernel.apply(DelLink(ns=HOST, name="hnbr0"))
    faulty = FaultyBackend(kernel)
    other = controller(faulty, tmp_path)
    with pytest.raises(errors.LinkExists, match="hnbr0"):
        other.create_network("b", driver="bridge", subnet="10.2.0.0/24", bridge_name="hnbr0")
    assert faulty.calls == 0 and other.store.dump()["journal"] == []
    assert [n.name for n in other.networks() if n.driver == "bridge"] == ["a"]
    other.close()
    ctl.close()


def test_creating_a_namespace_that_exists_journals_nothing(
    kernel: FakeKernel, tmp_path: Path
) -> None:
    kernel.apply(CreateNamespace(ns="ext"))  # made by `ip netns add`, not by hostnet
    faulty = FaultyBackend(kernel)
    ctl = controller(faulty, tmp_path)
    with pytest.raises(errors.NamespaceExists):
        ctl.create_namespace("ext")
    assert faulty.calls == 0 and ctl.store.dump()["journal"] == []
    assert kernel.has_namespace("ext")
    ctl.close()


def test_gc_leaves_alone_a_namespace_made_while_it_looked(two, kernel: FakeKernel) -> None:
    this, other, hooked = two
    web = other.create_network("web", driver="bridge", subnet="10.1.0.0/24")

    def make_and_connect() -> None:
        web.connect(other.create_namespace("fresh"), publish=["8080:80"])

    hooked.at("namespaces", make_and_connect)
    assert this.gc()["stale"] == []
    (ep,) = web.endpoints()
    assert ep.workload == "fresh" and kernel.has_namespace("fresh")
    assert [p["port"] for p in this.ports()] == [8080]


def test_gc_does_not_replay_an_endpoint_that_changed_while_it_looked(
    two, kernel: FakeKernel
) -> None:
    this, other, hooked = two
    web = other.create_network("web", driver="bridge", subnet="10.1.0.0/24")
    web.connect(other.create_namespace("gone"), publish=["8080:80"])
    kernel.apply(DeleteNamespace(ns="gone"))  # deleted behind hostnet's back: stale

    def republish() -> None:  # meanwhile its endpoint goes and 8080 is published anew
        web.disconnect("gone")
        web.connect(other.create_namespace("new"), publish=["8080:80"])

    hooked.at("namespaces", republish)
    this.gc()
    (ep,) = web.endpoints()
    assert ep.workload == "new"
    sets = kernel.nft_list(HOST, "inet hostnet")["sets"]  # type: ignore[index]
    assert sets["any4_addr"] == ['{"concat":["tcp",8080]}']  # the new DNAT is still there
    assert this.store.read(lambda tx: tx.namespace("gone")) is None


def test_interleaving_hooks_fire_once() -> None:
    k = FakeKernel()
    hooked = Interleaving(k)
    fired: list[int] = []
    hooked.at("CreateNamespace", lambda: fired.append(1))
    hooked.apply(CreateNamespace(ns="a"))
    hooked.apply(CreateNamespace(ns="b"))
    assert fired == [1] and k.namespaces() == ("a", "b")


def test_the_first_network_after_the_last_one_went_plans_on_the_host_as_it_is(
    two, kernel: FakeKernel
) -> None:
    # this caller reads the host (forwarding on, the tables there: "old" made them);
    # then the other deletes "old", the last bridge network, which removes the tables
    # and turns forwarding back off; this caller's network must set both up again
    this, other, hooked = two
    other.create_network("old", driver="bridge", subnet="10.1.0.0/24")
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    hooked.at("sysctl", lambda: other.delete_network("old"))
    this.create_network("new", driver="bridge", subnet="10.2.0.0/24")
    assert "sysctl" not in hooked.hooks  # the other's delete did run in between
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    assert kernel.nft_list(HOST, "inet hostnet") is not None
    this.delete_network("new")
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "0"
    assert kernel.nft_list(HOST, "inet hostnet") is None
