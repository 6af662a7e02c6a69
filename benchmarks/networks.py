#!/usr/bin/env python3
"""Bridge networks as they accumulate on one host: creating the k-th, and connecting a
workload to its k-th network.

    sudo python3 benchmarks/networks.py -n 200     # about 1 minute on 2 cores

Two phases, each method in its own throwaway host namespace:

1. **create**: N bridge networks one after the other (explicit /24 subnets; all stay),
   two methods taking turns every ``--batch`` networks:
   - ``floor``: the kernel work hostnet's bridge driver asks for a network, by hand,
     over sockets opened once: the bridge (its own MAC, no multicast snooping, up,
     one RTM_NEWLINK), the gateway address, ``route_localnet`` and ``accept_ra`` from a
     short-lived thread in the host namespace, and the network's nftables chains and
     set elements in one libnftables transaction (into hostnet's tables, made once
     before timing, as in benchmarks/bridge.py);
   - ``hostnet``: ``Controller.create_network(name, driver="bridge", subnet=...)``, with
     everything its rules add (observing the host, IPAM against every other network,
     the journal, the records).
2. **connect**: W workloads (namespaces made before timing), each connected in turn to
   K of hostnet's networks (``--per-workload``): the k-th connect of a workload against
   its first, whose cost must not grow with the networks the workload is already on
   or with the N networks of the host.

Reports medians, p95, ratios and growth (median of the last 10 % against the first
10 %). Every namespace is named hnbnw<pid>-... and removed in a ``finally`` block.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from baselines.kernel import (
    RTM_NEWADDR,
    RTM_NEWLINK,
    Wire,
    addr_msg,
    bridge_msg,
    in_thread,
    make_namespace,
    net_namespace_objects,
    open_ns,
    prepare_run_dir,
    route_socket,
    wait_for_cleanup,
)
from common import (
    Timer,
    cleanup_signals,
    drift,
    ignore_signals,
    machine_info,
    ratio_table,
    rotation,
    summarize,
    sweep_namespaces,
    unique_prefix,
    versus,
    write_results,
)

NLM_F_CREATE, NLM_F_EXCL, NLM_F_ECHO = 0x400, 0x200, 0x8


class Floor:
    """The floor's host: sockets opened once, the base firewall made before timing."""

    def __init__(self, host: str) -> None:
        from hostnet.backends.netlink.nft import NftContext
        from hostnet.drivers import bridge_firewall as fw

        self.host = host
        self.fd = open_ns(host)
        self.wire, self.nft = in_thread(self.fd, lambda: (Wire(route_socket()), NftContext()))
        self.nft.run(fw.base_setup()[0])

    def create(self, i: int, net: str) -> None:
        from hostnet.drivers import bridge_firewall as fw

        bridge = f"fl{i}"
        echo = self.wire.request(
            bridge_msg(bridge), RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO
        )
        assert echo is not None
        index = int.from_bytes(echo[20:24], sys.byteorder)
        network = ipaddress.ip_network(net)
        gateway = str(next(network.hosts()))
        self.wire.request(
            addr_msg(index, gateway, network.prefixlen, str(network.broadcast_address)),
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
        )

        def sysctls() -> None:
            for key, value in (
                (f"net/ipv4/conf/{bridge}/route_localnet", b"1"),
                (f"net/ipv6/conf/{bridge}/accept_ra", b"0"),
            ):
                fd = os.open(f"/proc/sys/{key}", os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, value)
                finally:
                    os.close(fd)

        in_thread(self.fd, sysctls)
        commands, _undo = fw.network_setup(
            network_id=f"{i:064x}", bridge=bridge, subnets=[net], internal=False, masquerade=True
        )
        self.nft.run(commands)

    def close(self) -> None:
        self.wire.close()
        self.nft.close()
        os.close(self.fd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="networks per method (200)")
    parser.add_argument("--batch", type=int, default=10, help="networks per turn (10)")
    parser.add_argument("--workloads", type=int, default=10, help="phase 2 workloads (10)")
    parser.add_argument("--per-workload", type=int, default=20, help="networks each (20)")
    parser.add_argument("--out", help="results file (default benchmarks/results/networks.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    if args.per_workload > args.n:
        parser.error("--per-workload is at most -n")

    from hostnet import Controller
    from hostnet.backends.netlink import NetlinkBackend

    # The kernel destroys deleted namespaces later, holding the lock every netlink
    # change takes (a host namespace with 200 bridges, for a second or more): wait for
    # what an earlier run left, so it does not fall on this run's timings.
    waited = wait_for_cleanup(0)
    baseline = net_namespace_objects()
    machine = machine_info()
    prefix = unique_prefix("nw")
    state = tempfile.mkdtemp(prefix="hostnet-bench-networks-")
    create: dict[str, list[float]] = {"floor": [], "hostnet": []}
    by_position: list[list[float]] = [[] for _ in range(args.per_workload)]
    floor: Floor | None = None
    ctl: Any = None
    try:
        with cleanup_signals():
            prepare_run_dir()
            for name in ("floor", "hostnet"):
                make_namespace(f"{prefix}{name}")
            floor = Floor(f"{prefix}floor")
            ctl = Controller(
                host=f"{prefix}hostnet", state_dir=state, backend=NetlinkBackend(),
                forwarding=True,
            )  # fmt: skip
            nets = []
            steps = {
                "floor": lambda i: floor.create(i, f"10.{100 + i // 256}.{i % 256}.0/24"),
                "hostnet": lambda i: nets.append(
                    ctl.create_network(f"n{i}", driver="bridge",
                                       subnet=f"10.{100 + i // 256}.{i % 256}.0/24")
                ),
            }  # fmt: skip
            for turn, start in enumerate(range(0, args.n, args.batch)):
                for method in rotation(list(steps), turn):
                    for i in range(start, min(start + args.batch, args.n)):
                        with Timer() as t:
                            steps[method](i)
                        create[method].append(t.ms)
            workloads = [ctl.create_namespace(f"{prefix}w{j}") for j in range(args.workloads)]
            step = args.n // args.per_workload
            for k in range(args.per_workload):
                for j, workload in enumerate(workloads):
                    # each workload on its own spread of the networks
                    net = nets[(k * step + j) % args.n]
                    with Timer() as t:
                        net.connect(workload)
                    by_position[k].append(t.ms)
    finally:
        with ignore_signals():
            if ctl is not None:
                for j in range(args.workloads):
                    try:
                        ctl.delete_namespace(f"{prefix}w{j}")
                    except Exception:  # (swept below)
                        pass
                ctl.close()
            if floor is not None:
                floor.close()
            left = sweep_namespaces(prefix)
            shutil.rmtree(state, ignore_errors=True)
            wait_for_cleanup(baseline)  # (for whatever runs next)
    if left:
        print(f"could not remove: {left}", file=sys.stderr)
        return 1

    results = {name: {"create": summarize(s)} for name, s in create.items()}
    growth = {name: drift(s) for name, s in create.items()}
    print(f"creating {args.n} bridge networks on one host, per method (all kept), ms")
    print(ratio_table(results, baseline="floor", metrics=["create"]))
    pair = versus(create["hostnet"], create["floor"], args.batch)
    print(f"  hostnet over the floor: {pair['paired']:.2f}x paired, +{pair['overhead']:.2f} ms")
    for name, g in growth.items():
        print(f"  {name:8s} first 10 % {g['first']:.2f}  last 10 % {g['last']:.2f}"
              f"  growth {g['ratio']:.2f}x")  # fmt: skip
    first = statistics.median(by_position[0])
    last = statistics.median(by_position[-1])
    print(
        f"connecting {args.workloads} workloads to {args.per_workload} networks each "
        f"(of {args.n}): network #1 {first:.2f} ms, #{args.per_workload} {last:.2f} ms "
        f"({last / first:.2f}x)"
    )
    if not args.no_write:
        path = write_results(
            "networks",
            {
                "params": vars(args),
                "waited_for_netns_cleanup_s": waited,
                "create": {"stats": results, "growth": growth, "versus_floor": pair},
                "connect_by_position": [summarize(s) for s in by_position],
                "samples_ms": {"create": create, "connect_by_position": by_position},
            },
            path=args.out,
            machine=machine,
        )
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
