"""The raw floor and the untimed scaffolding of the bridge, port and macvlan benchmarks.

The floor is the least work one process can do to make a bridge endpoint, with no
policy, no store and no observation: the netlink requests hostnet sends (the same bytes,
built by hostnet.backends.netlink.rtnl with struct, over a plain NETLINK_ROUTE socket)
and one libnftables transaction. Until hostnet 0.1 the floor, like hostnet, encoded its
requests with pyroute2's message classes, which cost it 0.45 ms per bridge endpoint
(docs/performance.md keeps both figures). Two liberties hostnet does not take, both on
purpose:

- a socket in the target namespace is opened by switching the *calling* thread into the
  namespace and back (``Switch``); hostnet must not do that (a thread that outlives the
  call must never change namespace, see DESIGN.md) and starts a short-lived thread;
- acknowledgements are parsed with ``struct`` (``Wire``), and the peer's interface index
  comes back in the echo of the create request (NLM_F_ECHO), so no request is spent on
  looking up an index.

The scaffolding (namespaces with ``lo`` up, a bridge with hostnet's nftables tables in a
throwaway host namespace) is built before any timing starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from common import NETNS_RUN_DIR, fresh_thread, remove_namespace

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = struct.Struct("16sh22x")

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x4, 0x8
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR = 2
IFLA_LINK = 5
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1
NLMSG_HEADER = struct.Struct("=IHHII")
RTATTR = struct.Struct("=HH")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def ns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def open_ns(name: str) -> int:
    return os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)


def random_mac() -> str:
    """A random unicast, locally administered MAC (what hostnet picks too)."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


# -- throwaway namespaces (untimed) ----------------------------------------------------


def prepare_run_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does (once)."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    path = NETNS_RUN_DIR.encode()
    if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0:
        _check(_libc.mount(path, path, b"none", MS_BIND | MS_REC, None), "bind /run/netns")
        _check(_libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None), "share /run/netns")


def in_thread(fd: int | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread, switched into namespace ``fd`` first (None: a new
    namespace, unshared), and return its result; the caller never changes namespace."""

    def body() -> T:
        if fd is None:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        else:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        return fn()

    return fresh_thread(body)


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        flags = IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, IFREQ.pack(b"lo", 0)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, IFREQ.pack(b"lo", flags | IFF_UP))


def make_namespace(name: str) -> None:
    """/run/netns/NAME bound to a new network namespace whose lo is up (what
    `ip netns add NAME && ip -n NAME link set lo up` leaves behind)."""
    path = ns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))

    def body() -> None:
        _check(
            _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
            f"bind-mount {path}",
        )
        _lo_up()

    try:
        in_thread(None, body)
    except BaseException:
        remove_namespace(name)
        raise


def net_namespace_objects() -> int | None:
    """struct net objects in the kernel, live and dying (/proc/slabinfo, approximate)."""
    try:
        with open("/proc/slabinfo") as fh:
            for line in fh:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_for_cleanup(target: int | None, timeout: float = 120.0) -> float:
    """Wait until the kernel has destroyed deleted namespaces (their count is back to
    ``target`` or stopped falling for 3 s), so that one phase's asynchronous cleanup does
    not fall on the next phase's timings. Returns the seconds waited."""
    start = time.monotonic()
    last, still = net_namespace_objects(), 0.0
    while target is not None and last is not None and time.monotonic() - start < timeout:
        if last <= target + 2 or still >= 3.0:
            break
        time.sleep(0.5)
        now = net_namespace_objects()
        still = still + 0.5 if now is not None and now >= last else 0.0
        last = now
    return time.monotonic() - start


# -- the floor's netlink ---------------------------------------------------------------


class Switch:
    """Switches the calling thread into a namespace and back: the cheapest way to open a
    socket there. For the floor only (see the module docstring)."""

    def __init__(self) -> None:
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def inside(self, fd: int) -> Iterator[None]:
        _check(_libc.setns(fd, CLONE_NEWNET), "setns into the target")
        try:
            yield
        finally:
            if _libc.setns(self.home, CLONE_NEWNET) != 0:  # never go on in the wrong place
                os.write(2, b"cannot switch back to our own namespace; aborting\n")
                os._exit(70)

    def close(self) -> None:
        os.close(self.home)


def route_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the calling thread's namespace (hostnet's settings)."""
    from hostnet.backends.netlink.channel import open_route_socket

    return open_route_socket()


class Wire:
    """One request, one acknowledgement, over a plain netlink socket: the request's
    bytes behind a header, the answer read with ``struct`` (the ack's error code, and
    for an echoed request, the echoed message)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0

    def request(self, body: bytes, msg_type: int, flags: int = 0) -> bytes | None:
        self.seq += 1
        flags |= NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(NLMSG_HEADER.pack(16 + len(body), msg_type, flags, self.seq, 0) + body)
        echoed = None
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, kind, _flags, seq, _pid = NLMSG_HEADER.unpack_from(data, offset)
                if length < NLMSG_HEADER.size:
                    break
                if seq == self.seq:
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        if code:
                            raise OSError(code, f"netlink {msg_type}: {os.strerror(code)}")
                        return echoed
                    echoed = data[offset : offset + length]
                offset += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


def link_attr_u32(message: bytes, attr: int) -> int | None:
    """A u32 attribute of an RTM_NEWLINK message (16-byte nlmsghdr, 16-byte ifinfomsg)."""
    offset = 32
    while offset + 4 <= len(message):
        length, kind = RTATTR.unpack_from(message, offset)
        if length < 4:
            return None
        if kind & 0x3FFF == attr:
            value: int = struct.unpack_from("=I", message, offset + 4)[0]
            return value
        offset += (length + 3) & ~3
    return None


def veth_msg(
    *,
    name: str,
    peer: str,
    peer_ns_fd: int,
    peer_mac: str,
    mtu: int,
    master: int,
    group: int,
    up: bool = True,
) -> bytes:
    """RTM_NEWLINK: a veth (up unless ``up`` is false), in a bridge and a link group,
    whose peer is created inside the namespace ``peer_ns_fd`` under its final name."""
    from hostnet.backends.netlink import rtnl

    peer_attrs = rtnl.ifinfo(
        rtnl.string(rtnl.IFLA_IFNAME, peer),
        rtnl.u32(rtnl.IFLA_MTU, mtu),
        rtnl.mac(rtnl.IFLA_ADDRESS, peer_mac),
        rtnl.u32(rtnl.IFLA_NET_NS_FD, peer_ns_fd),
    )
    info = rtnl.nested(
        rtnl.IFLA_LINKINFO,
        [
            rtnl.string(rtnl.IFLA_INFO_KIND, "veth"),
            rtnl.nested(rtnl.IFLA_INFO_DATA, [rtnl.attr(rtnl.VETH_INFO_PEER, peer_attrs)]),
        ],
    )
    flag = IFF_UP if up else 0
    return rtnl.ifinfo(
        rtnl.string(rtnl.IFLA_IFNAME, name),
        rtnl.u32(rtnl.IFLA_MTU, mtu),
        rtnl.u32(rtnl.IFLA_MASTER, master),
        rtnl.u32(rtnl.IFLA_GROUP, group),
        info,
        flags=flag,
        change=flag,
    )


def no_linklocal() -> bytes:
    """IFLA_AF_SPEC / AF_INET6 / IFLA_INET6_ADDR_GEN_MODE = none: the link gets no IPv6
    link-local address when it comes up (hostnet's bridge endpoints on IPv4-only
    networks, both veth ends). The kernel applies IFLA_AF_SPEC after a flag change in
    the same request, so it must reach a link before the link has a carrier."""
    from hostnet.backends.netlink import rtnl

    return rtnl.no_linklocal()


def hairpin() -> bytes:
    from hostnet.backends.netlink import rtnl

    return rtnl.hairpin()


def setlink_msg(index: int, attrs: Sequence[bytes], *, up: bool | None = None) -> bytes:
    """RTM_NEWLINK on an existing link, by index: ``attrs``, and up if ``up``."""
    from hostnet.backends.netlink import rtnl

    change = 0 if up is None else IFF_UP
    return rtnl.ifinfo(*attrs, index=index, flags=IFF_UP if up else 0, change=change)


def addr_msg(index: int, ip: str, prefixlen: int, broadcast: str) -> bytes:
    from hostnet.backends.netlink import rtnl

    return rtnl.ifaddr(
        socket.AF_INET,
        prefixlen,
        index,
        rtnl.ip(rtnl.IFA_LOCAL, ip),
        rtnl.ip(rtnl.IFA_ADDRESS, ip),
        rtnl.ip(rtnl.IFA_BROADCAST, broadcast),
    )


def default_route_msg(index: int, gateway: str) -> bytes:
    from hostnet.backends.netlink import rtnl

    return rtnl.rtmsg(
        socket.AF_INET,
        rtnl.ip(rtnl.RTA_GATEWAY, gateway),
        rtnl.u32(rtnl.RTA_OIF, index),
        table=RT_TABLE_MAIN,
        proto=RTPROT_STATIC,
        kind=RTN_UNICAST,
    )


def dellink_msg(*, name: str | None = None, group: int | None = None) -> bytes:
    """RTM_DELLINK of one link by name, or of every link of a group."""
    from hostnet.backends.netlink import rtnl

    if name is not None:
        return rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, name))
    return rtnl.ifinfo(rtnl.u32(rtnl.IFLA_GROUP, group or 0))


def bridge_msg(name: str, mtu: int = 1500) -> bytes:
    """A bridge as hostnet makes one: up, ``mtu``, a MAC of its own, no multicast
    snooping."""
    from hostnet.backends.netlink import rtnl

    snooping = rtnl.nested(rtnl.IFLA_INFO_DATA, [rtnl.u8(rtnl.IFLA_BR_MCAST_SNOOPING, 0)])
    return rtnl.ifinfo(
        rtnl.string(rtnl.IFLA_IFNAME, name),
        rtnl.u32(rtnl.IFLA_MTU, mtu),
        rtnl.mac(rtnl.IFLA_ADDRESS, random_mac()),
        rtnl.nested(rtnl.IFLA_LINKINFO, [rtnl.string(rtnl.IFLA_INFO_KIND, "bridge"), snooping]),
        flags=IFF_UP,
        change=IFF_UP,
    )


# -- published ports as hostnet's map elements -----------------------------------------

INET = {"family": "inet", "table": "hostnet"}


def port_batch(verb: str, entries: Sequence[tuple[int, str, int]], protocol: str = "tcp") -> str:
    """One nftables transaction adding (``verb`` "add") or deleting ("delete") published
    ports, as (host port, endpoint ip, container port), in hostnet's maps for ports
    published on 0.0.0.0: the same JSON shape hostnet sends."""
    addr = [[{"concat": [protocol, port]}, ip] for port, ip, _ in entries]
    ports = [[{"concat": [protocol, port]}, cport] for port, _, cport in entries]
    return json.dumps(
        {
            "nftables": [
                {verb: {"element": {**INET, "name": "any4_addr", "elem": addr}}},
                {verb: {"element": {**INET, "name": "any4_port", "elem": ports}}},
            ]
        },
        separators=(",", ":"),
    )


def build_bridge_host(
    host: str, *, bridge: str, gateway: str, prefixlen: int, subnet: str, network_id: str
) -> int:
    """In the namespace ``host``: a bridge (up) with the gateway address, and hostnet's
    nftables tables with this network in them (bridge_firewall.base_setup and
    network_setup), so that the floor and `nft` add elements to the same table shapes as
    hostnet. Returns the bridge's interface index."""
    from hostnet.backends.netlink.nft import NftContext
    from hostnet.drivers import bridge_firewall as fw

    def body() -> int:
        wire = Wire(route_socket())
        try:
            echo = wire.request(
                bridge_msg(bridge), RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO
            )
            assert echo is not None
            index = struct.unpack_from("=i", echo, 20)[0]
            broadcast = str(ipaddress.ip_network(subnet).broadcast_address)
            wire.request(addr_msg(index, gateway, prefixlen, broadcast), RTM_NEWADDR, NLM_F_CREATE)
        finally:
            wire.close()
        nft = NftContext()
        try:
            nft.run(fw.base_setup()[0])
            commands, _undo = fw.network_setup(
                network_id=network_id,
                bridge=bridge,
                subnets=[subnet],
                internal=False,
                masquerade=True,
            )
            nft.run(commands)
        finally:
            nft.close()
        return int(index)

    fd = open_ns(host)
    try:
        return in_thread(fd, body)
    finally:
        os.close(fd)
