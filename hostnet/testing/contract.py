"""The backend contract: one suite, run against every backend.

The fake backend is a model of the kernel; this suite is where the model is checked.
Every test here runs on the fake and, as root, on the real kernel (in throwaway
namespaces: nothing touches the machine's own network). A fake that passes a test the
kernel fails is a bug in the fake.

Use it for your own backend::

    from hostnet.testing.contract import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self):
            b = MyBackend()
            yield b
            b.close()
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import attrs
import pytest

from hostnet import errors
from hostnet.backends.base import Backend
from hostnet.ops import (
    BARE,
    AddAddress,
    AddFdb,
    AddLink,
    AddNeighbour,
    AddRoute,
    BindPort,
    CreateNamespace,
    DelAddress,
    DeleteNamespace,
    DelFdb,
    DelLink,
    DelLinkGroup,
    DelNeighbour,
    DelRoute,
    ForgetFlows,
    MoveLink,
    NftBatch,
    SetLinkUp,
    SetMaster,
    SetSysctl,
    TrackFlows,
    UnbindPort,
)
from hostnet.testing.world import World, wait_until


def _table_batch(verb: str, name: str) -> str:
    return json.dumps({"nftables": [{verb: {"table": {"family": "inet", "name": name}}}]})


class BackendContract:
    """Subclasses provide a ``backend`` fixture."""

    @pytest.fixture
    def world(self, backend: Backend) -> Iterator[World]:
        w = World(backend, tag="hc")
        yield w
        assert w.cleanup() == []
        leftovers = [n for n in backend.namespaces() if n.startswith(w.prefix)]
        assert leftovers == []

    # -- namespaces --------------------------------------------------------------------

    def test_new_namespace_has_only_lo_up(self, world: World) -> None:
        ns = world.ns()
        snap = world.backend.observe(ns)
        assert [(link.name, link.kind, link.up) for link in snap.links] == [
            ("lo", "loopback", True)
        ]
        assert set(snap.addresses_of("lo")) == {"127.0.0.1/8", "::1/128"}
        assert snap.routes == ()
        assert ns in world.backend.namespaces()

    def test_namespace_create_twice_and_delete_twice(self, world: World) -> None:
        ns = world.ns()
        with pytest.raises(errors.NamespaceExists):
            world.backend.apply(CreateNamespace(ns=ns))
        world.backend.apply(DeleteNamespace(ns=ns))
        assert ns not in world.backend.namespaces()
        with pytest.raises(errors.NamespaceNotFound):
            world.backend.apply(DeleteNamespace(ns=ns))
        with pytest.raises(errors.NamespaceNotFound):
            world.backend.observe(ns)

    def test_a_namespace_is_made_on_its_reservation_and_deleted_only_on_it(
        self, world: World
    ) -> None:
        name = world.name("r")
        world.created.append(name)  # (cleaned up whatever happens)
        token = world.backend.reserve_namespace(name)
        assert world.backend.has_namespace(name)  # (the name is taken)
        with pytest.raises(errors.NamespaceExists):
            world.backend.reserve_namespace(name)
        world.backend.apply(CreateNamespace(ns=name))  # (on its reservation)
        assert world.backend.observe(name).link_names() == {"lo"}
        # a bare file is all BARE deletes, and another reservation's token nothing
        for guard in (BARE, "1" + token):
            with pytest.raises(errors.NotFoundError):
                world.backend.apply(DeleteNamespace(ns=name, reserved=guard))
        world.backend.release(name)
        world.backend.apply(DeleteNamespace(ns=name, reserved=token))
        assert not world.backend.has_namespace(name)
        # (one made again under that name may be on a file with the same token: the
        # kernel reuses a deleted file's inode at once)
        # a reservation never made into a namespace: BARE (or its token) removes it
        world.backend.reserve_namespace(name)
        world.backend.apply(DeleteNamespace(ns=name, reserved=BARE))
        assert not world.backend.has_namespace(name)

    def test_a_namespace_made_again_under_its_name_is_another(self, world: World) -> None:
        ns = world.ns()
        first = world.backend.namespace_id(ns)
        mount = world.backend.namespace_mount(ns)
        assert world.backend.namespace_id(ns) == first
        assert world.backend.namespace_mount(ns) == mount
        assert world.backend.observe(ns).ident == first
        world.backend.release(ns)
        world.backend.apply(DeleteNamespace(ns=ns))
        with pytest.raises(errors.NamespaceNotFound):
            world.backend.namespace_id(ns)
        # the kernel often gives the new one the old one's inode: not its identity
        world.backend.apply(CreateNamespace(ns=ns))
        again = world.backend.namespace_id(ns)
        assert first is not None and again is not None and again != first
        assert mount is None or world.backend.namespace_mount(ns) != mount
        other = world.ns()
        assert world.backend.namespace_id(other) not in (first, again)

    def test_a_new_namespace_runs_no_process(self, world: World) -> None:
        ns = world.ns()
        assert world.backend.processes(ns) == ()
        world.backend.apply(DeleteNamespace(ns=ns))
        with pytest.raises(errors.NamespaceNotFound):
            world.backend.processes(ns)

    def test_namespace_deletion_destroys_links_and_remote_veth_peers(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=a, name="va", kind="veth", peer="vb", peer_ns=b))
        assert world.backend.observe(b).link("vb") is not None
        world.backend.apply(DeleteNamespace(ns=a))
        # the kernel destroys a namespace asynchronously once its last user is gone
        assert wait_until(lambda: world.backend.observe(b).link("vb") is None)

    # -- links -------------------------------------------------------------------------

    @pytest.mark.parametrize("name", ["x" * 16, "a/b", "", "..", "a b", "caf\u00e9"])
    def test_invalid_interface_names_are_refused(self, world: World, name: str) -> None:
        ns = world.ns()
        with pytest.raises(errors.InvalidName):
            world.backend.apply(AddLink(ns=ns, name=name, kind="bridge"))
        assert world.backend.observe(ns).link_names() == {"lo"}

    def test_fifteen_byte_name_is_fine(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="b" * 15, kind="bridge"))
        assert world.backend.observe(ns).link("b" * 15) is not None

    def test_names_are_unique_per_namespace(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=a, name="br0", kind="bridge"))
        with pytest.raises(errors.LinkExists):
            world.backend.apply(AddLink(ns=a, name="br0", kind="bridge"))
        world.backend.apply(AddLink(ns=b, name="br0", kind="bridge"))  # other namespace: fine

    def test_veth_peer_in_other_namespace_and_deleting_one_end_deletes_both(
        self, world: World
    ) -> None:
        a, b = world.ns(), world.ns()
        world.backend.apply(
            AddLink(
                ns=a,
                name="host0",
                kind="veth",
                mtu=1400,
                up=True,
                peer="eth0",
                peer_ns=b,
                peer_mac="02:00:00:00:00:42",
                peer_up=True,
            )
        )
        host0 = world.backend.observe(a).link("host0")
        eth0 = world.backend.observe(b).link("eth0")
        assert host0 is not None and eth0 is not None
        assert (host0.kind, host0.mtu, host0.up) == ("veth", 1400, True)
        assert (eth0.kind, eth0.mtu, eth0.up, eth0.mac) == (
            "veth",
            1400,
            True,
            "02:00:00:00:00:42",
        )
        world.backend.apply(DelLink(ns=b, name="eth0"))
        assert world.backend.observe(a).link("host0") is None
        assert world.backend.observe(b).link("eth0") is None

    def test_veth_peer_name_clash_creates_nothing(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=b, name="eth0", kind="bridge"))
        with pytest.raises(errors.LinkExists) as info:
            world.backend.apply(AddLink(ns=a, name="host0", kind="veth", peer="eth0", peer_ns=b))
        assert info.value.name == "eth0"
        assert world.backend.observe(a).link_names() == {"lo"}

    def test_move_link_between_namespaces(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=a, name="v1", kind="veth", peer="v2", up=True))
        world.backend.apply(AddAddress(ns=a, ifname="v1", address="10.77.0.1/24"))
        world.backend.apply(MoveLink(ns=a, name="v1", to_ns=b))
        assert world.backend.observe(a).link("v1") is None
        moved = world.backend.observe(b).link("v1")
        assert moved is not None and not moved.up
        assert world.backend.observe(b).addresses_of("v1") == ()
        world.backend.apply(AddLink(ns=a, name="v3", kind="veth", peer="v4"))
        world.backend.apply(AddLink(ns=b, name="v3", kind="bridge"))
        with pytest.raises(errors.LinkExists):
            world.backend.apply(MoveLink(ns=a, name="v3", to_ns=b))
        assert world.backend.observe(a).link("v3") is not None

    def test_delete_missing_link_is_not_found(self, world: World) -> None:
        ns = world.ns()
        with pytest.raises(errors.LinkNotFound):
            world.backend.apply(DelLink(ns=ns, name="ghost"))
        with pytest.raises(errors.LinkNotFound):
            world.backend.apply(SetLinkUp(ns=ns, name="ghost", up=True, was_up=False))

    def test_bridge_ports_and_master(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge", up=True))
        world.backend.apply(AddLink(ns=ns, name="p0", kind="veth", peer="p1", master="br0"))
        assert world.backend.observe(ns).link("p0").master == "br0"  # type: ignore[union-attr]
        world.backend.apply(SetMaster(ns=ns, name="p1", master="br0"))
        assert world.backend.observe(ns).link("p1").master == "br0"  # type: ignore[union-attr]
        with pytest.raises(errors.KernelError):
            world.backend.apply(SetMaster(ns=ns, name="p1", master="p0"))  # not a bridge
        world.backend.apply(DelLink(ns=ns, name="br0"))
        snap = world.backend.observe(ns)
        assert snap.link("p0").master is None  # type: ignore[union-attr]
        assert snap.link("p1").master is None  # type: ignore[union-attr]

    def test_bridge_multicast_snooping_is_on_unless_turned_off(self, world: World) -> None:
        ns = world.ns()
        for name, snooping in (("br0", None), ("br1", False), ("br2", True)):
            world.backend.apply(AddLink(ns=ns, name=name, kind="bridge", mcast_snooping=snooping))
        snap = world.backend.observe(ns)
        seen = {n: snap.link(n).mcast_snooping for n in ("br0", "br1", "br2")}  # type: ignore[union-attr]
        assert seen == {"br0": True, "br1": False, "br2": True}

    def test_a_bridge_without_a_mac_of_its_own_takes_its_lowest_ports(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="own", kind="bridge", mac="02:aa:00:00:00:01"))
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge"))
        for name, mac in (("a0", "02:00:00:00:00:05"), ("b0", "02:00:00:00:00:03")):
            world.backend.apply(
                AddLink(ns=ns, name=name, kind="veth", peer=name + "p", mac=mac, master="br0")
            )
            world.backend.apply(SetMaster(ns=ns, name=name + "p", master="own"))

        def macs() -> tuple[str, str]:
            snap = world.backend.observe(ns)
            return snap.link("br0").mac, snap.link("own").mac  # type: ignore[union-attr]

        assert macs() == ("02:00:00:00:00:03", "02:aa:00:00:00:01")
        world.backend.apply(SetMaster(ns=ns, name="b0", master=None))
        assert macs() == ("02:00:00:00:00:05", "02:aa:00:00:00:01")
        world.backend.apply(DelLink(ns=ns, name="a0"))  # its peer leaves "own" too
        assert macs() == ("00:00:00:00:00:00", "02:aa:00:00:00:01")

    def test_link_up_and_down(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge"))
        assert not world.backend.observe(ns).link("br0").up  # type: ignore[union-attr]
        world.backend.apply(SetLinkUp(ns=ns, name="br0", up=True, was_up=False))
        assert world.backend.observe(ns).link("br0").up  # type: ignore[union-attr]

    @pytest.mark.parametrize("mac", ["00:00:00:00:00:00", "01:00:5e:00:00:01"])
    def test_link_macs_must_be_unicast(self, world: World, mac: str) -> None:
        a, b = world.ns(), world.ns()
        with pytest.raises(errors.KernelError):
            world.backend.apply(AddLink(ns=a, name="br0", kind="bridge", mac=mac))
        with pytest.raises(errors.KernelError):
            world.backend.apply(
                AddLink(ns=a, name="host0", kind="veth", peer="eth0", peer_ns=b, peer_mac=mac)
            )
        assert world.backend.observe(a).link_names() == {"lo"}
        assert world.backend.observe(b).link_names() == {"lo"}

    def test_missing_link_type_is_unsupported(self, world: World) -> None:
        ns = world.ns()
        with pytest.raises(errors.UnsupportedError):
            world.backend.apply(AddLink(ns=ns, name="x0", kind="nosuchkind"))

    # -- addresses and routes ----------------------------------------------------------

    def test_addresses(self, world: World) -> None:
        ns = world.ns()
        with pytest.raises(errors.LinkNotFound):
            world.backend.apply(AddAddress(ns=ns, ifname="ghost", address="10.1.0.1/24"))
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="br0", address="10.1.0.1/24"))
        world.backend.apply(AddAddress(ns=ns, ifname="br0", address="fd00:1::1/64"))
        snap = world.backend.observe(ns)
        assert set(snap.addresses_of("br0")) == {"10.1.0.1/24", "fd00:1::1/64"}
        with pytest.raises(errors.AddressInUse):
            world.backend.apply(AddAddress(ns=ns, ifname="br0", address="10.1.0.1/24"))
        world.backend.apply(DelAddress(ns=ns, ifname="br0", address="10.1.0.1/24"))
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(DelAddress(ns=ns, ifname="br0", address="10.1.0.1/24"))
        assert world.backend.observe(ns).addresses_of("br0") == ("fd00:1::1/64",)

    def test_an_address_with_a_zone_is_refused(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge", up=True))
        with pytest.raises(errors.InvalidAddress):
            world.backend.apply(AddAddress(ns=ns, ifname="br0", address="fd00:1::5%br0/64"))
        assert world.backend.observe(ns).addresses_of("br0") == ()

    def test_connected_route_appears_with_address_on_up_link(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="br0", address="10.2.0.1/24"))
        routes = {(r.dst, r.gateway, r.ifname) for r in world.backend.observe(ns).routes}
        assert ("10.2.0.0/24", None, "br0") in routes

    def test_route_needs_reachable_gateway(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1"))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.3.0.2/24"))
        # link down: no connected route yet, so the gateway is unreachable
        with pytest.raises(errors.KernelError):
            world.backend.apply(AddRoute(ns=ns, dst="0.0.0.0/0", gateway="10.3.0.1"))
        world.backend.apply(SetLinkUp(ns=ns, name="v0", up=True, was_up=False))
        with pytest.raises(errors.KernelError):
            world.backend.apply(AddRoute(ns=ns, dst="0.0.0.0/0", gateway="10.9.0.1"))
        world.backend.apply(AddRoute(ns=ns, dst="0.0.0.0/0", gateway="10.3.0.1"))
        default = [r for r in world.backend.observe(ns).routes if r.is_default]
        assert [(r.gateway, r.ifname) for r in default] == [("10.3.0.1", "v0")]
        with pytest.raises(errors.ConflictError):
            world.backend.apply(AddRoute(ns=ns, dst="0.0.0.0/0", gateway="10.3.0.1"))

    def test_link_down_flushes_ipv4_routes(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.4.0.2/24"))
        world.backend.apply(AddRoute(ns=ns, dst="10.40.0.0/16", gateway="10.4.0.1"))
        world.backend.apply(SetLinkUp(ns=ns, name="v0", up=False, was_up=True))
        assert [r for r in world.backend.observe(ns).routes if r.family == 4] == []
        world.backend.apply(SetLinkUp(ns=ns, name="v0", up=True, was_up=False))
        dsts = {r.dst for r in world.backend.observe(ns).routes if r.family == 4}
        assert dsts == {"10.4.0.0/24"}  # the static route does not come back

    def test_delete_route(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.5.0.2/24"))
        world.backend.apply(AddRoute(ns=ns, dst="10.50.0.0/16", gateway="10.5.0.1"))
        world.backend.apply(DelRoute(ns=ns, dst="10.50.0.0/16", gateway="10.5.0.1"))
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(DelRoute(ns=ns, dst="10.50.0.0/16", gateway="10.5.0.1"))

    def test_deleting_link_removes_its_addresses_and_routes(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.6.0.2/24"))
        world.backend.apply(AddRoute(ns=ns, dst="0.0.0.0/0", gateway="10.6.0.1"))
        world.backend.apply(DelLink(ns=ns, name="v1"))
        snap = world.backend.observe(ns)
        assert snap.link("v0") is None
        assert snap.routes == ()
        assert set(snap.addresses_of("v0")) == set()

    # -- macvlan -----------------------------------------------------------------------

    def test_macvlan_on_veth_parent(self, world: World) -> None:
        host, guest = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=host, name="lan0", kind="veth", peer="lan1", up=True))
        world.backend.apply(
            AddLink(
                ns=guest,
                name="eth0",
                kind="macvlan",
                parent="lan0",
                parent_ns=host,
                mode="bridge",
                mac="02:11:22:33:44:55",
            )
        )
        link = world.backend.observe(guest).link("eth0")
        assert link is not None
        assert (link.kind, link.mode, link.mac) == ("macvlan", "bridge", "02:11:22:33:44:55")
        world.backend.apply(
            AddLink(ns=host, name="mv0", kind="macvlan", parent="lan0", mode="bridge")
        )
        assert world.backend.observe(host).link("mv0").parent == "lan0"  # type: ignore[union-attr]
        # deleting the parent deletes its children, wherever they are
        world.backend.apply(DelLink(ns=host, name="lan0"))
        assert world.backend.observe(guest).link("eth0") is None
        assert world.backend.observe(host).link("mv0") is None

    def test_macvlan_refuses_loopback_and_missing_parent(self, world: World) -> None:
        ns = world.ns()
        with pytest.raises(errors.HostnetError):
            world.backend.apply(AddLink(ns=ns, name="m0", kind="macvlan", parent="lo"))
        with pytest.raises(errors.LinkNotFound):
            world.backend.apply(AddLink(ns=ns, name="m0", kind="macvlan", parent="ghost"))
        assert world.backend.observe(ns).link_names() == {"lo"}

    def test_a_macvlan_above_its_parents_mtu_is_refused_in_words(self, world: World) -> None:
        host, guest = world.ns(), world.ns()
        world.backend.apply(
            AddLink(ns=host, name="lan0", kind="veth", peer="lan1", up=True, mtu=1300)
        )
        with pytest.raises(errors.MtuAboveParent, match=r"parent 'lan0' \(1300\)"):
            world.backend.apply(
                AddLink(
                    ns=guest, name="eth0", kind="macvlan", parent="lan0", parent_ns=host, mtu=1400
                )
            )
        assert world.backend.observe(guest).link_names() == {"lo"}

    def test_macvlan_refuses_a_bridge_port_as_parent(self, world: World) -> None:
        host, guest = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=host, name="br0", kind="bridge", up=True))
        world.backend.apply(
            AddLink(ns=host, name="lan0", kind="veth", peer="lan1", up=True, master="br0")
        )
        with pytest.raises(errors.KernelError):  # EBUSY: the bridge has its frames
            world.backend.apply(
                AddLink(ns=guest, name="eth0", kind="macvlan", parent="lan0", parent_ns=host)
            )
        assert world.backend.observe(guest).link_names() == {"lo"}

    def test_passthru_macvlan_takes_the_parent(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="lan0", kind="veth", peer="lan1"))
        world.backend.apply(
            AddLink(ns=ns, name="m0", kind="macvlan", parent="lan0", mode="passthru")
        )
        with pytest.raises(errors.HostnetError):
            world.backend.apply(
                AddLink(ns=ns, name="m1", kind="macvlan", parent="lan0", mode="passthru")
            )
        seen = world.backend.observe(ns)
        assert seen.link("m1") is None
        m0, lan0 = seen.link("m0"), seen.link("lan0")
        assert m0 is not None and lan0 is not None and m0.mac == lan0.mac

    def test_a_macvlan_comes_up_only_with_a_mac_of_its_own(self, world: World) -> None:
        # not its parent's, nor an up sibling's (EADDRINUSE); the link is not left
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="lan0", kind="veth", peer="lan1", up=True))
        parent = world.backend.observe(ns).link("lan0")
        assert parent is not None
        mac = "02:00:00:00:00:07"
        world.backend.apply(
            AddLink(ns=ns, name="m0", kind="macvlan", parent="lan0", mac=mac, up=True)
        )
        for name, taken in (("m1", parent.mac), ("m2", mac)):
            with pytest.raises(errors.HostnetError, match="in use"):
                world.backend.apply(
                    AddLink(ns=ns, name=name, kind="macvlan", parent="lan0", mac=taken, up=True)
                )
        assert world.backend.observe(ns).link_names() == {"lo", "lan0", "lan1", "m0"}

    # -- sysctls, sockets, nftables ----------------------------------------------------

    def test_sysctls_are_per_namespace(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        # (a new namespace's value is the root namespace's: do not assume "0")
        key = "net/ipv4/ip_forward"
        was = world.backend.sysctl(a, key)
        assert was in ("0", "1") and world.backend.sysctl(b, key) == was
        flipped = "1" if was == "0" else "0"
        world.backend.apply(SetSysctl(ns=a, key=key, value=flipped, previous=was))
        assert world.backend.sysctl(a, key) == flipped
        assert world.backend.sysctl(b, key) == was
        low, high = map(int, world.backend.sysctl(a, "net/ipv4/ip_local_port_range").split())
        assert 0 < low < high <= 65535

    def test_a_port_is_held_only_on_an_address_of_the_namespace(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.44.0.1/24"))
        for address in ("10.44.0.1", "127.0.0.9", "0.0.0.0"):  # 127/8: lo's
            world.backend.apply(BindPort(ns=ns, protocol="tcp", address=address, port=8124))
            world.backend.apply(UnbindPort(ns=ns, protocol="tcp", address=address, port=8124))
        for address in ("10.44.0.2", "fd00::9"):
            with pytest.raises(errors.InvalidAddress):
                world.backend.apply(BindPort(ns=ns, protocol="tcp", address=address, port=8124))
        with pytest.raises(errors.HostnetError):  # IPv4-mapped, on an IPv6-only socket
            world.backend.apply(
                BindPort(ns=ns, protocol="tcp", address="::ffff:10.44.0.1", port=8124)
            )
        world.backend.apply(
            SetSysctl(ns=ns, key="net/ipv4/ip_nonlocal_bind", value="1", previous="0")
        )
        world.backend.apply(BindPort(ns=ns, protocol="tcp", address="10.44.0.2", port=8124))
        assert [s.address for s in world.backend.bound_sockets(ns, [8124])] == ["10.44.0.2"]

    def test_a_link_is_deleted_by_mac_when_asked(self, world: World) -> None:
        ns = world.ns()
        made = AddLink(ns=ns, name="br0", kind="bridge", mac="02:00:00:00:00:31")
        world.backend.apply(made)
        other = attrs.evolve(made, mac="02:00:00:00:00:32")
        with pytest.raises(errors.NotFoundError):  # "that one is gone"
            world.backend.apply(DelLink(ns=ns, name="br0", recreate=other, same_mac=True))
        assert world.backend.observe(ns).link("br0") is not None
        world.backend.apply(DelLink(ns=ns, name="br0", recreate=made, same_mac=True))
        assert world.backend.observe(ns).link("br0") is None
        world.backend.apply(made)  # without the guard: by name, whatever its MAC
        world.backend.apply(DelLink(ns=ns, name="br0", recreate=other))
        assert world.backend.observe(ns).link("br0") is None

    def test_a_link_of_another_kind_is_not_the_one_meant(self, world: World) -> None:
        # a macvlan endpoint's eth0 died with its parent; the workload made its own
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="eth0", kind="veth", peer="p1"))
        made = AddLink(ns=ns, name="eth0", kind="macvlan", parent="lan0")  # (recorded)
        with pytest.raises(errors.NotFoundError):  # "that one is gone"
            world.backend.apply(DelLink(ns=ns, name="eth0", recreate=made))
        assert world.backend.observe(ns).link("eth0") is not None
        # so is one of another kind when recovering (same_mac)
        with pytest.raises(errors.NotFoundError):
            bridge = AddLink(ns=ns, name="eth0", kind="bridge")
            world.backend.apply(DelLink(ns=ns, name="eth0", recreate=bridge, same_mac=True))
        assert world.backend.observe(ns).link("eth0") is not None

    def test_a_bridges_mtu_is_its_smallest_ports(self, world: World) -> None:
        ns = world.ns()

        def mtu() -> int:
            link = world.backend.observe(ns).link("br0")
            assert link is not None
            return link.mtu

        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge", mtu=9000))
        assert mtu() == 9000
        world.backend.apply(AddLink(ns=ns, name="a0", kind="veth", peer="a1", mtu=9000))
        world.backend.apply(SetMaster(ns=ns, name="a0", master="br0"))
        world.backend.apply(
            AddLink(ns=ns, name="b0", kind="veth", peer="b1", mtu=1400, master="br0")
        )
        assert mtu() == 1400
        world.backend.apply(DelLink(ns=ns, name="b0"))
        assert mtu() == 9000
        world.backend.apply(SetMaster(ns=ns, name="a0", master=None))
        assert mtu() == 1500  # no ports left

    def test_a_link_going_down_loses_its_ipv6_addresses_and_routes(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(SetLinkUp(ns=ns, name="v1", up=True, was_up=False))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.45.0.1/24"))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="fd00:45::1/64"))
        world.backend.apply(AddRoute(ns=ns, dst="fd00:46::/64", ifname="v0"))
        world.backend.apply(SetLinkUp(ns=ns, name="v0", up=False, was_up=True))
        seen = world.backend.observe(ns)
        assert seen.addresses_of("v0") == ("10.45.0.1/24",)
        assert [r for r in seen.routes if r.ifname == "v0"] == []
        with pytest.raises(errors.HostnetError):
            world.backend.apply(AddRoute(ns=ns, dst="fd00:47::/64", ifname="v0"))

    def test_what_cannot_be_a_bridge_port_or_move(self, world: World) -> None:
        ns, other = world.ns(), world.ns()
        world.backend.apply(AddLink(ns=ns, name="br0", kind="bridge"))
        world.backend.apply(AddLink(ns=ns, name="br1", kind="bridge"))
        world.backend.apply(AddLink(ns=ns, name="p0", kind="veth", peer="p1"))
        world.backend.apply(AddLink(ns=ns, name="m0", kind="macvlan", parent="p0"))
        for port in ("br1", "lo", "p0"):  # a bridge (ELOOP), lo, a macvlan parent (EBUSY)
            with pytest.raises(errors.HostnetError):
                world.backend.apply(SetMaster(ns=ns, name=port, master="br0"))
        with pytest.raises(errors.HostnetError):
            world.backend.apply(AddLink(ns=ns, name="br2", kind="bridge", master="br0"))
        with pytest.raises(errors.HostnetError):  # a bridge stays in its namespace
            world.backend.apply(MoveLink(ns=ns, name="br1", to_ns=other))
        seen = world.backend.observe(ns)
        assert seen.link_names() == {"lo", "br0", "br1", "p0", "p1", "m0"}
        assert all(link.master is None for link in seen.links)

    def test_a_link_group_with_no_links_and_settings_of_no_link(self, world: World) -> None:
        ns = world.ns()
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(DelLinkGroup(ns=ns, group=0x5A5A))
        key = "net/ipv4/conf/v0/route_localnet"
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(SetSysctl(ns=ns, key=key, value="1", previous="0"))
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1"))
        assert world.backend.sysctl(ns, key) == "0"
        world.backend.apply(SetSysctl(ns=ns, key=key, value="1", previous="0"))
        world.backend.apply(DelLink(ns=ns, name="v0"))
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1"))
        assert world.backend.sysctl(ns, key) == "0"  # a new link starts afresh
        default = "net/ipv4/conf/default/route_localnet"
        world.backend.apply(SetSysctl(ns=ns, key=default, value="1", previous="0"))
        world.backend.apply(AddLink(ns=ns, name="w0", kind="veth", peer="w1"))
        assert world.backend.sysctl(ns, "net/ipv4/conf/w0/route_localnet") == "1"
        assert world.backend.sysctl(ns, key) == "0"  # (conf/default counts for new links)

    def test_neighbour_and_fdb_entries_are_added_once(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="vx0", kind="vxlan", vni=42, port=4789))
        world.backend.apply(
            AddNeighbour(ns=ns, ifname="vx0", address="10.47.0.2", mac="02:00:00:00:47:02")
        )
        world.backend.apply(AddFdb(ns=ns, ifname="vx0", mac="02:00:00:00:47:02", dst="192.0.2.10"))
        for again in (
            AddNeighbour(ns=ns, ifname="vx0", address="10.47.0.2", mac="02:00:00:00:47:03"),
            AddFdb(ns=ns, ifname="vx0", mac="02:00:00:00:47:02", dst="192.0.2.10"),
        ):
            with pytest.raises(errors.ConflictError):
                world.backend.apply(again)
        world.backend.apply(
            DelNeighbour(ns=ns, ifname="vx0", address="10.47.0.2", mac="02:00:00:00:47:02")
        )
        world.backend.apply(DelFdb(ns=ns, ifname="vx0", mac="02:00:00:00:47:02", dst="192.0.2.10"))
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(
                DelFdb(ns=ns, ifname="vx0", mac="02:00:00:00:47:02", dst="192.0.2.10")
            )

    def test_a_port_of_a_link_that_is_no_bridge(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1"))
        with pytest.raises(errors.HostnetError, match="v0"):
            world.backend.apply(AddLink(ns=ns, name="v2", kind="veth", peer="v3", master="v0"))
        assert world.backend.observe(ns).link_names() == {"lo", "v0", "v1"}

    def test_local_addresses_are_the_namespaces_own(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="10.44.0.1/24"))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address="fd00:44::1/64"))
        local = {a: world.backend.is_local(ns, a) for a in ("10.44.0.1", "127.0.0.9", "::1")}
        assert local == {"10.44.0.1": True, "127.0.0.9": True, "::1": True}
        for other in ("10.44.0.2", "fd00:44::2", "192.0.2.1", "fd00:99::1"):
            assert not world.backend.is_local(ns, other), other

    def test_a_route_to_an_address_with_host_bits_is_invalid(self, world: World) -> None:
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        with pytest.raises(errors.InvalidAddress):
            world.backend.apply(AddRoute(ns=ns, dst="10.43.0.1/16", ifname="v0"))
        assert world.backend.observe(ns).routes == ()

    def test_bound_ports_conflict_and_name_their_owner(self, world: World) -> None:
        import os

        ns = world.ns()
        world.backend.apply(BindPort(ns=ns, protocol="tcp", address="127.0.0.1", port=8123))
        found = [s for s in world.backend.bound_sockets(ns, [8123]) if s.protocol == "tcp"]
        assert [(s.address, s.port, s.pid) for s in found] == [("127.0.0.1", 8123, os.getpid())]
        with pytest.raises(errors.PortInUse) as info:
            world.backend.apply(BindPort(ns=ns, protocol="tcp", address="0.0.0.0", port=8123))
        assert info.value.owner_pid == os.getpid()
        world.backend.apply(BindPort(ns=ns, protocol="udp", address="0.0.0.0", port=8123))
        world.backend.apply(UnbindPort(ns=ns, protocol="tcp", address="127.0.0.1", port=8123))
        world.backend.apply(BindPort(ns=ns, protocol="tcp", address="0.0.0.0", port=8123))
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(UnbindPort(ns=ns, protocol="tcp", address="::", port=8123))

    def test_flows_are_tracked_and_forgotten_in_a_namespace_that_exists(
        self, world: World
    ) -> None:
        ns = world.ns()
        world.backend.apply(TrackFlows(ns=ns, addresses=("10.61.0.2", "fd61::2")))
        # nothing to forget is not an error (a fresh namespace has no flows)
        world.backend.apply(ForgetFlows(ns=ns, addresses=("10.61.0.2", "fd61::2")))
        missing = f"{ns}-gone"
        with pytest.raises(errors.NamespaceNotFound):
            world.backend.apply(ForgetFlows(ns=missing, addresses=("10.61.0.2",)))
        with pytest.raises(errors.NamespaceNotFound):
            world.backend.apply(TrackFlows(ns=missing, addresses=("10.61.0.2",)))

    def test_nft_tables_are_per_namespace_and_batches_atomic(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        world.backend.apply(
            NftBatch(ns=a, commands=_table_batch("add", "t1"), undo=_table_batch("delete", "t1"))
        )
        assert "inet t1" in world.backend.observe(a).nft_tables
        assert "inet t1" not in world.backend.observe(b).nft_tables
        bad = json.dumps(
            {
                "nftables": [
                    {"add": {"table": {"family": "inet", "name": "t2"}}},
                    {"delete": {"table": {"family": "inet", "name": "ghost"}}},
                ]
            }
        )
        with pytest.raises(errors.HostnetError):
            world.backend.apply(NftBatch(ns=a, commands=bad, undo="{}"))
        assert "inet t2" not in world.backend.observe(a).nft_tables
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(NftBatch(ns=b, commands=_table_batch("delete", "t1"), undo="{}"))

    def test_nft_listing_of_sets_and_maps(self, world: World) -> None:
        ns = world.ns()
        table = {"family": "inet", "table": "t"}
        batch = {
            "nftables": [
                {"add": {"table": {"family": "inet", "name": "t"}}},
                {"add": {"set": {**table, "name": "ports", "type": "inet_service"}}},
                {
                    "add": {
                        "map": {
                            **table,
                            "name": "dnat",
                            "type": ["inet_proto", "inet_service"],
                            "map": "ipv4_addr",
                        }
                    }
                },
                {
                    "add": {
                        "chain": {
                            **table,
                            "name": "pre",
                            "type": "nat",
                            "hook": "prerouting",
                            "prio": -100,
                            "policy": "accept",
                        }
                    }
                },
                {"add": {"element": {**table, "name": "ports", "elem": [8080, 9090]}}},
                {
                    "add": {
                        "element": {
                            **table,
                            "name": "dnat",
                            "elem": [[{"concat": ["tcp", 8080]}, "10.0.0.2"]],
                        }
                    }
                },
            ]
        }
        world.backend.apply(NftBatch(ns=ns, commands=json.dumps(batch), undo="{}"))
        listing = world.backend.nft_list(ns, "inet t")
        assert listing is not None
        assert listing["sets"] == {
            "dnat": ['{"concat":["tcp",8080]}'],
            "ports": ["8080", "9090"],
        }
        assert listing["chains"]["pre"]["hook"] == "prerouting"
        assert world.backend.nft_list(ns, "inet nothere") is None

    def test_bridge_firewall_batches_list_the_same(self, world: World) -> None:
        from hostnet.drivers import bridge_firewall as fw
        from hostnet.model import PortMapping

        ns = world.ns()
        base, base_undo = fw.base_setup()
        net, net_undo = fw.network_setup(
            network_id="f" * 64,
            bridge="br-test",
            subnets=["10.60.0.0/24", "fd00:60::/64"],
            internal=False,
            masquerade=True,
        )
        mappings = [
            PortMapping(protocol="tcp", host_ip="0.0.0.0", host_port=8080, container_port=80),
            PortMapping(protocol="udp", host_ip="127.0.0.1", host_port=5353, container_port=53),
            PortMapping(protocol="tcp", host_ip="::", host_port=8443, container_port=443),
        ]
        endpoint = fw.endpoint_setup(
            mappings=mappings, endpoint_ips=["10.60.0.2", "fd00:60::2"], icc_port="vethabc"
        )
        assert endpoint is not None
        for commands, undo in ((base, base_undo), (net, net_undo), endpoint):
            world.backend.apply(NftBatch(ns=ns, commands=commands, undo=undo))
        listing = world.backend.nft_list(ns, "inet hostnet")
        assert listing is not None
        sets = listing["sets"]
        assert sets["any4_addr"] == ['{"concat":["tcp",8080]}']
        assert sets["dnat4_port"] == ['{"concat":["127.0.0.1","udp",5353]}']
        assert sets["any6_addr"] == ['{"concat":["tcp",8443]}']
        assert sets["bridges"] == ['"br-test"'] and sets["masq"] == ['"br-test"']
        assert sets["nets4"] == ['{"prefix":{"addr":"10.60.0.0","len":24}}']
        assert sets["nets6"] == ['{"prefix":{"addr":"fd00:60::","len":64}}']
        chains = listing["chains"]
        assert {name: c["hook"] for name, c in chains.items() if c["hook"]} == {
            "prerouting": "prerouting",
            "mark": "prerouting",
            "output": "output",
            "postrouting": "postrouting",
            "forward": "forward",
        }
        assert chains["prerouting"]["rules"] == 6  # 2 loopback guards, 4 DNAT
        # egress: own bridge, published ports go on to ingress, other bridges dropped;
        # ingress: published ports, then drop
        assert chains["n-" + "f" * 12]["rules"] == 3
        assert chains["i-" + "f" * 12]["rules"] == 2
        bridge = world.backend.nft_list(ns, "bridge hostnet")
        assert bridge is not None and bridge["sets"]["icc_ports"] == ['"vethabc"']
        # deleting a published port that is not there is "not found", and changes nothing
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(
                NftBatch(ns=ns, commands=endpoint[1].replace("8080", "8081"), undo="{}")
            )
        assert world.backend.nft_list(ns, "inet hostnet") == listing
        # undo in reverse: nothing left
        for commands, undo in reversed(((base, base_undo), (net, net_undo), endpoint)):
            world.backend.apply(NftBatch(ns=ns, commands=undo, undo=commands))
        assert world.backend.observe(ns).nft_tables == ()

    @pytest.mark.parametrize(
        ("address", "route"),
        [("10.8.0.2/24", "10.9.9.9/32"), ("fd00:8::2/64", "fd00:9::9/128")],
    )
    def test_device_routes_and_addresses_really_go(
        self, world: World, address: str, route: str
    ) -> None:
        """Deleting must remove, not merely not fail: teardown treats "not found" as
        done, so a delete that misses would leak silently."""
        ns = world.ns()
        world.backend.apply(AddLink(ns=ns, name="v0", kind="veth", peer="v1", up=True))
        world.backend.apply(AddAddress(ns=ns, ifname="v0", address=address))
        world.backend.apply(AddRoute(ns=ns, dst=route, ifname="v0"))
        assert route in {r.dst for r in world.backend.observe(ns).routes}
        world.backend.apply(DelRoute(ns=ns, dst=route, ifname="v0"))
        assert route not in {r.dst for r in world.backend.observe(ns).routes}
        world.backend.apply(DelAddress(ns=ns, ifname="v0", address=address))
        assert address not in world.backend.observe(ns).addresses_of("v0")
        with pytest.raises(errors.NotFoundError):
            world.backend.apply(DelRoute(ns=ns, dst=route, ifname="v0"))

    def test_link_groups_are_deleted_in_one_go(self, world: World) -> None:
        a, b = world.ns(), world.ns()
        for i in range(3):
            world.backend.apply(
                AddLink(ns=a, name=f"g{i}", kind="veth", peer=f"p{i}", peer_ns=b, group=0x48000001)
            )
        world.backend.apply(
            AddLink(ns=a, name="keep", kind="veth", peer="kp", peer_ns=b, group=0x48000002)
        )
        assert {
            link.group for link in world.backend.observe(a).links if link.name.startswith("g")
        } == {0x48000001}
        world.backend.apply(DelLinkGroup(ns=a, group=0x48000001))
        assert world.backend.observe(a).link_names() == {"lo", "keep"}
        assert wait_until(lambda: world.backend.observe(b).link_names() == {"lo", "kp"})
