"""Things only the netlink backend does: caches that must never go stale."""

from __future__ import annotations

import json
import subprocess

from hostnet.backends.netlink import NetlinkBackend
from hostnet.ops import AddAddress, AddLink, SetMaster
from hostnet.testing.world import World


def test_a_link_replaced_behind_hostnets_back_is_found_again() -> None:
    backend = NetlinkBackend()
    world = World(backend, tag="hk")
    try:
        ns = world.ns()
        backend.apply(AddLink(ns=ns, name="br0", kind="bridge", up=True))
        backend.apply(AddLink(ns=ns, name="p0", kind="veth", peer="p1", master="br0"))
        # another process deletes and re-creates both: same names, new indexes
        for args in (
            ["link", "del", "br0"],
            ["link", "del", "p0"],
            ["link", "add", "br0", "type", "bridge"],
            ["link", "add", "p0", "type", "veth", "peer", "name", "p1"],
        ):
            subprocess.run(["ip", "-n", ns, *args], check=True)
        backend.apply(AddAddress(ns=ns, ifname="br0", address="10.44.0.1/24"))
        backend.apply(SetMaster(ns=ns, name="p0", master="br0"))
        snap = backend.observe(ns)
        assert snap.addresses_of("br0") == ("10.44.0.1/24",)
        assert snap.link("p0").master == "br0"  # type: ignore[union-attr]
    finally:
        assert world.cleanup() == []
        backend.close()


def test_a_vxlan_gets_the_udp_port_and_vni_asked_for() -> None:
    # the port travels in network byte order; sent through a host-order field it would
    # come out as 46354 for 4789
    backend = NetlinkBackend()
    world = World(backend, tag="hx")
    try:
        ns = world.ns()
        backend.apply(AddLink(ns=ns, name="vx0", kind="vxlan", vni=4242, port=4789))
        shown = subprocess.run(
            ["ip", "-n", ns, "-d", "-j", "link", "show", "vx0"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        data = json.loads(shown)[0]["linkinfo"]["info_data"]
        assert (data["id"], data["port"], data["learning"]) == (4242, 4789, False)
        link = backend.observe(ns).link("vx0")
        assert link is not None
        assert (link.kind, link.vni) == ("vxlan", 4242)
    finally:
        assert world.cleanup() == []
        backend.close()
