#!/usr/bin/env python3
"""The kernel's cost of adding a port to a bridge as the bridge fills, per bridge setting.

    sudo python3 benchmarks/bridge_ports.py -n 1000        # about 1 minute on 2 cores

No hostnet call is timed: this measures the kernel under the floor's requests of
benchmarks/bridge.py (a veth created down with its peer `eth0` in a fresh namespace, in
the bridge and a link group; the host end's hairpin on and no IPv6 link-local; the host
end up), and what the settings of the bridge itself do to that cost. It is the
measurement behind two of hostnet's bridge choices (docs/decisions.md): no multicast
snooping, and a MAC of the bridge's own.

Variants, each a bridge in a throwaway host namespace of its own:
- kernel:   what the kernel makes by default (multicast snooping on, the MAC of the
            lowest port);
- mac:      a MAC of its own (the kernel stops recomputing the bridge id from all ports);
- nosnoop:  multicast snooping off (the kernel stops re-arming every port's multicast
            timers when a port joins or leaves);
- hostnet:  both, which is how hostnet makes its bridges;
- onens:    hostnet's bridge, but every peer in ONE namespace (named e0, e1, ...), not one
            namespace each. The kernel finds the id of a veth peer's namespace by walking
            the host namespace's whole table of namespace ids (``peernet2id_alloc``) every
            time it describes the host end (each notification and echo, several per port):
            this variant shows what that walk adds as the peers' namespaces grow in number.

The variants take turns adding --batch ports each, the order rotating every round, until
each bridge has N; every port's requests are timed together. Then each deletes 50 ports
one by one and the rest as one link group. Reported per variant: the median and p95 of
a port's cost, the median of the first and of the last 10 % (growth), the group delete.

Every namespace is named hnbbp<pid>-... and removed in a ``finally`` block, also on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from baselines import kernel
from baselines.kernel import NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, RTM_DELLINK, RTM_NEWLINK, Wire
from common import (
    cleanup_signals,
    drift,
    ignore_signals,
    machine_info,
    rotation,
    summarize,
    sweep_namespaces,
    unique_prefix,
    write_results,
)

GROUP = 7
VARIANTS = {
    "kernel": {"mac": False, "snooping": True},
    "mac": {"mac": True, "snooping": True},
    "nosnoop": {"mac": False, "snooping": False},
    "hostnet": {"mac": True, "snooping": False},
    "onens": {"mac": True, "snooping": False, "shared_peer_namespace": True},
}


@dataclass
class Bridge:
    key: str
    host: str
    wire: Wire
    index: int
    targets: list[str]
    add_ms: list[float] = field(default_factory=list)
    delete_ms: list[float] = field(default_factory=list)
    group_delete_ms: float = 0.0


def shared_peers(key: str) -> bool:
    """Whether variant ``key`` puts every peer in one namespace."""
    return bool(VARIANTS[key].get("shared_peer_namespace"))


def bridge_msg(name: str, *, mac: bool, snooping: bool) -> bytes:
    from hostnet.backends.netlink import rtnl

    attrs = [rtnl.string(rtnl.IFLA_IFNAME, name), rtnl.u32(rtnl.IFLA_MTU, 1500)]
    if mac:
        attrs.append(rtnl.mac(rtnl.IFLA_ADDRESS, kernel.random_mac()))
    info = [rtnl.string(rtnl.IFLA_INFO_KIND, "bridge")]
    if not snooping:
        info.append(rtnl.nested(rtnl.IFLA_INFO_DATA, [rtnl.u8(rtnl.IFLA_BR_MCAST_SNOOPING, 0)]))
    attrs.append(rtnl.nested(rtnl.IFLA_LINKINFO, info))
    return rtnl.ifinfo(*attrs, flags=1, change=1)


def add_port(bridge: Bridge, i: int) -> None:
    fd = kernel.open_ns(bridge.targets[i])
    try:
        start = time.perf_counter_ns()
        echo = bridge.wire.request(
            kernel.veth_msg(
                name=f"p{i}",
                peer=f"e{i}" if shared_peers(bridge.key) else "eth0",
                peer_ns_fd=fd,
                peer_mac=kernel.random_mac(),
                mtu=1500,
                master=bridge.index,
                group=GROUP,
                up=False,
            ),
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )
        if echo is None:
            raise RuntimeError("the kernel did not echo the new veth")
        index = struct.unpack_from("=i", echo, 20)[0]
        bridge.wire.request(
            kernel.setlink_msg(index, [kernel.hairpin(), kernel.no_linklocal()]), RTM_NEWLINK
        )
        bridge.wire.request(kernel.setlink_msg(index, [], up=True), RTM_NEWLINK)
        bridge.add_ms.append((time.perf_counter_ns() - start) / 1e6)
    finally:
        os.close(fd)


def delete_port(bridge: Bridge, i: int) -> None:
    start = time.perf_counter_ns()
    bridge.wire.request(kernel.dellink_msg(name=f"p{i}"), RTM_DELLINK)
    bridge.delete_ms.append((time.perf_counter_ns() - start) / 1e6)


def report(bridges: Sequence[Bridge]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(
        f"\n{'variant':<9} {'median':>7} {'p95':>7} {'first 10%':>10} {'last 10%':>9} "
        f"{'growth':>7} {'delete 1':>9} {'group delete':>13}"
    )
    for b in bridges:
        add, grow, one = summarize(b.add_ms), drift(b.add_ms), summarize(b.delete_ms)
        rest = len(b.add_ms) - len(b.delete_ms)
        print(
            f"{b.key:<9} {add['median']:7.3f} {add['p95']:7.3f} {grow['first']:10.3f} "
            f"{grow['last']:9.3f} {grow['ratio']:6.2f}x {one['median']:9.2f} "
            f"{b.group_delete_ms:8.0f} ms ({rest})"
        )
        out[b.key] = {
            "settings": VARIANTS[b.key],
            "add_port": add,
            "growth_first_vs_last_10pct": grow,
            "delete_one": one,
            "group_delete_ms": b.group_delete_ms,
            "group_deleted": rest,
            "samples_ms": {"add_port": b.add_ms, "delete_one": b.delete_ms},
        }
    base = out.get("kernel")
    if base:
        print("\nlast 10 % against the kernel's defaults:")
        for key, data in out.items():
            ratio = (
                data["growth_first_vs_last_10pct"]["last"]
                / (base["growth_first_vs_last_10pct"]["last"])
            )
            print(f"  {key:<9} {ratio:5.2f}x")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="ports per bridge (1000)")
    parser.add_argument("--batch", type=int, default=10, help="ports per variant per turn")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which, in order")
    parser.add_argument("--out", help="result file (results/bridge_ports.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    keys = [k for k in args.variants.split(",") if k]
    if not keys or any(k not in VARIANTS for k in keys) or args.n < 60 or args.batch < 1:
        parser.error(f"variants from {sorted(VARIANTS)}, -n >= 60, --batch >= 1")
    if os.geteuid() != 0:
        print("needs root (network namespaces and links)", file=sys.stderr)
        return 2
    machine = machine_info()
    prefix = unique_prefix("bp")
    bridges: list[Bridge] = []
    try:
        with cleanup_signals():
            for key in keys:
                host = f"{prefix}{key}"
                kernel.make_namespace(host)
                settings = VARIANTS[key]
                if shared_peers(key):
                    targets = [f"{prefix}{key}-peers"] * args.n
                    kernel.make_namespace(targets[0])
                else:
                    targets = [f"{prefix}{key}-{i}" for i in range(args.n)]
                    for name in targets:
                        kernel.make_namespace(name)
                fd = kernel.open_ns(host)
                try:
                    wire = Wire(kernel.in_thread(fd, kernel.route_socket))
                finally:
                    os.close(fd)
                echo = wire.request(
                    bridge_msg("br0", mac=settings["mac"], snooping=settings["snooping"]),
                    RTM_NEWLINK,
                    NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
                )
                assert echo is not None
                index = struct.unpack_from("=i", echo, 20)[0]
                bridges.append(Bridge(key, host, wire, index, targets))
            print(f"{len(bridges)} bridges, {args.n} ports each, turns of {args.batch}")
            for turn, start in enumerate(range(0, args.n, args.batch)):
                for bridge in rotation(bridges, turn):
                    for i in range(start, min(start + args.batch, args.n)):
                        add_port(bridge, i)
            sample = range(0, args.n, max(1, args.n // 50))
            for turn, i in enumerate(sample):
                for bridge in rotation(bridges, turn):
                    delete_port(bridge, i)
            for bridge in bridges:
                start = time.perf_counter_ns()
                bridge.wire.request(kernel.dellink_msg(group=GROUP), RTM_DELLINK)
                bridge.group_delete_ms = (time.perf_counter_ns() - start) / 1e6
            results = report(bridges)
    finally:
        with ignore_signals():
            for bridge in bridges:
                bridge.wire.close()
            left = sweep_namespaces(prefix)
            if left:
                print(f"could not remove: {left}", file=sys.stderr)
    if not args.no_write:
        path = write_results(
            "bridge_ports",
            {"params": {"n": args.n, "batch": args.batch, "variants": keys}, "variants": results},
            path=args.out,
            machine=machine,
        )
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
