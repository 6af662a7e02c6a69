"""IP address management: subnets for networks, addresses for endpoints.

Docker's semantics (recorded in docs/decisions.md):

- Without a subnet, an IPv4 network gets the first free subnet of the local default
  pools: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 cut into /20s. A subnet
  is free when it overlaps no other network of the same host and no route or address in
  the host namespace (so hostnet never shadows a network the host already reaches).
- A subnet the user gives must not overlap another network of the host (SubnetOverlap
  names it); it may overlap host routes (the user knows best, like Docker).
- The gateway defaults to the first host address. The network and broadcast addresses,
  the gateway and auxiliary addresses are never handed out; with an ip range, addresses
  come from the range only.
- IPv6 without a subnet gets a unique local /64 (fd00::/8 with random bits).
- Addresses are allocated from a cursor that moves forward (a released address is not
  reused at once, so neighbours' ARP caches do not send traffic to a new owner) and are
  claimed by primary key in the store, so two processes can never get the same one.
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
from collections.abc import Iterable, Iterator, Sequence

from hostnet import errors
from hostnet.model import Snapshot
from hostnet.specs import SubnetConfig
from hostnet.stores.local import Tx, address_cursor

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def default_pools() -> Iterator[ipaddress.IPv4Network]:
    """Docker's local default address pools, in the order Docker tries them."""
    for second in range(17, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    yield from ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def host_networks(host: Snapshot | None) -> list[IPNetwork]:
    """Networks the host already reaches, or keeps out of use: its routes (but not the
    default route; blackhole, unreachable and prohibit ones too, as libnetwork counts
    every route) and the networks of its addresses (loopback aside)."""
    if host is None:
        return []
    out: list[IPNetwork] = []
    for dst in (*(r.dst for r in host.routes), *host.unroutable):
        net = ipaddress.ip_network(dst, strict=False)
        if net.prefixlen:
            out.append(net)
    for addr in host.addresses:
        iface = ipaddress.ip_interface(addr.address)
        if not iface.ip.is_loopback:
            out.append(iface.network)
    return out


def _overlaps(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)


def pick_subnet(
    taken: Sequence[tuple[str, IPNetwork]], host: Sequence[IPNetwork]
) -> ipaddress.IPv4Network:
    """The first default pool subnet clear of ``taken`` (name, subnet) and ``host``."""
    for candidate in default_pools():
        if any(_overlaps(candidate, net) for _, net in taken):
            continue
        if any(_overlaps(candidate, net) for net in host):
            continue
        return candidate
    raise errors.ExhaustedError(
        "every default address pool (172.17-31.0.0/16, 192.168.0.0/16 in /20s) is in use; "
        "give the network an explicit subnet"
    )


def check_overlap(subnet: IPNetwork, taken: Sequence[tuple[str, IPNetwork]]) -> None:
    for name, net in taken:
        if _overlaps(subnet, net):
            raise errors.SubnetOverlap(str(subnet), f"network {name!r}", str(net))


def random_ula() -> ipaddress.IPv6Network:
    """A random unique local /64 (RFC 4193 style: fd + 40 random bits + subnet 0)."""
    bits = secrets.randbits(40)
    prefix = (0xFD << 120) | (bits << 80)
    return ipaddress.IPv6Network((prefix, 64))


def pick_ula(
    taken: Sequence[tuple[str, IPNetwork]], host: Sequence[IPNetwork], tries: int = 64
) -> ipaddress.IPv6Network:
    """A random unique local /64 clear of ``taken`` (name, subnet) and ``host``, as the
    IPv4 default pools are picked."""
    for _ in range(tries):
        candidate = random_ula()
        if not any(_overlaps(candidate, net) for _, net in taken) and not any(
            _overlaps(candidate, net) for net in host
        ):
            return candidate
    raise errors.ExhaustedError(
        f"{tries} random unique local /64s all overlap other networks or the host's "
        "routes (fd00::/8 is in use here); give the network an IPv6 subnet"
    )


def complete(config: SubnetConfig) -> SubnetConfig:
    """Fill in the gateway when the user did not give one: the first host address
    that is not the host's own (``keep_host_addresses``: a second interface with the
    host's address would take its traffic, and endpoints could not tell the two
    apart). A user's auxiliary address that is the gateway is refused: the gateway is
    in use (libnetwork's reservation of it fails the same way)."""
    hosts = {ipaddress.ip_address(a) for n, a in config.aux if n.startswith("host:")}
    first = config.network.network_address + 1
    while first in hosts and first + 1 in config.network:
        first += 1
    gateway = config.gateway or str(first)
    gateway_ip = ipaddress.ip_address(gateway)
    for name, address in config.aux:
        if not name.startswith("host:") and ipaddress.ip_address(address) == gateway_ip:
            implied = (
                ""
                if config.gateway
                else " (by default the first host address that is not the host's own)"
            )
            raise errors.InvalidAddress(
                address, f"auxiliary address {name!r} is the gateway{implied}"
            )
    if config.gateway is not None:
        return config
    return SubnetConfig(
        subnet=config.subnet, gateway=gateway, ip_range=config.ip_range, aux=config.aux
    )


def pool_key(network_id: str, subnet: str) -> str:
    return f"{network_id}/{subnet}"


@functools.lru_cache(maxsize=1024)
def reserved_addresses(config: SubnetConfig) -> frozenset[IPAddress]:
    """The addresses of ``config`` never handed out (remembered: configs are frozen)."""
    net = config.network
    out: set[IPAddress] = {net.network_address}
    if net.version == 4:
        out.add(net.broadcast_address)
    if config.gateway:
        out.add(ipaddress.ip_address(config.gateway))
    out.update(ipaddress.ip_address(a) for _, a in config.aux)
    return frozenset(out)


@functools.lru_cache(maxsize=1024)
def _span(text: str) -> tuple[int, int]:
    span = ipaddress.ip_network(text)
    return int(span.network_address), int(span.broadcast_address)


def _candidates(config: SubnetConfig, start: int) -> Iterable[int]:
    first, last = _span(config.ip_range or config.subnet)
    if not first <= start <= last:
        start = first
    yield from range(start, last + 1)
    yield from range(first, start)


def allocate(
    tx: Tx,
    network_id: str,
    config: SubnetConfig,
    owner: str,
    holder: str,
    static: str | None = None,
) -> str:
    """Claim one address of ``config`` for ``owner``; returns "ip/prefixlen"."""
    net = config.network
    key = pool_key(network_id, config.subnet)
    reserved = reserved_addresses(config)
    if static is not None:
        try:
            ip = ipaddress.ip_address(static)
        except ValueError:
            raise errors.InvalidAddress(static, "not an IP address") from None
        if ip.version == 6 and ip.scope_id is not None:  # "fd00::1%eth0"
            raise errors.InvalidAddress(static, "an interface address takes no zone (%...)")
        if ip not in net:
            raise errors.InvalidAddress(static, f"not in the network's subnet {net}")
        if ip in reserved:
            raise errors.InvalidAddress(
                static, "is the network, broadcast, gateway or an auxiliary address"
            )
        if not tx.allocate(key, str(ip), owner):
            taken_by = tx.address_owner(key, str(ip)) or ""
            raise errors.AddressInUse(
                str(ip),
                holder,
                # the network's own claims (allocate_last) are its host-side interface's
                "host shim" if taken_by == network_id else tx.endpoint_workload(taken_by),
            )
        return f"{ip}/{net.prefixlen}"
    cursor_name = address_cursor(key)
    start = tx.next_cursor(cursor_name, 0)
    for value in _candidates(config, start):
        ip = ipaddress.ip_address(value)
        if ip in reserved:
            continue
        if net.version == 6 and value & 0xFFFF_FFFF_FFFF_FFFF == 0:
            continue  # subnet-router anycast
        if tx.allocate(key, str(ip), owner):
            tx.set_cursor(cursor_name, value + 1)
            return f"{ip}/{net.prefixlen}"
    raise errors.ExhaustedError(
        f"no free address left in {config.ip_range or config.subnet} of network {holder!r}"
    )


def allocate_last(tx: Tx, network_id: str, config: SubnetConfig, owner: str, holder: str) -> str:
    """Claim the highest free address of the subnet that is outside the ip range, for
    a host-side helper (the macvlan shim): endpoints never get it, and it stays clear
    of the range they are given."""
    net = config.network
    key = pool_key(network_id, config.subnet)
    reserved = reserved_addresses(config)
    span = ipaddress.ip_network(config.ip_range) if config.ip_range else None
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    for value in range(last, int(net.network_address), -1):
        ip = ipaddress.ip_address(value)
        if ip in reserved or (span is not None and ip in span):
            continue
        if tx.allocate(key, str(ip), owner):
            return f"{ip}/{net.prefixlen}"
        if last - value > 4096:
            break
    raise errors.ExhaustedError(f"no free address outside the endpoints' range in {holder!r}")


def keep_host_addresses(config: SubnetConfig, host: Snapshot | None) -> SubnetConfig:
    """``config`` with the host's own addresses inside the subnet added as auxiliary
    (never handed out) addresses, named "host:<interface>". A user subnet can be the
    host's own LAN (macvlan), and an endpoint must never get the host's address."""
    if host is None:
        return config
    net = config.network
    aux = dict(config.aux)
    taken = {ipaddress.ip_address(a) for a in aux.values()}
    for addr in host.addresses:
        ip = ipaddress.ip_interface(addr.address).ip
        if ip in net and ip not in taken:
            aux[f"host:{addr.ifname}"] = str(ip)
            taken.add(ip)
    if len(aux) == len(config.aux):
        return config
    return SubnetConfig(
        subnet=config.subnet,
        gateway=config.gateway,
        ip_range=config.ip_range,
        aux=tuple(sorted(aux.items())),
    )
