"""The macvlan driver: each endpoint is a macvlan child of a parent interface of the
host, with its own MAC address, so it appears as a device of its own on the parent's
network (the LAN).

The child is created directly inside the workload's namespace (the request is sent in
the host namespace, where the parent lives, with the target namespace attached), takes
an address from the network's IPAM and a default route via the LAN gateway.

The kernel never passes traffic between a parent and its own macvlan children, so the
host cannot reach its endpoints. ``host_shim=True`` adds the usual remedy: a host-side
macvlan (bridge mode) on the same parent with an address reserved from the network
(outside the endpoints' ip range), and a route to the endpoints through it (the ip
range when there is one, else one /32 route per endpoint).
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

from hostnet import errors
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
from hostnet.model import Snapshot
from hostnet.names import check_ifname
from hostnet.ops import AddAddress, AddLink, AddRoute, Op, Plan
from hostnet.specs import NetworkInfo, NetworkSpec

OPT_PARENT = "parent"
OPT_MODE = "macvlan_mode"
OPT_SHIM = "host_shim"
ALIASES = {"mode": OPT_MODE, "mtu": OPT_MTU, "shim": OPT_SHIM}
MODES = ("bridge", "private", "vepa", "passthru")


def shim_mac(network_id: str) -> str:
    """The shim's MAC: locally administered, unicast, from the (random) network id (not
    the part the bridge driver's MACs come from). Chosen by hostnet, so that a static MAC
    asked for an endpoint can be told apart from it before anything is made."""
    return "02:" + ":".join(network_id[i : i + 2] for i in range(10, 20, 2))


def shim_name(network_id: str) -> str:
    return f"hn-{network_id[:12]}"


def private_parent(network_id: str) -> tuple[str, str]:
    """The two ends of the veth pair an internal network uses as its parent: a link of
    its own, attached to nothing, so its endpoints reach each other and nothing else
    (Docker uses a dummy link; this kernel may have none)."""
    return f"hnp-{network_id[:11]}", f"hnq-{network_id[:11]}"


def _option_value(key: str, value: str) -> str:
    if key == OPT_MODE:
        mode = value.lower()
        if mode not in MODES:
            raise errors.InvalidOption(OPT_MODE, value, f"one of {', '.join(MODES)}")
        return mode
    if key == OPT_SHIM:
        return option_bool(key, value)
    if key == OPT_MTU:
        return option_mtu(key, value)
    return value


class MacvlanDriver(Driver):
    name = "macvlan"
    allocates_addresses: ClassVar[bool] = True
    observe_host: ClassVar[bool] = True
    options: ClassVar[frozenset[str]] = frozenset(
        {OPT_PARENT, OPT_MODE, OPT_SHIM, OPT_MTU, *ALIASES}
    )

    def validate(self, spec: NetworkSpec) -> NetworkSpec:
        super().validate(spec)
        opts = canonical_options(spec, ALIASES, _option_value)
        parent = opts.get(OPT_PARENT)
        if not parent and not spec.internal:
            raise errors.InvalidOption(
                OPT_PARENT, parent, "a macvlan network needs a parent interface"
            )
        if parent:
            check_ifname(parent)
        mode = opts.setdefault(OPT_MODE, "bridge")
        opts.setdefault(OPT_SHIM, "false")
        if opts[OPT_SHIM] == "true" and mode != "bridge":
            raise errors.InvalidOption(
                OPT_SHIM,
                "true",
                f"the host shim needs mode bridge (mode {mode} keeps the host out)",
            )
        if opts[OPT_SHIM] == "false":
            del opts[OPT_SHIM]
        return respec(spec, opts)

    def decide(self, spec: NetworkSpec, network_id: str, host: Snapshot | None) -> dict[str, Any]:
        assert host is not None
        if spec.internal:
            # as Docker: an internal macvlan network gets a parent of its own instead of
            # the one named (which would put its endpoints on that LAN)
            own, peer = private_parent(network_id)
            for name in (own, peer):
                if host.link(name) is not None:
                    raise errors.LinkExists(name, host.ns)
            given = spec.option(OPT_MTU)
            data: dict[str, Any] = {
                "parent": own,
                "private_parent": own,
                "mtu": int(given) if given else None,
            }
            if spec.option(OPT_SHIM) == "true":
                data["shim"] = shim_name(network_id)
                data["shim_mac"] = shim_mac(network_id)
            return data
        parent = spec.option(OPT_PARENT) or ""
        link = host.link(parent)
        if link is None:
            raise errors.LinkNotFound(parent, host.ns)
        if link.kind == "loopback":
            raise errors.InvalidOption(OPT_PARENT, parent, "loopback cannot be a parent")
        if link.kind in ("macvlan", "macvtap", "bridge"):
            raise errors.InvalidOption(
                OPT_PARENT, parent, f"a {link.kind} cannot be a macvlan parent here"
            )
        master = host.link(link.master) if link.master else None
        if master is not None and master.kind != "vrf":
            # the bridge (or bond) takes the port's frames: the kernel refuses a macvlan
            # on it (EBUSY)
            raise errors.InvalidOption(
                OPT_PARENT, parent, f"it is a port of {master.kind} {master.name!r}"
            )
        if not link.up:
            raise errors.LinkDown(parent, host.ns, "parent interface")
        given = spec.option(OPT_MTU)
        mtu = int(given) if given else None  # None: the parent's, as it is at each connect
        if mtu is not None and mtu > link.mtu:
            raise errors.InvalidOption(OPT_MTU, mtu, f"above the parent's MTU {link.mtu}")
        # the parent's MAC: a passthru endpoint takes it, and no endpoint may have it
        data = {"parent": parent, "mtu": mtu, "parent_mac": link.mac}
        if spec.option(OPT_SHIM) == "true":
            shim = shim_name(network_id)
            if host.link(shim) is not None:
                raise errors.LinkExists(shim, host.ns)
            data["shim"] = shim
            data["shim_mac"] = shim_mac(network_id)
        return data

    def max_endpoints(self, spec: NetworkSpec) -> int | None:
        return 1 if spec.option(OPT_MODE) == "passthru" else None

    def wants_mac(self, spec: NetworkSpec) -> bool:
        return spec.option(OPT_MODE) != "passthru"  # passthru keeps the parent's MAC

    def host_addresses(self, spec: NetworkSpec) -> tuple[str, ...]:
        return ("shim",) if spec.option(OPT_SHIM) == "true" else ()

    def inherited_mac(self, network: NetworkInfo) -> str | None:
        if network.spec.option(OPT_MODE) != "passthru":
            return None
        mac: str | None = network.data.get("parent_mac")  # None: made before it was kept
        return mac

    def link_layer(self, spec: NetworkSpec) -> str | None:
        # every macvlan of one parent is on the parent's LAN, whatever its network: the
        # kernel refuses a second child with the same MAC (EADDRINUSE); an internal
        # network's parent is its own
        return None if spec.internal else f"macvlan parent {spec.option(OPT_PARENT)}"

    def check_siblings(self, spec: NetworkSpec, others: list[NetworkSpec]) -> None:
        """Networks sharing a parent: disjoint subnets (checked by IPAM for every
        network of the host) and no passthru next to anything."""
        parent = spec.option(OPT_PARENT)
        mode = spec.option(OPT_MODE)
        if spec.internal:
            return  # its parent is its own
        for other in others:
            if other.driver != self.name or other.internal or other.option(OPT_PARENT) != parent:
                continue
            if mode == "passthru" or other.option(OPT_MODE) == "passthru":
                raise errors.ConflictError(
                    f"parent {parent!r} is used by macvlan network {other.name!r}; a "
                    "passthru network needs its parent to itself"
                )

    def plan_create(self, ctx: NetworkContext) -> Plan:
        data, host = ctx.network.data, ctx.network.host_ns
        ops: list[Op] = []
        own = data.get("private_parent")
        if own is not None:
            ops.append(
                AddLink(
                    ns=host,
                    name=own,
                    kind="veth",
                    peer=private_parent(ctx.network.id)[1],
                    mtu=data["mtu"],
                    up=True,
                    peer_up=True,
                    ipv6_linklocal=False,
                )
            )
        shim = data.get("shim")
        if shim is None:
            return tuple(ops)
        spec = ctx.network.spec
        ops += [
            AddLink(
                ns=host,
                name=shim,
                kind="macvlan",
                parent=data["parent"],
                mode="bridge",
                mtu=data["mtu"],
                up=True,
                mac=data.get("shim_mac"),  # None: made before hostnet chose it
            ),
        ]
        ip = data["host_addresses"]["shim"].split("/")[0]
        ops.append(AddAddress(ns=host, ifname=shim, address=f"{ip}/32"))
        ranges = [s.ip_range for s in spec.subnets if s.ip_range and ":" not in s.subnet]
        for rng in ranges:
            ops.append(AddRoute(ns=host, dst=rng, ifname=shim))
        return tuple(ops)

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        net, ep, target = ctx.network, ctx.endpoint, ctx.target
        assert ep.ns is not None and ep.ifname is not None and target is not None
        if ep.ports:
            raise errors.InvalidOption(
                "publish",
                [m.as_spec() for m in ep.ports],
                "macvlan endpoints sit directly on the parent's network; there is nothing "
                "to publish (connect to their address instead)",
            )
        data, spec, host = net.data, net.spec, net.host_ns
        mode = spec.option(OPT_MODE) or "bridge"
        if mode != "passthru":  # (a passthru endpoint's MAC is the parent's)
            for mac, link in (
                (data.get("parent_mac"), data["parent"]),
                (data.get("shim_mac"), data.get("shim")),
            ):
                if mac is not None and ep.mac == mac:
                    # the kernel refuses it (EADDRINUSE) or, for the parent, takes it
                    # and the LAN sees one MAC on two ports
                    raise errors.AddressInUse(mac, interface=link)
        ops: list[Op] = [
            AddLink(
                ns=ep.ns,
                name=ep.ifname,
                kind="macvlan",
                parent=data["parent"],
                parent_ns=host,
                mode=mode,
                mtu=data["mtu"],
                up=True,
                mac=None if mode == "passthru" else ep.mac,
                ipv6=any(":" in a for a in ep.addresses),
            )
        ]
        ops += [AddAddress(ns=ep.ns, ifname=ep.ifname, address=a) for a in ep.addresses]
        ops += default_routes(ep, target, internal=spec.internal)
        shim = data.get("shim")
        if shim is not None:
            # the shim routes the network's IPv4 ranges; an address outside them (all of
            # them without a range, or a static one) needs a route of its own
            ranges = [
                ipaddress.ip_network(s.ip_range)
                for s in spec.subnets
                if s.ip_range and ":" not in s.subnet
            ]
            for address in ep.addresses:
                ip = address.split("/")[0]
                if ":" in ip or any(ipaddress.ip_address(ip) in r for r in ranges):
                    continue
                ops.append(AddRoute(ns=host, dst=ip + "/32", ifname=shim))
        return tuple(ops)
