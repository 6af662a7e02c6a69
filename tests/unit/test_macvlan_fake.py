"""Macvlan networks on the fake backend: everything that needs no packets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostnet import errors
from hostnet.backends.fake import FakeKernel
from hostnet.controller import Controller
from hostnet.ops import AddAddress, AddLink, CreateNamespace, DeleteNamespace, DelLink
from hostnet.testing.world import without_namespace

HOST = "host"


@pytest.fixture
def ctl(tmp_path) -> Iterator[Controller]:
    kernel = FakeKernel(seed=9)
    kernel.apply(CreateNamespace(ns=HOST))
    kernel.add_device(HOST, "lan0")
    kernel.apply(AddAddress(ns=HOST, ifname="lan0", address="192.168.50.2/24"))
    kernel.add_device(HOST, "down0", up=False)
    c = Controller(backend=kernel, host=HOST, state_dir=tmp_path / "s")
    yield c
    c.close()


def kernel_of(ctl: Controller) -> FakeKernel:
    assert isinstance(ctl.backend, FakeKernel)
    return ctl.backend


def lan(ctl: Controller, name: str = "lan", **kwargs: object):  # type: ignore[no-untyped-def]
    opts: dict[str, object] = dict(parent="lan0", subnet="192.168.50.0/24", gateway="192.168.50.1")
    opts.update(kwargs)
    return ctl.create_network(name, driver="macvlan", **opts)  # type: ignore[arg-type]


def test_endpoints_are_macvlan_children_in_their_namespaces(ctl: Controller) -> None:
    net = lan(ctl, ip_range="192.168.50.0/28", mode="vepa")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    ea, eb = net.connect(a), net.connect(b)
    # .1 is the gateway and .2 the host's own address on the LAN: never handed out
    assert (ea.ip, eb.ip) == ("192.168.50.3", "192.168.50.4")
    link = a.snapshot().link("eth0")
    assert link is not None and (link.kind, link.mode, link.mac) == ("macvlan", "vepa", ea.mac)
    assert link.mtu == 1500  # the parent's
    assert [(r.gateway, r.ifname) for r in a.routes() if r.is_default] == [
        ("192.168.50.1", "eth0")
    ]
    config = net.inspect()["IPAM"]["Config"][0]
    assert config["AuxiliaryAddresses"] == {"host:lan0": "192.168.50.2"}
    assert net.inspect()["Options"]["macvlan_mode"] == "vepa"
    net.disconnect(a)
    assert a.snapshot().link_names() == {"lo"}


def test_internal_macvlan_has_no_default_route(ctl: Controller) -> None:
    net = lan(ctl, internal=True)
    a = ctl.create_namespace("a")
    net.connect(a)
    assert [r for r in a.routes() if r.is_default] == []


def test_shim_with_and_without_range(ctl: Controller) -> None:
    net = lan(ctl, ip_range="192.168.50.128/25", host_shim=True)
    shim = net.data["shim"]
    host = kernel_of(ctl).observe(HOST)
    assert host.link(shim) is not None and host.link(shim).parent == "lan0"  # type: ignore[union-attr]
    assert host.addresses_of(shim) == ("192.168.50.127/32",)
    assert any(r.dst == "192.168.50.128/25" and r.ifname == shim for r in host.routes)
    net.delete()
    assert kernel_of(ctl).observe(HOST).link(shim) is None
    assert ctl.store.dump()["addresses"] == []
    net = lan(ctl, "norange", host_shim=True)
    a = ctl.create_namespace("a")
    ep = net.connect(a)
    assert any(r.dst == f"{ep.ip}/32" for r in kernel_of(ctl).observe(HOST).routes)
    net.disconnect(a)
    assert not any(r.dst == f"{ep.ip}/32" for r in kernel_of(ctl).observe(HOST).routes)


def test_passthru_one_endpoint_and_exclusive_parent(ctl: Controller) -> None:
    net = lan(ctl, mode="passthru")
    net.connect(ctl.create_namespace("a"))
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.ConflictError):
        net.connect(ctl.create_namespace("b"))
    with pytest.raises(errors.ConflictError):
        lan(ctl, "other", subnet="10.50.0.0/24", gateway="10.50.0.1")
    after_kernel = kernel_of(ctl).dump()
    del after_kernel["b"]
    assert after_kernel == before_kernel
    assert without_namespace(ctl.store.dump(), "b") == before_store


def test_a_passthru_endpoint_takes_no_mac_of_its_own(ctl: Controller) -> None:
    # the kernel gives it the parent's MAC whatever it is asked for, so a MAC given
    # would be recorded (and inspected) but not be the link's
    net = lan(ctl, mode="passthru")
    a = ctl.create_namespace("a")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.InvalidOption) as info:
        net.connect(a, mac="02:00:00:00:00:42")
    assert info.value.option == "mac"
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store
    ep = net.connect(a)
    parent = kernel_of(ctl).observe(HOST).link("lan0")
    assert parent is not None and ep.mac == parent.mac  # the kernel's, recorded
    assert a.snapshot().link("eth0").mac == ep.mac  # type: ignore[union-attr]
    assert net.inspect()["Containers"][a.name]["MacAddress"] == parent.mac


def test_a_bridge_port_cannot_be_a_parent(ctl: Controller) -> None:
    # the bridge has the port's frames: the kernel refuses a macvlan on it (EBUSY), so
    # a network on it could not connect anything (and a shim fails after the journal)
    kernel_of(ctl).apply(AddLink(ns=HOST, name="br0", kind="bridge", up=True))
    kernel_of(ctl).apply(
        AddLink(ns=HOST, name="port0", kind="veth", peer="port1", up=True, master="br0")
    )
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    for shim in (False, True):
        with pytest.raises(errors.InvalidOption) as info:
            lan(ctl, parent="port0", host_shim=shim)
        assert "br0" in str(info.value)
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_a_static_address_taken_by_the_shim_says_so(ctl: Controller) -> None:
    net = lan(ctl, ip_range="192.168.50.128/25", host_shim=True)
    app = ctl.create_namespace("app")
    before = ctl.store.dump()
    with pytest.raises(errors.AddressInUse) as info:
        net.connect(app, ip="192.168.50.127")
    assert info.value.holder == "host shim"  # not the network's id
    assert ctl.store.dump() == before


def test_sharing_a_parent_needs_disjoint_subnets(ctl: Controller) -> None:
    lan(ctl, "one", subnet="192.168.50.0/25", gateway="192.168.50.1")
    with pytest.raises(errors.SubnetOverlap):
        lan(ctl, "two", subnet="192.168.50.64/26", gateway="192.168.50.65")
    lan(ctl, "three", subnet="192.168.50.128/25", gateway="192.168.50.129")


@pytest.mark.parametrize(
    ("error", "kwargs"),
    [
        (errors.LinkNotFound, dict(parent="nope0")),
        (errors.LinkDown, dict(parent="down0")),
        (errors.InvalidOption, dict(parent="lo")),
        (errors.InvalidOption, dict(mode="weird")),
        (errors.InvalidOption, dict(parent="")),
        (errors.InvalidOption, dict(mtu="9000")),
        (errors.InvalidOption, dict(mode="private", host_shim=True)),
        (errors.InvalidName, dict(parent="x" * 16)),
        (errors.InvalidOption, dict(mode="private", macvlan_mode="bridge")),
    ],
)
def test_bad_input_changes_nothing(
    ctl: Controller, error: type[Exception], kwargs: dict[str, object]
) -> None:
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(error):
        lan(ctl, **kwargs)
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_publishing_on_macvlan_is_refused(ctl: Controller) -> None:
    net = lan(ctl)
    a = ctl.create_namespace("a")
    with pytest.raises(errors.InvalidOption):
        net.connect(a, publish=["8080:80"])
    assert a.snapshot().link_names() == {"lo"}


def remake(ctl: Controller, name: str) -> None:
    """`ip netns del NAME; ip netns add NAME` and a veth `eth0` of the user's in it."""
    kernel = kernel_of(ctl)
    kernel.apply(DeleteNamespace(ns=name))
    kernel.apply(CreateNamespace(ns=name))
    kernel.apply(AddLink(ns=name, name="eth0", kind="veth", peer=f"usr{name}", peer_ns=HOST))


def test_a_namespace_made_again_under_its_name_is_not_hostnets(ctl: Controller) -> None:
    net = lan(ctl)
    net.connect(ctl.create_namespace("x"))
    remake(ctl, "x")
    # disconnecting the old endpoint leaves the new namespace's eth0 alone
    net.disconnect("x")
    assert kernel_of(ctl).observe("x").link("eth0") is not None
    # the records were of the old namespace: the new one is adopted, never deleted
    assert {n.name: n.managed for n in ctl.namespaces()}["x"] is False
    ns = ctl.namespace("x")
    assert not ns.managed
    with pytest.raises(errors.ConflictError, match="force"):
        ns.delete()
    assert ns.exists()
    # a hostnet namespace deleted behind its back: its name can be used again at once
    ctl.create_namespace("y")
    kernel_of(ctl).apply(DeleteNamespace(ns="y"))
    assert ctl.create_namespace("y").managed


def test_gc_and_delete_forget_a_namespace_that_was_made_again(ctl: Controller) -> None:
    net = lan(ctl)
    ep = net.connect(ctl.create_namespace("x"))
    net.connect(ctl.create_namespace("z"))
    remake(ctl, "x")
    remake(ctl, "z")
    with pytest.raises(errors.ConflictError, match="gc"):
        net.connect("x")  # its old endpoint is still recorded
    report = ctl.gc()
    assert sorted(report["stale"]) == ["x", "z"]
    assert [e.workload for e in net.endpoints()] == []
    assert {"x", "z"} <= set(kernel_of(ctl).namespaces())
    assert kernel_of(ctl).observe("x").link("eth0") is not None
    assert net.connect("x", ip=ep.ip).ip == ep.ip  # its address is free again
    # delete_namespace of a replaced one forgets the old records and spares the new one
    ctl.create_namespace("w")
    remake(ctl, "w")
    with pytest.warns(errors.HostnetWarning, match="made again"):
        ctl.delete_namespace("w")
    assert "w" in kernel_of(ctl).namespaces()
    assert ctl.store.read(lambda tx: tx.namespace("w")) is None


def test_audit_says_macvlan_networks_are_not_isolated(ctl: Controller) -> None:
    lan(ctl)
    lan(ctl, "inner", subnet="10.61.0.0/24", gateway="10.61.0.1", internal=True)  # own parent
    found = [(f["kind"], f["subject"]) for f in ctl.audit() if f["kind"] == "no-isolation"]
    assert found == [("no-isolation", "lan")]


def test_audit_names_what_an_older_hostnet_left_less_safe(ctl: Controller) -> None:
    # an internal network on the named parent's LAN (before internal networks got a
    # parent of their own), an endpoint of an IPv4-only network with IPv6 on (before
    # IPv6 was turned off there): both read from what the store recorded
    import json

    inner = lan(ctl, "inner", internal=True)
    outer = lan(ctl, "outer", subnet="192.168.60.0/24", gateway="192.168.60.1")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    outer.connect(a)
    outer.connect(b)
    assert {(f["kind"], f["severity"]) for f in ctl.audit()} == {("no-isolation", "low")}
    kernel_of(ctl).apply(DelLink(ns=HOST, name=inner.data["private_parent"]))  # and its peer
    with ctl.store.transaction() as tx:
        data = dict(inner.data, parent="lan0")
        del data["private_parent"]
        tx.c.execute("UPDATE networks SET data = ? WHERE id = ?", (json.dumps(data), inner.id))
        (row,) = tx.endpoints(workload="a")
        plan = [dict(op, ipv6=True) if op["op"] == "AddLink" else op for op in row["applied"]]
        tx.c.execute(
            "UPDATE endpoints SET applied = ? WHERE id = ?", (json.dumps(plan), row["id"])
        )
    found = {(f["kind"], f["severity"], f["subject"]) for f in ctl.audit()}
    assert found == {
        ("no-isolation", "low", "outer"),
        ("no-isolation", "high", "inner"),
        ("ipv6-on", "medium", "a"),
    }
    # a link under 1280 bytes has no IPv6 at all: nothing was left on (its MTU followed
    # a small parent's, which the record does not say)
    kernel_of(ctl).add_device(HOST, "small0", mtu=1200)
    small = lan(ctl, "small", parent="small0", subnet="192.168.70.0/24", gateway="192.168.70.1")
    small.connect(ctl.create_namespace("c"))
    with ctl.store.transaction() as tx:
        (row,) = tx.endpoints(workload="c")
        plan = [
            dict(op, ipv6=True, mtu=None) if op["op"] == "AddLink" else op for op in row["applied"]
        ]
        tx.c.execute(
            "UPDATE endpoints SET applied = ? WHERE id = ?", (json.dumps(plan), row["id"])
        )
    assert "c" not in {f["subject"] for f in ctl.audit() if f["kind"] == "ipv6-on"}


def test_a_static_mac_is_unique_on_the_parents_lan(ctl: Controller) -> None:
    first = lan(ctl)
    second = lan(ctl, "lan2", subnet="10.60.0.0/24", gateway="10.60.0.1")
    first.connect(ctl.create_namespace("a"), mac="02:00:00:00:00:42")
    b = ctl.create_namespace("b")
    before = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.AddressInUse, match="'lan'"):
        second.connect(b, mac="02:00:00:00:00:42")  # the same LAN: lan0's
    assert (kernel_of(ctl).dump(), ctl.store.dump()) == before
    assert second.connect(b, mac="02:00:00:00:00:43").mac == "02:00:00:00:00:43"


def test_an_option_given_as_none_is_refused_not_taken_for_the_word(ctl: Controller) -> None:
    before = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.InvalidOption, match="parent"):
        lan(ctl, parent=None)
    assert (kernel_of(ctl).dump(), ctl.store.dump()) == before


def test_an_internal_network_needs_no_parent_and_makes_its_own(ctl: Controller) -> None:
    net = ctl.create_network(
        "inner", driver="macvlan", subnet="10.61.0.0/24", gateway="10.61.0.1", internal=True
    )
    own = net.data["private_parent"]
    assert kernel_of(ctl).observe(HOST).link(own) is not None
    a = ctl.create_namespace("a")
    net.connect(a)
    assert a.snapshot().link("eth0").parent is None  # type: ignore[union-attr]
    assert [r for r in a.routes() if r.is_default] == []
    assert [f for f in ctl.audit() if f["kind"] == "leaked-link"] == []  # both ends known
    net.delete(force=True)
    assert kernel_of(ctl).observe(HOST).link_names() == {"lo", "lan0", "down0"}


@pytest.mark.parametrize("whose", ["parent", "shim"])
def test_a_static_mac_of_the_parent_or_the_shim_is_refused_first(
    ctl: Controller, whose: str
) -> None:
    net = lan(ctl, ip_range="192.168.50.128/25", host_shim=True)
    name = "lan0" if whose == "parent" else net.data["shim"]
    link = kernel_of(ctl).observe(HOST).link(name)
    assert link is not None
    app = ctl.create_namespace("app")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.AddressInUse, match=name):
        net.connect(app, mac=link.mac)
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_a_static_mac_of_another_networks_shim_on_the_parent_is_refused_first(
    ctl: Controller,
) -> None:
    lan(ctl, ip_range="192.168.50.128/25", host_shim=True)
    other = lan(ctl, "lan2", subnet="10.60.0.0/24", gateway="10.60.0.1")
    shim = ctl.network("lan").data["shim"]
    link = kernel_of(ctl).observe(HOST).link(shim)
    assert link is not None
    app = ctl.create_namespace("app")
    before = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.AddressInUse, match=shim):
        other.connect(app, mac=link.mac)
    assert (kernel_of(ctl).dump(), ctl.store.dump()) == before


def test_a_mac_given_in_capitals_is_the_same_mac(ctl: Controller) -> None:
    net = lan(ctl)
    app = ctl.create_namespace("app")
    ep = net.connect(app, mac="02:AB:00:00:00:01")
    assert ep.mac == "02:ab:00:00:00:01" == app.snapshot().link("eth0").mac  # type: ignore[union-attr]
    net.disconnect(app)
    assert app.snapshot().link_names() == {"lo"}


def test_audit_says_a_macvlan_parent_went_missing(ctl: Controller) -> None:
    from hostnet.ops import DelLink

    lan(ctl)
    lan(ctl, "inner", subnet="10.61.0.0/24", gateway="10.61.0.1", internal=True)
    assert [f for f in ctl.audit() if f["kind"] == "missing-link"] == []
    kernel_of(ctl).apply(DelLink(ns=HOST, name="lan0"))
    found = [
        (f["subject"], "lan0" in f["detail"]) for f in ctl.audit() if f["kind"] == "missing-link"
    ]
    assert found == [("lan", True)]


def test_a_shim_gc_cannot_make_again_is_warned_about_and_gc_goes_on(ctl: Controller) -> None:
    net = lan(ctl, ip_range="192.168.50.128/25", host_shim=True, mtu=1500)
    net.connect(ctl.create_namespace("app"))
    ctl.create_namespace("gone")
    kernel = kernel_of(ctl)
    kernel._ns(HOST).links["lan0"].mtu = 1400  # (the admin lowered it)
    kernel.apply(DelLink(ns=HOST, name=net.data["shim"]))
    kernel.apply(DeleteNamespace(ns="gone"))  # (behind hostnet's back)
    before = kernel.dump()
    with pytest.warns(errors.HostnetWarning, match="could not make the host shim"):
        report = ctl.gc()
    assert report["shims"] == [] and report["stale"] == ["gone"]  # (the rest was done)
    assert kernel.dump() == {k: v for k, v in before.items() if k != "gone"}  # (rolled back)
