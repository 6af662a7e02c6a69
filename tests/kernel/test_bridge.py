"""Bridge networks on the real kernel, with real traffic.

Every test builds its host inside a throwaway namespace (the Controller's host) and an
"outside" namespace joined to it by a veth standing for the rest of the world, so the
machine's own network is never touched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hostnet import errors
from hostnet.controller import Controller
from hostnet.namespace import Namespace
from hostnet.testing.world import without_namespace
from tests.kernel.netutil import advertise_router, ping, request, server, slaac_taken

UPLINK_HOST = "10.250.0.1"
UPLINK_OUT = "10.250.0.2"


@dataclass
class Lab:
    ctl: Controller
    host: Namespace
    outside: Namespace
    name: object  # hostnet_host.name

    def ns(self, hint: str = "app") -> Namespace:
        return self.ctl.create_namespace(self.name(hint))  # type: ignore[operator]


@pytest.fixture
def lab(hostnet_host) -> Lab:
    ctl = hostnet_host.controller
    host = ctl.namespace(hostnet_host.host)
    outside_name = hostnet_host.name("out")
    outside = ctl.create_namespace(outside_name)
    # the uplink: a veth between the host and "the internet"
    subprocess.run(
        [
            "ip",
            "-n",
            host.name,
            "link",
            "add",
            "uplink0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            outside_name,
        ],
        check=True,
    )
    for ns, dev, addr in ((host.name, "uplink0", UPLINK_HOST), (outside_name, "eth0", UPLINK_OUT)):
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    return Lab(ctl=ctl, host=host, outside=outside, name=hostnet_host.name)


def test_same_network_ping_tcp_and_gateway(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = lab.ns(), lab.ns()
    ea, eb = web.connect(a), web.connect(b)
    assert (ea.ip, eb.ip) == ("10.91.0.2", "10.91.0.3")
    assert ea.ifname == "eth0" and ea.mac and int(ea.mac[:2], 16) & 0x02
    assert ping(a, eb.ip)
    assert ping(a, "10.91.0.1")  # gateway
    with server(b, 7000):
        assert request(a, eb.ip, 7000) == f"{b.name} {ea.ip}"
    # the kernel has what inspect says
    assert (eth0 := a.snapshot().link("eth0")) is not None
    assert eth0.mac == ea.mac and eth0.mtu == 1500 and eth0.up
    assert "10.91.0.2/24" in a.snapshot().addresses_of("eth0")
    assert [(r.gateway, r.ifname) for r in a.routes() if r.is_default] == [("10.91.0.1", "eth0")]
    # an IPv4-only network: no IPv6 link-local chatter from the endpoint
    six = a.run(
        ["ip", "-6", "-o", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert six.stdout.strip() == ""
    from hostnet.drivers.bridge import veth_name

    six = lab.host.run(
        ["ip", "-6", "-o", "addr", "show", "dev", veth_name(ea.id)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert six.stdout.strip() == ""


def test_other_network_is_blocked(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    db = lab.ctl.create_network("db", driver="bridge", subnet="10.92.0.0/24")
    a, b = lab.ns(), lab.ns()
    web.connect(a)
    eb = db.connect(b)
    with server(b, 7001):
        assert request(a, eb.ip, 7001, timeout=1).startswith("FAIL")
    assert not ping(a, eb.ip)


def test_published_ports_via_host_address_and_localhost(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    ep = web.connect(
        app, publish=["8080:80", "127.0.0.1:5353:53/udp", "9000-9001:9000-9001", "80"]
    )
    by_port = {(m.host_port, m.protocol): m for m in ep.ports}
    ephemeral = [m for m in ep.ports if m.host_port not in (8080, 5353, 9000, 9001)]
    assert len(ephemeral) == 1 and ephemeral[0].container_port == 80
    assert (8080, "tcp") in by_port and (5353, "udp") in by_port
    with server(app, 80), server(app, 53, "udp"), server(app, 9001, tag="nine"):
        # from the host itself, on its own address and on localhost
        assert request(lab.host, UPLINK_HOST, 8080).startswith(app.name)
        assert request(lab.host, "127.0.0.1", 8080).startswith(app.name)
        assert request(lab.host, "127.0.0.1", 5353, "udp").startswith(app.name)
        assert request(lab.host, "127.0.0.1", 9001).startswith("nine")
        assert request(lab.host, "127.0.0.1", ephemeral[0].host_port).startswith(app.name)
        # from another host, through the uplink: the client's own address is kept
        assert request(lab.outside, UPLINK_HOST, 8080) == f"{app.name} {UPLINK_OUT}"
        # the udp port is published on 127.0.0.1 only
        assert request(lab.outside, UPLINK_HOST, 5353, "udp", timeout=1).startswith("FAIL")
    info = lab.ctl.inspect(app)
    assert info["NetworkSettings"]["Ports"]["80/tcp"][0] == {
        "HostIp": "0.0.0.0",
        "HostPort": "8080",
    }
    assert info["NetworkSettings"]["Networks"]["web"]["IPAddress"] == ep.ip


LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    print(data.decode(), peer[0], flush=True)
"""

RAW_SENDER = r"""
import socket, struct, sys
ifname, dst_mac, dst_ip, port, payload, sport, src_ip = (
    sys.argv[1:] + ["40000", "10.250.0.2"][len(sys.argv) - 6 :]
)[:7]
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
body = payload.encode()
udp = struct.pack("!HHHH", int(sport), int(port), 8 + len(body), 0) + body
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src_mac = s.getsockname()[4]
s.send(bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00" + ip + udp)
"""


def _forged_and_control(lab: Lab, app: Namespace, sport: int = 40000) -> list[str]:
    """Send a raw frame from outside to the host's MAC for 127.0.0.1:5353, then one for
    the host's own address, port 5354 (a control that does arrive), both from UDP port
    ``sport``: what the listener on port 53 in ``app`` got, in order ("forged",
    "control")."""
    uplink = lab.host.snapshot().link("uplink0")
    assert uplink is not None
    listener = app.popen([sys.executable, "-c", LISTENER, "53"], stdout=subprocess.PIPE, text=True)
    got = []
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        for dst, port, what in (("127.0.0.1", 5353, "forged"), (UPLINK_HOST, 5354, "control")):
            lab.outside.run(
                [
                    *(sys.executable, "-c", RAW_SENDER, "eth0", uplink.mac, dst),
                    *(str(port), what, str(sport)),
                ],
                check=True,
            )
        # the control frame was sent last: once it is in, the forged one had its chance
        while not got or got[-1] != "control":
            what, source = listener.stdout.readline().split()
            assert source == UPLINK_OUT
            got.append(what)
    finally:
        listener.kill()
        listener.wait()
        rest = listener.stdout.read() if listener.stdout else ""
        if listener.stdout:
            listener.stdout.close()
    return got + [line.split()[0] for line in rest.splitlines()]


def test_a_port_published_on_localhost_ignores_forged_packets_from_the_lan(lab: Lab) -> None:
    # A neighbour can hand the host a frame for 127.0.0.1 (CVE-2020-8558): it must not
    # reach a port published on 127.0.0.1 only. The same raw frame to the host's own
    # address and a port published there does arrive, so the test can tell.
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    web.connect(app, publish=["127.0.0.1:5353:53/udp", "5354:53/udp"])
    assert _forged_and_control(lab, app) == ["control"]


@contextlib.contextmanager
def _listening(ns: Namespace, script: str, *args: str) -> Iterator[Any]:
    """A listener (``script``, which prints "ready", then a line per datagram) in ``ns``;
    yields its stdout; killed afterwards."""
    proc = ns.popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.stdout
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _until_control(out: Any) -> list[str]:
    """The first words of the lines ``out`` gives, up to the "control" one: the frames
    sent before it had their chance."""
    got: list[str] = []
    while not got or got[-1] != "control":
        got.append(out.readline().split()[0])
    return got


def test_an_endpoint_cannot_reach_the_hosts_loopback(lab: Lab) -> None:
    # route_localnet on the bridge (so that 127.0.0.1:PORT can be DNATed) made the host
    # take packets from an endpoint addressed to 127.0.0.1: a workload with NET_RAW
    # reached services the host keeps to itself on localhost (CVE-2020-8558, the half
    # Docker and kube-proxy guard with a drop). A frame to the gateway is the control.
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    ep = web.connect(app)
    bridge = lab.host.snapshot().link(web.inspect()["Options"]["com.docker.network.bridge.name"])
    assert bridge is not None and ep.ip is not None
    with _listening(lab.host, LISTENER, "5355") as heard:
        # to 127.0.0.1; from a loopback source (which primed a flow whose "replies" were
        # let in: a review); then the control
        for dst, src, what in (
            ("127.0.0.1", ep.ip, "forged"),
            ("10.91.0.1", "127.0.0.53", "spoofed"),
            ("10.91.0.1", ep.ip, "control"),
        ):
            argv = [sys.executable, "-c", RAW_SENDER, "eth0", bridge.mac, dst, "5355", what]
            app.run([*argv, "40000", src], check=True)
        assert _until_control(heard) == ["control"]


def test_gc_upgrades_tables_an_older_hostnet_made_without_the_guard(lab: Lab) -> None:
    # Tables made by a hostnet from before the guard above keep letting forged frames
    # in after an upgrade, until gc rebuilds them as this version makes them.
    from tests.aging import age_firewall

    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    web.connect(app, publish=["127.0.0.1:5353:53/udp", "5354:53/udp"])
    age_firewall(lab.ctl, base_drop="127.0.0.0")
    assert _forged_and_control(lab, app) == ["forged", "control"]  # as the old one was
    assert "outdated-firewall" in {f["kind"] for f in lab.ctl.audit()}
    assert lab.ctl.gc()["restored"] == ["inet hostnet", "bridge hostnet"]
    # the same flow again: conntrack kept it NATed, and the upgrade forgot it
    assert _forged_and_control(lab, app) == ["control"]
    assert lab.ctl.gc()["restored"] == []
    kinds = {f["kind"] for f in lab.ctl.audit()}
    assert kinds.isdisjoint({"outdated-firewall", "missing-firewall"})


RAW6_SENDER = r"""
import socket, struct, sys
ifname, dst_mac, src_ip, dst_ip, port, payload = sys.argv[1:7]
body = payload.encode()
src, dst = socket.inet_pton(socket.AF_INET6, src_ip), socket.inet_pton(socket.AF_INET6, dst_ip)
length = 8 + len(body)
def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return ~total & 0xFFFF
udp = struct.pack("!HHHH", 40002, int(port), length, 0) + body
pseudo = src + dst + struct.pack("!I3xB", length, 17)
udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
ip6 = struct.pack("!IHBB", 6 << 28, length, 17, 64) + src + dst
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
s.send(bytes.fromhex(dst_mac.replace(":", "")) + s.getsockname()[4] + b"\x86\xdd" + ip6 + udp)
"""

LISTENER6 = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    print(data.decode(), peer[0], flush=True)
"""


def test_an_endpoint_cannot_pass_for_the_hosts_loopback_over_ipv6(lab: Lab) -> None:
    # (a review) on a dual-stack network a packet from ::ffff:127.0.0.1, which
    # applications take for localhost, reached a host service on [::]; and source
    # routing through 127.0.0.1 is off on the bridge, whatever conf/all says
    web = lab.ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    app = lab.ns()
    ep = web.connect(app)
    name = web.inspect()["Options"]["com.docker.network.bridge.name"]
    bridge = lab.host.snapshot().link(name)
    assert bridge is not None and ep.ip6 is not None
    key = f"net/ipv4/conf/{name}/accept_source_route"
    assert lab.ctl.backend.sysctl(lab.host.name, key) == "0"
    with _listening(lab.host, LISTENER6, "5360") as heard:
        for src, what in (("::ffff:127.0.0.1", "mapped"), (ep.ip6, "control")):
            argv = [sys.executable, "-c", RAW6_SENDER, "eth0", bridge.mac, src, "fd00:91::1"]
            app.run([*argv, "5360", what], check=True)
        assert _until_control(heard) == ["control"]


ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)  # (the reply makes the flow established in conntrack)
    print(data.decode(), peer[0], flush=True)
"""


def test_an_endpoints_flow_to_the_loopback_ends_with_the_upgrade(lab: Lab) -> None:
    # (a review) a flow an endpoint had with a service on the host's loopback before
    # gc upgraded the firewall (tables of an older hostnet) stayed open as long as its
    # sender kept it alive, its replies making it established; the guard drops every
    # packet to 127.0.0.0/8 from a bridge whose connection the host did not DNAT,
    # established or not
    from tests.aging import age_firewall

    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    ep = web.connect(app)
    bridge = lab.host.snapshot().link(web.inspect()["Options"]["com.docker.network.bridge.name"])
    assert bridge is not None and ep.ip is not None
    age_firewall(lab.ctl, base_drop="127.0.0.0")  # (from before both guards)
    with _listening(lab.host, ECHO, "127.0.0.53", "5357") as heard:

        def send(what: str) -> None:
            argv = [sys.executable, "-c", RAW_SENDER, "eth0", bridge.mac, "127.0.0.53"]
            app.run([*argv, "5357", what, "40001", ep.ip], check=True)

        send("before")
        assert heard.readline().split() == ["before", ep.ip]  # (the old tables)
        send("before2")
        assert heard.readline().split() == ["before2", ep.ip]  # established now
        assert lab.ctl.gc()["restored"] == ["inet hostnet", "bridge hostnet"]
        send("after")  # the same flow
        control = lab.host.popen(
            [sys.executable, "-c", "import socket; socket.socket(socket.AF_INET, "
             "socket.SOCK_DGRAM).sendto(b'control', ('127.0.0.53', 5357))"]
        )  # fmt: skip
        control.wait()
        assert _until_control(heard) == ["control"]


def test_ports_published_later_answer_too(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    web.connect(app)
    web.publish(app, ["8085:85"])
    with server(app, 85):
        assert request(lab.outside, UPLINK_HOST, 8085) == f"{app.name} {UPLINK_OUT}"
    web.disconnect(app)
    assert lab.ctl.ports() == []


def test_a_udp_client_reaches_the_new_endpoint_behind_a_port_published_again(lab: Lab) -> None:
    # A UDP client that keeps its source port matches the conntrack entry of its first
    # packet, which says "DNAT to the first endpoint". Unless hostnet forgets that entry
    # when the endpoint goes, the client's packets keep going to an address that is gone
    # until the entry times out (Docker and netavark delete such entries too).
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    first, second = lab.ns("first"), lab.ns("second")
    web.connect(first, publish=["5300:53/udp"], ip="10.91.0.10")
    with server(first, 53, "udp"):
        answer = request(lab.outside, UPLINK_HOST, 5300, "udp", source_port=40000)
        assert answer == f"{first.name} {UPLINK_OUT}"
    web.disconnect(first)
    # the client goes on sending while nothing publishes the port: its packets make an
    # entry without NAT, which it keeps alive as long as it sends
    gap = request(lab.outside, UPLINK_HOST, 5300, "udp", timeout=0.5, source_port=40000)
    assert gap.startswith("FAIL")
    web.connect(second, publish=["5300:53/udp"], ip="10.91.0.20")
    with server(second, 53, "udp"):
        answer = request(lab.outside, UPLINK_HOST, 5300, "udp", source_port=40000)
        assert answer == f"{second.name} {UPLINK_OUT}"
    web.disconnect(second)
    conntrack = subprocess.run(
        ["ip", "netns", "exec", lab.host.name, "cat", "/proc/net/nf_conntrack"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "10.91.0.10" not in conntrack and "10.91.0.20" not in conntrack


def test_hairpin_endpoint_reaches_its_own_published_port(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app, other = lab.ns(), lab.ns()
    web.connect(app, publish=["8080:80"])
    web.connect(other)
    with server(app, 80):
        for ns in (app, other):
            for address in (UPLINK_HOST, "10.91.0.1"):
                assert request(ns, address, 8080).startswith(app.name), (ns.name, address)


def test_outbound_is_masqueraded_and_internal_is_cut_off(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    private = lab.ctl.create_network(
        "private", driver="bridge", subnet="10.93.0.0/24", internal=True
    )
    a, b = lab.ns(), lab.ns()
    web.connect(a)
    ec = private.connect(b)
    assert [r for r in b.routes() if r.is_default] == []
    with server(lab.outside, 7100, tag="internet"):
        assert request(a, UPLINK_OUT, 7100) == f"internet {UPLINK_HOST}"
        assert request(b, UPLINK_OUT, 7100, timeout=1).startswith("FAIL")
    # and the internal network can still talk inside itself
    c = lab.ns()
    private.connect(c)
    assert ping(c, ec.ip)
    with pytest.raises(errors.InvalidOption):
        private.connect(lab.ns(), publish=["8081:80"])


def test_icc_off_blocks_neighbours_but_not_the_gateway(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24", icc=False)
    a, b = lab.ns(), lab.ns()
    web.connect(a)
    eb = web.connect(b)
    assert not ping(a, eb.ip)
    assert ping(a, "10.91.0.1")


def test_icc_off_keeps_published_ports_reachable_through_the_host(lab: Lab) -> None:
    # Neighbours cannot talk directly, but a published port is for everyone, the
    # endpoint itself included (hairpin); with bridge netfilter on (br_netfilter, as on
    # Docker hosts) the DNATed packet comes back through the bridge's forward hook.
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24", icc=False)
    app, other = lab.ns(), lab.ns()
    ep = web.connect(app, publish=["8080:80"])
    web.connect(other)
    with server(app, 80):
        for ns in (app, other):
            assert request(ns, UPLINK_HOST, 8080).startswith(app.name), ns.name
        assert request(other, ep.ip, 80, timeout=1).startswith("FAIL")  # not directly


def test_ipv6_between_endpoints(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    a, b = lab.ns(), lab.ns()
    ea, eb = web.connect(a), web.connect(b)
    assert ea.ip6 == "fd00:91::2" and eb.ip6 == "fd00:91::3"
    assert ping(a, eb.ip6, count=2)
    assert [r.gateway for r in a.routes() if r.is_default and r.family == 6] == ["fd00:91::1"]
    with server(b, 7200):
        assert request(a, eb.ip6, 7200) == f"{b.name} {ea.ip6}"


def test_ipv4_only_endpoints_take_nothing_from_a_rogue_router_advert(lab: Lab) -> None:
    """An endpoint of an IPv4-only network has IPv6 off, as Docker does since 25.0.5
    and 26.0.2: a neighbour that sends a router advertisement gets no address and no
    default route into it (the CVE-2024-32473 class)."""
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    victim, rogue = lab.ns(), lab.ns()
    web.connect(victim)
    web.connect(rogue)
    sysctl = "net/ipv6/conf/eth0/disable_ipv6"
    assert lab.ctl.backend.sysctl(victim.name, sysctl) == "1"
    assert [a for a in victim.addresses() if a.ifname == "eth0" and ":" in a.address] == []
    # the rogue is root in its namespace: it turns IPv6 back on for itself
    rogue.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)
    rogue.run(["ip", "addr", "add", "fe80::bad/64", "dev", "eth0", "nodad"], check=True)
    prefix = "fd66:1:2:3::"
    advertise_router(rogue, "eth0", "fe80::bad", prefix)
    assert not slaac_taken(victim, "eth0", prefix, wait=1.5)
    # the same advertisement does work on an interface with IPv6 on
    victim.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)
    advertise_router(rogue, "eth0", "fe80::bad", prefix)
    assert slaac_taken(victim, "eth0", prefix, wait=5)


def test_an_ipv4_only_network_under_ipv6s_mtu_connects(lab: Lab) -> None:
    """Links under 1280 bytes have no IPv6 (the kernel refuses IPv6 settings on them):
    an IPv4-only network may still have such an MTU, as in Docker."""
    small = lab.ctl.create_network("small", driver="bridge", subnet="10.91.0.0/24", mtu="1200")
    a, b = lab.ns(), lab.ns()
    small.connect(a)
    eb = small.connect(b)
    assert a.snapshot().link("eth0").mtu == 1200  # type: ignore[union-attr]
    assert ping(a, eb.ip) and ping(a, UPLINK_OUT)


def test_the_host_takes_no_router_advert_from_an_endpoint(lab: Lab) -> None:
    """An endpoint with raw sockets (its IPv6 on again) advertising itself as a router
    does not give the host an address or an IPv6 default route through it: the bridge
    does not accept advertisements (as Docker's, CVE-2020-13401)."""
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    rogue = lab.ns()
    web.connect(rogue)
    bridge = next(link.name for link in lab.host.snapshot().links if link.kind == "bridge")
    assert lab.ctl.backend.sysctl(lab.host.name, f"net/ipv6/conf/{bridge}/accept_ra") == "0"
    rogue.run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)
    rogue.run(["ip", "addr", "add", "fe80::bad/64", "dev", "eth0", "nodad"], check=True)
    prefix = "fd99:8:7:6::"
    advertise_router(rogue, "eth0", "fe80::bad", prefix)
    assert not slaac_taken(lab.host, bridge, prefix, wait=1.5)
    # the advertisement itself works: a bridge taking them (2: even when forwarding)
    lab.host.run(["sysctl", "-qw", f"net.ipv6.conf.{bridge}.accept_ra=2"], check=True)
    advertise_router(rogue, "eth0", "fe80::bad", prefix)
    assert slaac_taken(lab.host, bridge, prefix, wait=5)


def test_dual_stack_endpoints_keep_ipv6_on(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    app = lab.ns()
    ep = web.connect(app)
    assert lab.ctl.backend.sysctl(app.name, "net/ipv6/conf/eth0/disable_ipv6") == "0"
    assert ep.ip6 in {a.address.split("/")[0] for a in app.addresses()}


def test_multicast_snooping_is_off_unless_asked_for(lab: Lab) -> None:
    # off: no per-port multicast timers to re-arm every time a port joins or leaves
    # (docs/decisions.md); on when asked, as the kernel's default
    import json

    plain = lab.ctl.create_network("plain", driver="bridge", subnet="10.91.0.0/24")
    snoop = lab.ctl.create_network(
        "snoop", driver="bridge", subnet="10.92.0.0/24", multicast_snooping=True
    )
    for net, expected in ((plain, 0), (snoop, 1)):
        shown = subprocess.run(
            ["ip", "-n", lab.host.name, "-d", "-j", "link", "show", net.data["bridge"]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert json.loads(shown)[0]["linkinfo"]["info_data"]["mcast_snooping"] == expected
    a, b = lab.ns(), lab.ns()
    ea, eb = plain.connect(a), plain.connect(b)
    assert ping(a, eb.ip) and ping(b, ea.ip)


def test_the_gateway_keeps_its_mac_while_endpoints_come_and_go(lab: Lab) -> None:
    # A bridge without a MAC of its own takes the lowest of its ports' MACs and changes
    # it as they come and go, leaving a stale gateway MAC in every endpoint's neighbour
    # cache.
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    bridge = web.data["bridge"]

    def macs() -> tuple[str, list[str]]:
        snap = lab.host.snapshot()
        own = snap.link(bridge)
        assert own is not None
        return own.mac, sorted(link.mac for link in snap.links if link.master == bridge)

    first, _ = macs()
    assert first == web.data["mac"]
    a, b = lab.ns(), lab.ns()
    web.connect(a)
    eb = web.connect(b)
    mac, ports = macs()
    assert mac == first and first not in ports
    # the endpoint whose host end has the lowest MAC goes
    lowest = ports[0]
    gone = (
        b
        if any(
            link.mac == lowest
            for link in lab.host.snapshot().links
            if link.name.endswith(eb.id[:7])
        )
        else a
    )
    web.disconnect(gone)
    assert macs()[0] == first
    stays = a if gone is b else b
    assert ping(stays, "10.91.0.1")


def test_several_networks_per_namespace(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    db = lab.ctl.create_network("db", driver="bridge", subnet="10.92.0.0/24")
    app = lab.ns()
    e1, e2 = web.connect(app), db.connect(app)
    assert (e1.ifname, e2.ifname) == ("eth0", "eth1")
    defaults = [r for r in app.routes() if r.is_default]
    assert [(r.gateway, r.ifname) for r in defaults] == [("10.91.0.1", "eth0")]
    assert set(lab.ctl.inspect(app)["NetworkSettings"]["Networks"]) == {"web", "db"}
    # the network that gave the default route leaves: the other one gives it now
    with server(lab.outside, 7101, tag="internet"):
        web.disconnect(app)
        defaults = [r for r in app.routes() if r.is_default]
        assert [(r.gateway, r.ifname) for r in defaults] == [("10.92.0.1", "eth1")]
        assert request(app, UPLINK_OUT, 7101) == f"internet {UPLINK_HOST}"
    db.disconnect(app)
    assert app.routes() == ()


def test_nothing_remains_after_disconnect_and_delete(lab: Lab) -> None:
    ctl = lab.ctl
    before = lab.host.snapshot()
    forwarding = ctl.backend.sysctl(lab.host.name, "net/ipv4/ip_forward")
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24", icc=False)
    app = lab.ns()
    web.connect(app, publish=["8080:80", "127.0.0.1:5353:53/udp"])
    assert "inet hostnet" in lab.host.snapshot().nft_tables
    web.disconnect(app)
    assert app.snapshot().link_names() == {"lo"}
    listing = ctl.backend.nft_list(lab.host.name, "inet hostnet")
    assert listing is not None
    assert all(not v for k, v in listing["sets"].items() if k.startswith(("dnat", "any")))
    assert ctl.ports() == []
    web.delete()
    after = lab.host.snapshot()
    assert after.link_names() == before.link_names()
    assert after.addresses == before.addresses
    assert after.routes == before.routes
    assert after.nft_tables == ()
    assert ctl.backend.sysctl(lab.host.name, "net/ipv4/ip_forward") == forwarding  # restored
    dump = ctl.store.dump()
    assert dump["addresses"] == [] and dump["ports"] == [] and dump["endpoints"] == []
    assert dump["shared"] == [] and dump["journal"] == []


def test_bad_input_changes_nothing(lab: Lab) -> None:
    ctl = lab.ctl
    ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    host_before = lab.host.snapshot()
    store_before = ctl.store.dump()
    app = lab.ns()
    bad_calls = [
        lambda: ctl.create_network("web2", driver="bridge", subnet="10.91.0.128/25"),
        lambda: ctl.create_network(
            "web3", driver="bridge", subnet="10.94.0.0/24", gateway="10.95.0.1"
        ),
        lambda: ctl.create_network("web4", driver="bridge", bridge_name="x" * 16),
        lambda: ctl.create_network("web5", driver="bridge", colour="blue"),
        lambda: ctl.create_network("web6", driver="bridge", mtu="huge"),
        lambda: ctl.network("web").connect(app, publish=["80:80:80:80"]),
        lambda: ctl.network("web").connect(app, publish=["70000:80"]),
        lambda: ctl.network("web").connect(app, ip="10.99.0.5"),
        lambda: ctl.network("web").connect(app, ip="10.91.0.1"),
        lambda: ctl.delete_network("nope"),
    ]
    open_fds = len(os.listdir("/proc/self/fd"))
    for call in bad_calls:
        with pytest.raises(errors.HostnetError):
            call()
        # nothing kept open either: a socket into the namespace would keep it alive
        assert len(os.listdir("/proc/self/fd")) == open_fds
    app_snap = app.snapshot()
    assert app_snap.link_names() == {"lo"}
    assert lab.host.snapshot().links == host_before.links
    after = without_namespace(ctl.store.dump(), app.name)
    assert after == without_namespace(store_before, app.name)


def test_publishing_on_localhost_of_a_host_whose_lo_is_down_says_so(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    # as `ip netns add` leaves it: down, without 127.0.0.1
    subprocess.run(["ip", "-n", lab.host.name, "link", "set", "lo", "down"], check=True)
    subprocess.run(["ip", "-n", lab.host.name, "addr", "flush", "dev", "lo"], check=True)
    with pytest.raises(errors.InvalidAddress, match=r"loopback interface .* is down"):
        web.connect(app, publish=["127.0.0.1:8080:80"])
    subprocess.run(["ip", "-n", lab.host.name, "link", "set", "lo", "up"], check=True)
    web.connect(app, publish=["127.0.0.1:8080:80"])


def test_input_the_kernel_would_refuse_fails_before_the_first_op(lab: Lab) -> None:
    # found out before anything is applied, not by the kernel halfway (and rolled back)
    ctl = lab.ctl
    web = ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    app = lab.ns()
    host_before, store_before = lab.host.snapshot(), ctl.store.dump()
    bad: list[dict[str, object]] = [
        dict(ip6="fd00:91::5%eth0"),  # a zone: netlink has no place for it
        dict(mac="00:00:00:00:00:00"),  # EADDRNOTAVAIL
        dict(publish=["[fe80::1%eth0]:8080:80"]),  # nftables would drop the zone
        dict(publish=["10.9.9.9:8080:80"]),  # no address of the host: nothing receives it
    ]
    for kwargs in bad:
        with pytest.raises(errors.ValidationError) as info:
            web.connect(app, **kwargs)  # type: ignore[arg-type]
        assert not getattr(info.value, "__notes__", None)  # no op was applied and undone
    assert app.snapshot().link_names() == {"lo"}
    assert lab.host.snapshot().links == host_before.links
    assert ctl.store.dump() == store_before


def test_a_port_published_on_one_host_address_answers_there(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    web.connect(app, publish=[f"{UPLINK_HOST}:8080:80"])
    with server(app, 80):
        assert request(lab.outside, UPLINK_HOST, 8080)
    with pytest.raises(errors.InvalidAddress, match="not an address of"):
        web.publish(app, ["10.9.9.9:8081:81"])
    # a prohibit route answers the lookup with EACCES: still not the host's
    subprocess.run(
        ["ip", "-n", lab.host.name, "route", "add", "prohibit", "192.0.2.0/24"], check=True
    )
    with pytest.raises(errors.InvalidAddress, match="not an address of"):
        web.publish(app, ["192.0.2.1:8081:81"])
    # all of 127.0.0.0/8 is the host's (one port on several loopback addresses)
    web.publish(app, ["127.0.0.2:8080:80", "127.0.0.3:8080:81"])
    with server(app, 80):
        assert request(lab.host, "127.0.0.2", 8080)
    subprocess.run(
        ["ip", "netns", "exec", lab.host.name, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"],
        check=True,
    )
    assert [m.host_port for m in web.publish(app, ["10.9.9.9:8081:81"])] == [8081]


def test_port_conflicts_name_the_holder(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    a, b = lab.ns(), lab.ns()
    web.connect(a, publish=["8080:80"])
    with pytest.raises(errors.PortInUse) as info:
        web.connect(b, publish=["8080:81"])
    assert info.value.holder == a.name
    assert b.snapshot().link_names() == {"lo"}
    with server(lab.host, 8090, host="0.0.0.0") as proc:
        with pytest.raises(errors.PortInUse) as info:
            web.connect(b, publish=["8090:80"])
        assert info.value.owner_pid == proc.pid
    with server(lab.host, 8091, host="127.0.0.1") as proc:
        with pytest.raises(errors.PortInUse) as info:
            web.connect(b, publish=["8091:80"])  # (on every address: 127.0.0.1's too)
        assert f"process {proc.pid} " in str(info.value)
        assert " on 127.0.0.1;" in str(info.value)


def test_deleting_a_network_with_endpoints(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    apps = [lab.ns() for _ in range(3)]
    for app in apps:
        web.connect(app, publish=["80"])
    with pytest.raises(errors.NetworkInUse) as info:
        web.delete()
    assert set(info.value.endpoints) == {a.name for a in apps}
    web.delete(force=True)
    for app in apps:
        assert app.snapshot().link_names() == {"lo"}
    assert lab.ctl.ports() == [] and lab.ctl.endpoints() == []


def test_audit_names_a_forward_drop_policy_that_cuts_a_network_off(lab: Lab) -> None:
    import json

    from hostnet.ops import NftBatch

    web = lab.ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = lab.ns()
    web.connect(app)
    assert ping(app, UPLINK_OUT)
    table = {"family": "ip", "name": "filter"}
    docker = {  # Docker's iptables-nft FORWARD policy, in this throwaway host only
        "nftables": [
            {"add": {"table": table}},
            {
                "add": {
                    "chain": {
                        **{"family": "ip", "table": "filter"},
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
    undo = {"nftables": [{"delete": {"table": table}}]}
    backend = lab.ctl.backend
    backend.apply(NftBatch(ns=lab.host.name, commands=json.dumps(docker), undo=json.dumps(undo)))
    try:
        assert not ping(app, UPLINK_OUT)  # what the finding warns about
        kinds = {f["kind"]: f for f in lab.ctl.audit()}
        assert kinds["foreign-forward-drop"]["subject"] == "ip filter FORWARD"
    finally:
        backend.apply(
            NftBatch(ns=lab.host.name, commands=json.dumps(undo), undo=json.dumps(docker))
        )
    assert ping(app, UPLINK_OUT)
    assert "foreign-forward-drop" not in {f["kind"] for f in lab.ctl.audit()}


def test_ipv6_turned_off_in_the_namespace_is_said_so(lab: Lab) -> None:
    web = lab.ctl.create_network("web", driver="bridge", subnet=["10.91.0.0/24", "fd00:91::/64"])
    app = lab.ns()
    for scope in ("all", "default"):
        app.run(["sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1"], check=True)
    with pytest.raises(errors.UnsupportedError, match="IPv6 is disabled on eth0"):
        web.connect(app)
    assert app.snapshot().link_names() == {"lo"}
    assert web.endpoints() == []


def test_a_default_pool_the_host_keeps_out_of_use_is_not_picked(lab: Lab) -> None:
    # an admin's blackhole or unreachable route keeps a prefix out of use (libnetwork
    # counts every route); a network there could not be reached from the host
    for kind, dst in (("blackhole", "172.17.0.0/16"), ("unreachable", "172.18.0.0/16")):
        subprocess.run(["ip", "-n", lab.host.name, "route", "add", kind, dst], check=True)
    net = lab.ctl.create_network("auto", driver="bridge")
    assert [c["Subnet"] for c in net.inspect()["IPAM"]["Config"]] == ["172.19.0.0/16"]
