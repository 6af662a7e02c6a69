#!/usr/bin/env python3
"""Published ports: what publishing the k-th port costs as their number grows to 10,000,
in hostnet, in libnftables map elements (the floor) and in a naive chain of one DNAT
rule per port, measured in the same run.

    sudo python3 benchmarks/ports.py                     # 10,000 ports per method
    sudo python3 benchmarks/ports.py --ports 2000        # quicker
    sudo python3 benchmarks/ports.py --connect-ports 0   # without the secondary part

Primary measurement (the target: the 10,000th port costs <= 1.2x the 1st):

- hostnet:  one bridge network and ONE connected endpoint; every port is published by
            its own call, ``Network.publish(ns, ["P:80"])``, and every call is timed.
            The call's one nftables transaction is timed too, by wrapping the backend's
            ``apply`` (a perf_counter_ns pair around it: about a microsecond of
            instrumentation, inside the call's time).
- floor:    one libnftables transaction per port adding its two elements (address and
            port) to the maps of hostnet's tables (made once with bridge_firewall's
            base_setup and network_setup): the JSON hostnet sends, one port at a time.
- naive:    one libnftables transaction per port appending a rule ``tcp dport P dnat ip
            to IP:80`` to a NAT prerouting chain, as scripts and older tools do (and as
            iptables-based CNI portmap and netavark do, with a chain per container).

Each method has its own throwaway host namespace. The methods take turns in rounds of
--batch ports each, the order rotating every round. Reported per method: the median
(and p95) cost of the first 100 and of the last 100 additions and their ratio, the
ratio to the floor, and the median of each tenth of the run. The size of hostnet's
record of the endpoint is read (untimed) at the end of every tenth. Then the endpoint
with all its ports is disconnected (timed once).

Secondary (--connect-ports, 0 skips it): the older measurement through ``connect``,
hostnet alone, after the primary one: ports arrive --per-endpoint (10) at a time, each
time with a new endpoint (a veth, an address, a route) on the same network; cost per
port = the connect's time / its ports; then ``disconnect_all`` of those endpoints. It
measures connect's growth with the number of endpoints as much as the ports', so it is
not the target's measurement.

Every namespace is named hnbbp<pid>-..., and all of them are removed in a ``finally``
block, also on Ctrl-C, SIGTERM or an error; the machine's own ruleset, iptables rules and
links are compared before and after.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from baselines import kernel, tools
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
CONNECT_PORT = 50000  # the secondary part's ports: 50000 + up to 10,000
CONTAINER_PORT = 80
EDGE = 100  # "the first 100 and the last 100 additions"
GROWTH_LIMIT = 1.2
SUBNETS = {"hostnet": "10.211.0.0/16", "floor": "10.212.0.0/16", "naive": "10.213.0.0/16"}
NAIVE_TABLE = {"family": "ip", "table": "hnbnaive"}
METHODS = ("hostnet", "floor", "naive")


def endpoint_ip(subnet: str, endpoint: int) -> str:
    """The address of the ``endpoint``-th endpoint (0-based) of ``subnet``: .2 on."""
    return str(ipaddress.ip_network(subnet).network_address + 2 + endpoint)


class Hostnet:
    key = "hostnet"
    label = "hostnet Network.publish"

    def __init__(self, host: str) -> None:
        import hostnet

        self.state_dir = tempfile.mkdtemp(prefix="hnbb-state-")
        self.ctl = hostnet.Controller(
            host=host, state_dir=self.state_dir, backend="netlink", forwarding=True
        )
        self.net = self.ctl.create_network("bench", driver="bridge", subnet=SUBNETS["hostnet"])
        self.nft_ms: list[float] = []
        self._timing = False
        backend = self.ctl.backend
        original = backend.apply

        def apply(op: Any) -> None:  # times the nftables transaction of a call
            if not self._timing or type(op).__name__ != "NftBatch":
                return original(op)
            start = time.perf_counter_ns()
            try:
                return original(op)
            finally:
                self.nft_ms.append((time.perf_counter_ns() - start) / 1e6)

        backend.apply = apply  # type: ignore[method-assign]

    def _one_batch(self, call: Callable[[], object], timed: bool) -> float:
        """Run ``call`` (with its nft transaction timed if ``timed``); its time in ms."""
        before = len(self.nft_ms)
        self._timing = timed
        try:
            with Timer() as t:
                call()
        finally:
            self._timing = False
        if timed and len(self.nft_ms) != before + 1:
            raise RuntimeError("a call with published ports sent no (or several) nft batches")
        return t.ms

    def publish(self, ns: str, port: int, *, timed: bool = True) -> float:
        return self._one_batch(lambda: self.net.publish(ns, [f"{port}:{CONTAINER_PORT}"]), timed)

    def connect(self, ns: str, ports: Sequence[int], *, timed: bool = True) -> float:
        return self._one_batch(
            lambda: self.net.connect(ns, publish=[f"{p}:{CONTAINER_PORT}" for p in ports]),
            timed,
        )

    def row_bytes(self, ns: str) -> dict[str, int]:
        """Size of hostnet's records of the endpoint of ``ns``: its row (``data`` and
        ``applied`` JSON, read by every call) and the rows of the ports published later
        (one per call, not read by publish), with a read-only SQLite connection, not timed."""
        path = os.path.join(self.state_dir, "state.db")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT id, length(data), length(applied) FROM endpoints WHERE workload = ?",
                (ns,),
            ).fetchone()
            if row is None:
                return {"data": 0, "applied": 0, "published_rows": 0, "published": 0}
            count, size = db.execute(
                "SELECT count(*), coalesce(sum(length(ports) + length(applied)), 0) "
                "FROM published WHERE endpoint = ?",
                (row[0],),
            ).fetchone()
        finally:
            db.close()
        return {"data": row[1], "applied": row[2], "published_rows": count, "published": size}

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

    def clear(self, ports: Sequence[int], ip: str) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        self.nft.close()


class Floor(NftMethod):
    key = "floor"
    label = "libnftables map element (floor)"

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

    def clear(self, ports: Sequence[int], ip: str) -> None:
        self.nft.run(kernel.port_batch("delete", [(p, ip, CONTAINER_PORT) for p in ports]))

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

    def clear(self, ports: Sequence[int], ip: str) -> None:
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
        self.target = f"{prefix}t-main"  # the one endpoint of the primary measurement
        self.hostnet: Hostnet | None = None
        self.others: list[NftMethod] = []
        self.port_ms: dict[str, list[float]] = {key: [] for key in METHODS}
        self.publish_nft_ms: list[float] = []
        self.row_sizes: list[dict[str, int]] = []  # at the end of every tenth
        self.teardown_ms: float | None = None  # disconnect of the endpoint with every port
        self.per = args.per_endpoint
        self.endpoints = math.ceil(args.connect_ports / self.per) if args.connect_ports else 0
        self.connect_ms: list[float] = []  # secondary: hostnet, per connect
        self.connect_nft_ms: list[float] = []
        self.disconnect_all_ms: float | None = None
        self.started = time.monotonic()

    def log(self, text: str) -> None:
        print(f"  [{time.monotonic() - self.started:7.1f} s] {text}", flush=True)

    def build(self) -> None:
        for key in METHODS:
            kernel.make_namespace(f"{self.prefix}{key[0]}-host")
        kernel.make_namespace(self.target)
        kernel.make_namespace(f"{self.prefix}t-warm")
        self.hostnet = Hostnet(f"{self.prefix}h-host")
        self.others = [Floor(f"{self.prefix}f-host"), Naive(f"{self.prefix}n-host")]
        self.log("5 namespaces ready")

    def warm_up(self) -> None:
        """Exercise every method and check that the ports land where they should and
        that removing them leaves nothing."""
        assert self.hostnet is not None
        hn = self.hostnet
        warm = f"{self.prefix}t-warm"
        ports = [WARM_PORT + j for j in range(self.args.warmup)]
        hn.connect(warm, [], timed=False)
        for port in ports:
            hn.publish(warm, port, timed=False)
        if hostnet_ports(hn) != set(ports):
            raise RuntimeError("hostnet: the published ports are not (only) in its map")
        published = {m.host_port for e in hn.net.endpoints() for m in e.ports}
        if published != set(ports):
            raise RuntimeError(f"hostnet: the endpoint lists {sorted(published)}")
        hn.net.disconnect(warm)
        if hostnet_ports(hn) or hn.net.endpoints():
            raise RuntimeError("hostnet: disconnect left ports or endpoints behind")
        for method in self.others:
            ip = endpoint_ip(SUBNETS[method.key], 0)
            for port in ports:
                method.add(port, ip)
            if method.count() != len(ports):
                raise RuntimeError(f"{method.label}: {method.count()} entries, not {len(ports)}")
            method.clear(ports, ip)
            if method.count() != 0:
                raise RuntimeError(f"{method.label}: entries left after the warm-up")
        self.log(f"warm-up done: {len(ports)} ports per method added, checked and removed")

    def measure(self) -> None:
        """The primary measurement: one port per call, the methods taking turns."""
        assert self.hostnet is not None
        hn = self.hostnet
        total, batch = self.args.ports, self.args.batch
        hn.connect(self.target, [], timed=False)
        tenth = max(1, total // 10)

        def hostnet_turn(ports: range) -> None:
            for port in ports:
                self.port_ms["hostnet"].append(hn.publish(self.target, port))

        def nft_turn(method: NftMethod) -> Callable[[range], None]:
            ip = endpoint_ip(SUBNETS[method.key], 0)

            def run(ports: range) -> None:
                for port in ports:
                    with Timer() as t:
                        method.add(port, ip)
                    self.port_ms[method.key].append(t.ms)

            return run

        turns: dict[str, Callable[[range], None]] = {"hostnet": hostnet_turn}
        for method in self.others:
            turns[method.key] = nft_turn(method)
        done = 0
        for round_index in range(math.ceil(total / batch)):
            gc.collect()  # outside the timings
            ports = range(FIRST_PORT + done, FIRST_PORT + min(done + batch, total))
            for key in rotation(list(METHODS), round_index):
                turns[key](ports)
            before, done = done, done + len(ports)
            if done // tenth != before // tenth or done == total:
                self.row_sizes.append({"ports": done, **hn.row_bytes(self.target)})
                self.log(
                    f"{done} ports per method; hostnet's last call "
                    f"{self.port_ms['hostnet'][-1]:.2f} ms, its endpoint row "
                    f"{self.row_sizes[-1]['applied'] / 1e3:.1f} kB"
                )
        self.publish_nft_ms = list(hn.nft_ms)
        hn.nft_ms.clear()
        wanted = set(range(FIRST_PORT, FIRST_PORT + total))
        got = {"hostnet": len(hostnet_ports(hn))} | {m.key: m.count() for m in self.others}
        listed = {m.host_port for e in hn.net.endpoints() for m in e.ports}
        if any(count != total for count in got.values()) or listed != wanted:
            raise RuntimeError(f"expected {total} ports per method, found {got}")
        with Timer() as t:
            hn.net.disconnect(self.target)
        self.teardown_ms = t.ms
        if hostnet_ports(hn) or hn.net.endpoints():
            raise RuntimeError("hostnet: disconnect left ports or endpoints behind")
        self.log(f"disconnect of the endpoint with {total} ports: {t.ms:.0f} ms")

    def measure_connects(self) -> None:
        """Secondary: ports published by connect, --per-endpoint at a time, hostnet alone."""
        if not self.endpoints:
            return
        assert self.hostnet is not None
        hn = self.hostnet
        for e in range(self.endpoints):
            kernel.make_namespace(f"{self.prefix}c{e}")
        self.log(f"secondary: {self.endpoints} more namespaces ready")
        for e in range(self.endpoints):
            if e % self.args.batch == 0:
                gc.collect()
            self.connect_ms.append(hn.connect(f"{self.prefix}c{e}", self._connect_ports(e)))
        self.connect_nft_ms = list(hn.nft_ms)
        if len(hostnet_ports(hn)) != self.args.connect_ports:
            raise RuntimeError("secondary: hostnet's map does not hold every port")
        with Timer() as t:
            count = hn.net.disconnect_all()
        self.disconnect_all_ms = t.ms
        if count != self.endpoints or hostnet_ports(hn):
            raise RuntimeError("secondary: disconnect_all left ports behind")
        self.log(f"secondary: {self.endpoints} connects, disconnect_all {t.ms:.0f} ms")

    def _connect_ports(self, e: int) -> list[int]:
        first = e * self.per
        count = min(self.per, self.args.connect_ports - first)
        return [CONNECT_PORT + first + j for j in range(count)]

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


def edges(series: Sequence[float], edge: int) -> dict[str, float]:
    first, last = series[:edge], series[-edge:]
    f, la = statistics.median(first), statistics.median(last)
    return {
        "first": f,
        "last": la,
        "ratio": la / f if f else math.nan,
        "first_p95": summarize(first)["p95"],
        "last_p95": summarize(last)["p95"],
    }


def deciles(series: Sequence[float]) -> list[float]:
    size = len(series) / 10
    return [
        statistics.median(
            series[round(i * size) : max(round((i + 1) * size), round(i * size) + 1)]
        )
        for i in range(10)
    ]


LABELS = {
    "hostnet": "hostnet Network.publish, 1 port",
    "hostnet_nft": "  of which its nft transaction",
    "hostnet_rest": "  the rest (store, reads, checks)",
    "floor": "libnftables map element (floor)",
    "naive": "one DNAT rule per port (naive)",
}


def primary_series(run: Run) -> dict[str, list[float]]:
    hn = run.port_ms["hostnet"]
    nft = run.publish_nft_ms
    return {
        "hostnet": hn,
        "hostnet_nft": nft,
        "hostnet_rest": [a - b for a, b in zip(hn, nft, strict=True)],
        "floor": run.port_ms["floor"],
        "naive": run.port_ms["naive"],
    }


def secondary_series(run: Run) -> dict[str, list[float]]:
    """Cost per port, one value per port added, in order: each connect's time divided
    by its ports, repeated for each of them."""
    per_port: list[float] = []
    per_port_nft: list[float] = []
    for index, (total, nft) in enumerate(zip(run.connect_ms, run.connect_nft_ms, strict=True)):
        count = len(run._connect_ports(index))
        per_port += [total / count] * count
        per_port_nft += [nft / count] * count
    return {"connect": per_port, "connect_nft": per_port_nft}


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def report_primary(
    stats: dict[str, Any], total: int, markdown: bool
) -> tuple[list[str], list[str]]:
    floor = stats["floor"]["first_vs_last"]
    rows = []
    for key, data in stats.items():
        e = data["first_vs_last"]
        rows.append(
            [
                LABELS[key].strip(),
                fmt(e["first"]),
                fmt(e["first_p95"]),
                fmt(e["last"]),
                fmt(e["last_p95"]),
                f"{e['ratio']:.2f}x",
                f"{e['first'] / floor['first']:.2f}x",
                f"{e['last'] / floor['last']:.2f}x",
            ]
        )
    head = [
        "method",
        f"first {EDGE} median",
        "p95",
        f"last {EDGE} median",
        "p95",
        "last / first",
        "first x floor",
        "last x floor",
    ]
    tenths = [f"{10 * (i + 1)}%" for i in range(10)]
    dec_rows = [[LABELS[k].strip(), *(fmt(v) for v in d["deciles"])] for k, d in stats.items()]
    plain = [
        f"\nprimary: cost of one added port, ms ({total} per method; median and p95 of the "
        f"first and last {EDGE}):",
        *_plain_table(head, rows),
        "\nmedian cost of one added port in each tenth of the run, ms:",
        *_plain_table(["method", *tenths], dec_rows),
    ]
    md: list[str] = []
    if markdown:
        md = [
            "",
            *_md_table(head, rows),
            "",
            *_md_table(["method", *tenths], dec_rows),
        ]
    return plain, md


def _plain_table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = []
    for index, row in enumerate([head, *rows]):
        out.append(
            "  "
            + "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--ports", type=int, default=10_000, help="ports per method, one per call (10000)"
    )
    parser.add_argument("--batch", type=int, default=10, help="ports per method per turn (10)")
    parser.add_argument(
        "--warmup", type=int, default=20, help="untimed ports per method, checked (20)"
    )
    parser.add_argument(
        "--connect-ports",
        type=int,
        default=10_000,
        help="secondary: ports published through connect, hostnet alone (10000; 0 skips)",
    )
    parser.add_argument(
        "--per-endpoint", type=int, default=10, help="secondary: ports per connect (10)"
    )
    parser.add_argument("--out", type=Path, help="result file (results/ports.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("ports.py needs root (namespaces, links, nftables)", file=sys.stderr)
        return 2
    if args.ports < 2 * EDGE or args.warmup < 1 or args.batch < 1:
        parser.error(f"--ports must be at least {2 * EDGE}; --warmup and --batch >= 1")
    if args.ports > 20_000 or args.connect_ports > 15_000:
        parser.error("ports 10000..29999 (--ports) and 50000..64999 (--connect-ports) only")
    if args.connect_ports:
        if args.per_endpoint < 1 or args.connect_ports < 2 * EDGE:
            parser.error(f"--connect-ports: 0 or at least {2 * EDGE}; --per-endpoint >= 1")
        if math.ceil(args.connect_ports / args.per_endpoint) > 1000:
            parser.error("a bridge takes at most 1023 ports: raise --per-endpoint")

    machine = machine_info()
    print(
        f"{machine['date']}  kernel {machine['kernel']}  python {machine['python']}  "
        f"{machine['cpus']} CPUs  load {machine['loadavg']}"
        f"  python loop {machine['probes']['python_loop_ms']} ms, thread {machine['probes']['thread_us']} us"
    )
    source = machine.get("hostnet_source") or {}
    print(
        f"hostnet {machine['hostnet_path']} at {source.get('commit', '?')[:12]}"
        + (f" MODIFIED: {source['modified']}" if source.get("modified") else "")
    )
    prefix = unique_prefix("bp")
    kernel.prepare_run_dir()
    root_before = tools.root_state()
    run = Run(args, prefix)
    print(
        f"primary: {args.ports} ports per method, one per call, hostnet on one endpoint; "
        f"secondary: {args.connect_ports or 'no'} ports through connect, "
        f"{args.per_endpoint} per endpoint; names {prefix}*"
    )
    started = time.monotonic()
    leftovers: list[str] = []
    try:
        with cleanup_signals():
            run.build()
            run.warm_up()
            run.measure()
            run.measure_connects()
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
    root_check = tools.compare_root(root_before, tools.root_state())
    print(
        "root namespace: nftables ruleset, iptables rules and links "
        + ("unchanged" if root_check["unchanged"] else f"CHANGED: {root_check}")
    )
    elapsed = time.monotonic() - started
    assert run.hostnet is None

    stats: dict[str, Any] = {}
    for key, values in primary_series(run).items():
        stats[key] = {
            "label": LABELS[key].strip(),
            "per_port": summarize(values),
            "first_vs_last": edges(values, EDGE),
            "deciles": deciles(values),
        }
    plain, md = report_primary(stats, args.ports, args.markdown)
    print("\n".join(plain))
    growth = stats["hostnet"]["first_vs_last"]
    nft = stats["hostnet_nft"]["first_vs_last"]
    rest = stats["hostnet_rest"]["first_vs_last"]
    sizes = run.row_sizes[-1] if run.row_sizes else {}
    slope = (growth["last"] - growth["first"]) / max(1, args.ports - EDGE)
    print(
        f"\nhostnet's records of the endpoint after {args.ports} ports: its row (read by "
        f"every call) data {sizes.get('data', 0) / 1e3:.1f} kB, applied "
        f"{sizes.get('applied', 0) / 1e3:.1f} kB; {sizes.get('published_rows', 0)} rows of "
        f"published ports ({sizes.get('published', 0) / 1e6:.2f} MB, not read by publish); "
        f"each call costs {slope * 1000:.2f} us more per port already published"
    )
    print(f"disconnect of hostnet's endpoint with {args.ports} ports: {run.teardown_ms:.0f} ms")

    secondary: dict[str, Any] = {}
    if run.connect_ms:
        for key, values in secondary_series(run).items():
            secondary[key] = {"per_port": summarize(values), "first_vs_last": edges(values, EDGE)}
        c, cn = secondary["connect"]["first_vs_last"], secondary["connect_nft"]["first_vs_last"]
        print(
            f"\nsecondary (not the target): ports through Network.connect, {args.per_endpoint} "
            f"per new endpoint, hostnet alone: per port {c['first']:.3f} -> {c['last']:.3f} ms "
            f"({c['ratio']:.2f}x; its nft transaction {cn['ratio']:.2f}x); connect median "
            f"{statistics.median(run.connect_ms):.2f} ms; disconnect_all of {run.endpoints} "
            f"endpoints ({args.connect_ports} ports) {run.disconnect_all_ms:.0f} ms"
        )

    targets = [
        Target(
            name=f"hostnet: port {args.ports} costs <= {GROWTH_LIMIT}x port 1 "
            f"(Network.publish, one port per call; median of the last {EDGE} calls vs the "
            f"first {EDGE})",
            passed=growth["ratio"] <= GROWTH_LIMIT,
            detail=f"{growth['first']:.3f} -> {growth['last']:.3f} ms = {growth['ratio']:.2f}x "
            f"(its nft transaction {nft['first']:.3f} -> {nft['last']:.3f} ms, "
            f"{nft['ratio']:.2f}x; the rest {rest['ratio']:.2f}x; floor "
            f"{stats['floor']['first_vs_last']['ratio']:.2f}x; naive "
            f"{stats['naive']['first_vs_last']['ratio']:.2f}x)",
        )
    ]
    print()
    for target in targets:
        print(target)
    if md:
        print("\n".join(md))
    if not args.no_write:
        path = write_results(
            "ports",
            {
                "units": "ms",
                "params": {
                    "ports": args.ports,
                    "batch": args.batch,
                    "warmup": args.warmup,
                    "edge": EDGE,
                    "connect_ports": args.connect_ports,
                    "per_endpoint": args.per_endpoint,
                    "endpoints": run.endpoints,
                    "prefix": prefix,
                    "elapsed_s": round(elapsed, 1),
                },
                "methods": stats,
                "hostnet_record_bytes": run.row_sizes,
                "hostnet_teardown_ms": run.teardown_ms,
                "secondary": {
                    **secondary,
                    "connect_ms": summarize(run.connect_ms),
                    "disconnect_all_ms": run.disconnect_all_ms,
                },
                "samples_ms": {
                    **run.port_ms,
                    "hostnet_nft": run.publish_nft_ms,
                    "secondary_connect": run.connect_ms,
                    "secondary_connect_nft": run.connect_nft_ms,
                },
                "targets": [t.to_json() for t in targets],
                "root_namespace": root_check,
                "leftover_namespaces": leftovers,
            },
            path=args.out,
            machine=machine,
        )
        print(f"\nwrote {path}")
    return 1 if leftovers or not root_check["unchanged"] else 0


if __name__ == "__main__":
    sys.exit(main())
