"""The bridge's IPv6 link-local address is usable as soon as a network has endpoints.

The kernel gives a bridge its link-local address when the bridge gets carrier (with its
first port) and keeps it tentative while it runs duplicate address detection (1 to 2 s).
Until then it has no source for the neighbour solicitation of a packet it forwards into
the network, so the first IPv6 connection from another host to a published port stalled
for that long (IPv4 did not). Each test builds its host in a throwaway namespace, with an
"outside" namespace on a dual-stack veth for the rest of the world.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from hostnet.controller import Controller
from hostnet.namespace import Namespace
from hostnet.testing.world import wait_until
from tests.kernel.netutil import request, server

DUAL = ["10.93.0.0/24", "fd00:93::/64"]
UPLINK_HOST, UPLINK_OUT = "fd99:93::1", "fd99:93::2"


@dataclass
class Lab:
    ctl: Controller
    host: Namespace
    outside: Namespace
    app: Namespace


@pytest.fixture
def lab(hostnet_host) -> Lab:
    ctl = hostnet_host.controller
    host = ctl.namespace(hostnet_host.host)
    outside = ctl.create_namespace(hostnet_host.name("out"))
    app = ctl.create_namespace(hostnet_host.name("app"))
    peer = ("peer", "name", "eth0", "netns", outside.name)
    ip(host, "link", "add", "uplink0", "type", "veth", *peer)
    for ns, dev, addr in ((host, "uplink0", UPLINK_HOST), (outside, "eth0", UPLINK_OUT)):
        # nodad: the uplink's own detection is not what these tests are about
        ip(ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        ip(ns, "link", "set", dev, "up")
    return Lab(ctl=ctl, host=host, outside=outside, app=app)


def ip(ns: Namespace, *args: str) -> None:
    subprocess.run(["ip", "-n", ns.name, *args], check=True)


def link_local(ns: Namespace, ifname: str) -> str:
    """``ip -6 addr`` of the link-local address(es) of ``ifname`` ("" when none)."""
    argv = ["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"]
    return ns.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def accept_dad(lab: Lab, ifname: str) -> str:
    return lab.ctl.backend.sysctl(lab.host.name, f"net/ipv6/conf/{ifname}/accept_dad")


def test_link_local_of_the_bridge_is_not_tentative_after_the_first_connect(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet=DUAL)
    bridge = web.data["bridge"]
    web.connect(lab.app)
    # made when the first port gives the bridge carrier (the kernel may finish that
    # just after connect returns), then tentative for a second or more unless the
    # bridge skips duplicate address detection
    assert wait_until(lambda: link_local(lab.host, bridge) != "")
    shown = link_local(lab.host, bridge)
    assert "fe80::" in shown and "tentative" not in shown, shown
    assert accept_dad(lab, bridge) == "0"


def test_ipv4_only_bridge_keeps_the_kernels_detection(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.93.0.0/24")
    bridge = web.data["bridge"]
    assert accept_dad(lab, bridge) == accept_dad(lab, "default")


def test_first_ipv6_connection_from_outside_does_not_wait_for_detection(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet=DUAL)
    web.connect(lab.app, publish=["[::]:8080:80"])
    with server(lab.app, 80):
        # a generous bound: the stall was the 1 to 2 s of duplicate address detection
        answer = request(lab.outside, UPLINK_HOST, 8080, timeout=1.5)
    assert answer == f"{lab.app.name} {UPLINK_OUT}"
