"""What callers ask for: frozen, validated specs. (Observed state is in model.py.)"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen

from hostnet import errors
from hostnet.model import PortMapping, Reservation
from hostnet.names import check_network_name


def _freeze_options(
    value: Mapping[str, Any] | tuple[tuple[str, str], ...] | None,
) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, tuple | list) and all(
        isinstance(pair, tuple | list) and len(pair) == 2 for pair in value
    ):
        items = list(value)
    else:
        raise errors.InvalidOption("options", value, "a dict of name -> value")
    out = []
    for key, val in items:
        if not isinstance(key, str):
            raise errors.InvalidOption(str(key), val, "option names are strings")
        if val is None:  # str() would make it the word "None" (an interface name...)
            raise errors.InvalidOption(key, val, "give a value (or leave the option out)")
        out.append((key, ("true" if val else "false") if isinstance(val, bool) else str(val)))
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1024)
def _network(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # ipaddress objects are immutable: one per subnet, instead of a parse per use (a
    # network's spec is decoded and its subnets used on every connect)
    return ipaddress.ip_network(subnet)


#: Blocks whose addresses an interface cannot use as its own (the kernel refuses
#: multicast ones; loopback and "this network" ones would never be routed).
_UNUSABLE4 = (
    ("multicast", ipaddress.ip_network("224.0.0.0/4")),
    ("loopback", ipaddress.ip_network("127.0.0.0/8")),
    ('"this network" (0.0.0.0/8)', ipaddress.ip_network("0.0.0.0/8")),
)
_UNUSABLE6 = (
    ("multicast", ipaddress.ip_network("ff00::/8")),
    ("loopback or unspecified", ipaddress.ip_network("::/127")),
    # hostnet reads ::ffff:a.b.c.d as the IPv4 address it maps (static ip, -p)
    ("IPv4-mapped (they stand for IPv4 ones)", ipaddress.ip_network("::ffff:0:0/96")),
)


@functools.lru_cache(maxsize=1024)
def _check_subnet(
    value: str, gateway: str | None, ip_range: str | None, aux: tuple[tuple[str, str], ...]
) -> None:
    """Raise InvalidAddress unless the pool entry is consistent (remembered when it is)."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise errors.InvalidAddress(value, f"not a subnet in CIDR notation ({exc})") from None
    if net.prefixlen == 0:
        raise errors.InvalidAddress(value, "a /0 is every address, not a network's subnet")
    unusable = _UNUSABLE4 if net.version == 4 else _UNUSABLE6
    for kind, block in unusable:
        if net.overlaps(block):
            raise errors.InvalidAddress(value, f"{kind} addresses cannot be a network's subnet")
    limit = 30 if net.version == 4 else 126
    if net.prefixlen > limit:
        raise errors.InvalidAddress(value, f"subnet is too small (/{net.prefixlen})")
    if gateway is not None:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise errors.InvalidAddress(gateway, "gateway is not an IP address") from None
        # (IPv6 has no broadcast address: its last address is a host's)
        ends = (net.network_address, net.broadcast_address) if net.version == 4 else ()
        if gw not in net or gw == net.network_address or gw in ends:
            raise errors.InvalidAddress(gateway, f"gateway is not a host of {value}")
    if ip_range is not None:
        try:
            rng = ipaddress.ip_network(ip_range, strict=True)
        except ValueError:
            raise errors.InvalidAddress(ip_range, "ip range is not a subnet") from None
        if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
            raise errors.InvalidAddress(ip_range, f"ip range is not inside {value}")
    for name, addr in aux:
        try:
            a = ipaddress.ip_address(addr)
        except ValueError:
            raise errors.InvalidAddress(addr, f"auxiliary address {name!r}") from None
        if a not in net:
            raise errors.InvalidAddress(addr, f"auxiliary address {name!r} is outside {value}")


@frozen(kw_only=True)
class SubnetConfig:
    """One IPAM pool entry, Docker's IPAM.Config: subnet, gateway, ip range, and
    auxiliary addresses (name -> address) that are never handed out."""

    subnet: str
    gateway: str | None = None
    ip_range: str | None = None
    aux: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        args = (self.subnet, self.gateway, self.ip_range, self.aux)
        try:
            _check_subnet(*args)
        except TypeError:  # unhashable (a list, say): checked without being remembered
            _check_subnet.__wrapped__(*args)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return _network(self.subnet)

    def to_docker(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Subnet": self.subnet}
        if self.gateway:
            out["Gateway"] = self.gateway
        if self.ip_range:
            out["IPRange"] = self.ip_range
        if self.aux:
            out["AuxiliaryAddresses"] = dict(self.aux)
        return out


@frozen(kw_only=True)
class NetworkSpec:
    name: str = attrs.field(validator=lambda _s, _a, v: check_network_name(v))
    driver: str = "bridge"
    subnets: tuple[SubnetConfig, ...] = ()
    internal: bool = False
    enable_ipv6: bool = False
    options: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_freeze_options)
    labels: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_freeze_options)

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetworkSpec:
        subnets = tuple(
            SubnetConfig(
                subnet=s["subnet"],
                gateway=s.get("gateway"),
                ip_range=s.get("ip_range"),
                aux=tuple((str(x[0]), str(x[1])) for x in s.get("aux", ())),
            )
            for s in data.get("subnets", ())
        )
        return cls(
            name=data["name"],
            driver=data["driver"],
            subnets=subnets,
            internal=data.get("internal", False),
            enable_ipv6=data.get("enable_ipv6", False),
            options=dict(data.get("options", ())),
            labels=dict(data.get("labels", ())),
        )


@frozen(kw_only=True)
class NetworkInfo:
    """A network as drivers see it when planning: the spec plus what was decided."""

    id: str
    spec: NetworkSpec
    host_ns: str | None
    data: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


@frozen(kw_only=True)
class EndpointInfo:
    """One workload's attachment to a network, with everything allocated for it."""

    id: str
    workload: str
    ns: str | None  # None: the workload uses the host's namespace (host driver)
    ifname: str | None = None
    mac: str | None = None
    addresses: tuple[str, ...] = ()  # "10.0.0.2/24"
    gateways: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    held: tuple[Reservation, ...] = ()
    #: addresses asked for at connect: ("IPv4Address", ...), ("IPv6Address", ...)
    static: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_freeze_options)
