"""The bridge driver: what ``docker network create`` + ``docker run -p`` do.

Per network (in the Controller's host namespace): a Linux bridge with the gateway
addresses, route_localnet on the bridge (so 127.0.0.1:PORT can be DNATed to an
endpoint), no duplicate address detection on it in an IPv6 network (so its link-local
address works as soon as the first endpoint joins), and its firewall chains and set
elements. Shared by all bridge networks of a host: hostnet's nftables tables and, where
allowed, IP forwarding.

Per endpoint: a veth pair whose peer is created directly inside the workload's
namespace under its final name (eth0, eth1...), MTU on both ends, a locally administered
MAC, addresses from IPAM, a default route via the gateway (unless the namespace already
has one or the network is internal), and published ports as map elements.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import ClassVar

from hostnet import errors
from hostnet.drivers import bridge_firewall as fw
from hostnet.drivers.base import (
    OPT_MTU,
    ConnectContext,
    Driver,
    NetworkContext,
    canonical_options,
    default_routes,
    option_bool,
    option_mtu,
    respec,
)
from hostnet.model import IPV6_MIN_MTU, PortMapping, Snapshot
from hostnet.names import check_ifname
from hostnet.ops import (
    AddAddress,
    AddLink,
    ForgetFlows,
    NftBatch,
    Op,
    Plan,
    SetSysctl,
    TrackFlows,
)
from hostnet.specs import EndpointInfo, NetworkInfo, NetworkSpec

OPT_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
#: IGMP/MLD snooping on the bridge: off unless asked for (docs/decisions.md)
OPT_SNOOPING = "hostnet.bridge.multicast_snooping"

ALIASES = {
    "bridge_name": OPT_NAME,
    "icc": OPT_ICC,
    "masquerade": OPT_MASQ,
    "host_binding_ipv4": OPT_HOST_IP,
    "host_ip": OPT_HOST_IP,
    "mtu": OPT_MTU,
    "multicast_snooping": OPT_SNOOPING,
}
BOOLEAN = {OPT_ICC, OPT_MASQ, OPT_SNOOPING}
FORWARD4 = "net/ipv4/ip_forward"
FORWARD6 = "net/ipv6/conf/all/forwarding"


def veth_name(endpoint_id: str) -> str:
    return f"veth{endpoint_id[:7]}"


def bridge_mac(network_id: str) -> str:
    """The bridge's own MAC: locally administered, unicast, from the (random) network id.
    A bridge without one takes the lowest MAC of its ports, and changes it as endpoints
    come and go: the gateway's MAC in every endpoint's neighbour cache goes stale (the
    reason Docker and the CNI bridge plugin pin it too)."""
    return "02:" + ":".join(network_id[i : i + 2] for i in range(0, 10, 2))


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value == "true"


def base_firewall(host: str | None) -> NftBatch:
    """hostnet's nftables tables in ``host``, shared by every bridge network."""
    commands, undo = fw.base_setup()
    return NftBatch(ns=host, commands=commands, undo=undo)


def network_firewall(network: NetworkInfo) -> NftBatch:
    """A bridge network's chains and set elements in its host's tables."""
    spec = network.spec
    commands, undo = fw.network_setup(
        network_id=network.id,
        bridge=network.data["bridge"],
        subnets=[s.subnet for s in spec.subnets],
        internal=spec.internal,
        masquerade=_bool(spec.option(OPT_MASQ), True),
    )
    return NftBatch(ns=network.host_ns, commands=commands, undo=undo)


class BridgeDriver(Driver):
    name = "bridge"
    allocates_addresses: ClassVar[bool] = True
    observe_host: ClassVar[bool] = True
    options: ClassVar[frozenset[str]] = frozenset({*ALIASES, *ALIASES.values()})
    not_supported: ClassVar[Mapping[str, str]] = {
        "com.docker.network.enable_ipv6": "pass ipv6=True (CLI: --ipv6)",
        "com.docker.network.container_iface_prefix": "endpoints are eth0, eth1...",
        "com.docker.network.bridge.inhibit_ipv4": "the bridge always has the gateway",
        "com.docker.network.bridge.gateway_mode_ipv4": "hostnet's is Docker's 'nat' mode",
        "com.docker.network.bridge.gateway_mode_ipv6": "hostnet's is Docker's 'nat' mode",
        "com.docker.network.bridge.trusted_host_interfaces": "not in hostnet",
        "com.docker.network.bridge.default_bridge": "hostnet has no default network",
    }
    host_sysctls: ClassVar[tuple[str, ...]] = (FORWARD4, FORWARD6)
    link_group: ClassVar[bool] = True

    def validate(self, spec: NetworkSpec) -> NetworkSpec:
        super().validate(spec)
        canonical = canonical_options(spec, ALIASES, self._option_value)
        # recorded, so inspect shows what the bridge got (the kernel's default differs,
        # and so did hostnet's before this option)
        canonical.setdefault(OPT_SNOOPING, "false")
        return respec(spec, canonical)

    @staticmethod
    def _option_value(key: str, value: str) -> str:
        if key in BOOLEAN:
            return option_bool(key, value)
        if key == OPT_MTU:
            return option_mtu(key, value)
        if key == OPT_NAME:
            check_ifname(value)
        elif key == OPT_HOST_IP:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                raise errors.InvalidOption(key, value, "an IP address") from None
            if address.version == 6 and address.scope_id is not None:  # nftables drops it
                raise errors.InvalidOption(key, value, "an IP address without a zone (%...)")
            return str(address)
        return value

    def decide(self, spec: NetworkSpec, network_id: str, host: Snapshot | None) -> dict[str, str]:
        bridge = spec.option(OPT_NAME) or f"br-{network_id[:12]}"
        if host is not None and host.link(bridge) is not None:
            raise errors.LinkExists(bridge, host.ns)
        return {"bridge": bridge, "mac": bridge_mac(network_id)}

    @staticmethod
    def mtu(spec: NetworkSpec) -> int:
        return int(spec.option(OPT_MTU) or 1500)

    def shared_keys(self, spec: NetworkSpec) -> tuple[str, ...]:
        return ("nft:bridge", f"sysctl:{FORWARD4}", f"sysctl:{FORWARD6}")

    def plan_shared(self, ctx: NetworkContext) -> dict[str, Plan]:
        """Host-wide setup every bridge network needs; created by the first network,
        removed with the last."""
        host = ctx.network.host_ns
        if (
            "nft:bridge" not in ctx.known_shared
            and ctx.host is not None
            and f"inet {fw.TABLE}" in ctx.host.nft_tables
        ):
            raise errors.ConflictError(
                f"the host namespace already has an nftables table 'inet {fw.TABLE}' that this "
                "state directory did not make: another hostnet state directory manages this "
                "host (use the same --state-dir / HOSTNET_STATE_DIR), or it was left behind "
                f"(remove it with `nft delete table inet {fw.TABLE}`)"
            )
        shared: dict[str, Plan] = {"nft:bridge": (base_firewall(host),)}
        if ctx.allow_forwarding:
            for key, wanted in ((FORWARD4, True), (FORWARD6, ctx.network.spec.enable_ipv6)):
                current = ctx.sysctls.get(key, "0")
                if wanted and current != "1":
                    shared[f"sysctl:{key}"] = (
                        SetSysctl(ns=host, key=key, value="1", previous=current),
                    )
        return shared

    def plan_create(self, ctx: NetworkContext) -> Plan:
        spec, host = ctx.network.spec, ctx.network.host_ns
        bridge = ctx.network.data["bridge"]
        ops: list[Op] = [
            AddLink(
                ns=host,
                name=bridge,
                kind="bridge",
                mtu=self.mtu(spec),
                mac=ctx.network.data.get("mac"),  # None: made before hostnet pinned it
                up=True,
                mcast_snooping=_bool(spec.option(OPT_SNOOPING), False),
            )
        ]
        for config in spec.subnets:
            prefix = config.network.prefixlen
            ops.append(AddAddress(ns=host, ifname=bridge, address=f"{config.gateway}/{prefix}"))
        ops += [
            SetSysctl(
                ns=host, key=f"net/ipv4/conf/{bridge}/route_localnet", value="1", previous="0"
            ),
            # No source-routed packets from the network (the kernel's default for a new
            # link is to take them where conf/all allows): an LSRR/SSRR option naming
            # 127.0.0.1 sends a packet to the host's loopback after prerouting's guard
            # (the firewall's mark chain), and route_localnet lets the reply out (a
            # review, with conf/all/accept_source_route on)
            SetSysctl(
                ns=host,
                key=f"net/ipv4/conf/{bridge}/accept_source_route",
                value="0",
                previous="1",
            ),
        ]
        if FORWARD6 in ctx.sysctls and self.mtu(spec) >= IPV6_MIN_MTU:
            # No router advertisements taken from the network: any endpoint with raw
            # sockets could otherwise give the host an address and a default route
            # through itself (Docker sets this too, CVE-2020-13401). (Only where the host
            # has IPv6, and the bridge can: under 1280 bytes a link has none.)
            ops.append(
                SetSysctl(
                    ns=host, key=f"net/ipv6/conf/{bridge}/accept_ra", value="0", previous="1"
                )
            )
        if spec.enable_ipv6:
            # The bridge's link-local address usable at once: the kernel makes it when
            # the bridge gets carrier (a bridge with its own MAC has none before its first
            # port), tentative for the 1-2 s of duplicate address detection, and until then
            # sends no neighbour solicitation for a packet it forwards into the network
            # (it has no link-local source): the first IPv6 connection from outside would
            # stall. A duplicate is next to impossible (the address comes from the
            # bridge's random MAC; only hostnet's endpoints share the link). The kernel
            # uses the larger of this and conf/all/accept_dad (0 unless an admin set it).
            ops.append(
                SetSysctl(
                    ns=host, key=f"net/ipv6/conf/{bridge}/accept_dad", value="0", previous="1"
                )
            )
        ops.append(network_firewall(ctx.network))
        return tuple(ops)

    def default_host_ip(self, spec: NetworkSpec) -> str:
        return spec.option(OPT_HOST_IP) or "0.0.0.0"

    def plan_publish(
        self, network: NetworkInfo, endpoint: EndpointInfo, mappings: tuple[PortMapping, ...]
    ) -> Plan:
        self._check_ports(network, endpoint, mappings)
        ips = [a.split("/")[0] for a in endpoint.addresses]
        firewall = fw.endpoint_setup(mappings=mappings, endpoint_ips=ips, icc_port=None)
        if firewall is None:
            return ()
        # the endpoint is live: a failed batch must not forget its flows, so what makes
        # undoing this plan forget them comes after the batch
        return (
            NftBatch(ns=network.host_ns, commands=firewall[0], undo=firewall[1]),
            *_forget_stale(network.host_ns, mappings),
            *_track_flows(network.host_ns, mappings, ips),
        )

    @staticmethod
    def _check_ports(
        network: NetworkInfo, endpoint: EndpointInfo, mappings: tuple[PortMapping, ...]
    ) -> None:
        if mappings and network.spec.internal:
            raise errors.InvalidOption(
                "publish",
                [m.as_spec() for m in mappings],
                f"network {network.name!r} is internal: it has no way in from outside",
            )
        ips = [a.split("/")[0] for a in endpoint.addresses]
        for m in mappings:
            given = m.as_spec()
            if m.host_ip == "::1":
                # IPv6 has no route_localnet: the kernel drops a packet from ::1 that a
                # DNAT sends out of the bridge (Docker serves it with docker-proxy)
                raise errors.InvalidOption(
                    "publish",
                    given,
                    "IPv6 loopback cannot be forwarded into a bridge network; publish on "
                    "127.0.0.1 (reachable from the host only) or on [::]",
                )
            if ":" in m.host_ip and not any(":" in ip for ip in ips):
                raise errors.InvalidOption(
                    "publish", given, "an IPv6 host address needs an IPv6 network"
                )

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        net, ep, target = ctx.network, ctx.endpoint, ctx.target
        spec, host = net.spec, net.host_ns
        assert ep.ns is not None and ep.ifname is not None and target is not None
        self._check_ports(net, ep, ep.ports)
        ips = [a.split("/")[0] for a in ep.addresses]
        veth = veth_name(ep.id)
        ops: list[Op] = [
            *_track_flows(host, ep.ports, ips),
            AddLink(
                ns=host,
                name=veth,
                kind="veth",
                mtu=self.mtu(spec),
                up=True,
                master=net.data["bridge"],
                hairpin=True,
                ipv6_linklocal=spec.enable_ipv6,
                ipv6=any(":" in a for a in ep.addresses),
                group=net.data.get("group"),
                peer=ep.ifname,
                peer_ns=ep.ns,
                peer_mac=ep.mac,
                peer_up=True,
            ),
        ]
        ops += [AddAddress(ns=ep.ns, ifname=ep.ifname, address=a) for a in ep.addresses]
        ops += default_routes(ep, target, internal=spec.internal)
        icc = _bool(spec.option(OPT_ICC), True)
        firewall = fw.endpoint_setup(
            mappings=ep.ports, endpoint_ips=ips, icc_port=None if icc else veth
        )
        if firewall is not None:
            ops.append(NftBatch(ns=host, commands=firewall[0], undo=firewall[1]))
            ops.extend(_forget_stale(host, ep.ports))
        return tuple(ops)


def _track_flows(host: str | None, mappings: Sequence[PortMapping], ips: Sequence[str]) -> Plan:
    """A TrackFlows first in the plan when it publishes UDP or SCTP ports, so that undoing
    the plan forgets the conntrack entries of the endpoint's flows last, when no link or
    DNAT element is left to make new ones. Only for those protocols (as Docker does):
    their clients keep their source port, and a stale entry would go on sending them to
    an address that is gone, while a TCP client's next connection has a new source port
    and a new entry. Forgetting needs a walk of the kernel's whole conntrack table
    (about 10 ms), which TCP-only endpoints are spared."""
    if any(m.protocol in FORGETFUL for m in mappings):
        return (TrackFlows(ns=host, addresses=tuple(ips)),)
    return ()


def _forget_stale(host: str | None, mappings: Sequence[PortMapping]) -> Plan:
    """After the DNAT elements of UDP or SCTP ports exist: forget the entries of flows to
    those host ports made before (to an endpoint that went, or while nothing published
    the port: an entry without NAT, which a client that keeps sending keeps alive)."""
    ports = sorted({f"{m.protocol}/{m.host_port}" for m in mappings if m.protocol in FORGETFUL})
    return (ForgetFlows(ns=host, ports=tuple(ports)),) if ports else ()


#: protocols whose clients keep their source port, so that stale conntrack entries
#: keep catching them
FORGETFUL = ("udp", "sctp")


__all__ = ["BridgeDriver", "bridge_mac", "veth_name"]
