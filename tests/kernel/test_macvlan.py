"""Macvlan networks on the real kernel.

This kernel has no dummy or vlan links, so the test "host" is a namespace whose parent
interface is one end of a veth pair; the other end sits in an "outside LAN" namespace
with an address on the same subnet (the LAN's gateway)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from hostnet import errors
from hostnet.controller import Controller
from hostnet.namespace import Namespace
from hostnet.testing.world import without_namespace
from tests.kernel.netutil import advertise_router, ping, request, server, slaac_taken

LAN_GW = "192.168.50.1"
HOST_ON_LAN = "192.168.50.2"


@dataclass
class Lan:
    ctl: Controller
    host: Namespace
    lan: Namespace
    name: object

    def ns(self, hint: str = "app") -> Namespace:
        return self.ctl.create_namespace(self.name(hint))  # type: ignore[operator]

    def network(self, name: str = "lan", **kwargs: object) -> object:
        opts: dict[str, object] = dict(parent="lan0", subnet="192.168.50.0/24", gateway=LAN_GW)
        opts.update(kwargs)
        return self.ctl.create_network(name, driver="macvlan", **opts)  # type: ignore[arg-type]


@pytest.fixture
def lan(hostnet_host) -> Lan:
    ctl = hostnet_host.controller
    host = ctl.namespace(hostnet_host.host)
    lan_name = hostnet_host.name("lan")
    outside = ctl.create_namespace(lan_name)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    ip(
        "-n",
        host.name,
        "link",
        "add",
        "lan0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        lan_name,
    )
    ip("-n", host.name, "addr", "add", f"{HOST_ON_LAN}/24", "dev", "lan0")
    ip("-n", lan_name, "addr", "add", f"{LAN_GW}/24", "dev", "eth0")
    ip("-n", host.name, "link", "set", "lan0", "up")
    ip("-n", lan_name, "link", "set", "eth0", "up")
    return Lan(ctl=ctl, host=host, lan=outside, name=hostnet_host.name)


def test_bridge_mode_reaches_the_lan_and_each_other(lan: Lan) -> None:
    net = lan.network(ip_range="192.168.50.128/25")
    a, b = lan.ns(), lan.ns()
    ea, eb = net.connect(a), net.connect(b)  # type: ignore[attr-defined]
    assert (ea.ip, eb.ip) == ("192.168.50.128", "192.168.50.129")
    link = a.snapshot().link("eth0")
    assert link is not None and link.kind == "macvlan" and link.mode == "bridge"
    assert link.mac == ea.mac and ea.mac != eb.mac
    assert int(ea.mac.split(":")[0], 16) & 0x02 and not int(ea.mac.split(":")[0], 16) & 0x01
    assert ping(a, LAN_GW) and ping(a, eb.ip)
    with server(lan.lan, 7300, tag="lan"):
        assert request(a, LAN_GW, 7300) == f"lan {ea.ip}"  # its own address on the LAN
    with server(b, 7301):
        assert request(lan.lan, eb.ip, 7301) == f"{b.name} {LAN_GW}"
    assert [(r.gateway, r.ifname) for r in a.routes() if r.is_default] == [(LAN_GW, "eth0")]
    info = lan.ctl.inspect_network("lan")
    assert info["Driver"] == "macvlan"
    assert info["Options"]["parent"] == "lan0" and info["Options"]["macvlan_mode"] == "bridge"


def test_a_parent_renamed_and_its_name_given_to_another_link(lan: Lan) -> None:
    # the admin renames the parent and gives its name to a link on another LAN: the
    # network is on "lan0", whichever link that is now (as Docker looks it up on join)
    net = lan.network()
    first = lan.ns()
    net.connect(first)  # type: ignore[attr-defined]
    other = lan.ns("lan2")

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", lan.host.name, *args], check=True)

    ip("link", "set", "lan0", "down")
    ip("link", "set", "lan0", "name", "lanold")
    ip("link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", other.name)
    ip("link", "set", "lan0", "up")
    subprocess.run(["ip", "-n", other.name, "addr", "add", f"{LAN_GW}/24", "dev", "eth0"])
    subprocess.run(["ip", "-n", other.name, "link", "set", "eth0", "up"], check=True)
    second = lan.ns()
    net.connect(second)  # type: ignore[attr-defined]
    assert ping(second, LAN_GW)  # (the new LAN's address of the same number)
    parent = lan.host.snapshot().link("lan0")
    out = subprocess.run(
        ["ip", "-n", second.name, "-o", "link", "show", "eth0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert parent is not None and f"eth0@if{parent.index}:" in out


def test_disconnect_leaves_an_eth0_the_workload_made_after_its_endpoint_died(lan: Lan) -> None:
    net = lan.network()
    app = lan.ns()
    net.connect(app)  # type: ignore[attr-defined]
    # the parent goes (its children with it), and the workload makes an eth0 of its own
    subprocess.run(["ip", "-n", lan.host.name, "link", "del", "lan0"], check=True)
    subprocess.run(
        ["ip", "-n", app.name, "link", "add", "eth0", "type", "veth", "peer", "name", "own1"],
        check=True,
    )
    net.disconnect(app)  # type: ignore[attr-defined]
    assert app.snapshot().link_names() == {"lo", "eth0", "own1"}
    assert lan.ctl.store.dump()["endpoints"] == []


def test_a_parent_whose_mtu_was_lowered_under_the_networks_says_so(lan: Lan) -> None:
    net = lan.network(mtu=1400)
    subprocess.run(["ip", "-n", lan.host.name, "link", "set", "lan0", "mtu", "1300"], check=True)
    app = lan.ns()
    before = lan.ctl.store.dump()
    with pytest.raises(errors.MtuAboveParent, match="raise the parent's MTU"):
        net.connect(app)  # type: ignore[attr-defined]
    assert app.snapshot().link_names() == {"lo"}
    assert lan.ctl.store.dump() == before


def test_private_mode_keeps_endpoints_apart(lan: Lan) -> None:
    net = lan.network(mode="private")
    a, b = lan.ns(), lan.ns()
    net.connect(a)  # type: ignore[attr-defined]
    eb = net.connect(b)  # type: ignore[attr-defined]
    assert ping(a, LAN_GW)
    assert not ping(a, eb.ip)


def test_host_reaches_its_endpoints_only_with_the_shim(lan: Lan) -> None:
    plain = lan.network("plain", subnet="192.168.50.0/25", gateway=LAN_GW)
    a = lan.ns()
    ea = plain.connect(a)  # type: ignore[attr-defined]
    assert ping(a, LAN_GW)
    assert not ping(lan.host, ea.ip)  # the kernel keeps a parent away from its children
    plain.disconnect(a)  # type: ignore[attr-defined]
    plain.delete()  # type: ignore[attr-defined]
    shimmed = lan.network("shimmed", ip_range="192.168.50.128/26", host_shim=True)
    b, c = lan.ns(), lan.ns()
    eb = shimmed.connect(b)  # type: ignore[attr-defined]
    assert ping(lan.host, eb.ip)
    with server(b, 7302):
        assert request(lan.host, eb.ip, 7302).startswith(b.name)
    # a static address outside the range needs a route of its own through the shim
    static = lan.ns()
    shimmed.connect(static, ip="192.168.50.20")  # type: ignore[attr-defined]
    assert ping(lan.host, "192.168.50.20")
    shimmed.disconnect(static)  # type: ignore[attr-defined]
    assert not any(r.dst == "192.168.50.20/32" for r in lan.host.routes())
    shim = shimmed.data["shim"]  # type: ignore[attr-defined]
    host_snap = lan.host.snapshot()
    assert host_snap.link(shim) is not None
    assert [a.address for a in host_snap.addresses if a.ifname == shim] == [
        "192.168.50.255/32"
    ] or len([a for a in host_snap.addresses if a.ifname == shim]) == 1
    # without an ip range, each endpoint gets its own /32 route through the shim
    shimmed.disconnect(b)  # type: ignore[attr-defined]
    shimmed.delete()  # type: ignore[attr-defined]
    assert lan.host.snapshot().link(shim) is None
    norange = lan.network("norange", host_shim=True)
    ec = norange.connect(c)  # type: ignore[attr-defined]
    assert ping(lan.host, ec.ip)
    assert any(r.dst == f"{ec.ip}/32" for r in lan.host.routes())
    norange.disconnect(c)  # type: ignore[attr-defined]
    assert not any(r.dst == f"{ec.ip}/32" for r in lan.host.routes())


def test_passthru_takes_one_endpoint_and_the_parent_to_itself(lan: Lan) -> None:
    net = lan.network(mode="passthru")
    a, b = lan.ns(), lan.ns()
    net.connect(a)  # type: ignore[attr-defined]
    assert ping(a, LAN_GW)
    with pytest.raises(errors.ConflictError):
        net.connect(b)  # type: ignore[attr-defined]
    assert b.snapshot().link_names() == {"lo"}
    with pytest.raises(errors.ConflictError):
        lan.network("other", subnet="10.50.0.0/24", gateway="10.50.0.1")


def test_a_passthru_endpoint_takes_no_mac_of_its_own(lan: Lan) -> None:
    # the kernel gives it the parent's MAC whatever it is asked for
    net = lan.network(mode="passthru")
    app = lan.ns()
    with pytest.raises(errors.InvalidOption):
        net.connect(app, mac="02:00:00:00:00:42")  # type: ignore[attr-defined]
    assert app.snapshot().link_names() == {"lo"}
    ep = net.connect(app)  # type: ignore[attr-defined]
    parent = lan.host.snapshot().link("lan0")
    link = app.snapshot().link("eth0")
    assert parent is not None and link is not None and link.mac == parent.mac == ep.mac
    assert net.inspect()["Containers"][app.name]["MacAddress"] == parent.mac  # type: ignore[attr-defined]


@pytest.mark.parametrize("whose", ["parent", "shim"])
def test_a_static_mac_of_the_parent_or_the_shim_is_refused_first(lan: Lan, whose: str) -> None:
    net = lan.network(ip_range="192.168.50.128/25", host_shim=True)
    link = lan.host.snapshot().link("lan0" if whose == "parent" else net.data["shim"])  # type: ignore[attr-defined]
    assert link is not None
    app = lan.ns()
    before, store = lan.host.snapshot(), lan.ctl.store.dump()
    with pytest.raises(errors.AddressInUse, match=link.name):
        net.connect(app, mac=link.mac)  # type: ignore[attr-defined]
    assert app.snapshot().link_names() == {"lo"}
    assert lan.host.snapshot().links == before.links
    assert without_namespace(lan.ctl.store.dump(), app.name) == without_namespace(store, app.name)


def test_teardown_leaves_nothing(lan: Lan) -> None:
    before = lan.host.snapshot()
    store_before = lan.ctl.store.dump()
    net = lan.network(ip_range="192.168.50.128/25", host_shim=True)
    apps = [lan.ns() for _ in range(3)]
    for app in apps:
        net.connect(app)  # type: ignore[attr-defined]
    net.delete(force=True)  # type: ignore[attr-defined]
    for app in apps:
        assert app.snapshot().link_names() == {"lo"}
    after = lan.host.snapshot()
    assert after.links == before.links
    assert after.addresses == before.addresses and after.routes == before.routes
    store_after = lan.ctl.store.dump()
    assert store_after["addresses"] == [] and store_after["endpoints"] == []
    assert store_after["networks"] == store_before["networks"]


def test_bad_input_changes_nothing(lan: Lan) -> None:
    lan.network("first", subnet="192.168.50.0/25", gateway=LAN_GW)
    host_before, store_before = lan.host.snapshot(), lan.ctl.store.dump()
    subprocess.run(
        [
            "ip",
            "-n",
            lan.host.name,
            "link",
            "add",
            "down0",
            "type",
            "veth",
            "peer",
            "name",
            "down1",
        ],
        check=True,
    )
    # a port of a bridge: the kernel refuses a macvlan on it (EBUSY)
    ip = ["ip", "-n", lan.host.name, "link"]
    subprocess.run([*ip, "add", "br0", "type", "bridge"], check=True)
    subprocess.run([*ip, "set", "down1", "master", "br0", "up"], check=True)
    host_before = lan.host.snapshot()
    cases = [
        (errors.LinkNotFound, dict(parent="nope0", subnet="10.60.0.0/24")),
        (errors.LinkDown, dict(parent="down0", subnet="10.60.0.0/24")),
        (errors.InvalidOption, dict(parent="lo", subnet="10.60.0.0/24")),
        (errors.InvalidOption, dict(parent="lan0", subnet="10.60.0.0/24", mode="weird")),
        (errors.SubnetOverlap, dict(parent="lan0", subnet="192.168.50.0/26")),
        (errors.InvalidOption, dict(parent="lan0", subnet="10.60.0.0/24", mtu="9000")),
        (errors.InvalidOption, dict(subnet="10.60.0.0/24")),  # no parent
        (errors.InvalidOption, dict(parent="down1", subnet="10.60.0.0/24")),  # bridge port
        (errors.InvalidOption, dict(parent="down1", subnet="10.60.0.0/24", host_shim=True)),
        (
            errors.InvalidOption,
            dict(parent="lan0", subnet="10.60.0.0/24", mode="private", host_shim=True),
        ),
    ]
    for error, kwargs in cases:
        with pytest.raises(error) as info:
            lan.ctl.create_network("bad", driver="macvlan", **kwargs)  # type: ignore[arg-type]
        if kwargs.get("parent") == "down1":  # refused for being a port, not by chance
            assert "port of bridge 'br0'" in str(info.value)
    app = lan.ns()
    with pytest.raises(errors.InvalidOption):
        lan.ctl.network("first").connect(app, publish=["80"])
    assert app.snapshot().link_names() == {"lo"}
    assert lan.host.snapshot().links == host_before.links
    after = without_namespace(lan.ctl.store.dump(), app.name)
    assert after == without_namespace(store_before, app.name)


def test_a_namespace_deleted_and_made_again_by_hand_is_left_alone(lan: Lan) -> None:
    # ip netns del; ip netns add (its inode number is often the old one's): the
    # new namespace, and its own eth0, are not hostnet's
    net = lan.network()
    app = lan.ns()
    net.connect(app)  # type: ignore[attr-defined]
    name = app.name
    subprocess.run(["ip", "netns", "del", name], check=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(
        ["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
        check=True,
    )
    net.disconnect(name)  # type: ignore[attr-defined]
    out = subprocess.run(
        ["ip", "-n", name, "-br", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert "eth0@eth1" in out and "eth1@eth0" in out
    again = lan.ctl.namespace(name)
    assert not again.managed
    with pytest.raises(errors.ConflictError, match="force"):
        again.delete()
    assert again.exists()
    again.delete(force=True)
    assert lan.ctl.gc()["stale"] == []


def test_a_static_mac_taken_on_the_parent_by_another_network(lan: Lan) -> None:
    first = lan.network()
    second = lan.network("lan2", subnet="10.60.0.0/24", gateway="10.60.0.1")
    first.connect(lan.ns(), mac="02:00:00:00:00:42")  # type: ignore[attr-defined]
    b = lan.ns()
    with pytest.raises(errors.AddressInUse, match="'lan'"):
        second.connect(b, mac="02:00:00:00:00:42")  # type: ignore[attr-defined]
    assert b.snapshot().link_names() == {"lo"}


def test_endpoints_take_the_parents_mtu_as_it_is_when_they_connect(lan: Lan) -> None:
    net = lan.network()
    a, b = lan.ns(), lan.ns()
    net.connect(a)  # type: ignore[attr-defined]
    assert a.snapshot().link("eth0").mtu == 1500  # type: ignore[union-attr]
    subprocess.run(["ip", "-n", lan.host.name, "link", "set", "lan0", "mtu", "1400"], check=True)
    net.connect(b)  # type: ignore[attr-defined]
    assert b.snapshot().link("eth0").mtu == 1400  # type: ignore[union-attr]
    assert "com.docker.network.driver.mtu" not in net.inspect()["Options"]  # type: ignore[attr-defined]


def test_an_internal_network_has_a_parent_of_its_own(lan: Lan) -> None:
    # as Docker: the endpoints reach each other, and nothing on the named parent's LAN
    net = lan.network("inner", subnet="10.61.0.0/24", gateway="10.61.0.1", internal=True)
    a, b = lan.ns(), lan.ns()
    ea, eb = net.connect(a), net.connect(b)  # type: ignore[attr-defined]
    assert ping(a, eb.ip) and ping(b, ea.ip)
    subprocess.run(
        ["ip", "-n", a.name, "addr", "add", "192.168.50.77/24", "dev", "eth0"], check=True
    )
    assert not ping(a, LAN_GW)  # an address on the LAN's subnet does not put it there
    assert net.inspect()["Internal"] is True  # type: ignore[attr-defined]
    own = net.data["private_parent"]  # type: ignore[attr-defined]
    assert lan.host.snapshot().link(own) is not None
    net.delete(force=True)  # type: ignore[attr-defined]
    assert lan.host.snapshot().link(own) is None
    assert a.snapshot().link_names() == {"lo"}


def test_an_endpoint_whose_mac_the_workload_changed_is_still_disconnected(lan: Lan) -> None:
    net = lan.network()
    app = lan.ns()
    net.connect(app)  # type: ignore[attr-defined]
    app.run(["ip", "link", "set", "eth0", "address", "02:00:00:00:00:77"], check=True)
    net.disconnect(app)  # type: ignore[attr-defined]
    assert app.snapshot().link_names() == {"lo"}


def test_ipv4_only_endpoints_take_nothing_from_the_lans_router_advert(lan: Lan) -> None:
    """The LAN's router (or anyone on it) advertising an IPv6 prefix does not give an
    endpoint of an IPv4-only macvlan network an address or a default route: its IPv6 is
    off, as Docker does; a dual-stack network's endpoint keeps IPv6."""
    net = lan.network()
    app = lan.ns()
    net.connect(app)  # type: ignore[attr-defined]
    assert lan.ctl.backend.sysctl(app.name, "net/ipv6/conf/eth0/disable_ipv6") == "1"
    lan.lan.run(["ip", "addr", "add", "fe80::1/64", "dev", "eth0", "nodad"], check=True)
    prefix = "fd50:1:2:3::"
    advertise_router(lan.lan, "eth0", "fe80::1", prefix)
    assert not slaac_taken(app, "eth0", prefix, wait=1.5)
    app.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)
    advertise_router(lan.lan, "eth0", "fe80::1", prefix)
    assert slaac_taken(app, "eth0", prefix, wait=5)  # the advertisement itself works
    dual = lan.network("dual", subnet=["192.168.60.0/24", "fd60::/64"], gateway=None)
    other = lan.ns()
    dual.connect(other)  # type: ignore[attr-defined]
    assert lan.ctl.backend.sysctl(other.name, "net/ipv6/conf/eth0/disable_ipv6") == "0"


def test_an_ipv4_only_network_under_ipv6s_mtu_connects(lan: Lan) -> None:
    """A link under 1280 bytes has no IPv6 at all (no net/ipv6/conf/<link>): nothing to
    turn off, and connecting must not fail looking for it."""
    net = lan.network(mtu="1000")
    app = lan.ns()
    net.connect(app)  # type: ignore[attr-defined]
    assert app.snapshot().link("eth0").mtu == 1000  # type: ignore[union-attr]
    assert ping(app, LAN_GW)


def _kinds(lan: Lan) -> list[tuple[str, str, str]]:
    return [
        (f["kind"], f["subject"], f["detail"])
        for f in lan.ctl.audit()
        if f["kind"] in ("missing-link", "parent-down")
    ]


@pytest.mark.parametrize(
    "damage",
    [
        ["link", "del", "{shim}"],
        ["link", "set", "{shim}", "down"],
        ["addr", "flush", "dev", "{shim}"],
        ["route", "del", "{ip}/32"],
    ],
)
def test_gc_makes_a_damaged_host_shim_again(lan: Lan, damage: list[str]) -> None:
    # without an ip range: the endpoint's own /32 route goes through the shim
    net = lan.network(host_shim=True)
    app = lan.ns()
    ep = net.connect(app)  # type: ignore[attr-defined]
    shim = net.data["shim"]  # type: ignore[attr-defined]
    argv = [part.format(shim=shim, ip=ep.ip) for part in damage]
    subprocess.run(["ip", "-n", lan.host.name, *argv], check=True)
    assert not ping(lan.host, ep.ip)
    [(kind, subject, detail)] = _kinds(lan)
    assert (kind, subject) == ("missing-link", "lan") and "`hostnet gc` makes it again" in detail
    assert lan.ctl.gc()["shims"] == ["lan"]
    assert ping(lan.host, ep.ip)
    assert _kinds(lan) == []
    assert lan.ctl.gc()["shims"] == []  # (nothing more to do)
    net.disconnect(app)  # type: ignore[attr-defined]
    net.delete()  # type: ignore[attr-defined]
    assert lan.host.snapshot().link(shim) is None


def test_a_parent_made_again_after_its_endpoints_died(lan: Lan) -> None:
    net = lan.network(ip_range="192.168.50.128/25", host_shim=True)
    app = lan.ns()
    ep = net.connect(app)  # type: ignore[attr-defined]

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", lan.host.name, *args], check=True)

    ip("link", "del", "lan0")  # its children (the endpoint, the shim) go with it
    found = {(k, s): d for k, s, d in _kinds(lan)}
    assert found.keys() == {("missing-link", "lan"), ("missing-link", app.name)}
    assert "parent lan0 is gone from the host (deleted, renamed" in found["missing-link", "lan"]
    assert "host shim" in found["missing-link", "lan"]
    assert lan.ctl.gc()["shims"] == []  # (no parent to make it on)
    ip("link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan.lan.name)
    subprocess.run(["ip", "-n", lan.lan.name, "addr", "add", f"{LAN_GW}/24", "dev", "eth0"])
    subprocess.run(["ip", "-n", lan.lan.name, "link", "set", "eth0", "up"], check=True)
    ip("link", "set", "lan0", "down")
    found = {(k, s) for k, s, _ in _kinds(lan)}
    assert found == {("parent-down", "lan"), ("missing-link", "lan"), ("missing-link", app.name)}
    ip("link", "set", "lan0", "up")
    assert lan.ctl.gc()["shims"] == ["lan"]
    [(kind, subject, detail)] = _kinds(lan)  # the endpoint is the workload's to reconnect
    assert (kind, subject) == ("missing-link", app.name) and "disconnect and connect" in detail
    net.disconnect(app)  # type: ignore[attr-defined]
    ep = net.connect(app)  # type: ignore[attr-defined]
    assert ping(app, LAN_GW) and ping(lan.host, ep.ip)
    assert _kinds(lan) == []
