"""Failure paths that must never leave the kernel and the store disagreeing (found in
review; each reproduces what happened before the fix)."""

from __future__ import annotations

from typing import Any

import pytest

from hostnet import errors
from hostnet.backends.fake import FakeKernel
from hostnet.controller import Controller
from hostnet.ops import NftBatch, Op


class Flaky:
    """A fake kernel whose ops of the named kinds fail the next ``n`` times."""

    name = "fake"

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.fails: dict[str, int] = {}
        self.before: Any = None  # called before each op, to play another process

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)

    def apply(self, op: Op) -> None:
        if self.before is not None:
            self.before(op)
        kind = type(op).__name__
        if self.fails.get(kind):
            self.fails[kind] -= 1
            raise errors.KernelError(str(op), 5, "injected")
        self.kernel.apply(op)


@pytest.fixture
def flaky(tmp_path) -> Any:
    kernel = FakeKernel(seed=11)
    backend = Flaky(kernel)
    ctl = Controller(backend=backend, state_dir=tmp_path / "s", forwarding=True)
    yield ctl, backend, kernel
    ctl.close()


def test_a_failed_rollback_keeps_its_records_and_gc_undoes_only_what_is_left(flaky) -> None:
    ctl, backend, kernel = flaky
    net = ctl.create_network("lan", "macvlan", subnet="192.168.50.0/24", parent="eth0")
    ns = ctl.create_namespace("x")
    backend.fails = {"AddRoute": 1, "DelAddress": 1}
    with pytest.raises(errors.ApplyError):
        net.connect(ns)
    (journal,) = ctl.store.read(lambda tx: tx.journals())
    assert journal["kind"] == "teardown" and journal["failed"]
    assert [op["op"] for op in journal["plan"]] == ["DelAddress"]
    # the user tries again: the half-undone endpoint is still recorded, so it says so
    with pytest.raises(errors.ConflictError):
        net.connect(ns)
    assert ctl.gc()["recovered"][0]["errors"] == []
    assert [link.name for link in kernel.observe("x").links] == ["lo"]
    ep = net.connect(ns)
    assert ctl.gc()["recovered"] == []
    assert kernel.observe("x").link("eth0") is not None and ep.ifname == "eth0"
    assert ctl.store.dump()["journal"] == []


def test_a_failed_teardown_blocks_the_network_until_gc_finishes_it(flaky) -> None:
    ctl, backend, kernel = flaky
    net = ctl.create_network("web", subnet="10.92.0.0/24")
    for name in ("a", "b"):
        net.connect(ctl.create_namespace(name))
    backend.fails = {"DelLink": 1}  # the bridge
    with pytest.raises(errors.TeardownError):
        net.delete(force=True)
    z = ctl.create_namespace("z")
    with pytest.raises(errors.ConflictError, match="being deleted"):
        net.connect(z)  # no new endpoint on a network half torn down
    ctl.gc()
    assert [n.name for n in ctl.networks()] == ["host", "none"]
    dump = ctl.store.dump()
    assert dump["endpoints"] == [] and dump["addresses"] == [] and dump["journal"] == []
    assert kernel.observe(None).nft_tables == ()
    assert z.snapshot().link_names() == {"lo"}


def test_a_refused_nft_batch_in_a_bulk_teardown_still_removes_the_rest(flaky) -> None:
    ctl, backend, kernel = flaky
    ctl.create_network("other", subnet="10.97.0.0/24")  # keeps the shared tables alive
    net = ctl.create_network("web", subnet="10.96.0.0/24")
    for i, name in enumerate("abc"):
        net.connect(ctl.create_namespace(name), publish=[f"{8080 + i}:80"])
    backend.fails = {"DelLink": 1}
    with pytest.raises(errors.TeardownError):
        net.disconnect("a")  # its map elements are gone, its veth is not
    ctl.gc()  # finishes the disconnect
    net.delete(force=True)
    listing = kernel.nft_list(None, "inet hostnet")
    assert listing is not None
    assert all(not v for k, v in listing["sets"].items() if k.startswith(("any", "dnat")))
    assert ctl.ports() == []


def test_an_endpoint_removed_while_publishing_is_rolled_back(flaky) -> None:
    ctl, backend, kernel = flaky
    net = ctl.create_network("web", subnet="10.91.0.0/24")
    ns = ctl.create_namespace("a1")
    ep = net.connect(ns)

    def another_process_disconnects(op: Op) -> None:
        if isinstance(op, NftBatch) and "any4" in op.commands:
            backend.before = None
            with ctl.store.transaction() as tx:
                tx.forget(ep.id)

    backend.before = another_process_disconnects
    with pytest.raises(errors.ConflictError):
        net.publish(ns, ["8080:80"])
    listing = kernel.nft_list(None, "inet hostnet")
    assert listing is not None and listing["sets"]["any4_addr"] == []
    assert ctl.ports() == [] and ctl.store.read(lambda tx: tx.journals()) == []
