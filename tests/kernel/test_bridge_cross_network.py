"""Published ports between bridge networks, on the real kernel with real traffic.

A port published by an endpoint of one network is for everyone who can reach a host
address, endpoints of other networks included (as with Docker's userland proxy; without
it, moby#38784). Isolation still holds: another network's endpoint addresses stay out of
reach, and an internal network reaches nothing beyond its bridge, published ports
included.

The host is a throwaway namespace with a dual-stack uplink to an "outside" namespace, as
in test_bridge.py.
"""

from __future__ import annotations

import pytest

from tests.kernel.netutil import ping, request, server
from tests.kernel.test_bridge import UPLINK_HOST, UPLINK_OUT, Lab

UPLINK_HOST6 = "fd99::1"
UPLINK_OUT6 = "fd99::2"


@pytest.fixture
def lab(hostnet_host) -> Lab:
    ctl = hostnet_host.controller
    host = ctl.namespace(hostnet_host.host)
    outside = ctl.create_namespace(hostnet_host.name("out"))
    host.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0"], check=True)
    host.run(["ip", "link", "set", "eth0", "netns", outside.name], check=True)
    for ns, dev, v4, v6 in (
        (host, "uplink0", UPLINK_HOST, UPLINK_HOST6),
        (outside, "eth0", UPLINK_OUT, UPLINK_OUT6),
    ):
        ns.run(["ip", "addr", "add", f"{v4}/24", "dev", dev], check=True)
        ns.run(["ip", "addr", "add", f"{v6}/64", "dev", dev, "nodad"], check=True)
        ns.run(["ip", "link", "set", dev, "up"], check=True)
    return Lab(ctl=ctl, host=host, outside=outside, name=hostnet_host.name)


def test_another_network_reaches_a_published_port_but_not_the_endpoint(lab: Lab) -> None:
    a = lab.ctl.create_network("a", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    b = lab.ctl.create_network("b", driver="bridge", subnet=["10.92.0.0/24", "fd00:92::/64"])
    app, client = lab.ns("app"), lab.ns("client")
    ep = a.connect(app, publish=["8080:80", "[::]:8080:80"])
    b.connect(client)
    assert ep.ip6 is not None
    with server(app, 80), server(app, 81, tag="direct"):
        # the control: from another host, the client's own address is kept
        assert request(lab.outside, UPLINK_HOST, 8080) == f"{app.name} {UPLINK_OUT}"
        # from network b through the host's addresses (and b's own gateway, a host
        # address too); the long timeout rides out IPv6 duplicate address detection on
        # the fresh bridges. The source is masqueraded to a's gateway, as for a hairpin.
        for address in (UPLINK_HOST6, UPLINK_HOST, "10.92.0.1", "fd00:92::1"):
            answer = request(client, address, 8080, timeout=5)
            gateway = "fd00:91::1" if ":" in address else "10.91.0.1"
            assert answer == f"{app.name} {gateway}", address
        # isolation: the endpoint's own addresses stay out of reach from b, on the
        # published container port and on any other
        for address in (ep.ip, ep.ip6):
            for port in (80, 81):
                assert request(client, address, port, timeout=1).startswith("FAIL"), (
                    address,
                    port,
                )
        assert not ping(client, ep.ip)
        assert not ping(client, ep.ip6)


def test_an_internal_network_does_not_reach_another_networks_published_port(lab: Lab) -> None:
    a = lab.ctl.create_network("a", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    private = lab.ctl.create_network(
        "private", driver="bridge", subnet=["10.93.0.0/24", "fd00:93::/64"], internal=True
    )
    app, inner = lab.ns("app"), lab.ns("inner")
    a.connect(app, publish=["8080:80", "[::]:8080:80"])
    private.connect(inner)
    # a route out, as a workload with CAP_NET_ADMIN could add: the firewall, not the
    # missing default route, is what keeps it in
    inner.run(["ip", "route", "add", "default", "via", "10.93.0.1"], check=True)
    inner.run(["ip", "-6", "route", "add", "default", "via", "fd00:93::1"], check=True)
    with server(app, 80), server(lab.host, 7300, tag="host"):
        # the controls: the published port answers through these addresses from
        # elsewhere, and the endpoint reaches a port of the host itself through each
        # of them (the long timeout rides out IPv6 duplicate address detection)
        assert request(lab.host, "10.93.0.1", 8080).startswith(app.name)
        assert request(lab.outside, UPLINK_HOST6, 8080, timeout=5).startswith(app.name)
        for address in ("10.93.0.1", "fd00:93::1", UPLINK_HOST, UPLINK_HOST6):
            assert request(inner, address, 7300, timeout=5).startswith("host"), address
            assert request(inner, address, 8080, timeout=1).startswith("FAIL"), address
