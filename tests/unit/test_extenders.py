"""What a third-party driver can and cannot do to the Controller (fake backend).

A driver is other people's code: hostnet checks what it returns before anything is
journaled or applied, says its bugs as DriverError (naming it), keeps the host's shared
setup right when two drivers use the same key, and lets networks of a driver that is
no longer installed be inspected and deleted from their records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hostnet import errors
from hostnet.backends.fake import FakeKernel
from hostnet.controller import Controller
from hostnet.drivers import base
from hostnet.drivers.base import (
    ConnectContext,
    Driver,
    NetworkContext,
    register_driver,
    unregister_driver,
)
from hostnet.ops import (
    AddAddress,
    AddLink,
    CreateNamespace,
    DeleteNamespace,
    Plan,
    RecreateLinks,
    SetLinkUp,
    SetSysctl,
)
from hostnet.specs import NetworkSpec
from tests.unit.test_registry import LoDownDriver

FORWARD = "net/ipv4/ip_forward"


# connecting takes the namespace's lo down: the registry tests' well-behaved toy
LoDown = LoDownDriver


class Stray(LoDown):
    """Adds an address in a namespace given by ``where``: a bug."""

    name = "stray"
    where: ClassVar[str | None] = None

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        extra = AddAddress(ns=self.where, ifname="lo", address="10.255.0.1/32")
        return (*super().plan_connect(ctx), extra)


class Forwarder(LoDown):
    """Needs IP forwarding on the host, under bridge's key, as bridge plans it."""

    name = "forwarder"

    def shared_keys(self, spec: NetworkSpec) -> tuple[str, ...]:
        return (f"sysctl:{FORWARD}",)

    host_sysctls = (FORWARD,)

    def plan_shared(self, ctx: NetworkContext) -> dict[str, Plan]:
        current = ctx.sysctls.get(FORWARD, "0")
        if current == "1" or f"sysctl:{FORWARD}" in ctx.known_shared:
            return {}
        op = SetSysctl(ns=ctx.network.host_ns, key=FORWARD, value="1", previous=current)
        return {f"sysctl:{FORWARD}": (op,)}


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    saved = dict(base._registry)
    for cls in (LoDown, Stray, Forwarder):
        register_driver(cls.name, cls)
    yield
    base._registry.clear()
    base._registry.update(saved)


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel(seed=7)


@pytest.fixture
def hosted(kernel: FakeKernel, tmp_path: Path) -> Iterator[Controller]:
    """A Controller whose host is namespace "h" (not the root one)."""
    root = Controller(backend=kernel, state_dir=tmp_path / "root")
    root.create_namespace("h")
    root.create_namespace("other")
    ctl = Controller(backend=kernel, host="h", state_dir=tmp_path / "state", forwarding=True)
    yield ctl
    ctl.close()
    root.close()


def _unchanged(kernel: FakeKernel, ctl: Controller) -> tuple[Any, Any]:
    return kernel.dump(), ctl.store.dump()


@pytest.mark.parametrize("where", [None, "other"], ids=["root", "another"])
def test_a_plan_reaching_outside_its_namespaces_is_refused_first(
    kernel: FakeKernel, hosted: Controller, where: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ns=None`` (the root namespace) meant as "the host" is the usual slip: with a
    host of its own, the Controller must not let the driver touch the machine's
    namespace, or any other the caller never named."""
    monkeypatch.setattr(Stray, "where", where)
    net = hosted.create_network("s", driver="stray")
    app = hosted.create_namespace("app")
    before = _unchanged(kernel, hosted)
    with pytest.raises(errors.DriverError) as info:
        net.connect(app)
    assert info.value.driver == "stray" and info.value.method == "plan_connect"
    assert ("the root namespace" if where is None else "'other'") in str(info.value)
    assert "'app'" in str(info.value) and "'h'" in str(info.value)  # where it may act
    assert _unchanged(kernel, hosted) == before
    assert kernel.observe(where).link("lo").up  # nothing happened there


def test_a_driver_on_the_root_host_may_act_in_the_root_namespace(
    kernel: FakeKernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Stray, "where", None)
    with Controller(backend=kernel, state_dir=tmp_path) as ctl:
        ep = ctl.create_network("s", driver="stray").connect(ctl.create_namespace("app"))
        assert "10.255.0.1/32" in {a.address for a in kernel.observe(None).addresses}
        ctl.network("s").disconnect("app")
        assert ep.workload == "app"


class Raises(LoDown):
    name = "raises"

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        raise KeyError("proxy_arp_key")


class NotOps(LoDown):
    name = "notops"

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        return ("ip link set lo down",)  # type: ignore[return-value]


class NoPlan(LoDown):
    name = "noplan"

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        return None  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (Raises, "raised KeyError"),
        (NotOps, "which is not a hostnet.ops Op"),
        (NoPlan, "returned NoneType, not a tuple of Ops"),
    ],
)
def test_a_driver_bug_is_a_driver_error_naming_it(
    kernel: FakeKernel, hosted: Controller, cls: type[Driver], words: str
) -> None:
    register_driver(cls.name, cls)
    net = hosted.create_network("n", driver=cls.name)
    app = hosted.create_namespace("app")
    before = _unchanged(kernel, hosted)
    with pytest.raises(errors.DriverError, match=words) as info:
        net.connect(app)
    assert f"network driver {cls.name!r} (plan_connect)" in str(info.value)
    assert "bug in the driver" in str(info.value)
    assert _unchanged(kernel, hosted) == before


def test_ports_a_driver_does_not_publish_are_refused_not_recorded(
    kernel: FakeKernel, hosted: Controller
) -> None:
    net = hosted.create_network("l", driver="lodown")
    app = hosted.create_namespace("app")
    before = _unchanged(kernel, hosted)
    with pytest.raises(errors.InvalidOption, match="lodown driver does not publish ports"):
        net.connect(app, publish=["8080:80"])
    assert _unchanged(kernel, hosted) == before
    assert hosted.ports() == []


def test_a_key_shared_with_bridge_stays_while_either_network_lives(
    kernel: FakeKernel, hosted: Controller
) -> None:
    """Forwarding turned on by the first network of either driver is inherited by the
    other's network, whatever the order they go in, and restored with the last."""
    assert kernel.sysctl("h", FORWARD) == "0"
    for first, second in (("forwarder", "bridge"), ("bridge", "forwarder")):
        a = hosted.create_network("a", driver=first)
        b = hosted.create_network("b", driver=second)
        assert kernel.sysctl("h", FORWARD) == "1"
        a.delete()
        assert kernel.sysctl("h", FORWARD) == "1", f"{first} took it from {second}"
        b.delete()
        assert kernel.sysctl("h", FORWARD) == "0"


class Upgraded(LoDown):
    """A new version of a driver whose ``plan_create`` fails on networks recorded by
    the old one."""

    name = "lodown"

    def plan_create(self, ctx: NetworkContext) -> Plan:
        return (SetLinkUp(ns=ctx.network.data["new_key"], name="lo", up=True, was_up=True),)


def test_a_driver_failing_to_make_its_network_again_does_not_lock_the_host_out(
    kernel: FakeKernel, tmp_path: Path
) -> None:
    root = Controller(backend=kernel, state_dir=tmp_path / "root")
    root.create_namespace("h")
    state = tmp_path / "state"
    with Controller(backend=kernel, host="h", state_dir=state, forwarding=True) as ctl:
        ctl.create_network("l", driver="lodown")
        ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    kernel.apply(DeleteNamespace(ns="h"))  # the host restarts: its networks are made again
    kernel.apply(CreateNamespace(ns="h"))
    register_driver("lodown", Upgraded, replace=True)
    with pytest.warns(errors.HostnetWarning, match="'l' could not be made again"):
        ctl = Controller(backend=kernel, host="h", state_dir=state, forwarding=True)
    with ctl:
        assert any(link.kind == "bridge" for link in kernel.observe("h").links)
        with pytest.warns(errors.HostnetWarning, match="'l' could not be made again"):
            ctl.gc()  # works too (it tries again)
    root.close()


def test_a_network_of_an_uninstalled_driver_is_inspected_and_deleted(
    kernel: FakeKernel, hosted: Controller
) -> None:
    net = hosted.create_network("l", driver="lodown")
    app = hosted.create_namespace("app")
    net.connect(app)
    assert not kernel.observe("app").link("lo").up
    unregister_driver("lodown")  # its package is gone
    shown = hosted.inspect_network("l")
    assert shown["Driver"] == "lodown" and shown["Scope"] == "local"
    assert "l" in hosted.inspect(app)["NetworkSettings"]["Networks"]
    with pytest.raises(errors.DriverNotFound, match="not installed"):
        hosted.network("l").connect(hosted.create_namespace("app2"))
    hosted.delete_network("l", force=True)  # from the records alone
    assert kernel.observe("app").link("lo").up
    assert [n.name for n in hosted.networks() if n.name == "l"] == []


@pytest.mark.parametrize(
    ("name", "driver", "error"),
    [
        ("", LoDown, errors.InvalidName),
        ("a b/c", LoDown, errors.InvalidName),
        ("ok", dict, errors.InvalidOption),
        ("ok", LoDown(), errors.InvalidOption),
        ("ok", Driver, errors.InvalidOption),
        ("ok", "no_colon_path", errors.InvalidOption),
    ],
    ids=["empty", "spaces", "not-a-driver", "instance", "abstract", "bad-path"],
)
def test_register_driver_refuses_what_cannot_work(
    name: str, driver: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        register_driver(name, driver)
    assert name not in base.registry or name in ("",)


class Recreates(LoDown):
    """Deletes a namespace it did not make, then makes one of that name."""

    name = "recreates"
    ops: ClassVar[tuple[Any, ...]] = ()

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        return self.ops


@pytest.mark.parametrize(
    ("ops", "words"),
    [
        ((DeleteNamespace(ns="other"), CreateNamespace(ns="other")), "did not make"),
        ((CreateNamespace(ns=None),), "exists already"),
        ((CreateNamespace(ns="h"),), "exists already"),
        (
            (
                RecreateLinks(
                    ns="h", group=7, links=[AddLink(ns="other", name="x", kind="bridge")]
                ),
            ),
            "'other'",
        ),
        (
            (CreateNamespace(ns="fresh"), SetLinkUp(ns="fresh", name="lo", up=True, was_up=True)),
            None,
        ),
    ],
    ids=["delete-then-make", "make-root", "make-host", "nested-in-a-list", "own-namespace"],
)
def test_namespaces_a_plan_makes_are_checked_in_order(
    kernel: FakeKernel,
    hosted: Controller,
    monkeypatch: pytest.MonkeyPatch,
    ops: tuple[Any, ...],
    words: str | None,
) -> None:
    """Making a namespace lets a plan act in it from then on; it does not let it delete
    one it did not make, make one that exists, or reach elsewhere through a list."""
    register_driver("recreates", Recreates)
    monkeypatch.setattr(Recreates, "ops", ops)
    net = hosted.create_network("r", driver="recreates")
    app = hosted.create_namespace("app")
    before = _unchanged(kernel, hosted)
    if words is None:
        net.connect(app)
        assert "fresh" in kernel.namespaces()
        return
    with pytest.raises(errors.DriverError, match=words):
        net.connect(app)
    assert _unchanged(kernel, hosted) == before


class Unlisted(Forwarder):
    """Returns shared setup under a key its shared_keys() does not list."""

    name = "unlisted"

    def shared_keys(self, spec: NetworkSpec) -> tuple[str, ...]:
        return ()


def test_shared_setup_under_a_key_not_listed_is_refused(
    kernel: FakeKernel, hosted: Controller
) -> None:
    """Its heirs are found by the listed keys: an unlisted one would be undone with
    its first network while the others still need it."""
    register_driver("unlisted", Unlisted)
    before = _unchanged(kernel, hosted)
    with pytest.raises(errors.DriverError, match="not in its shared_keys"):
        hosted.create_network("u", driver="unlisted")
    assert _unchanged(kernel, hosted) == before
