#!/usr/bin/env python3
"""Macvlan endpoints: connect and disconnect of N endpoints, all alive together, hostnet
against a raw netlink floor and `ip` subprocesses, measured in the same run.

    sudo python3 benchmarks/macvlan.py -n 200

One endpoint = a macvlan child (mode bridge, its own MAC, up) of the parent ``lan0`` of a
throwaway host namespace, created directly inside a fresh target namespace (made before
timing, ``lo`` up), with an address on the LAN and a default route via the LAN gateway.
This kernel has no dummy or vlan links, so the parent is one end of a veth pair whose
other end sits in an "outside LAN" namespace holding the gateway address (as in
tests/kernel/test_macvlan.py). Every method gets its own host and LAN namespaces, so no
method's children share a parent with another's.

- floor:        the kernel requests and nothing else: RTM_NEWLINK in the host namespace
                (IFLA_LINK = the parent's index, IFLA_NET_NS_FD = the target, kind
                macvlan mode bridge, MTU, MAC, up, and the interface index 2 asked for,
                so that no request is spent looking it up: a fresh namespace holds only
                lo, index 1), then RTM_NEWADDR and RTM_NEWROUTE (default via the gateway)
                over a socket opened in the target by switching the calling thread in
                and back. Disconnect: the same switch for a socket, then RTM_DELLINK.
                Messages are the bytes hostnet's encoder (rtnl) builds, acks parsed with
                struct. The parent's index is looked up once, before timing.
- floor-thread: the floor, but the target's socket is opened from a short-lived thread
                (hostnet.backends.netlink.nsenter.run_in), which is how hostnet does it:
                its calling thread never changes namespace. The difference between the
                two floors is the price of that rule.
- floor-rules:  floor-thread, plus what DESIGN.md's rules ask beside the kernel work
                (benchmarks/baselines/rules.py): the target observed (a link and a
                route dump) before acting, the plan journaled in SQLite first (with the
                address and the pending endpoint), each op's progress recorded, the
                result recorded after. The issues' targets stay against the floor; this
                one tells the rules' price from hostnet's own.
- hostnet:      Controller(host=HOST, state_dir=tmp, backend="netlink"), one
                create_network("bench", driver="macvlan", parent="lan0", subnet, gateway)
                (untimed), targets made with create_namespace (untimed), then
                Network.connect(ns) and Network.disconnect(ns), each timed.
- ip:           `ip -n HOST link add link lan0 name eth0 netns TARGET mtu M address MAC
                up type macvlan mode bridge`, `ip -n TARGET addr add IP/LEN brd + dev
                eth0`, `ip -n TARGET route add default via GW dev eth0`; disconnect is
                `ip -n TARGET link del eth0`.

Methods take turns in rounds of ``--batch`` endpoints, the order rotating every round.
Connect phase: N connects per method, all kept. Disconnect phase: the N disconnects, in
the order they were made, in the same rotating rounds. A warm-up (untimed) checks what
each method leaves behind (eth0 a macvlan in bridge mode, up, with its MAC, MTU, address
and the default route; the gateway answers a ping) and that disconnect leaves only lo.

Every namespace is named hnbmv<pid>-..., and all are removed in a ``finally`` block, also
on Ctrl-C, SIGTERM or an error. The root namespace's interfaces, routes and firewall are
never touched; its links and routes are compared before and after.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import ipaddress
import json
import math
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from baselines import kernel
from baselines import rules as rules_floor
from baselines.kernel import (
    CLONE_NEWNET,
    IFF_UP,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    Wire,
    _check,
    _libc,
    make_namespace,
    open_ns,
    prepare_run_dir,
    random_mac,
)
from common import (
    Target,
    Timer,
    cleanup_signals,
    drift,
    ignore_signals,
    ip_netns_names,
    list_namespaces,
    machine_info,
    paired_ratio,
    ratio_table,
    rotation,
    summarize,
    sweep_namespaces,
    unique_prefix,
    versus,
    write_results,
)

SUBNET = "10.77.0.0/16"  # room for -n well above 254
GATEWAY = "10.77.0.1"  # on the LAN side of the veth, in the "outside LAN" namespace
HOST_ON_LAN = "10.77.0.2"  # the host's own address on lan0
PARENT = "lan0"
IFNAME = "eth0"
TARGET_INDEX = 2  # the first index a fresh namespace hands out after lo's 1
CONNECT_TARGET_RATIO = 1.3

RTM_GETLINK = 18
MACVLAN_MODE_BRIDGE = 4


# -- throwaway namespaces (untimed) ----------------------------------------------------


def run_ip(*argv: str) -> str:
    done = subprocess.run(
        ["ip", *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def build_lan(host: str, lan: str) -> None:
    """The host namespace ``host`` with ``lan0`` up (HOST_ON_LAN), one end of a veth pair
    whose other end, eth0 in ``lan``, holds the LAN gateway's address. Both namespaces
    must exist."""
    run_ip("-n", host, "link", "add", PARENT, "type", "veth", "peer", "name", "eth0", "netns", lan)
    prefixlen = ipaddress.ip_network(SUBNET).prefixlen
    run_ip("-n", host, "addr", "add", f"{HOST_ON_LAN}/{prefixlen}", "dev", PARENT)
    run_ip("-n", lan, "addr", "add", f"{GATEWAY}/{prefixlen}", "dev", "eth0")
    run_ip("-n", host, "link", "set", PARENT, "up")
    run_ip("-n", lan, "link", "set", "eth0", "up")


# -- the floor's netlink ---------------------------------------------------------------


def macvlan_msg(*, parent: int, ns_fd: int, mac: str, mtu: int) -> bytes:
    from hostnet.backends.netlink import rtnl

    data = rtnl.nested(
        rtnl.IFLA_INFO_DATA, [rtnl.u32(rtnl.IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE)]
    )
    return rtnl.ifinfo(
        rtnl.string(rtnl.IFLA_IFNAME, IFNAME),
        rtnl.u32(rtnl.IFLA_MTU, mtu),
        rtnl.mac(rtnl.IFLA_ADDRESS, mac),
        rtnl.u32(rtnl.IFLA_NET_NS_FD, ns_fd),
        rtnl.u32(rtnl.IFLA_LINK, parent),
        rtnl.nested(rtnl.IFLA_LINKINFO, [rtnl.string(rtnl.IFLA_INFO_KIND, "macvlan"), data]),
        index=TARGET_INDEX,
        flags=IFF_UP,
        change=IFF_UP,
    )


def addr_msg(address: str) -> bytes:
    iface = ipaddress.ip_interface(address)
    broadcast = str(iface.network.broadcast_address)
    return kernel.addr_msg(TARGET_INDEX, str(iface.ip), iface.network.prefixlen, broadcast)


def dellink_msg() -> bytes:
    from hostnet.backends.netlink import rtnl

    return rtnl.ifinfo(index=TARGET_INDEX)


class Home:
    """The namespace this process started in, to switch the calling thread back to."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def go(self) -> None:
        if _libc.setns(self.fd, CLONE_NEWNET) != 0:  # never go on in the wrong place
            os.write(2, b"cannot switch back to our own network namespace; aborting\n")
            os._exit(70)

    def socket_in(self, fd: int) -> socket.socket:
        """A route socket in namespace ``fd``, opened by switching this thread in and
        back. The switch back is in ``finally`` and is harmless if the switch in failed
        (the cleanup switches back again, in case Ctrl-C came in between)."""
        from hostnet.backends.netlink.channel import open_route_socket

        try:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns into the target")
            return open_route_socket()
        finally:
            self.go()

    def close(self) -> None:
        os.close(self.fd)


def socket_via_thread(fd: int) -> socket.socket:
    """A route socket in namespace ``fd``, opened from a short-lived thread (hostnet's
    way: the calling thread never changes namespace)."""
    from hostnet.backends.netlink.channel import open_route_socket
    from hostnet.backends.netlink.nsenter import run_in

    return run_in(fd, open_route_socket)


# -- the methods -----------------------------------------------------------------------


class Method(Protocol):
    key: str
    label: str
    host: str
    targets: list[str]

    def prepare(self, names: Sequence[str]) -> None: ...
    def connect(self, i: int) -> None: ...
    def disconnect(self, i: int) -> None: ...
    def expected(self, i: int) -> tuple[str, str]: ...
    def close(self) -> None: ...


class Floor:
    """The kernel requests and nothing else (see the module docstring)."""

    key = "floor"
    label = "raw netlink (floor)"

    def __init__(
        self, host: str, home: Home, *, thread: bool = False, rules: bool = False
    ) -> None:
        from hostnet.backends.netlink.channel import Channel

        self.host = host
        self.home = home
        self.thread = thread or rules
        self.journal: rules_floor.Journal | None = None
        self.state_dir: str | None = None
        if thread:
            self.key, self.label = "floor-thread", "floor, socket via thread"
        if rules:
            self.key, self.label = "floor-rules", "floor, thread + journal"
            self.state_dir = tempfile.mkdtemp(prefix="hnbmv-rules-")
            self.journal = rules_floor.Journal(self.state_dir)
        self.targets: list[str] = []
        self.macs: list[str] = []
        self.addresses: list[str] = []
        host_fd = open_ns(host)
        try:
            sock = self.home.socket_in(host_fd)
        finally:
            os.close(host_fd)
        self.wire = Wire(sock)
        from hostnet.backends.netlink import rtnl

        chan = Channel(sock)
        parent = rtnl.link(
            chan.get(rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, PARENT)), RTM_GETLINK)
        )
        self.parent = int(parent["index"])
        self.mtu = int(parent["mtu"])
        self.wire.seq = chan._seq

    def prepare(self, names: Sequence[str]) -> None:
        net = ipaddress.ip_network(SUBNET)
        first = len(self.targets)
        for offset, name in enumerate(names):
            make_namespace(name)
            self.targets.append(name)
            self.macs.append(random_mac())
            self.addresses.append(f"{net[10 + first + offset]}/{net.prefixlen}")

    def _socket(self, fd: int) -> socket.socket:
        return socket_via_thread(fd) if self.thread else self.home.socket_in(fd)

    def _plan(self, i: int) -> list[dict[str, object]]:
        """The ops as a journal would hold them (floor-rules)."""
        ns, address = self.targets[i], self.addresses[i]
        return [
            {"op": "AddLink", "ns": self.host, "kind": "macvlan", "peer_ns": ns},
            {"op": "AddAddress", "ns": ns, "ifname": IFNAME, "address": address},
            {"op": "AddRoute", "ns": ns, "dst": "0.0.0.0/0", "gateway": GATEWAY},
        ]

    def connect(self, i: int) -> None:
        fd = open_ns(self.targets[i])
        try:
            sock = self._socket(fd)
            try:
                journal, job = self.journal, ""
                if journal is not None:
                    rules_floor.observe(sock)
                    job = journal.begin(self.targets[i], self.addresses[i], self._plan(i))
                self.wire.request(
                    macvlan_msg(parent=self.parent, ns_fd=fd, mac=self.macs[i], mtu=self.mtu),
                    RTM_NEWLINK,
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                if journal is not None:
                    journal.progress(job, 1)
                inside = Wire(sock)
                inside.request(addr_msg(self.addresses[i]), RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
                if journal is not None:
                    journal.progress(job, 2)
                inside.request(
                    kernel.default_route_msg(TARGET_INDEX, GATEWAY),
                    RTM_NEWROUTE,
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                if journal is not None:  # (no progress after the last op: the end says it)
                    journal.finish(job, self.targets[i])
            finally:
                sock.close()
        finally:
            os.close(fd)

    def disconnect(self, i: int) -> None:
        fd = open_ns(self.targets[i])
        try:
            sock = self._socket(fd)
        finally:
            os.close(fd)
        try:
            journal, job = self.journal, ""
            if journal is not None:
                plan = [{"op": "DelLink", "ns": self.targets[i], "ifname": IFNAME}]
                job = journal.begin_teardown(self.targets[i], plan)
            Wire(sock).request(dellink_msg(), RTM_DELLINK)
            if journal is not None:
                journal.forget(job, self.targets[i])
        finally:
            sock.close()

    def expected(self, i: int) -> tuple[str, str]:
        return self.macs[i], self.addresses[i]

    def close(self) -> None:
        self.wire.close()
        if self.journal is not None:
            self.journal.close()
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)


class Hostnet:
    """hostnet's public API, its store in a temporary directory."""

    key = "hostnet"
    label = "hostnet Network.connect"

    def __init__(self, host: str) -> None:
        from hostnet import Controller

        self.host = host
        self.targets: list[str] = []
        self.state_dir = tempfile.mkdtemp(prefix="hnbmv-state-")
        try:
            self.ctl = Controller(host=host, state_dir=self.state_dir, backend="netlink")
            self.network = self.ctl.create_network(
                "bench", driver="macvlan", parent=PARENT, subnet=SUBNET, gateway=GATEWAY
            )
        except BaseException:
            self.close()
            raise
        self.namespaces: list[Any] = []
        self.endpoints: dict[int, Any] = {}

    def prepare(self, names: Sequence[str]) -> None:
        for name in names:
            self.namespaces.append(self.ctl.create_namespace(name))
            self.targets.append(name)

    def connect(self, i: int) -> None:
        self.endpoints[i] = self.network.connect(self.namespaces[i])

    def disconnect(self, i: int) -> None:
        self.network.disconnect(self.namespaces[i])

    def expected(self, i: int) -> tuple[str, str]:
        ep = self.endpoints[i]
        return ep.mac, ep.addresses[0]

    def close(self) -> None:
        ctl = getattr(self, "ctl", None)
        if ctl is not None:
            ctl.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class IpCommand:
    """iproute2's `ip`, one subprocess per step, as a shell script would do it."""

    key = "ip"
    label = "ip subprocesses"

    def __init__(self, host: str) -> None:
        path = shutil.which("ip")
        if path is None:
            raise SystemExit("the `ip` command (iproute2) is not installed")
        self.ip = path
        self.host = host
        self.targets: list[str] = []
        self.macs: list[str] = []
        self.addresses: list[str] = []
        self.version = run_ip("-V").strip()
        self.mtu = json.loads(run_ip("-n", host, "-j", "link", "show", PARENT))[0]["mtu"]

    def prepare(self, names: Sequence[str]) -> None:
        net = ipaddress.ip_network(SUBNET)
        first = len(self.targets)
        for offset, name in enumerate(names):
            make_namespace(name)
            self.targets.append(name)
            self.macs.append(random_mac())
            self.addresses.append(f"{net[10 + first + offset]}/{net.prefixlen}")

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            [self.ip, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"ip {' '.join(argv)}: {message}")

    def connect(self, i: int) -> None:
        target = self.targets[i]
        self._run(
            "-n", self.host, "link", "add", "link", PARENT, "name", IFNAME, "netns", target,
            "mtu", str(self.mtu), "address", self.macs[i], "up", "type", "macvlan", "mode",
            "bridge",
        )  # fmt: skip
        self._run("-n", target, "addr", "add", self.addresses[i], "brd", "+", "dev", IFNAME)
        self._run("-n", target, "route", "add", "default", "via", GATEWAY, "dev", IFNAME)

    def disconnect(self, i: int) -> None:
        self._run("-n", self.targets[i], "link", "del", IFNAME)

    def expected(self, i: int) -> tuple[str, str]:
        return self.macs[i], self.addresses[i]

    def close(self) -> None:
        pass


METHODS = ("floor", "floor-thread", "floor-rules", "hostnet", "ip")


# -- checks ----------------------------------------------------------------------------


def target_state(ns: str) -> dict[str, Any]:
    """What a target namespace holds, from `ip -j` (untimed)."""
    links = {}
    for link in json.loads(run_ip("-n", ns, "-j", "-d", "link", "show")):
        info = link.get("linkinfo", {})
        links[link["ifname"]] = {
            "kind": info.get("info_kind"),
            "mode": info.get("info_data", {}).get("mode"),
            "up": "UP" in link.get("flags", []),
            "mac": link.get("address"),
            "mtu": link.get("mtu"),
        }
    addresses = [
        (entry["ifname"], f"{a['local']}/{a['prefixlen']}")
        for entry in json.loads(run_ip("-n", ns, "-j", "-4", "addr", "show"))
        for a in entry.get("addr_info", [])
        if entry["ifname"] != "lo"
    ]
    routes = [
        (r.get("gateway"), r.get("dev"))
        for r in json.loads(run_ip("-n", ns, "-j", "-4", "route", "show", "default"))
    ]
    return {"links": links, "addresses": addresses, "default_routes": routes}


def check_connected(method: Method, i: int, mtu: int, *, ping: bool) -> None:
    ns = method.targets[i]
    mac, address = method.expected(i)
    state = target_state(ns)
    link = state["links"].get(IFNAME)
    want = {"kind": "macvlan", "mode": "bridge", "up": True, "mac": mac, "mtu": mtu}
    problems = []
    if set(state["links"]) != {"lo", IFNAME} or link != want:
        problems.append(f"links {state['links']} (want {IFNAME}: {want})")
    if state["addresses"] != [(IFNAME, address)]:
        problems.append(f"addresses {state['addresses']} (want {address} on {IFNAME})")
    if state["default_routes"] != [(GATEWAY, IFNAME)]:
        problems.append(f"default routes {state['default_routes']}")
    if ping:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", GATEWAY],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            problems.append(f"{ns} cannot ping the gateway {GATEWAY}")
    if problems:
        raise RuntimeError(f"{method.label}, endpoint {ns}: " + "; ".join(problems))


def check_disconnected(method: Method, i: int) -> None:
    state = target_state(method.targets[i])
    if set(state["links"]) != {"lo"} or state["addresses"] or state["default_routes"]:
        raise RuntimeError(f"{method.label}: {method.targets[i]} after disconnect: {state}")


def root_view() -> dict[str, Any]:
    """The root namespace's links (index, name) and IPv4/IPv6 routes, to compare before
    and after: this benchmark must change neither."""
    links = sorted(socket.if_nameindex())
    routes = sorted(
        json.dumps(r, sort_keys=True)
        for family in ("-4", "-6")
        for r in json.loads(run_ip(family, "-j", "route", "show", "table", "all"))
    )
    return {"links": links, "routes": routes}


# -- measuring -------------------------------------------------------------------------


class Run:
    """Every sample, in the order it was taken."""

    def __init__(self, methods: Sequence[Method], base: int) -> None:
        self.methods = list(methods)
        self.base = base  # index of the first measured endpoint (after the warm-up)
        self.connect: dict[str, list[float]] = {m.key: [] for m in methods}
        self.disconnect: dict[str, list[float]] = {m.key: [] for m in methods}

    def measure(self, n: int, batch: int, progress: Callable[[str, int, int], None]) -> None:
        rounds = math.ceil(n / batch)
        for phase, samples in (("connect", self.connect), ("disconnect", self.disconnect)):
            for r in range(rounds):
                gc.collect()  # outside the timings
                start = self.base + r * batch
                stop = self.base + min(n, (r + 1) * batch)
                for method in rotation(self.methods, r):
                    op = getattr(method, phase)
                    for i in range(start, stop):
                        with Timer() as t:
                            op(i)
                        samples[method.key].append(t.ms)
                progress(phase, r + 1, rounds)


def warm_up(methods: Sequence[Method], count: int, mtu: int) -> None:
    """Exercise every method and check what it leaves behind (ping on the first one)."""
    for method in methods:
        for i in range(count):
            method.connect(i)
        for i in range(count):
            check_connected(method, i, mtu, ping=i == 0)
        for i in range(count):
            method.disconnect(i)
            check_disconnected(method, i)


def profile_hostnet(method: Hostnet, indexes: Sequence[int], top: int) -> dict[str, str]:
    """cProfile of hostnet's connects, then of its disconnects, of ``indexes``."""
    out = {}
    for phase in ("connect", "disconnect"):
        profiler = cProfile.Profile()
        op = getattr(method, phase)
        profiler.enable()
        for i in indexes:
            op(i)
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs()
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        out[phase] = text.getvalue()
    return out


# -- reporting -------------------------------------------------------------------------

METRICS = ("connect", "disconnect")


def analyse(run: Run, batch: int) -> dict[str, Any]:
    floor = run.methods[0].key
    out: dict[str, Any] = {}
    for method in run.methods:
        connects, disconnects = run.connect[method.key], run.disconnect[method.key]
        out[method.key] = {
            "label": method.label,
            "connect": summarize(connects),
            "disconnect": summarize(disconnects),
            "growth_last_vs_first_10pct": {
                "connect": drift(connects),
                "disconnect": drift(disconnects),
            },
            "samples_ms": {"connect": connects, "disconnect": disconnects},
        }
    for key, data in out.items():
        data["ratio_to_floor"] = {m: data[m]["median"] / out[floor][m]["median"] for m in METRICS}
        data["ratio_to_floor_paired_by_round"] = {
            m: paired_ratio(getattr(run, m)[key], getattr(run, m)[floor], batch) for m in METRICS
        }
        data["overhead_over_floor_ms"] = {
            m: data[m]["median"] - out[floor][m]["median"] for m in METRICS
        }
    if "hostnet" in out and "floor-rules" in out:
        # how far hostnet is from the least that DESIGN.md's rules allow (informational)
        out["hostnet"]["versus_floor_rules"] = {
            m: versus(getattr(run, m)["hostnet"], getattr(run, m)["floor-rules"], batch)
            for m in METRICS
        }
    return out


def targets_of(stats: dict[str, Any]) -> list[Target]:
    if "hostnet" not in stats or "floor" not in stats:
        return []
    hn, floor = stats["hostnet"], stats["floor"]
    ratio = hn["ratio_to_floor"]["connect"]
    found = [
        Target(
            name=f"hostnet connect <= {CONNECT_TARGET_RATIO}x the floor (medians)",
            passed=ratio <= CONNECT_TARGET_RATIO,
            detail=f"{hn['connect']['median']:.3f} vs {floor['connect']['median']:.3f} ms"
            f" = {ratio:.2f}x (paired by round "
            f"{hn['ratio_to_floor_paired_by_round']['connect']:.2f}x; "
            f"+{hn['overhead_over_floor_ms']['connect']:.3f} ms)",
        )
    ]
    if "ip" in stats:
        mine = hn["connect"]["median"] + hn["disconnect"]["median"]
        theirs = stats["ip"]["connect"]["median"] + stats["ip"]["disconnect"]["median"]
        found.append(
            Target(
                name="hostnet faster than `ip` (connect+disconnect medians)",
                passed=mine < theirs,
                detail=f"{mine:.3f} vs {theirs:.3f} ms ({theirs / mine:.1f}x)",
            )
        )
    return found


def print_results(stats: dict[str, Any], markdown: bool) -> None:
    labels = {key: data["label"] for key, data in stats.items()}
    print(ratio_table(stats, baseline="floor", metrics=METRICS, labels=labels))
    if markdown:
        print()
        print(ratio_table(stats, baseline="floor", metrics=METRICS, labels=labels, markdown=True))
    print("\nratio to the floor, median of per-round ratios (robust to slow noise):")
    for data in stats.values():
        paired, extra = data["ratio_to_floor_paired_by_round"], data["overhead_over_floor_ms"]
        print(
            f"  {data['label']:<26} connect {paired['connect']:.2f}x "
            f"({extra['connect']:+.3f} ms)   disconnect {paired['disconnect']:.2f}x "
            f"({extra['disconnect']:+.3f} ms)"
        )
    rules = stats.get("hostnet", {}).get("versus_floor_rules")
    if rules is not None:
        c = rules["connect"]
        print(
            f"\nhostnet against the rules floor (thread, observation, journal; not a target):"
            f" connect {c['ratio']:.2f}x (paired {c['paired']:.2f}x, {c['overhead']:+.3f} ms)"
        )
    print("\ngrowth, median of the first 10% -> the last 10% of the samples:")
    for data in stats.values():
        g = data["growth_last_vs_first_10pct"]
        c, d = g["connect"], g["disconnect"]
        print(
            f"  {data['label']:<26} connect {c['first']:.3f} -> {c['last']:.3f} ms "
            f"({c['ratio']:.2f}x)   disconnect {d['first']:.3f} -> {d['last']:.3f} ms "
            f"({d['ratio']:.2f}x)"
        )


def _methods(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = set(chosen) - set(METHODS)
    if unknown or "floor" not in chosen:
        raise argparse.ArgumentTypeError(f"methods are {', '.join(METHODS)}; floor is needed")
    return [m for m in METHODS if m in chosen]


def measure(
    args: argparse.Namespace, prefix: str
) -> tuple[list[Method], Run | None, dict[str, str], list[str], dict[str, int]]:
    """Build the world, warm up, measure (and profile); whatever happens, remove every
    namespace named ``prefix*``. Returns the methods, the run, the profiles, the names
    `ip netns list` still shows afterwards and counts of namespaces (ours at the peak, and
    all on the machine: hostnet lists /run/netns on every connect)."""
    methods: list[Method] = []
    run: Run | None = None
    profiles: dict[str, str] = {}
    home = Home()
    counts: dict[str, int] = {"machine_at_start": len(list_namespaces())}
    started = time.monotonic()

    def progress(phase: str, done: int, total: int) -> None:
        if done == total or done % max(1, total // 4) == 0:
            print(f"  {phase} round {done}/{total}  {time.monotonic() - started:.1f} s")

    try:
        with cleanup_signals():
            prepare_run_dir()
            per_method = args.warmup + args.n + args.profile
            for key in args.methods:
                host, lan = f"{prefix}{key[0]}{key[-1]}h", f"{prefix}{key[0]}{key[-1]}l"
                make_namespace(host)
                make_namespace(lan)
                build_lan(host, lan)
                method: Method
                if key == "floor":
                    method = Floor(host, home)
                elif key == "floor-thread":
                    method = Floor(host, home, thread=True)
                elif key == "floor-rules":
                    method = Floor(host, home, rules=True)
                elif key == "hostnet":
                    method = Hostnet(host)
                else:
                    method = IpCommand(host)
                methods.append(method)
                method.prepare([f"{prefix}{key[0]}{key[-1]}{i}" for i in range(per_method)])
            counts["ours_at_peak"] = peak = len(list_namespaces(prefix))
            mtu = json.loads(run_ip("-n", methods[0].host, "-j", "link", "show", PARENT))[0]["mtu"]
            print(
                f"{len(methods)} methods x {per_method} target namespaces made "
                f"({peak} of ours in all, {len(list_namespaces())} on the machine), "
                f"{time.monotonic() - started:.1f} s"
            )
            counts["machine_before_measuring"] = len(list_namespaces())
            print(f"warm-up: {args.warmup} per method, checked")
            warm_up(methods, args.warmup, mtu)
            print(f"measure: {args.n} per method, in turns of {args.batch}")
            run = Run(methods, args.warmup)
            run.measure(args.n, args.batch, progress)
            counts["machine_after_measuring"] = len(list_namespaces())
            hn = next((m for m in methods if isinstance(m, Hostnet)), None)
            if args.profile and hn is not None:
                first = args.warmup + args.n
                profiles = profile_hostnet(hn, range(first, first + args.profile), args.top)
    finally:
        with ignore_signals():
            home.go()
            for method in methods:
                try:
                    method.close()
                except Exception as exc:  # keep cleaning up
                    print(f"closing {method.label}: {exc}", file=sys.stderr)
            home.close()
            for thread in threading.enumerate():
                if thread is not threading.current_thread():
                    thread.join(timeout=5)
            sweep_namespaces(prefix)
            leftovers = [n for n in ip_netns_names() if n.startswith(prefix)]
            if leftovers:
                print(f"LEFT BEHIND: {leftovers}", file=sys.stderr)
            else:
                print(f"cleanup: `ip netns list` shows no {prefix}* namespace")
    return methods, run, profiles, leftovers, counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="endpoints per method (200)")
    parser.add_argument("--batch", type=int, default=10, help="endpoints per turn (10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed, checked (3)")
    parser.add_argument("--methods", type=_methods, default=list(METHODS), help=",".join(METHODS))
    parser.add_argument(
        "--profile", type=int, default=0, help="then cProfile K more hostnet endpoints"
    )
    parser.add_argument("--top", type=int, default=25, help="profile lines (25)")
    parser.add_argument("--out", type=Path, help="result file (results/macvlan.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("macvlan.py needs root (namespaces, links)", file=sys.stderr)
        return 2
    if args.n < 10 or args.batch < 1 or args.warmup < 1:
        parser.error("-n must be at least 10, --batch and --warmup at least 1")

    machine = machine_info()
    print(
        f"{machine['date']}  kernel {machine['kernel']}  python {machine['python']}  "
        f"pyroute2 {machine['pyroute2']}  {machine['cpus']} CPUs  load {machine['loadavg']}"
        f"  python loop {machine['probes']['python_loop_ms']} ms, thread {machine['probes']['thread_us']} us"
    )
    prefix = unique_prefix("mv")
    root_before = root_view()
    started = time.monotonic()
    methods, run, profiles, leftovers, counts = measure(args, prefix)
    elapsed = time.monotonic() - started
    root_after = root_view()
    root_same = {key: root_before[key] == root_after[key] for key in root_before}
    print(
        "root namespace: links "
        + ("unchanged" if root_same["links"] else "CHANGED")
        + ", routes "
        + ("unchanged" if root_same["routes"] else "CHANGED (by us or by someone else)")
    )
    if run is None:
        return 1
    print(
        "named namespaces on the machine (hostnet lists them on every connect): "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    )

    stats = analyse(run, args.batch)
    print(f"\n== {args.n} endpoints per method, all alive together (times in ms) ==")
    print_results(stats, args.markdown)
    found = targets_of(stats)
    print()
    for target in found:
        print(target)
    for phase, text in profiles.items():
        print(f"\n== cProfile: hostnet {phase} x {args.profile} ==\n{text}")

    if not args.no_write:
        ip = next((m for m in methods if isinstance(m, IpCommand)), None)
        path = write_results(
            "macvlan",
            {
                "units": "ms",
                "params": {
                    "n": args.n,
                    "batch": args.batch,
                    "warmup": args.warmup,
                    "methods": args.methods,
                    "prefix": prefix,
                    "subnet": SUBNET,
                    "gateway": GATEWAY,
                    "namespaces": counts,
                    "iproute2": ip.version if ip is not None else None,
                    "elapsed_s": round(elapsed, 2),
                },
                "order": f"connect: rounds of {args.batch} per method, rotating, all kept; "
                f"disconnect: the same rounds, in the order connected",
                "methods": stats,
                "targets": [t.to_json() for t in found],
                "root_namespace_unchanged": root_same,
                "leftover_namespaces": leftovers,
                "profiles": profiles,
            },
            path=args.out,
            machine=machine,
        )
        print(f"\nwrote {path}")
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
