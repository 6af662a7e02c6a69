#!/usr/bin/env python3
"""Where one hostnet connect spends its time, without a profiler.

    sudo python3 benchmarks/layers.py macvlan -n 200
    sudo python3 benchmarks/layers.py bridge -n 200     # one published TCP port each

Connects N fresh namespaces (made before timing) to one network in a throwaway host
namespace, as benchmarks/macvlan.py and bridge.py do, and times every call of a few
layers by wrapping them with ``perf_counter_ns`` on this process's objects: the
backend's observation, its kernel operations by kind, the socket diagnostics query, the
short-lived thread that opens a socket in a namespace, and the store's reads and journal
progress updates. The store's write transactions and the Python around everything are
what is left of the connect's time. Layers nest (the thread runs inside the first call
that needs a socket in the target, usually the observation), so shares do not add up
to 100 %. cProfile roughly doubles the time of pyroute2's decoding, which is why the
shares in docs/performance.md come from here.

Every namespace is named hnbl<pid>-... and removed in a ``finally`` block.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

LAYERS = {
    "observe": "observing the target (dumps, decoding)",
    "thread": "  of which or elsewhere: thread into a namespace",
    "AddLink": "kernel: create the link",
    "AddAddress": "kernel: address (with index lookup)",
    "AddRoute": "kernel: default route",
    "NftBatch": "kernel: nftables transaction",
    "bound": "sock_diag: sockets bound to the port",
    "read": "store: reads",
    "progress": "store: journal progress updates",
}


def timed(acc: dict[str, int], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[key] += time.perf_counter_ns() - start

    return wrapper


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("driver", choices=["macvlan", "bridge"])
    parser.add_argument("-n", type=int, default=200, help="connects timed (200)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2

    from hostnet import Controller
    from hostnet.backends.netlink import NetlinkBackend, nsenter

    prefix = f"hnbl{os.getpid() % 100000}-"
    host, lan = f"{prefix}host", f"{prefix}lan"
    names = [f"{prefix}{i}" for i in range(args.n + 10)]
    state = tempfile.mkdtemp(prefix="hostnet-layers-")
    acc: dict[str, int] = collections.defaultdict(int)
    try:
        ip("netns", "add", host)
        ip("netns", "add", lan)
        backend = NetlinkBackend()
        ctl = Controller(host=host, state_dir=state, backend=backend, forwarding=True)
        if args.driver == "macvlan":
            ip(
                "-n",
                host,
                "link",
                "add",
                "lan0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                lan,
            )
            ip("-n", host, "link", "set", "lan0", "up")
            ip("-n", lan, "link", "set", "eth0", "up")
            net = ctl.create_network(
                "m", driver="macvlan", parent="lan0", subnet="10.66.0.0/16", gateway="10.66.0.1"
            )
        else:
            net = ctl.create_network("b", driver="bridge", subnet="10.66.0.0/16")
        targets = [ctl.create_namespace(name) for name in names]

        def connect(i: int) -> None:
            publish = [f"{30000 + i}:80"] if args.driver == "bridge" else []
            net.connect(targets[i], publish=publish)

        for i in range(10):  # warm-up, not timed
            connect(i)
        backend.observe = timed(acc, "observe", backend.observe)  # type: ignore[method-assign]
        backend.bound_sockets = timed(acc, "bound", backend.bound_sockets)  # type: ignore[method-assign]
        for op in ("AddLink", "AddAddress", "AddRoute", "NftBatch"):
            name = f"_apply_{op}"
            setattr(backend, name, timed(acc, op, getattr(backend, name)))
        ctl.store.read = timed(acc, "read", ctl.store.read)  # type: ignore[method-assign]
        ctl.store.journal_progress = timed(acc, "progress", ctl.store.journal_progress)  # type: ignore[method-assign]
        run_in = nsenter.run_in
        nsenter.run_in = timed(acc, "thread", run_in)
        totals = []
        try:
            for i in range(10, args.n + 10):
                start = time.perf_counter_ns()
                connect(i)
                totals.append(time.perf_counter_ns() - start)
        finally:
            nsenter.run_in = run_in
        mean = statistics.mean(totals) / 1e6
        print(
            f"{args.driver}: {args.n} connects, median {statistics.median(totals) / 1e6:.3f} ms,"
            f" mean {mean:.3f} ms; per connect (mean):"
        )
        for key, label in LAYERS.items():
            if key in acc:
                ms = acc[key] / args.n / 1e6
                print(f"  {label:46s} {ms:.3f} ms  {ms / mean:5.1%}")
        net.disconnect_all() if args.driver == "bridge" else None
        for target in targets:
            target.delete()
        net.delete()
        ctl.close()
    finally:
        for name in [*names, host, lan]:
            subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
