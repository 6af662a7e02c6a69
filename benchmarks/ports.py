#!/usr/bin/env python3
"""Published ports: what adding the k-th published port costs as their number grows to
10,000, in hostnet, in libnftables map elements (the floor) and in a naive chain of one
DNAT rule per port, measured in the same run.

    sudo python3 benchmarks/ports.py                  # 10,000 ports per method
    sudo python3 benchmarks/ports.py --ports 2000     # quicker

- hostnet:  one bridge network; ports arrive --per-endpoint (10) at a time, with a new
            endpoint each: Network.connect(ns, publish=["P:80", "P+1:80", ...]). hostnet
            has no call that publishes a port on an existing endpoint, so a connect is
            the unit: its time divided by the ports it published is the cost per port,
            and it includes a veth, an address and a route that do not depend on the
            number of ports. The part spent in the connect's one nftables transaction is
            timed too, by wrapping the backend's ``apply`` (a perf_counter_ns pair around
            each op: instrumentation of about a microsecond, inside the connect time).
- floor:    one libnftables transaction per port adding its two elements (address and
            port) to the maps of hostnet's tables (made once with bridge_firewall's
            base_setup and network_setup): the same JSON hostnet sends, one port at a time.
- naive:    one libnftables transaction per port appending a rule ``tcp dport P dnat ip
            to IP:80`` to a NAT prerouting chain, as scripts and older tools do (and as
            iptables-based CNI portmap and netavark do, with a chain per container).

Each method has its own throwaway host namespace. The methods take turns: every round,
hostnet connects one endpoint, then the floor and the naive chain add as many ports (the
order rotating each round). Reported per method: the median cost per port of the first
100 and of the last 100 additions and their ratio (target for hostnet: the 10,000th port
costs at most 1.2x the first), and the median of each tenth of the run.

Every namespace is named hnbbp<pid>-..., and all of them are removed in a ``finally``
block, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from baselines import kernel
from common import (
    Target,
    Timer,
    cleanup_signals,
    ignore_signals,
    machine_info,
    rotation,
    summarize,
    sweep_namespaces,
    unique_prefix,
    write_results,
)

FIRST_PORT = 10000
WARM_PORT = 40000
CONTAINER_PORT = 80
EDGE = 100  # "the first 100 and the last 100 additions"
GROWTH_LIMIT = 1.2
SUBNETS = {"hostnet": "10.211.0.0/16", "floor": "10.212.0.0/16", "naive": "10.213.0.0/16"}
NAIVE_TABLE = {"family": "ip", "table": "hnbnaive"}


def endpoint_ip(subnet: str, endpoint: int) -> str:
    """The address of the ``endpoint``-th endpoint (0-based) of ``subnet``: .2 on."""
    return str(ipaddress.ip_network(subnet).network_address + 2 + endpoint)


class Hostnet:
    key = "hostnet"
    label = "hostnet Network.connect"

    def __init__(self, host: str, per_endpoint: int) -> None:
        import hostnet

        self.per_endpoint = per_endpoint
        self.state_dir = tempfile.mkdtemp(prefix="hnbb-state-")
        self.ctl = hostnet.Controller(
            host=host, state_dir=self.state_dir, backend="netlink", forwarding=True
        )
        self.net = self.ctl.create_network("bench", driver="bridge", subnet=SUBNETS["hostnet"])
        self.nft_ms: list[float] = []
        self._timing = False
        backend = self.ctl.backend
        original = backend.apply

        def apply(op: Any) -> None:  # times the nftables transactions of a connect
            if not self._timing or type(op).__name__ != "NftBatch":
                return original(op)
            start = time.perf_counter_ns()
            try:
                return original(op)
            finally:
                self.nft_ms.append((time.perf_counter_ns() - start) / 1e6)

        backend.apply = apply  # type: ignore[method-assign]

    def publish(self, ns: str, ports: Sequence[int], *, timed: bool = True) -> None:
        before = len(self.nft_ms)
        self._timing = timed
        try:
            self.net.connect(ns, publish=[f"{p}:{CONTAINER_PORT}" for p in ports])
        finally:
            self._timing = False
        if timed and len(self.nft_ms) != before + 1:
            raise RuntimeError("a connect with published ports sent no (or several) nft batches")

    def close(self) -> None:
        self.ctl.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class NftMethod:
    """A libnftables context in a throwaway host namespace."""

    key = ""
    label = ""

    def __init__(self, host: str) -> None:
        from hostnet.backends.netlink.nft import NftContext

        fd = kernel.open_ns(host)
        try:
            self.nft = kernel.in_thread(fd, NftContext)
        finally:
            os.close(fd)

    def add(self, port: int, ip: str) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        self.nft.close()


class Floor(NftMethod):
    key = "floor"
    label = "libnftables map elements (floor)"

    def __init__(self, host: str) -> None:
        subnet = SUBNETS["floor"]
        net = ipaddress.ip_network(subnet)
        kernel.build_bridge_host(
            host,
            bridge="br-floor",
            gateway=str(net.network_address + 1),
            prefixlen=net.prefixlen,
            subnet=subnet,
            network_id="f" * 64,
        )
        super().__init__(host)

    def add(self, port: int, ip: str) -> None:
        self.nft.run(kernel.port_batch("add", [(port, ip, CONTAINER_PORT)]))

    def remove(self, port: int, ip: str) -> None:
        self.nft.run(kernel.port_batch("delete", [(port, ip, CONTAINER_PORT)]))

    def count(self) -> int:
        listing = self.nft.run("list map inet hostnet any4_port") or {}
        maps = [i["map"] for i in listing.get("nftables", []) if "map" in i]
        return len(maps[0].get("elem", [])) if maps else 0


class Naive(NftMethod):
    key = "naive"
    label = "one DNAT rule per port (naive)"

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.nft.run(
            json.dumps(
                {
                    "nftables": [
                        {"add": {"table": {"family": "ip", "name": "hnbnaive"}}},
                        {
                            "add": {
                                "chain": {
                                    **NAIVE_TABLE,
                                    "name": "prerouting",
                                    "type": "nat",
                                    "hook": "prerouting",
                                    "prio": -100,
                                    "policy": "accept",
                                }
                            }
                        },
                    ]
                }
            )
        )

    def add(self, port: int, ip: str) -> None:
        rule = {
            **NAIVE_TABLE,
            "chain": "prerouting",
            "expr": [
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                        "right": port,
                    }
                },
                {"dnat": {"addr": ip, "port": CONTAINER_PORT}},
            ],
        }
        self.nft.run(json.dumps({"nftables": [{"add": {"rule": rule}}]}, separators=(",", ":")))

    def flush(self) -> None:
        self.nft.run("flush chain ip hnbnaive prerouting")

    def count(self) -> int:
        listing = self.nft.run("list chain ip hnbnaive prerouting") or {}
        return sum(1 for i in listing.get("nftables", []) if "rule" in i)


# -- measuring -------------------------------------------------------------------------


def hostnet_ports(hn: Hostnet) -> set[int]:
    """The ports in hostnet's any4_port map (read through libnftables, not timed)."""
    from hostnet.backends.netlink.nft import NftContext

    assert hn.ctl.host_ns is not None
    fd = kernel.open_ns(hn.ctl.host_ns)
    try:
        nft = kernel.in_thread(fd, NftContext)
    finally:
        os.close(fd)
    try:
        listing = nft.run("list map inet hostnet any4_port") or {}
    finally:
        nft.close()
    maps = [i["map"] for i in listing.get("nftables", []) if "map" in i]
    return {e[0]["concat"][1] for e in (maps[0].get("elem", []) if maps else [])}


class Run:
    def __init__(self, args: argparse.Namespace, prefix: str) -> None:
        self.args = args
        self.prefix = prefix
        self.per = args.per_endpoint
        self.endpoints = math.ceil(args.ports / self.per)
        self.hostnet: Hostnet | None = None
        self.others: list[NftMethod] = []
        self.connect_ms: list[float] = []  # hostnet, per connect
        self.port_ms: dict[str, list[float]] = {"floor": [], "naive": []}
        self.started = time.monotonic()
        self.disconnect_all_ms: float | None = None
        self.hostnet_nft: list[float] = []  # hostnet, the nft transaction of each connect

    def log(self, text: str) -> None:
        print(f"  [{time.monotonic() - self.started:7.1f} s] {text}", flush=True)

    def build(self) -> None:
        for key in ("hostnet", "floor", "naive"):
            kernel.make_namespace(f"{self.prefix}{key[0]}-host")
        for i in range(self.endpoints + self.args.warmup):
            kernel.make_namespace(f"{self.prefix}t{i}")
        self.hostnet = Hostnet(f"{self.prefix}h-host", self.per)
        self.others = [Floor(f"{self.prefix}f-host"), Naive(f"{self.prefix}n-host")]
        self.log(f"{self.endpoints + self.args.warmup + 3} namespaces ready")

    def warm_up(self) -> None:
        """Exercise every method and check that the ports land where they should."""
        assert self.hostnet is not None
        hn = self.hostnet
        for w in range(self.args.warmup):
            ports = [WARM_PORT + w * self.per + j for j in range(self.per)]
            hn.publish(f"{self.prefix}t{self.endpoints + w}", ports, timed=False)
            if not set(ports) <= hostnet_ports(hn):
                raise RuntimeError("hostnet: the published ports are not in its map")
        if hn.net.disconnect_all() != self.args.warmup or hostnet_ports(hn):
            raise RuntimeError("hostnet: disconnect_all left ports behind")
        for method in self.others:
            for j in range(self.per):
                method.add(WARM_PORT + j, endpoint_ip(SUBNETS[method.key], 0))
            if method.count() != self.per:
                raise RuntimeError(f"{method.label}: {method.count()} entries, not {self.per}")
            if isinstance(method, Floor):
                for j in range(self.per):
                    method.remove(WARM_PORT + j, endpoint_ip(SUBNETS["floor"], 0))
            elif isinstance(method, Naive):
                method.flush()
            if method.count() != 0:
                raise RuntimeError(f"{method.label}: entries left after the warm-up")
        self.log("warm-up done: every method added and removed checked ports")

    def measure(self) -> None:
        assert self.hostnet is not None
        hn = self.hostnet
        names = ["hostnet", *(m.key for m in self.others)]
        by_key: dict[str, Callable[[int], None]] = {}

        def hostnet_round(e: int) -> None:
            ports = self._ports(e)
            with Timer() as t:
                hn.publish(f"{self.prefix}t{e}", ports)
            self.connect_ms.append(t.ms)

        def nft_round(method: NftMethod) -> Callable[[int], None]:
            def run(e: int) -> None:
                ip = endpoint_ip(SUBNETS[method.key], e)
                for port in self._ports(e):
                    with Timer() as t:
                        method.add(port, ip)
                    self.port_ms[method.key].append(t.ms)

            return run

        by_key["hostnet"] = hostnet_round
        for method in self.others:
            by_key[method.key] = nft_round(method)
        for e in range(self.endpoints):
            gc.collect()  # outside the timings
            for key in rotation(names, e):
                by_key[key](e)
            if (e + 1) % max(1, self.endpoints // 5) == 0:
                self.log(f"{(e + 1) * self.per} ports per method")
        self.hostnet_nft = list(hn.nft_ms)
        expected = self.args.ports
        got = {"hostnet": len(hostnet_ports(hn))} | {m.key: m.count() for m in self.others}
        if any(count != expected for count in got.values()):
            raise RuntimeError(f"expected {expected} ports per method, found {got}")
        with Timer() as t:
            hn.net.disconnect_all()
        self.disconnect_all_ms = t.ms

    def _ports(self, e: int) -> list[int]:
        first = e * self.per
        return [FIRST_PORT + first + j for j in range(min(self.per, self.args.ports - first))]

    def close(self) -> None:
        for method in [self.hostnet, *self.others]:
            if method is None:
                continue
            try:
                method.close()
            except Exception as exc:
                print(f"closing {method.label}: {exc}", file=sys.stderr)
        self.hostnet, self.others = None, []


# -- reporting -------------------------------------------------------------------------


def per_port_series(run: Run) -> dict[str, list[float]]:
    """Cost per port, one value per port added, in the order they were added: for
    hostnet, each connect's time divided by its ports, repeated for each of them."""
    hn: list[float] = []
    hn_nft: list[float] = []
    for index, (total, nft) in enumerate(zip(run.connect_ms, run.hostnet_nft, strict=True)):
        count = len(run._ports(index))
        hn += [total / count] * count
        hn_nft += [nft / count] * count
    return {"hostnet": hn, "hostnet_nft": hn_nft, **run.port_ms}


def edges(series: Sequence[float], edge: int) -> dict[str, float]:
    first = statistics.median(series[:edge])
    last = statistics.median(series[-edge:])
    return {"first": first, "last": last, "ratio": last / first if first else math.nan}


def deciles(series: Sequence[float]) -> list[float]:
    size = len(series) / 10
    return [
        statistics.median(
            series[round(i * size) : max(round((i + 1) * size), round(i * size) + 1)]
        )
        for i in range(10)
    ]


LABELS = {
    "hostnet": "hostnet connect, per port",
    "hostnet_nft": "  of which its nft transaction",
    "floor": "libnftables element (floor)",
    "naive": "one DNAT rule per port (naive)",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=10_000, help="ports per method (10000)")
    parser.add_argument(
        "--per-endpoint", type=int, default=10, help="ports per hostnet connect (10)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed connects (3)")
    parser.add_argument("--out", type=Path, help="result file (results/ports.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("ports.py needs root (namespaces, links, nftables)", file=sys.stderr)
        return 2
    if args.per_endpoint < 1 or args.ports < 2 * EDGE or args.warmup < 1:
        parser.error(f"--ports must be at least {2 * EDGE}; --per-endpoint and --warmup >= 1")
    if math.ceil(args.ports / args.per_endpoint) > 1000:
        parser.error("a bridge takes at most 1023 ports: raise --per-endpoint")

    machine = machine_info()
    print(
        f"{machine['date']}  kernel {machine['kernel']}  python {machine['python']}  "
        f"{machine['cpus']} CPUs  load {machine['loadavg']}"
    )
    prefix = unique_prefix("bp")
    kernel.prepare_run_dir()
    run = Run(args, prefix)
    print(
        f"{args.ports} ports per method; hostnet {args.per_endpoint} per connect "
        f"({run.endpoints} endpoints); names {prefix}*"
    )
    started = time.monotonic()
    leftovers: list[str] = []
    try:
        with cleanup_signals():
            run.build()
            run.warm_up()
            run.measure()
    finally:
        with ignore_signals():
            run.close()
            for thread in threading.enumerate():
                if thread is not threading.current_thread():
                    thread.join(timeout=5)
            sweep_namespaces(prefix)
            out = subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=False
            ).stdout
            leftovers = [ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix)]
            print(
                f"LEFT BEHIND: {leftovers}"
                if leftovers
                else f"cleanup: `ip netns list` shows no {prefix}* namespace"
            )
    elapsed = time.monotonic() - started
    assert run.hostnet is None
    series = per_port_series(run)
    stats: dict[str, Any] = {}
    print(f"\ncost per port added, ms (median of the first and last {EDGE} additions):")
    for key, values in series.items():
        e = edges(values, EDGE)
        stats[key] = {
            "label": LABELS[key],
            "per_port": summarize(values),
            "first_vs_last": e,
            "deciles": deciles(values),
        }
        print(
            f"  {LABELS[key]:<34} first {e['first']:.3f}  last {e['last']:.3f}  "
            f"last/first {e['ratio']:.2f}x   median {stats[key]['per_port']['median']:.3f}"
        )
    print("\nmedian cost per port in each tenth of the run, ms:")
    print("  " + " " * 34 + "".join(f"{f'{10 * (i + 1)}%':>8}" for i in range(10)))
    for key, data in stats.items():
        print(f"  {LABELS[key]:<34}" + "".join(f"{v:8.3f}" for v in data["deciles"]))
    print(
        f"\nhostnet connect (all {args.per_endpoint} ports): median "
        f"{statistics.median(run.connect_ms):.2f} ms; its nft transaction "
        f"{statistics.median(run.hostnet_nft):.3f} ms; disconnect_all of {run.endpoints} "
        f"endpoints ({args.ports} ports): {run.disconnect_all_ms:.0f} ms"
    )
    growth = stats["hostnet"]["first_vs_last"]
    targets = [
        Target(
            name=f"hostnet: port {args.ports} costs <= {GROWTH_LIMIT}x port 1 "
            f"(median per port, last {EDGE} vs first {EDGE})",
            passed=growth["ratio"] <= GROWTH_LIMIT,
            detail=f"{growth['first']:.3f} -> {growth['last']:.3f} ms per port = "
            f"{growth['ratio']:.2f}x (its nft transaction: "
            f"{stats['hostnet_nft']['first_vs_last']['ratio']:.2f}x; floor "
            f"{stats['floor']['first_vs_last']['ratio']:.2f}x; naive "
            f"{stats['naive']['first_vs_last']['ratio']:.2f}x)",
        )
    ]
    print()
    for target in targets:
        print(target)
    if not args.no_write:
        path = write_results(
            "ports",
            {
                "units": "ms",
                "params": {
                    "ports": args.ports,
                    "per_endpoint": args.per_endpoint,
                    "endpoints": run.endpoints,
                    "warmup": args.warmup,
                    "edge": EDGE,
                    "prefix": prefix,
                    "elapsed_s": round(elapsed, 1),
                },
                "methods": stats,
                "hostnet_connect_ms": summarize(run.connect_ms),
                "hostnet_disconnect_all_ms": run.disconnect_all_ms,
                "samples_ms": {
                    "hostnet_connect": run.connect_ms,
                    "hostnet_nft": run.hostnet_nft,
                    **run.port_ms,
                },
                "targets": [t.to_json() for t in targets],
                "leftover_namespaces": leftovers,
            },
            path=args.out,
            machine=machine,
        )
        print(f"\nwrote {path}")
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
