"""Bridge networks on the fake backend: everything that needs no packets."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostnet import errors
from hostnet.backends.fake import FakeKernel
from hostnet.controller import Controller
from hostnet.model import PortMapping
from hostnet.namespace import Namespace
from hostnet.ops import (
    AddAddress,
    AddRoute,
    CreateNamespace,
    DeleteNamespace,
    DelLinkGroup,
    ForgetFlows,
    NftBatch,
    Op,
    SetSysctl,
    TrackFlows,
)
from hostnet.policy.security import SecurityPolicy
from hostnet.stores.local import LocalStore
from hostnet.testing import FaultyBackend

HOST = "host"


def make(tmp_path, kernel: FakeKernel | None = None, **kwargs) -> Controller:
    kernel = kernel or FakeKernel(seed=3)
    if HOST not in kernel.namespaces():
        kernel.apply(CreateNamespace(ns=HOST))
    kwargs.setdefault("forwarding", True)  # the host here is made by hand, not by hostnet
    return Controller(backend=kernel, host=HOST, state_dir=tmp_path / "state", **kwargs)


@pytest.fixture
def ctl(tmp_path) -> Iterator[Controller]:
    c = make(tmp_path)
    yield c
    c.close()


def kernel_of(ctl: Controller) -> FakeKernel:
    backend = ctl.backend
    assert isinstance(backend, FakeKernel)
    return backend


def test_default_pools_are_used_in_order_and_skip_host_routes(tmp_path) -> None:
    kernel = FakeKernel(seed=1)
    kernel.apply(CreateNamespace(ns=HOST))
    kernel.add_device(HOST, "uplink0")
    from hostnet.ops import AddAddress

    kernel.apply(AddAddress(ns=HOST, ifname="uplink0", address="172.18.5.1/24"))
    ctl = make(tmp_path, kernel)
    nets = [ctl.create_network(f"n{i}", driver="bridge") for i in range(3)]
    subnets = [n.inspect()["IPAM"]["Config"][0]["Subnet"] for n in nets]
    assert subnets == ["172.17.0.0/16", "172.19.0.0/16", "172.20.0.0/16"]
    assert nets[0].inspect()["IPAM"]["Config"][0]["Gateway"] == "172.17.0.1"
    ctl.close()


def test_inspect_is_docker_shaped(ctl: Controller) -> None:
    web = ctl.create_network(
        "web",
        driver="bridge",
        subnet="10.91.0.0/24",
        gateway="10.91.0.254",
        ip_range="10.91.0.128/25",
        aux_addresses={"printer": "10.91.0.130"},
        mtu=1400,
    )
    app = ctl.create_namespace("app")
    ep = web.connect(app, publish=["8080:80/tcp"])
    assert ep.ip == "10.91.0.128"  # the first address of the range (not the subnet's)
    info = web.inspect()
    assert info["Driver"] == "bridge" and info["Scope"] == "local"
    assert (info["EnableIPv4"], info["EnableIPv6"], info["Attachable"], info["Ingress"]) == (
        True,
        False,
        False,
        False,
    )
    assert info["ConfigFrom"] == {"Network": ""} and info["ConfigOnly"] is False
    # Go's RFC 3339 with nanoseconds, as Docker prints it: no trailing zeros
    stamp = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{0,8}[1-9])?Z", info["Created"])
    assert stamp is not None, info["Created"]
    created = datetime.datetime.fromisoformat(stamp[1] + "+00:00")
    assert abs((datetime.datetime.now(datetime.UTC) - created).total_seconds()) < 60
    assert info["IPAM"]["Config"] == [
        {
            "Subnet": "10.91.0.0/24",
            "Gateway": "10.91.0.254",
            "IPRange": "10.91.0.128/25",
            "AuxiliaryAddresses": {"printer": "10.91.0.130"},
        }
    ]
    assert info["Options"] == {
        "com.docker.network.driver.mtu": "1400",
        "com.docker.network.bridge.name": web.data["bridge"],
        "hostnet.bridge.multicast_snooping": "false",
    }
    assert info["Containers"]["app"] == {
        "Name": "app",
        "EndpointID": ep.id,
        "MacAddress": ep.mac,
        "IPv4Address": "10.91.0.128/24",
        "IPv6Address": "",
    }
    settings_ = ctl.inspect(app)["NetworkSettings"]
    assert settings_["Networks"]["web"]["Gateway"] == "10.91.0.254"
    assert settings_["Networks"]["web"]["Aliases"] is None  # Docker's key, no DNS here
    assert settings_["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    # the kernel model has it: veth peer eth0 in app, MTU on both ends, bridge port
    eth0 = app.snapshot().link("eth0")
    assert eth0 is not None and eth0.mtu == 1400 and eth0.mac == ep.mac
    host = kernel_of(ctl).observe(HOST)
    bridge = web.data["bridge"]
    assert host.link(bridge).mtu == 1400  # type: ignore[union-attr]
    assert any(link.master == bridge and link.mtu == 1400 for link in host.links)


def test_addresses_skip_reserved_and_are_never_duplicated(ctl: Controller) -> None:
    web = ctl.create_network(
        "web", driver="bridge", subnet="10.91.0.0/29", aux_addresses={"x": "10.91.0.3"}
    )
    ips = [web.connect(ctl.create_namespace(f"a{i}")).ip for i in range(4)]
    assert ips == ["10.91.0.2", "10.91.0.4", "10.91.0.5", "10.91.0.6"]
    with pytest.raises(errors.ExhaustedError):
        web.connect(ctl.create_namespace("full"))
    web.disconnect("a1")
    again = web.connect(ctl.create_namespace("again"))
    assert again.ip == "10.91.0.4"  # the only free one


def test_static_addresses(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    assert web.connect(a, ip="10.91.0.50").ip == "10.91.0.50"
    with pytest.raises(errors.AddressInUse):
        web.connect(b, ip="10.91.0.50")
    for bad in ("10.91.0.1", "10.91.0.0", "10.91.0.255", "10.92.0.1", "nonsense"):
        with pytest.raises(errors.ValidationError):
            web.connect(b, ip=bad)
    assert b.snapshot().link_names() == {"lo"}


def test_a_static_mac_goes_to_one_endpoint_of_a_network(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    other = ctl.create_network("other", driver="bridge", subnet="10.92.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    web.connect(a, mac="02:42:0A:5B:00:02")
    with pytest.raises(errors.AddressInUse, match="'a'") as info:
        web.connect(b, mac="02:42:0a:5b:00:02")
    assert info.value.network == "web" and info.value.holder == "a"
    assert b.snapshot().link_names() == {"lo"} and ctl.store.dump()["journal"] == []
    assert other.connect(b, mac="02:42:0a:5b:00:02").mac == "02:42:0a:5b:00:02"  # another LAN
    web.disconnect(a)
    assert web.connect(b, mac="02:42:0a:5b:00:02").mac == "02:42:0a:5b:00:02"


def test_endpoint_input_the_kernel_would_refuse_is_refused_before_anything(
    ctl: Controller,
) -> None:
    web = ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    app = ctl.create_namespace("app")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    bad: list[dict[str, object]] = [
        dict(ip6="fd00:91::5%eth0"),  # a zone: netlink has no place for it
        dict(mac="00:00:00:00:00:00"),  # EADDRNOTAVAIL
        dict(publish=["[fe80::1%eth0]:8080:80"]),  # nftables would drop the zone
        dict(publish=["[::1]:8080:80"]),  # IPv6 has no route_localnet: never reachable
        dict(publish=[8080]),
        dict(publish=8080),
        # wrong types
        dict(mac=5),
        dict(mac=b"02:00:00:00:00:05"),
        dict(ip=167772165),  # ipaddress would take it as 10.0.0.5
        dict(ip6=["fd00:91::5"]),
    ]
    for kwargs in bad:
        with pytest.raises(errors.ValidationError) as info:
            web.connect(app, **kwargs)  # type: ignore[arg-type]
        assert not getattr(info.value, "__notes__", None)  # no op was applied and undone
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_overlaps_and_bad_subnets_are_refused_before_anything(ctl: Controller) -> None:
    ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.SubnetOverlap) as info:
        ctl.create_network("web2", driver="bridge", subnet="10.91.0.0/16")
    assert "web" in str(info.value)
    bad = [
        dict(subnet="10.95.0.0/24", gateway="10.96.0.1"),
        dict(subnet="10.95.0.1/24"),
        dict(subnet="224.1.0.0/24"),  # the kernel refuses multicast addresses
        dict(subnet=["10.95.0.0/24", "ff00::/64"]),
        dict(subnet="127.5.0.0/16"),
        dict(subnet="0.0.0.0/8"),
        dict(subnet=["10.95.0.0/24", "::/64"]),
        dict(subnet="10.95.0.0/24", ip_range="10.96.0.0/25"),
        dict(subnet="10.95.0.0/24", aux_addresses={"x": "10.97.0.1"}),
        dict(bridge_name="b" * 16),
        dict(icc="maybe"),
        dict(colour="blue"),
        # ipaddress takes a zone ("%eth0"); netlink and nftables have no place for one
        dict(subnet=["10.95.0.0/24", "fd00:95::%eth0/64"]),
        dict(subnet=["10.95.0.0/24", "fd00:95::/64"], gateway=["10.95.0.1", "fd00:95::1%eth0"]),
        dict(subnet=["10.95.0.0/24", "fd00:95::/64"], gateway=[None, "fd00:95::1%eth0"]),
        dict(subnet=["10.95.0.0/24", "fd00:95::/64"], aux_addresses={"x": "fd00:95::9%eth0"}),
        dict(subnet=["10.95.0.0/24", "fd00:95::/64"], host_ip="fe80::1%eth0"),
        # wrong types: a typed error, not a TypeError from deep inside (or "no" taken as
        # true)
        dict(subnet=5),
        dict(subnet=["10.95.0.0/24", 5]),
        dict(subnet="10.95.0.0/24", gateway=b"10.95.0.1"),
        dict(subnet="10.95.0.0/24", aux_addresses=["10.95.0.9"]),
        dict(subnet="10.95.0.0/24", aux_addresses={"x": 5}),
        dict(internal="no"),
        dict(ipv6="no"),
        dict(options=["com.docker.network.bridge.name"]),
        dict(labels=["a"]),
        # an auxiliary address that is the gateway: the gateway is in use already
        dict(subnet="10.95.0.0/24", gateway="10.95.0.1", aux_addresses={"x": "10.95.0.1"}),
        dict(subnet="10.95.0.0/24", aux_addresses={"x": "10.95.0.1"}),  # the default one
        dict(
            subnet=["10.95.0.0/24", "fd00:95::/64"],
            gateway=["10.95.0.1", "fd00:95::1"],
            aux_addresses={"x": "fd00:95:0::1"},
        ),
        # one option under two of its names, or twice under one, with different values
        dict(bridge_name="hb1", options={"com.docker.network.bridge.name": "hb2"}),
        dict(mtu="1400", options={"mtu": "1300"}),
    ]
    for kwargs in bad:
        with pytest.raises(errors.ValidationError) as info:
            ctl.create_network("web3", driver="bridge", **kwargs)
        assert not getattr(info.value, "__notes__", None), kwargs  # nothing applied
    with pytest.raises(errors.NetworkExists):
        ctl.create_network("web", driver="bridge", subnet="10.98.0.0/24")
    with pytest.raises(errors.DriverNotFound):
        ctl.create_network("web4", driver="ipvlan")
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_defaults_in_lists_of_gateways_and_ranges(ctl: Controller) -> None:
    # None in a list: this subnet's default (its first host address, no range)
    net = ctl.create_network(
        "web",
        driver="bridge",
        subnet=["10.95.0.0/24", "fd00:95::/64"],
        gateway=[None, "fd00:95::fe"],
        ip_range=[None, "fd00:95::/80"],
        options={"mtu": "1400"},
        mtu="1400",  # the same option twice with the same value is not a conflict
    )
    configs = {c["Subnet"]: c for c in net.inspect()["IPAM"]["Config"]}
    assert configs["10.95.0.0/24"] == {"Subnet": "10.95.0.0/24", "Gateway": "10.95.0.1"}
    assert configs["fd00:95::/64"]["Gateway"] == "fd00:95::fe"
    assert configs["fd00:95::/64"]["IPRange"] == "fd00:95::/80"


def test_an_option_given_twice_with_one_meaning_is_taken(ctl: Controller) -> None:
    net = ctl.create_network(
        "web", driver="bridge", icc=False, options={"com.docker.network.bridge.enable_icc": "0"}
    )
    assert net.inspect()["Options"]["com.docker.network.bridge.enable_icc"] == "false"


@pytest.mark.parametrize(("value", "icc"), [("t", "true"), ("F", "false"), ("TRUE", "true")])
def test_booleans_as_docker_spells_them(ctl: Controller, value: str, icc: str) -> None:
    options = {"com.docker.network.bridge.enable_icc": value}
    net = ctl.create_network("web", driver="bridge", options=options)
    assert net.inspect()["Options"]["com.docker.network.bridge.enable_icc"] == icc


def test_explicit_bridge_name_that_exists_is_refused(ctl: Controller) -> None:
    kernel_of(ctl).add_device(HOST, "taken0")
    with pytest.raises(errors.LinkExists):
        ctl.create_network("web", driver="bridge", bridge_name="taken0")
    assert [n.name for n in ctl.networks()] == ["host", "none"]


def test_published_ports_are_map_elements_and_go_away(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = ctl.create_namespace("app")
    ep = web.connect(
        app, publish=["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:7000-7001", "80"]
    )
    sets = kernel_of(ctl).nft_list(HOST, "inet hostnet")["sets"]  # type: ignore[index]
    eph = next(m.host_port for m in ep.ports if m.host_port not in (8080, 5353, 9000, 9001))
    assert sorted(sets["any4_addr"]) == sorted(
        json.dumps({"concat": ["tcp", p]}, separators=(",", ":")) for p in (8080, 9000, 9001, eph)
    )
    assert sets["dnat4_addr"] == ['{"concat":["127.0.0.1","udp",5353]}']
    assert {(m.host_port, m.container_port) for m in ep.ports} >= {(9000, 7000), (9001, 7001)}
    assert len(ctl.ports()) == 5
    web.disconnect(app)
    sets = kernel_of(ctl).nft_list(HOST, "inet hostnet")["sets"]  # type: ignore[index]
    assert all(not sets[k] for k in sets if k.startswith(("any", "dnat")))
    assert ctl.ports() == []


def test_an_idle_tcp_bind_blocks_host_ports_not_a_published_port(ctl: Controller) -> None:
    # bound, not listening: a workload's own bind() would fail; a DNAT would not
    kernel_of(ctl).bind_external(
        HOST, "tcp", "0.0.0.0", 8085, pid=4242, process="client", listening=False
    )
    ctl.policy = SecurityPolicy(allow_host_network=True)
    with pytest.raises(errors.PortInUse) as info:
        ctl.attach("w", driver="host", ports=["8085/tcp"])
    assert info.value.owner_pid == 4242
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    ep = web.connect(ctl.create_namespace("a"), publish=["8085:80"])
    assert [m.host_port for m in ep.ports] == [8085]


def test_port_syntax_errors_and_conflicts(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    web.connect(a, publish=["8080:80"])
    kernel_of(ctl).bind_external(HOST, "tcp", "0.0.0.0", 8081, pid=4242, process="nginx")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    for spec in (
        "0:80-81",
        "8080:0",
        "[::]:80",
        "80/icmp",
        "1-2:1-3",
        "a:b",
        "1.2.3:80:80",
        "[::1:80:80",
    ):
        with pytest.raises(errors.InvalidPort):
            web.connect(b, publish=[spec])
    with pytest.raises(errors.PortInUse) as info:
        web.connect(b, publish=["0.0.0.0:8080:80"])
    assert info.value.holder == "a"
    with pytest.raises(errors.PortInUse) as info:
        web.connect(b, publish=["8081:80"])
    assert (info.value.owner_pid, info.value.owner_name) == (4242, "nginx")
    with pytest.raises(errors.InvalidOption):
        web.connect(b, publish=["[::1]:8082:80"])  # no IPv6 on this network
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_internal_network_has_no_default_route_and_no_publishing(ctl: Controller) -> None:
    private = ctl.create_network("private", driver="bridge", subnet="10.93.0.0/24", internal=True)
    a = ctl.create_namespace("a")
    private.connect(a)
    assert [r for r in a.routes() if r.is_default] == []
    sets = kernel_of(ctl).nft_list(HOST, "inet hostnet")["sets"]  # type: ignore[index]
    assert sets["masq"] == []
    with pytest.raises(errors.InvalidOption):
        private.connect(ctl.create_namespace("b"), publish=["80"])


def test_bridges_do_no_multicast_snooping_unless_asked(ctl: Controller) -> None:
    plain = ctl.create_network("plain", driver="bridge", subnet="10.91.0.0/24")
    snoop = ctl.create_network(
        "snoop", driver="bridge", subnet="10.92.0.0/24", multicast_snooping=True
    )
    host = kernel_of(ctl).observe(HOST)
    for net, expected in ((plain, False), (snoop, True)):
        link = host.link(net.data["bridge"])
        assert link is not None and link.mcast_snooping is expected
        option = net.inspect()["Options"]["hostnet.bridge.multicast_snooping"]
        assert option == str(expected).lower()
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.InvalidOption):
        ctl.create_network("bad", driver="bridge", multicast_snooping="sometimes")
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_a_bridge_has_a_mac_of_its_own(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    db = ctl.create_network("db", driver="bridge", subnet="10.92.0.0/24")
    macs = []
    for net in (web, db):
        link = kernel_of(ctl).observe(HOST).link(net.data["bridge"])
        assert link is not None and link.mac == net.data["mac"]
        assert int(link.mac[:2], 16) & 0x03 == 0x02  # locally administered, unicast
        macs.append(link.mac)
    assert macs[0] != macs[1]


def test_icc_off_adds_ports_to_the_icc_set(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24", icc=False)
    web.connect(ctl.create_namespace("a"))
    listing = kernel_of(ctl).nft_list(HOST, "bridge hostnet")
    assert listing is not None and len(listing["sets"]["icc_ports"]) == 1


def test_second_network_keeps_the_default_route(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    db = ctl.create_network("db", driver="bridge", subnet="10.92.0.0/24")
    app = ctl.create_namespace("app")
    assert (web.connect(app).ifname, db.connect(app).ifname) == ("eth0", "eth1")
    assert [(r.gateway, r.ifname) for r in app.routes() if r.is_default] == [("10.91.0.1", "eth0")]
    web.disconnect(app)
    assert app.snapshot().link_names() == {"lo", "eth1"}
    assert db.connect(ctl.create_namespace("other")).ifname == "eth0"


def test_shared_setup_lives_as_long_as_any_bridge_network(ctl: Controller) -> None:
    kernel = kernel_of(ctl)
    a = ctl.create_network("a", driver="bridge", subnet="10.91.0.0/24")
    b = ctl.create_network("b", driver="bridge", subnet="10.92.0.0/24")
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    a.delete()  # b inherits the tables and the forwarding setting
    assert "inet hostnet" in kernel.observe(HOST).nft_tables
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    b.delete()
    assert kernel.observe(HOST).nft_tables == ()
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "0"
    assert ctl.store.dump()["shared"] == []


def test_forwarding_is_left_alone_in_the_callers_own_namespace(tmp_path) -> None:
    kernel = FakeKernel(seed=2)
    ctl = Controller(backend=kernel, state_dir=tmp_path / "s")
    with pytest.warns(errors.HostnetWarning, match="forwarding"):
        ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    assert kernel.sysctl(None, "net/ipv4/ip_forward") == "0"
    # a second state directory on the same host must not share (and later delete) the
    # first one's firewall tables
    other = Controller(backend=kernel, state_dir=tmp_path / "s2", forwarding=True)
    before = kernel.dump()
    with pytest.raises(errors.ConflictError, match="another hostnet state directory"):
        other.create_network("web", driver="bridge", subnet="10.92.0.0/24")
    assert kernel.dump() == before
    other.close()
    ctl.delete_network("web")
    ctl.close()
    ctl = Controller(backend=kernel, state_dir=tmp_path / "s2", forwarding=True)
    ctl.create_network("web", driver="bridge", subnet="10.92.0.0/24")
    assert kernel.sysctl(None, "net/ipv4/ip_forward") == "1"
    ctl.delete_network("web")
    assert kernel.sysctl(None, "net/ipv4/ip_forward") == "0"
    ctl.close()


def test_delete_with_endpoints_needs_force_and_bulk_uses_one_group_delete(tmp_path) -> None:
    kernel = FakeKernel(seed=4)
    kernel.apply(CreateNamespace(ns=HOST))
    faulty = FaultyBackend(kernel)
    ctl = Controller(backend=faulty, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    apps = [ctl.create_namespace(f"a{i}") for i in range(5)]
    for app in apps:
        web.connect(app, publish=["80", "53/udp"])
    with pytest.raises(errors.NetworkInUse):
        web.delete()
    faulty.applied.clear()
    assert web.disconnect_all() == 5
    kinds = [type(op).__name__ for op in faulty.applied]
    # one nftables transaction, one link-group delete, one conntrack clean-up, last
    # (and the no-op that undoes the forgetting by port at connect time, once)
    assert kinds == ["NftBatch", "DelLinkGroup", "TrackFlows", "ForgetFlows"]
    assert isinstance(faulty.applied[1], DelLinkGroup)
    forget = faulty.applied[3]
    assert isinstance(forget, ForgetFlows) and forget.ns == HOST
    assert len(forget.addresses) == 5 and all(a.startswith("10.91.0.") for a in forget.addresses)
    assert all(app.snapshot().link_names() == {"lo"} for app in apps)
    for app in apps:
        web.connect(app)
    web.delete(force=True)
    assert kernel.observe(HOST).link_names() == {"lo"}
    assert ctl.store.dump()["endpoints"] == []
    ctl.close()


@pytest.mark.parametrize("fail_at", range(8))
def test_connect_failing_at_each_op_leaves_nothing(tmp_path, fail_at: int) -> None:
    kernel = FakeKernel(seed=5)
    kernel.apply(CreateNamespace(ns=HOST))
    setup = Controller(backend=kernel, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    web = setup.create_network("web", driver="bridge", subnet="10.91.0.0/24", ipv6=True, icc=False)
    setup.create_namespace("app")
    setup.close()
    before_kernel = kernel.dump()
    faulty = FaultyBackend(kernel, fail_at=fail_at)
    ctl = Controller(backend=faulty, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    before_store = ctl.store.dump()
    try:
        ctl.network(web.name).connect("app", publish=["8080:80", "53/udp"])
    except errors.HostnetError:
        assert kernel.dump() == before_kernel
        assert ctl.store.dump() == before_store
    else:
        assert faulty.calls <= fail_at  # the plan was shorter than fail_at
    ctl.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=30))
def test_random_connects_and_disconnects_never_share_an_address(tmp_path_factory, steps) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    ctl = make(tmp)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/28")
    for i in range(6):
        ctl.create_namespace(f"w{i}")
    for connect, i in steps:
        connected = {e.workload for e in web.endpoints()}
        try:
            if connect and f"w{i}" not in connected:
                web.connect(f"w{i}")
            elif not connect and f"w{i}" in connected:
                web.disconnect(f"w{i}")
        except errors.ExhaustedError:
            pass
        ips = [e.ip for e in web.endpoints()]
        assert len(ips) == len(set(ips))
        assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.91.0.0/28") for ip in ips)
        # what the kernel holds is exactly what the store says
        kernel_ips = sorted(
            a.address.split("/")[0]
            for i in range(6)
            for a in kernel_of(ctl).observe(f"w{i}").addresses
            if a.ifname == "eth0"
        )
        assert kernel_ips == sorted(ips)  # type: ignore[type-var]
    ctl.close()


def test_publishing_more_ports_later_and_losing_them_with_the_endpoint(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    web.connect(a, publish=["8080:80"])
    web.connect(b)
    added = web.publish(a, ["8081:81", "53/udp"])
    assert (added[0].protocol, added[0].host_port, added[0].container_port) == ("tcp", 8081, 81)
    assert added[1].protocol == "udp" and added[1].container_port == 53
    assert added[1].host_port >= 1024  # ephemeral
    (ep,) = [e for e in web.endpoints() if e.workload == "a"]
    first = PortMapping(protocol="tcp", host_ip="0.0.0.0", host_port=8080, container_port=80)
    assert list(ep.ports) == [first, *added] and len(ctl.ports()) == 3
    web.publish(a, ["8082:82"])  # a second publish keeps the earlier ones
    (ep,) = [e for e in web.endpoints() if e.workload == "a"]
    assert {m.host_port for m in ep.ports} >= {8080, 8081, 8082} and len(ep.ports) == 4
    sets = kernel_of(ctl).nft_list(HOST, "inet hostnet")["sets"]  # type: ignore[index]
    assert '{"concat":["tcp",8081]}' in sets["any4_addr"]
    assert ctl.inspect(a)["NetworkSettings"]["Ports"]["81/tcp"][0]["HostPort"] == "8081"
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.PortInUse):
        web.publish(b, ["8081:80"])
    with pytest.raises(errors.InvalidPort):
        web.publish(b, ["nonsense"])
    with pytest.raises(errors.EndpointNotFound):
        web.publish("nobody", ["9999:80"])
    assert kernel_of(ctl).dump() == before_kernel and ctl.store.dump() == before_store
    web.disconnect(a)
    sets = kernel_of(ctl).nft_list(HOST, "inet hostnet")["sets"]  # type: ignore[index]
    assert all(not sets[k] for k in sets if k.startswith(("any", "dnat")))
    assert ctl.ports() == [] and ctl.store.dump()["published"] == []


def test_host_binding_address_is_the_default_for_published_ports(ctl: Controller) -> None:
    web = ctl.create_network(
        "web", driver="bridge", subnet="10.91.0.0/24", host_binding_ipv4="127.0.0.1"
    )
    ep = web.connect(ctl.create_namespace("a"), publish=["8080:80", "0.0.0.0:8081:81"])
    assert sorted((m.host_ip, m.host_port) for m in ep.ports) == [
        ("0.0.0.0", 8081),
        ("127.0.0.1", 8080),
    ]


def test_port_bindings_show_what_was_asked_and_ports_what_was_given(ctl: Controller) -> None:
    # as docker run -p: HostConfig.PortBindings keeps the specs ("" where a spec names
    # no address or port), NetworkSettings.Ports the ports the workload got
    web = ctl.create_network(
        "web", driver="bridge", subnet="10.91.0.0/24", host_binding_ipv4="127.0.0.1"
    )
    a = ctl.create_namespace("a")
    ep = web.connect(
        a, publish=["8080:80", "90", "0.0.0.0::53/udp", "9000-9001:9000-9001", "7000-7010:70"]
    )
    web.publish(a, ["[::ffff:127.0.0.1]:6000:60", "61", "0:62"])
    info = ctl.inspect(a)
    assert info["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "90/tcp": [{"HostIp": "", "HostPort": ""}],
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": ""}],
        "9000/tcp": [{"HostIp": "", "HostPort": "9000"}],
        "9001/tcp": [{"HostIp": "", "HostPort": "9001"}],
        "70/tcp": [{"HostIp": "", "HostPort": "7000-7010"}],
        "60/tcp": [{"HostIp": "::ffff:127.0.0.1", "HostPort": "6000"}],  # as typed
        "61/tcp": [{"HostIp": "", "HostPort": ""}],
        "62/tcp": [{"HostIp": "", "HostPort": "0"}],  # any port, as typed
    }
    given = {m.docker_key(): m for m in (*ep.ports, *web.endpoints()[0].ports)}
    ports = info["NetworkSettings"]["Ports"]
    assert set(ports) == set(info["HostConfig"]["PortBindings"])
    assert ports["90/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(given["90/tcp"].host_port)}]
    assert ports["70/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "7000"}]
    assert ports["61/tcp"][0]["HostPort"] != ""
    assert int(ports["62/tcp"][0]["HostPort"]) == given["62/tcp"].host_port > 0
    # the same through the API's Endpoint
    (ep,) = web.endpoints()
    assert ep.asked[:2] == (("80/tcp", "", "8080"), ("90/tcp", "", ""))


def test_records_from_before_asked_specs_show_the_ports_given(ctl: Controller) -> None:
    # stores written before hostnet kept the -p specs as asked: PortBindings shows the
    # ports given, as hostnet did then (not an empty or broken entry)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a = ctl.create_namespace("a")
    web.connect(a, publish=["80"])
    web.publish(a, ["8081:81"])
    with ctl.store.transaction() as tx:
        (data,) = [json.loads(r[0]) for r in tx.c.execute("SELECT data FROM endpoints")]
        del data["asked"]
        tx.c.execute("UPDATE endpoints SET data = ?", (json.dumps(data),))
        tx.c.execute("UPDATE published SET asked = '[]'")
    (ep,) = web.endpoints()
    bindings = ctl.inspect(a)["HostConfig"]["PortBindings"]
    assert bindings == {
        m.docker_key(): [{"HostIp": m.host_ip, "HostPort": str(m.host_port)}] for m in ep.ports
    }
    assert len(bindings) == 2


def _set_network_state(ctl: Controller, network_id: str, state: str) -> None:
    """What another process's unfinished create (pending) or delete (deleting) of a
    network looks like in the shared store."""
    import sqlite3

    conn = sqlite3.connect(ctl.store.path)
    with conn:
        conn.execute("UPDATE networks SET state = ? WHERE id = ?", (state, network_id))
    conn.close()


@pytest.mark.parametrize("state", ["pending", "deleting"])
def test_a_network_is_not_built_on_shared_setup_another_process_is_changing(
    ctl: Controller, state: str
) -> None:
    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    _set_network_state(ctl, first.id, state)
    ctl.busy_wait = 0.2
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.Busy, match=r"'nft:bridge' is being changed") as info:
        ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    assert info.value.waited == pytest.approx(0.2) and "hostnet gc" in str(info.value)
    doing = {"pending": "being created", "deleting": "being deleted"}[state]
    assert info.value.holder == f"network 'first' is {doing}"
    assert isinstance(info.value, errors.ConflictError)
    assert kernel_of(ctl).dump() == before_kernel and ctl.store.dump() == before_store


def test_a_network_waits_for_shared_setup_another_process_is_finishing(
    ctl: Controller,
) -> None:
    import threading

    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    _set_network_state(ctl, first.id, "pending")
    finisher = threading.Timer(0.15, _set_network_state, (ctl, first.id, "active"))
    finisher.start()
    try:
        second = ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    finally:
        finisher.join()
    # built on the first network's tables, which it inherits when that one goes
    owners = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    assert owners["nft:bridge"] == first.id
    first.delete()
    owners = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    assert owners["nft:bridge"] == second.id
    assert "inet hostnet" in kernel_of(ctl).observe(HOST).nft_tables
    second.delete()
    assert "inet hostnet" not in kernel_of(ctl).observe(HOST).nft_tables


def test_shared_setup_left_by_a_dead_process_is_recovered_instead_of_waited_for(
    ctl: Controller,
) -> None:
    import subprocess
    import sys

    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    # turn its finished create back into the journal of a process killed right after
    # its last op: pending record, journal of a dead pid
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    shared_plans = [row[3] for row in ctl.store.dump()["shared"]]
    plan = [op for applied in shared_plans for op in json.loads(applied)]
    plan += ctl.store.read(lambda tx: tx.network(ctl.host_key, "first"))["applied"]
    _set_network_state(ctl, first.id, "pending")
    with ctl.store.transaction() as tx:
        tx.journal_begin(
            id="dead-journal",
            kind="setup",
            owner=json.dumps([first.id]),
            pid=dead.pid,
            started=12345.0,
            plan=plan,
        )
    ctl.store.journal_progress("dead-journal", len(plan) - 1)
    ctl.busy_wait = 5.0
    second = ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    assert [r.journal for r in ctl.recovered] == ["dead-journal"]
    assert [n.name for n in ctl.networks() if n.driver == "bridge"] == ["second"]
    owners = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    assert owners["nft:bridge"] == second.id  # made again by the second network
    assert "inet hostnet" in kernel_of(ctl).observe(HOST).nft_tables
    assert ctl.store.dump()["journal"] == []
    second.delete()
    assert kernel_of(ctl).observe(HOST).nft_tables == ()
    assert kernel_of(ctl).observe(HOST).link_names() == {"lo"}


def test_the_last_owner_of_shared_setup_waits_for_a_network_being_created_on_it(
    ctl: Controller,
) -> None:
    import threading

    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    second = ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    _set_network_state(ctl, second.id, "pending")  # another process is creating it
    ctl.busy_wait = 0.2
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.Busy, match="'second' is being created"):
        first.delete()
    assert kernel_of(ctl).dump() == before_kernel and ctl.store.dump() == before_store
    # once it is active, it inherits the tables instead of losing them
    ctl.busy_wait = 5.0
    finisher = threading.Timer(0.15, _set_network_state, (ctl, second.id, "active"))
    finisher.start()
    try:
        first.delete()
    finally:
        finisher.join()
    owners = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    assert owners["nft:bridge"] == second.id
    assert "inet hostnet" in kernel_of(ctl).observe(HOST).nft_tables
    second.delete()
    assert kernel_of(ctl).observe(HOST).nft_tables == ()


def test_a_network_that_waited_plans_with_the_host_as_the_other_process_left_it(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as real_time
    import types

    from hostnet import controller as controller_module
    from hostnet.ops import merge_nft, plan_from_json, teardown_plan

    forward = "net/ipv4/ip_forward"
    assert ctl.backend.sysctl(HOST, forward) == "0"
    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    assert ctl.backend.sysctl(HOST, forward) == "1"  # turned on, and owned, by first
    _set_network_state(ctl, first.id, "deleting")  # another process is deleting it

    def other_process_finishes(seconds: float) -> None:
        # what that process's delete_network does next: undo the network and the
        # shared setup it owned (forwarding back to 0, tables gone), forget it
        record = ctl.store.read(lambda tx: tx.network(ctl.host_key, "first"))
        if record is None:
            return
        shared = ctl.store.read(lambda tx: tx.shared_owned_by(first.id))
        plan = [*teardown_plan(plan_from_json(record["applied"]))]
        for row in shared:
            plan.extend(teardown_plan(plan_from_json(row["applied"])))
        ctl.executor.teardown(merge_nft(tuple(plan)), owners=[first.id], what="delete first")

    clock = types.SimpleNamespace(monotonic=real_time.monotonic, sleep=other_process_finishes)
    monkeypatch.setattr(controller_module, "time", clock)
    second = ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    monkeypatch.undo()
    assert ctl.backend.sysctl(HOST, forward) == "1"  # turned on again, not assumed on
    owners = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    assert owners == {key: second.id for key in owners} and f"sysctl:{forward}" in owners
    second.delete()
    assert ctl.backend.sysctl(HOST, forward) == "0"
    assert kernel_of(ctl).observe(HOST).nft_tables == ()


def test_an_endpoint_is_not_torn_down_while_a_publish_on_it_is_in_flight(
    ctl: Controller,
) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = ctl.create_namespace("app")
    ep = web.connect(app, publish=["8080:80"])
    with ctl.store.transaction() as tx:  # another process is publishing a port on it
        tx.journal_begin(
            id="publishing",
            kind="setup",
            owner=json.dumps([f"{ep.id}/1234abcd"]),
            pid=ctl.executor.pid,
            started=ctl.executor.started,
            plan=[],
        )
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.ConflictError, match="its ports published"):
        web.disconnect(app)
    with pytest.raises(errors.ConflictError, match="its ports published"):
        web.disconnect_all()
    assert kernel_of(ctl).dump() == before_kernel and ctl.store.dump() == before_store
    with ctl.store.transaction() as tx:
        tx.journal_end("publishing")
    web.disconnect(app)
    assert ctl.ports() == [] and web.endpoints() == []


def test_a_network_another_call_deleted_while_this_one_waited_is_not_deleted_twice(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as real_time
    import types

    from hostnet import controller as controller_module

    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    second = ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    _set_network_state(ctl, second.id, "pending")  # being created: first's delete waits
    other = make_second_controller(ctl)
    calls: list[str] = []

    def meanwhile(seconds: float) -> None:
        if not calls:  # while this call waits, another call deletes first
            calls.append("other delete")
            _set_network_state(ctl, second.id, "active")
            other.delete_network("first")

    clock = types.SimpleNamespace(monotonic=real_time.monotonic, sleep=meanwhile)
    monkeypatch.setattr(controller_module, "time", clock)
    ctl._recover = False  # straight to sleeping
    with pytest.raises(errors.NetworkNotFound):
        first.delete()
    monkeypatch.undo()
    assert calls == ["other delete"]
    owners = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    assert set(owners.values()) == {second.id}  # inherited once, not torn down twice
    assert "inet hostnet" in kernel_of(ctl).observe(HOST).nft_tables
    other.close()
    second.delete()
    assert kernel_of(ctl).observe(HOST).nft_tables == ()


def make_second_controller(ctl: Controller) -> Controller:
    """Another Controller on the same kernel and state directory (another process)."""
    return Controller(
        backend=ctl.backend, host=HOST, state_dir=ctl.store.state_dir, forwarding=True
    )


def test_shared_setup_left_half_done_by_a_failure_is_reported_at_once(ctl: Controller) -> None:
    first = ctl.create_network("first", driver="bridge", subnet="10.91.0.0/24")
    _set_network_state(ctl, first.id, "deleting")
    with ctl.store.transaction() as tx:  # its teardown ended with errors
        tx.journal_begin(
            id="failed",
            kind="teardown",
            owner=json.dumps([first.id]),
            pid=ctl.executor.pid,
            started=ctl.executor.started,
            plan=[],
        )
        tx.journal_fail("failed")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.ConflictError, match="hostnet gc") as info:
        ctl.create_network("second", driver="bridge", subnet="10.92.0.0/24")
    assert not isinstance(info.value, errors.Busy)  # refused at once, not waited out
    assert "the deletion of network 'first' failed" in str(info.value)
    assert kernel_of(ctl).dump() == before_kernel and ctl.store.dump() == before_store


def test_a_failed_publish_and_a_dead_processs_publish_leave_the_endpoint_as_it_was(
    tmp_path,
) -> None:
    import subprocess
    import sys

    kernel = FakeKernel(seed=3)
    kernel.apply(CreateNamespace(ns=HOST))
    faulty = FaultyBackend(kernel)
    ctl = Controller(backend=faulty, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = ctl.create_namespace("app")
    ep = web.connect(app, publish=["8080:80"])
    before_kernel, before_store = kernel.dump(), ctl.store.dump()
    # 1. its one nftables transaction fails: nothing of the publish stays
    faulty.fail_kinds = frozenset({"NftBatch"})
    with pytest.raises(errors.HostnetError):
        web.publish(app, ["8081:81", "9000/udp"])
    faulty.fail_kinds = frozenset()
    assert kernel.dump() == before_kernel and ctl.store.dump() == before_store
    # 2. a process killed after its publish reached the kernel, before the record
    added = web.publish(app, ["8081:81"])
    (row,) = ctl.store.dump()["published"]
    owner, plan = row[0], json.loads(row[3])
    assert owner.startswith(f"{ep.id}/")
    with ctl.store.transaction() as tx:  # back to "journaled, applied, not recorded"
        tx.c.execute("DELETE FROM published")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        tx.journal_begin(
            id="dead-publish",
            kind="setup",
            owner=json.dumps([owner]),
            pid=dead.pid,
            started=12345.0,
            plan=plan,
        )
    assert [m.host_port for m in added] == [8081]
    assert any(p["port"] == 8081 for p in ctl.ports())  # still reserved, in the kernel too
    ctl.close()
    again = Controller(backend=faulty, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    assert [r.journal for r in again.recovered] == ["dead-publish"]
    assert kernel.dump() == before_kernel and again.store.dump() == before_store
    again.network("web").disconnect(app)
    assert again.ports() == []
    again.close()


def test_audit_names_a_forward_drop_policy_of_another_table(ctl: Controller) -> None:
    from hostnet.ops import NftBatch

    ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    assert [f for f in ctl.audit() if f["kind"] == "foreign-forward-drop"] == []
    docker = {  # what Docker leaves in iptables-nft: filter FORWARD with policy drop
        "nftables": [
            {"add": {"table": {"family": "ip", "name": "filter"}}},
            {
                "add": {
                    "chain": {
                        "family": "ip",
                        "table": "filter",
                        "name": "FORWARD",
                        "type": "filter",
                        "hook": "forward",
                        "prio": 0,
                        "policy": "drop",
                    }
                }
            },
        ]
    }
    undo = {"nftables": [{"delete": {"table": {"family": "ip", "name": "filter"}}}]}
    ctl.backend.apply(NftBatch(ns=HOST, commands=json.dumps(docker), undo=json.dumps(undo)))
    (finding,) = [f for f in ctl.audit() if f["kind"] == "foreign-forward-drop"]
    assert finding["subject"] == "ip filter FORWARD" and "DOCKER-USER" in finding["detail"]
    ctl.backend.apply(NftBatch(ns=HOST, commands=json.dumps(undo), undo=json.dumps(docker)))
    assert [f for f in ctl.audit() if f["kind"] == "foreign-forward-drop"] == []


def test_only_udp_and_sctp_publishing_endpoints_forget_their_flows(tmp_path) -> None:
    # Forgetting walks the kernel's whole conntrack table (~10 ms); TCP clients do not
    # need it (their next connection has a new source port), UDP and SCTP clients do.
    kernel = FakeKernel(seed=6)
    kernel.apply(CreateNamespace(ns=HOST))
    faulty = FaultyBackend(kernel)
    ctl = Controller(backend=faulty, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    tcp, udp = ctl.create_namespace("tcp"), ctl.create_namespace("udp")
    web.connect(tcp, publish=["8080:80"])
    assert not any(isinstance(op, TrackFlows) for op in faulty.applied)
    faulty.applied.clear()
    ep = web.connect(udp, publish=["5353:53/udp"])
    assert isinstance(faulty.applied[0], TrackFlows)  # first, so forgotten last
    assert faulty.applied[0].addresses == (ep.ip.split("/")[0],)
    # and once the port is published: entries made before for that port are forgotten
    assert faulty.applied[-1] == ForgetFlows(ns=HOST, ports=("udp/5353",))
    faulty.applied.clear()
    web.publish(tcp, ["5354:53/udp"])  # a UDP port published later counts too
    # the endpoint is live: nothing that would forget its flows before the batch is in
    kinds = [type(op).__name__ for op in faulty.applied]
    assert kinds == ["NftBatch", "ForgetFlows", "TrackFlows"]
    for ns in (tcp, udp):
        faulty.applied.clear()
        web.disconnect(ns)
        assert type(faulty.applied[-1]).__name__ == "ForgetFlows"
    ctl.close()


def test_a_failed_udp_publish_leaves_the_live_endpoints_flows_alone(tmp_path) -> None:
    kernel = FakeKernel(seed=7)
    kernel.apply(CreateNamespace(ns=HOST))
    setup = Controller(backend=kernel, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    web = setup.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    web.connect(setup.create_namespace("app"))
    setup.close()
    faulty = FaultyBackend(kernel, fail_at=0)  # the publish's nftables transaction fails
    ctl = Controller(backend=faulty, host=HOST, state_dir=tmp_path / "s", forwarding=True)
    with pytest.raises(errors.HostnetError):
        ctl.network("web").publish("app", ["5354:53/udp"])
    assert not any(isinstance(op, ForgetFlows) for op in faulty.applied)
    ctl.close()


def test_gc_deletes_the_temporary_namespaces_of_dead_processes(ctl: Controller) -> None:
    mine = ctl.create_namespace("mine", temporary=True)
    theirs = ctl.create_namespace("theirs", temporary=True)
    kept = ctl.create_namespace("kept")
    web = ctl.create_network("web", subnet="10.88.0.0/24")
    web.connect(theirs, publish=["8080:80"])
    assert ctl.gc()["abandoned"] == []  # this process lives
    # the process that made "theirs" died (same pid, another start time: pid reused)
    with ctl.store.transaction() as tx:
        tx.c.execute("UPDATE leases SET started = started - 1 WHERE name = 'theirs'")
    report = ctl.gc()
    assert (report["abandoned"], report["kept"]) == (["theirs"], {})
    assert {n.name for n in ctl.namespaces()} >= {"mine", "kept"}
    assert not theirs.exists() and ctl.ports() == [] and web.endpoints() == []
    mine.delete()  # and its lease goes with it
    assert ctl.store.read(lambda tx: tx.leases()) == []
    assert ctl.gc()["abandoned"] == []
    assert kept.exists()
    with pytest.raises(errors.ValidationError, match="temporary"):
        ctl.create_namespace("bad", temporary="yes")  # type: ignore[arg-type]


def test_publish_none_is_no_ports_and_publish_checks_what_it_can_first(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app, gone = ctl.create_namespace("app"), ctl.create_namespace("gone")
    assert web.connect(app, publish=None).ports == ()  # type: ignore[arg-type]
    web.connect(gone)
    kernel_of(ctl).apply(DeleteNamespace(ns="gone"))  # `ip netns del` behind hostnet's back
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.NamespaceNotFound):
        web.publish(gone, ["8081:81"])
    assert (kernel_of(ctl).dump(), ctl.store.dump()) == (before_kernel, before_store)
    ctl.policy = SecurityPolicy(allow_host_network=True)
    host = ctl.network("host")
    host.connect("svc", ports=["9000"])
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.InvalidOption, match="host driver does not publish"):
        host.publish("svc", ["80:80"])  # refused before any admission is recorded
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store


def test_a_namespace_that_hosts_networks_is_not_deleted_from_under_them(tmp_path) -> None:
    kernel = FakeKernel(seed=3)
    root = Controller(backend=kernel, state_dir=tmp_path / "state")
    root.create_namespace("h")
    hosted = Controller(backend=kernel, host="h", state_dir=tmp_path / "state", forwarding=True)
    web = hosted.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    before = kernel.dump(), root.store.dump()
    with pytest.raises(errors.ConflictError, match="'web'"):
        root.delete_namespace("h")
    assert (kernel.dump(), root.store.dump()) == before
    web.delete()
    hosted.close()
    root.delete_namespace("h")  # its predefined networks (host, none) are no obstacle
    assert "h" not in kernel.namespaces()
    root.close()


def test_the_default_routes_move_to_another_network_when_theirs_leaves(ctl: Controller) -> None:
    a = ctl.create_network("a", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    b = ctl.create_network("b", driver="bridge", subnet=["10.92.0.0/24", "fd00:92::/64"])
    inner = ctl.create_network("inner", driver="bridge", subnet="10.93.0.0/24", internal=True)
    v4 = ctl.create_network("v4", driver="bridge", subnet="10.94.0.0/24")
    app, other = ctl.create_namespace("app"), ctl.create_namespace("other")

    def defaults(ns: Namespace) -> set[tuple[str, str | None, str | None]]:
        return {(r.dst, r.gateway, r.ifname) for r in ns.routes() if r.dst.endswith("/0")}

    a.connect(app)
    inner.connect(app)
    v4.connect(app)
    b.connect(app)
    assert defaults(app) == {("0.0.0.0/0", "10.91.0.1", "eth0"), ("::/0", "fd00:91::1", "eth0")}
    a.disconnect(app)  # not to the internal one: the first other, per family
    assert defaults(app) == {("0.0.0.0/0", "10.94.0.1", "eth2"), ("::/0", "fd00:92::1", "eth3")}
    v4.disconnect_all()  # handed on again, by a bulk disconnect too
    assert defaults(app) == {("0.0.0.0/0", "10.92.0.1", "eth3"), ("::/0", "fd00:92::1", "eth3")}
    # a connect now adds none: the namespace has them
    a.connect(other)
    b.connect(other)
    b.delete(force=True)  # and by a network deleted with its endpoints
    assert defaults(app) == set()  # only the internal network is left
    assert defaults(other) == {("0.0.0.0/0", "10.91.0.1", "eth0"), ("::/0", "fd00:91::1", "eth0")}
    inner.disconnect(app)
    a.disconnect(other)
    assert ctl.store.dump()["published"] == [] and ctl.store.dump()["journal"] == []
    assert app.routes() == () and other.routes() == ()


def test_audit_tells_hostnets_leaked_links_from_dockers(ctl: Controller) -> None:
    from hostnet.controller import LINK_GROUP_BASE
    from hostnet.drivers.bridge import bridge_mac
    from hostnet.ops import AddLink

    ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    kernel, peers = kernel_of(ctl), ctl.create_namespace("peers").name
    # Docker's: same kinds of names, but a MAC and a group of its own
    kernel.apply(AddLink(ns=HOST, name="br-0123456789ab", kind="bridge", mac="02:42:ac:11:00:01"))
    kernel.apply(
        AddLink(
            ns=HOST, name="veth1a2b3c4", kind="veth", peer="d0", peer_ns=peers,
            master="br-0123456789ab",
        )
    )  # fmt: skip
    # hostnet's, of a state directory that is gone
    kernel.apply(
        AddLink(ns=HOST, name="br-abcdef012345", kind="bridge", mac=bridge_mac("abcdef012345"))
    )
    kernel.apply(
        AddLink(
            ns=HOST, name="vethabcdef0", kind="veth", peer="h0", peer_ns=peers,
            group=LINK_GROUP_BASE + 5,
        )
    )  # fmt: skip
    kernel.apply(
        AddLink(
            ns=HOST, name="vethabcdef1", kind="veth", peer="h1", peer_ns=peers,
            master="br-abcdef012345",
        )
    )  # fmt: skip
    leaked = {f["subject"] for f in ctl.audit() if f["kind"] == "leaked-link"}
    assert leaked == {"br-abcdef012345", "vethabcdef0", "vethabcdef1"}


def test_networks_are_made_again_when_their_host_restarts(tmp_path) -> None:
    from hostnet.drivers.bridge import veth_name
    from hostnet.ops import SetSysctl

    kernel = FakeKernel(seed=3)
    ctl = make(tmp_path, kernel)
    web = ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    app = ctl.create_namespace("app")
    first = web.connect(app, publish=["8080:80"])
    ctl.policy = SecurityPolicy(allow_host_network=True)
    ctl.attach("svc", driver="host", ports=["9000"])
    made = kernel.observe(HOST)
    ctl.close()
    # the host restarts: its links and firewall are gone, and with them the endpoints'
    # veths; its admin turned forwarding on at boot
    kernel.apply(DeleteNamespace(ns=HOST))
    kernel.apply(CreateNamespace(ns=HOST))
    kernel.apply(SetSysctl(ns=HOST, key="net/ipv4/ip_forward", value="1", previous="0"))
    with pytest.warns(
        errors.HostnetWarning, match=r"forgot those of 2 workload\(s\) \('app', 'svc'\)"
    ):
        ctl = make(tmp_path, kernel)
    again = kernel.observe(HOST)
    assert again.link_names() == made.link_names() - {veth_name(first.id)}  # not app's veth
    bridge = f"br-{web.id[:12]}"
    assert again.link(bridge).mac == made.link(bridge).mac  # type: ignore[union-attr]
    assert set(again.addresses) == {a for a in made.addresses if a.ifname != "lo"} | {
        a for a in again.addresses if a.ifname == "lo"
    }
    assert again.nft_tables == made.nft_tables
    assert ctl.endpoints() == [] and ctl.ports() == []
    assert [n.name for n in ctl.networks() if n.driver == "bridge"] == ["web"]
    ep = ctl.network("web").connect(app, publish=["8080:80"])
    assert ep.ip.startswith("10.91.0.") and ep.ifname == "eth0"
    ctl.network("web").delete(force=True)
    assert kernel.observe(HOST).link_names() == {"lo"}
    # forwarding as the restarted host had it, not as before the restart
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    assert ctl.store.dump()["revive"] == [] and ctl.store.dump()["shared"] == []
    ctl.close()


@pytest.mark.parametrize("restarted", [True, False])
def test_a_store_that_never_recorded_its_host_tells_a_restart_by_its_links(
    tmp_path, restarted: bool
) -> None:
    # stores of hostnet before session 6 have no identity of their host: the first
    # Controller since cannot compare, so it looks whether the networks' links are there
    kernel = FakeKernel(seed=3)
    ctl = make(tmp_path, kernel)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    web.connect(ctl.create_namespace("app"))
    ctl.close()
    with LocalStore(tmp_path / "state").transaction() as tx:
        tx.c.execute("DELETE FROM idents WHERE owner LIKE 'host:%'")
    if restarted:
        restart_host(kernel)
        with pytest.warns(errors.HostnetWarning, match=r"forgot those of 1 workload\(s\)"):
            ctl = make(tmp_path, kernel)
        assert ctl.endpoints() == []
    else:
        ctl = make(tmp_path, kernel)
        assert [e.workload for e in ctl.endpoints()] == ["app"]
    assert kernel.observe(HOST).link(f"br-{web.id[:12]}") is not None
    assert ctl.store.read(lambda tx: tx.ident(f"host:{HOST}")) is not None
    assert [f for f in ctl.audit() if f["severity"] == "high"] == []
    ctl.network("web").delete(force=True)
    ctl.close()


def test_any_one_port_of_a_range_takes_an_unprivileged_one_when_it_must(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    ctl.policy = SecurityPolicy(allow_privileged_ports=False)
    first = int(kernel_of(ctl).sysctl(HOST, "net/ipv4/ip_unprivileged_port_start"))
    app, other = ctl.create_namespace("app"), ctl.create_namespace("other")
    (m,) = web.connect(app, publish=[f"{first - 5}-{first + 5}:80"]).ports
    assert first <= m.host_port <= first + 5
    with pytest.raises(errors.PolicyDenied):
        web.connect(other, publish=[f"{first - 10}-{first - 1}:80"])
    # the first connect asked for no privileged port; the second was refused one
    assert [(a["workload"], a["decision"]) for a in ctl.admissions()] == [("other", "denied")]


def restart_host(kernel: FakeKernel) -> None:
    kernel.apply(DeleteNamespace(ns=HOST))
    kernel.apply(CreateNamespace(ns=HOST))


def test_after_a_restart_one_process_makes_a_network_again_with_the_forwarding_allowed(
    tmp_path,
) -> None:
    kernel = FakeKernel(seed=3)
    ctl = make(tmp_path, kernel)  # lets hostnet turn forwarding on
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    ctl.create_network("db", driver="bridge", subnet="10.92.0.0/24")
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    ctl.close()
    restart_host(kernel)
    # another process is making "web" again right now (a live journal of it)
    with ctl.store.transaction() as tx:
        tx.journal_begin(
            id="j", kind="setup", owner=f'["{web.id}/revive/x"]', pid=os.getpid(),
            started=ctl.executor.started, plan=[],
        )  # fmt: skip
    # a Controller that may not turn forwarding on: it still does, as before the restart
    other = make(tmp_path, kernel, forwarding=False)
    names = kernel.observe(HOST).link_names()
    assert f"br-{web.id[:12]}" not in names  # left to the process making it
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "1"
    with other.store.transaction() as tx:
        tx.journal_end("j")
    other.close()
    again = make(tmp_path, kernel, forwarding=False)
    assert f"br-{web.id[:12]}" in kernel.observe(HOST).link_names()
    assert again.store.dump()["revive"] == []
    again.close()


def test_a_default_route_is_not_handed_on_in_a_namespace_made_again(ctl: Controller) -> None:
    from hostnet.ops import AddLink

    a = ctl.create_network("a", driver="bridge", subnet="10.91.0.0/24")
    b = ctl.create_network("b", driver="bridge", subnet="10.92.0.0/24")
    w = ctl.create_namespace("w")
    a.connect(w)
    b.connect(w)
    kernel = kernel_of(ctl)
    kernel.apply(DeleteNamespace(ns="w"))  # `ip netns del w; ip netns add w` and links
    kernel.apply(CreateNamespace(ns="w"))
    for name in ("eth0", "eth1"):
        kernel.apply(AddLink(ns="w", name=name, kind="veth", peer=f"u{name}", peer_ns=HOST))
    a.disconnect("w")
    assert kernel.observe("w").routes == ()
    with pytest.raises(errors.ConflictError, match="gc"):
        b.publish("w", ["8080:80"])  # nothing of the old namespace is left to answer
    assert ctl.ports() == []
    assert ctl.gc()["stale"] == ["w"]
    assert kernel.observe("w").link_names() == {"lo", "eth0", "eth1"}


def test_networks_are_found_by_name_id_or_id_prefix_of_this_host_only(tmp_path) -> None:
    kernel = FakeKernel(seed=3)
    ctl = make(tmp_path, kernel)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    assert ctl.network(web.id).name == "web"
    assert ctl.network(web.id[:12]).name == "web"  # as `network ls` prints ids
    kernel.apply(CreateNamespace(ns="other"))
    other = Controller(backend=kernel, host="other", state_dir=tmp_path / "state", forwarding=True)
    for ref in (web.id, web.id[:12], "web"):
        with pytest.raises(errors.NetworkNotFound):
            other.network(ref)
        with pytest.raises(errors.NetworkNotFound):
            other.delete_network(ref, force=True)
    assert ctl.network("web").id == web.id  # untouched
    for short in (web.id[:11], web.id[:1]):  # a stale name like "cafe" finds nothing
        with pytest.raises(errors.NetworkNotFound):
            ctl.network(short)
    twin = "0123456789ab" + "0" * 52
    with ctl.store.transaction() as tx:
        for last in "12":
            tx.add_network(
                id=twin[:-1] + last, name=f"twin{last}", driver="bridge", host=HOST,
                spec={}, data={},
            )  # fmt: skip
    with pytest.raises(errors.ValidationError, match="more than one"):
        ctl.network(twin[:12])
    other.close()


def test_gateways_and_ranges_go_to_the_subnet_that_contains_them(ctl: Controller) -> None:
    web = ctl.create_network(
        "web",
        driver="bridge",
        subnet=["10.91.0.0/24", "fd00:91::/64"],
        gateway="fd00:91::5",  # given alone, for the second subnet: as the docker CLI
        ip_range=["fd00:91::/80", "10.91.0.128/25"],  # in any order
    )
    config = {c["Subnet"]: c for c in web.inspect()["IPAM"]["Config"]}
    assert config["fd00:91::/64"]["Gateway"] == "fd00:91::5"
    assert config["10.91.0.0/24"]["Gateway"] == "10.91.0.1"
    assert config["10.91.0.0/24"]["IPRange"] == "10.91.0.128/25"
    before = kernel_of(ctl).dump(), ctl.store.dump()
    bad: list[tuple[type[Exception], dict[str, object]]] = [
        (errors.InvalidOption, dict(subnet="10.92.0.0/24", gateway=["10.92.0.1", "10.92.0.2"])),
        (errors.InvalidAddress, dict(subnet="10.92.0.0/24", gateway="10.93.0.1")),
        (errors.InvalidAddress, dict(subnet="10.92.0.0/24", ip_range="10.93.0.0/25")),
        (errors.InvalidOption, dict(ip_range="10.92.0.0/25")),  # no subnet to be in
        (errors.InvalidOption, dict(subnet=["10.92.0.0/24", "10.93.0.0/24"])),  # two IPv4
    ]
    for error, kwargs in bad:
        with pytest.raises(error):
            ctl.create_network("bad", driver="bridge", **kwargs)  # type: ignore[arg-type]
    assert (kernel_of(ctl).dump(), ctl.store.dump()) == before


def test_the_permission_to_forward_lasts_one_restart_only(tmp_path) -> None:
    from hostnet.ops import AddLink

    kernel = FakeKernel(seed=3)
    ctl = make(tmp_path, kernel)  # may turn forwarding on
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    ctl.close()
    restart_host(kernel)
    # web cannot be made again: its bridge's name is taken in the restarted host
    kernel.apply(AddLink(ns=HOST, name=f"br-{web.id[:12]}", kind="bridge"))
    with pytest.warns(errors.HostnetWarning, match="could not be made again"):
        other = make(tmp_path, kernel, forwarding=False)
    assert [f["subject"] for f in other.audit() if f["kind"] == "not-made-again"] == ["web"]
    other.delete_network("web", force=True)
    with pytest.warns(errors.HostnetWarning, match="forwarding is off"):
        other.create_network("web2", driver="bridge", subnet="10.92.0.0/24")
    other.close()
    restart_host(kernel)
    with pytest.warns(errors.HostnetWarning, match="forwarding is off"):
        again = make(tmp_path, kernel, forwarding=False)  # may not: web2 never could
    assert kernel.sysctl(HOST, "net/ipv4/ip_forward") == "0"
    assert again.store.dump()["revive"] == []
    again.close()


def test_gc_gives_back_a_default_route_a_killed_hand_over_owed(ctl: Controller) -> None:
    a = ctl.create_network("a", driver="bridge", subnet="10.91.0.0/24")
    b = ctl.create_network("b", driver="bridge", subnet=["10.92.0.0/24", "fd00:92::/64"])
    app = ctl.create_namespace("app")
    a.connect(app)
    b.connect(app)  # gives only IPv6's
    real = ctl._take_over_defaults
    ctl._take_over_defaults = lambda gone: None  # type: ignore[method-assign]  # "killed"
    a.disconnect(app)
    ctl._take_over_defaults = real  # type: ignore[method-assign]
    assert [r.dst for r in app.routes() if r.is_default] == ["::/0"]
    assert ctl.gc()["recovered"] == []
    defaults = {(r.dst, r.gateway) for r in app.routes() if r.is_default}
    assert defaults == {("0.0.0.0/0", "10.92.0.1"), ("::/0", "fd00:92::1")}
    b.disconnect(app)  # and it goes with b's endpoint
    assert app.routes() == ()
    assert ctl.store.dump()["published"] == []


def test_a_port_published_on_an_address_the_host_lacks_is_refused_first(
    ctl: Controller,
) -> None:
    # as Docker's bind ("cannot assign requested address"): nothing would receive it
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = ctl.create_namespace("a")
    before_kernel, before_store = kernel_of(ctl).dump(), ctl.store.dump()
    for spec in ("10.9.9.9:8089:80", "[fd00::9]:8089:80"):
        with pytest.raises(errors.InvalidAddress, match="not an address of"):
            web.connect(app, publish=[spec])
    assert kernel_of(ctl).dump() == before_kernel
    assert ctl.store.dump() == before_store
    ep = web.connect(app, publish=["10.91.0.1:8089:80", "127.0.0.1:8090:80"])  # the host's
    with pytest.raises(errors.InvalidAddress):
        web.publish(app, ["10.9.9.9:8091:81"])
    kernel_of(ctl).apply(
        SetSysctl(ns=HOST, key="net/ipv4/ip_nonlocal_bind", value="1", previous="0")
    )
    assert [m.host_ip for m in web.publish(app, ["10.9.9.9:8091:81"])] == ["10.9.9.9"]
    assert len(ep.ports) == 2


def test_a_host_made_on_a_forwarding_machine_forwards_before_and_after(tmp_path) -> None:
    # a new namespace copies the root's IPv4 settings (ip_forward 1 on a machine with
    # Docker): a bridge network finds forwarding on, and leaves it on when it goes
    kernel = FakeKernel(seed=3)
    key = "net/ipv4/ip_forward"
    kernel.apply(SetSysctl(ns=None, key=key, value="1", previous="0"))
    ctl = make(tmp_path, kernel)
    try:
        assert kernel.sysctl(HOST, key) == "1"
        web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
        assert kernel.sysctl(HOST, key) == "1"
        web.delete()
        assert kernel.sysctl(HOST, key) == "1"
    finally:
        ctl.close()


def test_a_name_taken_is_said_first_whatever_the_subnet(ctl: Controller) -> None:
    ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    with pytest.raises(errors.NetworkExists):
        ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")


def test_an_automatic_ipv6_subnet_keeps_clear_of_networks_and_host_routes(tmp_path) -> None:
    # three quarters of fd00::/8 are taken: most random picks must be tried again
    kernel = FakeKernel(seed=3)
    kernel.apply(CreateNamespace(ns=HOST))
    kernel.add_device(HOST, "lan0")
    kernel.apply(AddAddress(ns=HOST, ifname="lan0", address="fd00::2/64"))
    kernel.apply(AddRoute(ns=HOST, dst="fd80::/9", gateway="fd00::1"))
    taken = [ipaddress.ip_network(n) for n in ("fd00::/64", "fd80::/9", "fd40::/10")]
    ctl = make(tmp_path, kernel)
    try:
        ctl.create_network("big", driver="bridge", subnet=["10.90.0.0/24", "fd40::/10"])
        for i in range(20):
            net = ctl.create_network(f"n{i}", driver="bridge", ipv6=True)
            (six,) = [c["Subnet"] for c in net.inspect()["IPAM"]["Config"] if ":" in c["Subnet"]]
            assert not any(ipaddress.ip_network(six).overlaps(t) for t in taken)
        kernel.apply(AddRoute(ns=HOST, dst="fd00::/8", gateway="fd00::1"))
        with pytest.raises(errors.ExhaustedError, match="IPv6 subnet"):
            ctl.create_network("full", driver="bridge", ipv6=True)
    finally:
        ctl.close()


def test_an_ipv6_gateway_may_be_the_last_address(ctl: Controller) -> None:
    # IPv6 has no broadcast address
    net = ctl.create_network(
        "web", driver="bridge", subnet=["10.91.0.0/24", "fd00:25::/64"],
        gateway=["10.91.0.1", "fd00:25::ffff:ffff:ffff:ffff"],
    )  # fmt: skip
    ep = net.connect(ctl.create_namespace("a"))
    assert "fd00:25::ffff:ffff:ffff:ffff" in [
        c.get("Gateway") for c in net.inspect()["IPAM"]["Config"]
    ]
    assert ep.ip6 == "fd00:25::1"
    with pytest.raises(errors.InvalidAddress):
        ctl.create_network("v4", driver="bridge", subnet="10.92.0.0/24", gateway="10.92.0.255")


def test_a_static_ipv4_address_may_be_written_ipv4_mapped(ctl: Controller) -> None:
    net = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    assert net.connect(ctl.create_namespace("a"), ip="::ffff:10.91.0.9").ip == "10.91.0.9"


def test_gc_rebuilds_firewall_tables_gone_in_part_or_whole(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24", icc=False)
    web.connect(ctl.create_namespace("a"), publish=["8080:80"])
    before = kernel_of(ctl).dump()
    gone = [{"delete": {"table": {"family": f, "name": "hostnet"}}} for f in ("inet", "bridge")]
    for lost in (gone[:1], gone):  # one table (what is left is rebuilt too), then both
        kernel_of(ctl).apply(NftBatch(ns=HOST, commands=json.dumps({"nftables": lost}), undo=""))
        assert [f["subject"] for f in ctl.audit() if f["kind"] == "missing-firewall"] == [
            t for t in ("inet hostnet", "bridge hostnet") if t.split()[0] in json.dumps(lost)
        ]
        assert ctl.gc()["restored"] == ["inet hostnet", "bridge hostnet"]
        assert kernel_of(ctl).dump() == before
        assert ctl.gc()["restored"] == []


def test_gc_upgrades_a_firewall_an_older_hostnet_made(ctl: Controller) -> None:
    # tables and chains an older hostnet made lack rules added since (here the guard
    # against forged packets to 127.0.0.1 and a network's pass for DNATed traffic):
    # audit says so, gc rebuilds them as this version makes them and records that
    from tests.aging import age_firewall

    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24", icc=False)
    db = ctl.create_network("db", driver="bridge", subnet="10.92.0.0/24")
    web.connect(ctl.create_namespace("a"), publish=["127.0.0.1:5353:53/udp"])

    def records() -> list[object]:
        shared = ctl.store.read(lambda tx: tx.shared(HOST, "nft:bridge"))
        assert shared is not None
        nets = ctl.store.read(lambda tx: tx.networks(HOST))
        return [shared["applied"], *(n["applied"] for n in nets)]

    before, recorded = kernel_of(ctl).dump(), records()
    age_firewall(ctl, base_drop="127.0.0.0", network="db", drop='"status"')
    assert kernel_of(ctl).dump() != before and records() != recorded
    found = [(f["kind"], f["subject"]) for f in ctl.audit() if "firewall" in f["kind"]]
    assert found == [("outdated-firewall", "hostnet's tables"), ("outdated-firewall", "db")]
    assert ctl.gc()["restored"] == ["inet hostnet", "bridge hostnet"]
    assert kernel_of(ctl).dump() == before
    assert records() == recorded
    assert ctl.gc()["restored"] == []
    assert [f for f in ctl.audit() if "firewall" in f["kind"]] == []
    web.disconnect("a")
    web.delete()
    db.delete()  # (undoes the batch gc recorded)
    assert kernel_of(ctl).nft_list(HOST, "inet hostnet") is None


@pytest.mark.parametrize("step", ["progress", "closing"])
def test_work_a_store_error_left_open_is_finished_by_the_same_process(
    ctl: Controller, step: str
) -> None:
    # The disk fills up (or a lock is held too long) in the middle of a connect: the
    # kernel side is rolled back, but the store cannot say so, and the journal stays
    # open under a process that is alive: no other process may recover it. This one
    # does, at its next call or in gc, once the store works again.
    from contextlib import contextmanager

    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a = ctl.create_namespace("a")
    before_kernel = kernel_of(ctl).dump()
    store = ctl.store
    real_progress, real_transaction = store.journal_progress, store.transaction
    full = [False]

    def progress(*args: object) -> None:
        full[0] = True  # the disk is full from here on
        raise errors.StoreError("state.db: database or disk is full")

    @contextmanager
    def transaction():  # type: ignore[no-untyped-def]
        if full[0]:
            raise errors.StoreError("state.db: database or disk is full")
        with real_transaction() as tx:
            yield tx
        if step == "closing" and tx.c.execute("SELECT 1 FROM journal").fetchone():
            full[0] = True  # after the journaling transaction: the closing one fails

    store.journal_progress = progress if step == "progress" else real_progress  # type: ignore[method-assign]
    store.transaction = transaction  # type: ignore[method-assign]
    with pytest.raises(errors.StoreError):
        web.connect(a, publish=["8080:80"])
    assert kernel_of(ctl).dump() == before_kernel  # rolled back
    assert ctl.store.dump()["journal"]  # but the store could not say so
    full[0] = False  # space again
    store.journal_progress, store.transaction = real_progress, real_transaction  # type: ignore[method-assign]
    if step == "progress":
        assert [r["kind"] for r in ctl.gc()["recovered"]] == ["setup"]
    ep = web.connect(a, publish=["8080:80"])  # (the next call recovers it first)
    assert ep.ports[0].host_port == 8080 and ctl.store.dump()["journal"] == []
    assert [e.workload for e in ctl.endpoints()] == ["a"]


def test_inspect_shows_the_addresses_asked_for_as_ipamconfig(ctl: Controller) -> None:
    net = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    net.connect(a, ip="::ffff:10.91.0.9")
    net.connect(b)
    networks = {n: ctl.inspect(n)["NetworkSettings"]["Networks"]["web"] for n in ("a", "b")}
    assert networks["a"]["IPAMConfig"] == {"IPv4Address": "10.91.0.9"}
    assert networks["b"]["IPAMConfig"] is None


def test_no_firewall_restore_while_work_is_open_or_networks_wait_to_be_made(
    ctl: Controller,
) -> None:
    # between the first create's journal and its batch, the record is there without
    # the tables; so after a host restart, until its networks are made again; and
    # another process may be rebuilding them right now (its journal is open too)
    from tests.unit.test_executor import live_journal

    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    gone = [{"delete": {"table": {"family": f, "name": "hostnet"}}} for f in ("inet", "bridge")]
    kernel_of(ctl).apply(NftBatch(ns=HOST, commands=json.dumps({"nftables": gone}), undo=""))
    live_journal(ctl.store, "creating", "some-network")
    with pytest.warns(errors.HostnetWarning, match="not rebuilt"):
        assert ctl.gc()["restored"] == []
    with ctl.store.transaction() as tx:
        tx.journal_end("creating")
        tx.c.execute("INSERT INTO revive (network, host) VALUES (?, ?)", (web.id, HOST))
    with pytest.warns(errors.HostnetWarning) as caught:
        assert ctl.gc()["restored"] == []  # (its bridge is in the way: it stays marked)
    assert {str(w.message)[:40] for w in caught} == {
        "network 'web' could not be made again af",
        "hostnet's firewall is not as recorded (o",
    }
    with ctl.store.transaction() as tx:
        tx.revived(web.id)
    assert ctl.gc()["restored"] == ["inet hostnet", "bridge hostnet"]
    kernel_of(ctl).apply(DeleteNamespace(ns=HOST))  # a Controller left open, its host gone
    assert ctl.gc()["restored"] == []


def test_a_chain_added_by_hand_to_hostnets_table_is_no_damage(ctl: Controller) -> None:
    ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    chain = {"family": "inet", "table": "hostnet", "name": "mine", "type": "filter"}
    chain |= {"hook": "input", "prio": 0, "policy": "accept"}
    kernel_of(ctl).apply(
        NftBatch(ns=HOST, commands=json.dumps({"nftables": [{"add": {"chain": chain}}]}), undo="")
    )
    assert [f for f in ctl.audit() if f["kind"] == "missing-firewall"] == []
    assert ctl.gc()["restored"] == []


def test_tables_of_another_state_directory_are_not_rebuilt(tmp_path) -> None:
    # after a flush, another state directory made its networks on this host: its
    # tables hold networks this one does not know, and gc leaves them be
    kernel = FakeKernel(seed=3)
    a = make(tmp_path / "a", kernel)
    b = make(tmp_path / "b", kernel)
    try:
        a.create_network("web", driver="bridge", subnet="10.91.0.0/24")
        gone = [
            {"delete": {"table": {"family": f, "name": "hostnet"}}} for f in ("inet", "bridge")
        ]
        kernel.apply(NftBatch(ns=HOST, commands=json.dumps({"nftables": gone}), undo=""))
        b.create_network("db", driver="bridge", subnet="10.92.0.0/24")
        before = kernel.dump()
        with pytest.warns(errors.HostnetWarning, match="another state directory"):
            assert a.gc()["restored"] == []
        assert kernel.dump() == before
        assert [f["subject"] for f in a.audit() if f["kind"] == "missing-firewall"] == [
            "hostnet's tables"
        ]
    finally:
        a.close()
        b.close()


def test_ipv6_forwarding_off_is_warned_about_for_a_network_with_ipv6(tmp_path) -> None:
    """IPv4 forwarding on and IPv6's off: a dual-stack network's IPv6 traffic goes
    nowhere beyond the host, silently, unless the warning says so."""
    from hostnet.ops import SetSysctl

    kernel = FakeKernel(seed=3)
    ctl = make(tmp_path, kernel, forwarding=False)
    kernel.apply(SetSysctl(ns=HOST, key="net/ipv4/ip_forward", value="1", previous="0"))
    ctl.create_network("v4", driver="bridge", subnet="10.91.0.0/24")  # no warning
    with pytest.warns(errors.HostnetWarning, match=r"^IPv6 forwarding is off") as caught:
        ctl.create_network("dual", driver="bridge", subnet=["10.92.0.0/24", "fd00:92::/64"])
    assert "over IPv6" in str(caught[0].message)
    ctl.close()


@pytest.mark.parametrize("driver", ["bridge", "macvlan"])
def test_an_mtu_ipv6_cannot_have_is_refused_first(ctl: Controller, driver: str) -> None:
    opts: dict[str, object] = {"parent": "eth0"} if driver == "macvlan" else {}
    if driver == "macvlan":
        kernel_of(ctl).add_device(HOST, "eth0")
    before = kernel_of(ctl).dump(), ctl.store.dump()
    with pytest.raises(errors.InvalidOption, match="MTU of at least 1280"):
        ctl.create_network(
            "n", driver=driver, subnet=["10.91.0.0/24", "fd00:91::/64"], mtu="1000", **opts
        )
    with pytest.raises(errors.InvalidOption, match="MTU of at least 1280"):
        ctl.create_network("n", driver=driver, ipv6=True, mtu="1279", **opts)
    assert (kernel_of(ctl).dump(), ctl.store.dump()) == before
    ctl.create_network("n", driver=driver, subnet="10.91.0.0/24", mtu="1000", **opts)


def test_an_ipv4_mapped_subnet_is_refused(ctl: Controller) -> None:
    with pytest.raises(errors.InvalidAddress, match="IPv4-mapped"):
        ctl.create_network("n", driver="bridge", subnet=["10.91.0.0/24", "::ffff:0:0/96"])


def test_the_default_gateway_is_not_an_address_the_host_has(ctl: Controller) -> None:
    """A subnet that takes in one of the host's own addresses (allowed when the user
    names it): the bridge does not get that address too, and no endpoint gets it."""
    from hostnet.ops import AddAddress

    kernel = kernel_of(ctl)
    kernel.add_device(HOST, "uplink0")
    kernel.apply(AddAddress(ns=HOST, ifname="uplink0", address="10.77.0.1/24"))
    net = ctl.create_network("n", driver="bridge", subnet="10.77.0.0/16")
    (config,) = ctl.inspect_network("n")["IPAM"]["Config"]
    assert config["Gateway"] == "10.77.0.2"
    assert config["AuxiliaryAddresses"] == {"host:uplink0": "10.77.0.1"}
    assert net.connect(ctl.create_namespace("app")).ip == "10.77.0.3"


def test_ipv4_only_endpoints_have_ipv6_off_and_small_mtu_ones_none(ctl: Controller) -> None:
    """As the kernel (tests/kernel: ..._rogue_router_advert, ..._under_ipv6s_mtu): an
    IPv4-only endpoint has IPv6 off; one under IPv6's minimum MTU has no IPv6 at all."""
    kernel = kernel_of(ctl)
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    small = ctl.create_network("small", driver="bridge", subnet="10.92.0.0/24", mtu="1000")
    dual = ctl.create_network("dual", driver="bridge", subnet=["10.93.0.0/24", "fd00:93::/64"])
    a, b, c = (ctl.create_namespace(n) for n in ("a", "b", "c"))
    web.connect(a)
    small.connect(b)
    dual.connect(c)
    key = "net/ipv6/conf/eth0/disable_ipv6"
    assert (kernel.sysctl("a", key), kernel.sysctl("c", key)) == ("1", "0")
    with pytest.raises(errors.NotFoundError, match="has no IPv6"):
        kernel.sysctl("b", key)


def test_a_port_held_by_a_workload_that_is_gone_says_gc_frees_it(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    web.connect(a, publish=["8080:80"])
    with pytest.raises(errors.PortInUse, match="reserved by hostnet workload 'a'; free it"):
        web.connect(b, publish=["8080:80"])
    kernel_of(ctl).apply(DeleteNamespace(ns="a"))  # behind hostnet's back
    with pytest.raises(errors.PortInUse, match=r"namespace is gone.*`hostnet gc` frees"):
        web.connect(b, publish=["8080:80"])
    ctl.gc()
    assert web.connect(b, publish=["8080:80"]).ports[0].host_port == 8080


def test_a_port_in_use_names_the_address_it_is_held_on(ctl: Controller) -> None:
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = ctl.create_namespace("a"), ctl.create_namespace("b")
    web.connect(a, publish=["127.0.0.1:8080:80"])
    with pytest.raises(errors.PortInUse, match=r"workload 'a' on 127\.0\.0\.1; free it"):
        web.connect(b, publish=["8080:80"])
    with pytest.raises(errors.PortInUse, match="workload 'a'; free it"):  # (the one asked)
        web.connect(b, publish=["127.0.0.1:8080:80"])


def interrupt_op(ctl: Controller, nth: int) -> None:
    """Ctrl-C in place of the ``nth`` op the kernel is asked for from now on (once)."""
    kernel = kernel_of(ctl)
    real = kernel.apply
    seen: list[Op] = []

    def interrupted(op: Op) -> None:
        seen.append(op)
        if len(seen) == nth:
            kernel.apply = real  # type: ignore[method-assign]
            raise KeyboardInterrupt
        real(op)

    kernel.apply = interrupted  # type: ignore[method-assign]


@pytest.mark.parametrize("call", ["disconnect", "delete"])
def test_a_teardown_interrupted_in_a_process_that_lives_on(ctl: Controller, call: str) -> None:
    # (a REPL, a test runner): the journal stayed open, so the endpoint could neither
    # be disconnected again nor connected, and its port stayed reserved, until the
    # process exited; a network's delete again said "being deleted (gc retries it)"
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = ctl.create_namespace("app")
    web.connect(app, publish=["8080:80"])
    interrupt_op(ctl, 1 if call == "disconnect" else 2)
    finish = web.disconnect if call == "disconnect" else lambda _app: web.delete(force=True)
    with pytest.raises(KeyboardInterrupt):
        finish(app)
    finish(app)  # (again: finishes it)
    assert ctl.ports() == [] and app.snapshot().link_names() == {"lo"}
    assert ctl.store.dump()["journal"] == []
    if call == "delete":
        assert "web" not in [n.name for n in ctl.networks()]
        web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    web.connect(app, publish=["8080:80"])
