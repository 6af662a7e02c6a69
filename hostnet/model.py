"""Observed kernel state: frozen values that backends return from ``observe``.

A Snapshot is what one namespace looks like at one moment. Drivers plan from snapshots
and never from the kernel directly, so a plan is a pure function of (spec, snapshot).
Both backends return the same shapes, which is what lets one contract suite compare them.
"""

from __future__ import annotations

import ipaddress

import attrs
from attrs import frozen

from hostnet import errors

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@frozen(kw_only=True)
class LinkStats:
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0


@frozen(kw_only=True)
class Link:
    """One network interface as the kernel reports it.

    ``kind`` is the rtnetlink kind ("veth", "bridge", "macvlan", "vxlan"...), "loopback"
    for lo, or "device" for interfaces without a kind (physical NICs).
    """

    name: str
    index: int
    kind: str
    mtu: int
    mac: str
    up: bool
    master: str | None = None
    parent: str | None = None
    mode: str | None = None
    vni: int | None = None
    group: int = 0
    mcast_snooping: bool | None = None  # bridges: IGMP/MLD snooping on or off
    stats: LinkStats = attrs.field(factory=LinkStats, eq=False)


@frozen(kw_only=True)
class Address:
    ifname: str
    address: str  # interface notation: "10.0.0.2/24", "fd00::2/64"

    @property
    def interface(self) -> IPInterface:
        return ipaddress.ip_interface(self.address)

    @property
    def family(self) -> int:
        return self.interface.version


@frozen(kw_only=True)
class Route:
    """A route in the main table. ``dst`` is a network ("0.0.0.0/0" for default)."""

    dst: str
    gateway: str | None = None
    ifname: str | None = None

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.dst).version

    @property
    def is_default(self) -> bool:
        return ipaddress.ip_network(self.dst).prefixlen == 0


WILDCARD4 = "0.0.0.0"
WILDCARD6 = "::"
#: IPv6 needs links of at least this MTU (RFC 8200); the kernel gives a link with a
#: smaller one no IPv6 at all (no addresses, no net/ipv6/conf/<link>)
IPV6_MIN_MTU = 1280


def family_of(address: str) -> int:
    return 6 if ":" in address else 4


def clashes(a: str, b: str) -> bool:
    """Whether host addresses ``a`` and ``b`` conflict for the same port and protocol."""
    if a == b:
        return True
    if family_of(a) != family_of(b):
        return False
    return a in (WILDCARD4, WILDCARD6) or b in (WILDCARD4, WILDCARD6)


def kernel_clashes(bound: str, wanted: str, *, v6only: bool = False) -> bool:
    """Like ``clashes``, but a socket some process bound on ``::`` is dual-stack (Linux's
    default) unless ``v6only``, so it holds the port for IPv4 too. What hostnet
    publishes or holds on ``::`` is IPv6 only, so it does not clash with IPv4 sockets."""
    if bound == WILDCARD6 and not v6only:
        return True
    return clashes(bound, wanted)


@frozen(kw_only=True)
class BoundSocket:
    """A socket bound in a namespace, with its owner when the kernel tells."""

    protocol: str  # "tcp", "udp", "sctp"
    address: str  # "0.0.0.0", "::", "127.0.0.1"... (IPv4-mapped IPv6 as IPv4)
    port: int
    pid: int | None = None
    process: str | None = None
    v6only: bool = False  # an IPv6 socket with IPV6_V6ONLY: no IPv4 port is taken

    def blocks(self, protocol: str, address: str, port: int) -> bool:
        """Whether a bind of ``protocol`` ``address``:``port`` clashes with this
        socket, by the kernel's rule (``kernel_clashes``)."""
        return (
            self.port == port
            and self.protocol == protocol
            and kernel_clashes(self.address, address, v6only=self.v6only)
        )

    def in_the_way(self, protocol: str, address: str, port: int) -> errors.PortInUse:
        """The error for a bind of ``protocol`` ``address``:``port`` that this socket
        blocks, naming its process."""
        return errors.PortInUse(
            port=port,
            protocol=protocol,
            host_ip=address,
            owner_pid=self.pid,
            owner_name=self.process,
            held_on=self.address,
        )


@frozen(kw_only=True)
class PortMapping:
    """One published port: host ``host_ip:host_port`` forwards to ``container_port``."""

    protocol: str
    host_ip: str
    host_port: int
    container_port: int

    def docker_key(self) -> str:
        return f"{self.container_port}/{self.protocol}"

    def as_spec(self) -> str:
        """The mapping written as a ``-p`` spec: host address, host port, container port."""
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.host_port}:{self.container_port}/{self.protocol}"


@frozen(kw_only=True)
class Reservation:
    """A host port hostnet holds for a workload."""

    protocol: str
    host_ip: str
    port: int


@frozen(kw_only=True)
class Snapshot:
    """Everything a driver may look at in one namespace (None = the root namespace)."""

    ns: str | None
    links: tuple[Link, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    # destinations the main table keeps out of use (blackhole, unreachable, prohibit)
    unroutable: tuple[str, ...] = ()
    nft_tables: tuple[str, ...] = ()  # "inet hostnet", "ip nat"...
    # which namespace this was (Backend.namespace_id), when the backend can tell:
    # a namespace deleted and made again under the same name is another one
    ident: str | None = None

    def link(self, name: str) -> Link | None:
        for link in self.links:
            if link.name == name:
                return link
        return None

    def link_names(self) -> frozenset[str]:
        return frozenset(link.name for link in self.links)

    def addresses_of(self, ifname: str) -> tuple[str, ...]:
        return tuple(a.address for a in self.addresses if a.ifname == ifname)


def route_destination(dst: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A route's destination as a network; InvalidAddress for one that is none
    ("10.0.0.1/16" has host bits set: the kernel refuses it, EINVAL)."""
    try:
        return ipaddress.ip_network(dst, strict=True)
    except ValueError as exc:
        raise errors.InvalidAddress(dst, f"not a network for a route ({exc})") from None
