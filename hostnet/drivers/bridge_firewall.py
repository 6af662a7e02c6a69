"""nftables for bridge networks, as libnftables JSON. Pure: builds commands, runs nothing.

Everything lives in hostnet's own tables (``inet hostnet`` and ``bridge hostnet``); other
tables (iptables-nft, Docker, netavark, the user's) are never touched or flushed.

Per-packet and per-change cost does not depend on how many ports are published: ports
are elements of maps keyed by (address, protocol, port), networks are elements of sets
and verdict maps keyed by bridge name. Adding or removing one published port is one
``add element`` / ``delete element`` in one transaction.

    table inet hostnet
      set bridges          every hostnet bridge            (isolation, hairpin)
      set masq             bridges whose traffic is masqueraded when it leaves
      set nets4 / nets6    every hostnet subnet            (hairpin masquerade)
      map dnat4_addr/_port host ip . proto . port -> endpoint ip / endpoint port
      map any4_addr/_port  proto . port -> endpoint ip / port   (published on 0.0.0.0)
      (and dnat6_*, any6_* for IPv6; address and port live in two maps because
      libnftables 1.0.6 crashes parsing JSON for a map with a concatenated value)
      map egress           bridge -> jump n-<net>   (traffic leaving a bridge)
      map ingress          bridge -> jump i-<net>   (traffic entering a bridge)
      chain prerouting     DNAT for packets to a host address from elsewhere (never
                           to 127.0.0.0/8 or ::1: such packets from outside are forged)
      chain output         DNAT for packets from the host itself (localhost:PORT works)
      chain mark           marks packets from a bridge DNATed to a published port;
                           drops packets from a bridge from 127.0.0.0/8, and to it
                           unless the host DNATed their connection
      chain postrouting    masquerade: outbound, from the host itself, hairpin
      chain forward        established first, then the per-network chains: n-<net>
                           (egress) drops traffic into another hostnet bridge unless it
                           was DNATed to a published port, which goes on to i-<net>
                           (ingress) of the network it enters
    table bridge hostnet
      set icc_ports        veth ports of networks with inter-container traffic off
      chain forward        drop port-to-port traffic between two icc_ports, except
                           marked packets (to a published port, with bridge netfilter)
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from typing import Any

from hostnet.model import WILDCARD4, WILDCARD6, PortMapping

TABLE = "hostnet"
INET = {"family": "inet", "table": TABLE}
BRIDGE = {"family": "bridge", "table": TABLE}

Command = dict[str, Any]

# A packet from a hostnet bridge that was DNATed to a published port carries this bit
# of the packet mark, so the bridge family's icc-off drop lets it through when bridge
# netfilter hands it back to the bridge (hairpin to a published port). One bit, set
# with OR and tested with AND: other users of the mark keep theirs.
PUBLISHED_MARK = 0x00100000


# hostnet's base chains (name, hook, type, priority), each with rules from the start
_INET_BASE_CHAINS = (
    ("prerouting", "prerouting", "nat", -100),
    ("mark", "prerouting", "filter", -99),  # right after DNAT
    ("output", "output", "nat", -100),
    ("postrouting", "postrouting", "nat", 100),
    ("forward", "forward", "filter", 0),
)
#: The base chains of hostnet's two tables; each has rules while hostnet is set up, so
#: one without is a table flushed behind its back (`nft flush table`)
BASE_CHAINS = {
    f"inet {TABLE}": tuple(c[0] for c in _INET_BASE_CHAINS),
    f"bridge {TABLE}": ("forward",),
}


def batch(commands: Iterable[Command]) -> str:
    return json.dumps({"nftables": list(commands)}, separators=(",", ":"))


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _fib(flag: str) -> dict[str, Any]:
    return {"fib": {"result": "type", "flags": [flag]}}


def _rule(chain: str, *expr: Any, family: dict[str, str] = INET) -> Command:
    return {"add": {"rule": {**family, "chain": chain, "expr": list(expr)}}}


def _dnat(family: str, key: list[Any], maps: str) -> dict[str, Any]:
    return {
        "dnat": {
            "family": family,
            "addr": {"map": {"key": {"concat": key}, "data": f"@{maps}_addr"}},
            "port": {"map": {"key": {"concat": key}, "data": f"@{maps}_port"}},
        }
    }


def _daddr(proto: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": "daddr"}}


def _saddr(proto: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": "saddr"}}


_L4 = [_meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]


def base_setup() -> tuple[str, str]:
    """The shared tables, sets, maps and chains; and the batch that removes them."""
    # "create", not "add": if the tables exist, someone else owns them (another hostnet
    # state directory on this host, or leftovers), and the batch fails before changing
    # anything instead of adding a second copy of every rule.
    cmds: list[Command] = [
        {"create": {"table": {"family": "inet", "name": TABLE}}},
        {"create": {"table": {"family": "bridge", "name": TABLE}}},
    ]
    for name, kind, flags in (
        ("bridges", "ifname", None),
        ("masq", "ifname", None),
        ("nets4", "ipv4_addr", ["interval"]),
        ("nets6", "ipv6_addr", ["interval"]),
    ):
        spec: dict[str, Any] = {**INET, "name": name, "type": kind}
        if flags:
            spec["flags"] = flags
        cmds.append({"add": {"set": spec}})
    maps: list[tuple[str, Any, str]] = [
        ("egress", "ifname", "verdict"),
        ("ingress", "ifname", "verdict"),
    ]
    for fam in ("4", "6"):
        addr = f"ipv{fam}_addr"
        for prefix, key in (
            (f"dnat{fam}", [addr, "inet_proto", "inet_service"]),
            (f"any{fam}", ["inet_proto", "inet_service"]),
        ):
            maps.append((f"{prefix}_addr", key, addr))
            maps.append((f"{prefix}_port", key, "inet_service"))
    for name, key, value in maps:
        cmds.append({"add": {"map": {**INET, "name": name, "type": key, "map": value}}})
    for name, hook, kind, prio in _INET_BASE_CHAINS:
        cmds.append(
            {
                "add": {
                    "chain": {
                        **INET,
                        "name": name,
                        "type": kind,
                        "hook": hook,
                        "prio": prio,
                        "policy": "accept",
                    }
                }
            }
        )
    # A loopback destination arriving from outside is a forged packet (a neighbour can
    # send one to the host's MAC); a port published on 127.0.0.1 must not answer it
    # (CVE-2020-8558). Only packets the host itself sends reach 127.0.0.1 ports.
    cmds += [
        _rule(
            "prerouting",
            _match(_daddr("ip"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
            {"return": None},
        ),
        _rule("prerouting", _match(_daddr("ip6"), "::1"), {"return": None}),
    ]
    local = _match(_fib("daddr"), "local")
    for chain in ("prerouting", "output"):
        cmds += [
            _rule(chain, local, _dnat("ip", [_daddr("ip"), *_L4], "dnat4")),
            _rule(chain, local, _dnat("ip", list(_L4), "any4")),
            _rule(chain, local, _dnat("ip6", [_daddr("ip6"), *_L4], "dnat6")),
            _rule(chain, local, _dnat("ip6", list(_L4), "any6")),
        ]
    dnat_done = _match({"ct": {"key": "status"}}, "dnat", "in")
    mark = _meta("mark")
    from_bridge = _match(_meta("iifname"), "@bridges")
    cmds += [
        _rule(
            "mark",
            from_bridge,
            dnat_done,
            {"mangle": {"key": mark, "value": {"|": [mark, PUBLISHED_MARK]}}},
        ),
        # The other half of CVE-2020-8558: route_localnet on the bridges (for the DNAT of
        # 127.0.0.1:PORT from the host) makes the host take packets an endpoint sends to
        # or from 127.0.0.0/8 through its gateway, and a workload with NET_RAW would
        # reach the services the host keeps on localhost. A loopback source from a
        # bridge is always forged (it also primed a flow whose "replies" were let in);
        # a loopback destination passes only in a connection the host DNATed (the
        # replies of its own 127.0.0.1:PORT to an endpoint): not a flow an endpoint
        # started, nor an ICMP error "related" to the host's own loopback flows (a
        # review found both ways past a drop of new flows alone). IPv6: the kernel drops
        # ::1 from any other interface than lo; an IPv4-mapped source (::ffff:127.0.0.1,
        # which applications take for localhost) never belongs on the wire: dropped.
        _rule(
            "mark",
            from_bridge,
            _match(_saddr("ip"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
            {"drop": None},
        ),
        _rule(
            "mark",
            from_bridge,
            _match(_daddr("ip"), {"prefix": {"addr": "127.0.0.0", "len": 8}}),
            _match({"&": [{"ct": {"key": "status"}}, "dnat"]}, 0),
            {"drop": None},
        ),
        _rule(
            "mark",
            from_bridge,
            _match(_saddr("ip6"), {"prefix": {"addr": "::ffff:0.0.0.0", "len": 96}}),
            {"drop": None},
        ),
    ]
    to_bridge = _match(_meta("oifname"), "@bridges")
    cmds += [
        # from the host itself (incl. 127.0.0.1) to a published port
        _rule(
            "postrouting",
            dnat_done,
            to_bridge,
            _match(_fib("saddr"), "local"),
            {"masquerade": None},
        ),
        # hairpin: an endpoint reaching a published port through a host address
        _rule(
            "postrouting",
            dnat_done,
            to_bridge,
            _match({"payload": {"protocol": "ip", "field": "saddr"}}, "@nets4"),
            {"masquerade": None},
        ),
        _rule(
            "postrouting",
            dnat_done,
            to_bridge,
            _match({"payload": {"protocol": "ip6", "field": "saddr"}}, "@nets6"),
            {"masquerade": None},
        ),
        # outbound
        _rule(
            "postrouting",
            _match(_meta("iifname"), "@masq"),
            _match(_meta("oifname"), "@bridges", "!="),
            {"masquerade": None},
        ),
        _rule(
            "forward",
            _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
            {"accept": None},
        ),
        _rule("forward", {"vmap": {"key": _meta("iifname"), "data": "@egress"}}),
        _rule("forward", {"vmap": {"key": _meta("oifname"), "data": "@ingress"}}),
        {"add": {"set": {**BRIDGE, "name": "icc_ports", "type": "ifname"}}},
        {
            "add": {
                "chain": {
                    **BRIDGE,
                    "name": "forward",
                    "type": "filter",
                    "hook": "forward",
                    "prio": -200,
                    "policy": "accept",
                }
            }
        },
        _rule(
            "forward",
            _match({"&": [mark, PUBLISHED_MARK]}, PUBLISHED_MARK),
            {"accept": None},
            family=BRIDGE,
        ),
        _rule(
            "forward",
            _match(_meta("iifname"), "@icc_ports"),
            _match(_meta("oifname"), "@icc_ports"),
            {"drop": None},
            family=BRIDGE,
        ),
    ]
    undo = [
        {"delete": {"table": {"family": "inet", "name": TABLE}}},
        {"delete": {"table": {"family": "bridge", "name": TABLE}}},
    ]
    return batch(cmds), batch(undo)


def chain_names(network_id: str) -> tuple[str, str]:
    short = network_id[:12]
    return f"n-{short}", f"i-{short}"


def _prefix(net: str) -> dict[str, Any]:
    n = ipaddress.ip_network(net)
    return {"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}


def network_setup(
    *,
    network_id: str,
    bridge: str,
    subnets: Sequence[str],
    internal: bool,
    masquerade: bool,
) -> tuple[str, str]:
    """Per-network chains and set elements; and the batch that removes them."""
    egress, ingress = chain_names(network_id)
    oif = _meta("oifname")
    dnat_done = _match({"ct": {"key": "status"}}, "dnat", "in")
    cmds: list[Command] = [
        {"add": {"chain": {**INET, "name": egress}}},
        {"add": {"chain": {**INET, "name": ingress}}},
        # leaving the bridge: back into the same bridge (routed hairpin) is fine,
        # into another hostnet network is not (isolation), out of the host only if
        # the network is not internal
        _rule(egress, _match(oif, bridge), {"accept": None}),
    ]
    if not internal:
        # ...except to a port published through a host address (moby#38784): a
        # DNATed packet returns to the forward chain, where the ingress chain of the
        # network it enters decides, as for a packet from another host. Direct traffic
        # to another network's addresses is not DNATed and is dropped below. Internal
        # networks reach nothing beyond their bridge, published ports included.
        cmds.append(_rule(egress, dnat_done, {"return": None}))
    cmds.append(_rule(egress, _match(oif, "@bridges"), {"drop": None}))
    if internal:
        cmds.append(_rule(egress, {"drop": None}))
    # entering the bridge from elsewhere: only published ports (and replies, accepted
    # earlier as established)
    if not internal:
        cmds.append(_rule(ingress, dnat_done, {"accept": None}))
    cmds.append(_rule(ingress, {"drop": None}))
    elements: list[tuple[str, list[Any]]] = [("bridges", [bridge])]
    if masquerade and not internal:
        elements.append(("masq", [bridge]))
    v4 = [_prefix(s) for s in subnets if ":" not in s]
    v6 = [_prefix(s) for s in subnets if ":" in s]
    if v4:
        elements.append(("nets4", v4))
    if v6:
        elements.append(("nets6", v6))
    for name, elem in elements:
        cmds.append({"add": {"element": {**INET, "name": name, "elem": elem}}})
    verdicts = [
        ("egress", [[bridge, {"jump": {"target": egress}}]]),
        ("ingress", [[bridge, {"jump": {"target": ingress}}]]),
    ]
    for name, elem in verdicts:
        cmds.append({"add": {"element": {**INET, "name": name, "elem": elem}}})
    undo: list[Command] = [
        {"delete": {"element": {**INET, "name": name, "elem": elem}}}
        for name, elem in verdicts + elements
    ]
    for chain in (egress, ingress):
        undo.append({"flush": {"chain": {**INET, "name": chain}}})
        undo.append({"delete": {"chain": {**INET, "name": chain}}})
    return batch(cmds), batch(undo)


def port_elements(
    mappings: Sequence[PortMapping], endpoint_ips: Sequence[str]
) -> list[tuple[str, list[Any]]]:
    """(map name, elements) for published ports of one endpoint."""
    ip4 = next((ip for ip in endpoint_ips if ":" not in ip), None)
    ip6 = next((ip for ip in endpoint_ips if ":" in ip), None)
    out: dict[str, list[Any]] = {}
    for m in mappings:
        fam = "6" if ":" in m.host_ip else "4"
        target = ip6 if fam == "6" else ip4
        if target is None:
            continue  # checked by the driver before planning
        if m.host_ip in (WILDCARD4, WILDCARD6):
            prefix = f"any{fam}"
            key: Any = {"concat": [m.protocol, m.host_port]}
        else:
            prefix = f"dnat{fam}"
            key = {"concat": [m.host_ip, m.protocol, m.host_port]}
        out.setdefault(f"{prefix}_addr", []).append([key, target])
        out.setdefault(f"{prefix}_port", []).append([key, m.container_port])
    return sorted(out.items())


def endpoint_setup(
    *, mappings: Sequence[PortMapping], endpoint_ips: Sequence[str], icc_port: str | None
) -> tuple[str, str] | None:
    """Elements for one endpoint (published ports, icc-off port); None if nothing."""
    adds: list[Command] = []
    dels: list[Command] = []
    for name, elem in port_elements(mappings, endpoint_ips):
        adds.append({"add": {"element": {**INET, "name": name, "elem": elem}}})
        dels.append({"delete": {"element": {**INET, "name": name, "elem": elem}}})
    if icc_port is not None:
        adds.append({"add": {"element": {**BRIDGE, "name": "icc_ports", "elem": [icc_port]}}})
        dels.append({"delete": {"element": {**BRIDGE, "name": "icc_ports", "elem": [icc_port]}}})
    if not adds:
        return None
    return batch(adds), batch(dels)
