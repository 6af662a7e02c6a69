#!/usr/bin/env python3
"""Opening a namespace's /proc/sys/net/ipv6/conf as namespaces accumulate.

    sudo python3 benchmarks/sysctl_dirs.py -n 1000     # about 15 s on 2 cores

Every bridge or macvlan connect of an IPv4-only endpoint opens the workload
namespace's ``net/ipv6/conf`` directory from a thread inside it, to turn IPv6 off on
the workload's interface (docs/decisions.md). The kernel caches one directory entry
per namespace for ``net/ipv6``, all with one name under one parent, so the first lookup
in a namespace walks the entries of every namespace that looked before it. This
benchmark makes N namespaces (all alive together, as endpoints are) and, in each, from
a fresh thread inside it, times the first open of that directory two ways, in turns:

- ``proc``: ``/proc/sys/net/ipv6/conf``, the baseline (what hostnet did up to session
  10, and what ``ip netns exec NAME sysctl`` or a container runtime does);
- ``hostnet``: ``nsenter.open_sysctl``, through hostnet's private procfs instances.

Reports medians, p95, the ratio to ``proc`` and the growth (median of the last 10 % of
namespaces / of the first 10 %). Every namespace is named hnbsd<pid>-... and removed in
a ``finally`` block; nothing outside them is written (each directory is only opened).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from common import (
    Target,
    cleanup_signals,
    drift,
    fresh_thread,
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

DIRECTORY = "net/ipv6/conf"
FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def _proc() -> int:
    return os.open("/proc/sys/" + DIRECTORY, FLAGS)


def _hostnet() -> int:
    from hostnet.backends.netlink import nsenter

    return nsenter.open_sysctl(DIRECTORY, os.O_PATH | os.O_DIRECTORY)


METHODS: dict[str, Callable[[], int]] = {"proc": _proc, "hostnet": _hostnet}


def _time_in(fd: int, open_dir: Callable[[], int]) -> float:
    """ms to open the directory once from a fresh thread inside namespace ``fd``."""
    from hostnet.backends.netlink import nsenter

    def inside() -> float:
        nsenter.setns(fd)
        start = time.perf_counter_ns()
        opened = open_dir()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        os.close(opened)
        return elapsed

    return fresh_thread(inside)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="namespaces (1000)")
    parser.add_argument("--out", help="results file (default benchmarks/results/sysctl_dirs.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2

    from hostnet.backends.netlink import nsenter

    machine = machine_info()
    prefix = unique_prefix("sd")
    samples: dict[str, list[float]] = {name: [] for name in METHODS}
    try:
        with cleanup_signals():
            for i in range(args.n):
                nsenter.create_namespace(f"{prefix}{i}", lambda: None)
            for i in range(args.n):
                fd = nsenter.open_namespace(f"{prefix}{i}")
                try:
                    for name in rotation(list(METHODS), i):
                        samples[name].append(_time_in(fd, METHODS[name]))
                finally:
                    os.close(fd)
    finally:
        with ignore_signals():
            left = sweep_namespaces(prefix)
    if left:
        print(f"could not remove: {left}", file=sys.stderr)
        return 1

    results = {name: {"open": summarize(s)} for name, s in samples.items()}
    growth = {name: drift(s) for name, s in samples.items()}
    print(f"first open of {DIRECTORY} in each of {args.n} namespaces (all alive), ms")
    print(ratio_table(results, baseline="proc", metrics=["open"]))
    for name, g in growth.items():
        print(f"  {name:8s} first 10 % {g['first']:.4f}  last 10 % {g['last']:.4f}"
              f"  growth {g['ratio']:.2f}x")  # fmt: skip
    target = Target(
        name="hostnet's open does not grow with the namespaces (last/first <= 1.15)",
        passed=growth["hostnet"]["ratio"] <= 1.15,
        detail=f"{growth['hostnet']['ratio']:.2f}x (proc: {growth['proc']['ratio']:.2f}x)",
    )
    print(target)
    if not args.no_write:
        path = write_results(
            "sysctl_dirs",
            {
                "params": {"n": args.n, "directory": DIRECTORY},
                "private_procfs": not nsenter._procs.unavailable,
                "stats": results,
                "versus_proc": versus(samples["hostnet"], samples["proc"], 10),
                "growth_first_vs_last_10pct": growth,
                "targets": [target.to_json()],
                "samples_ms": samples,
            },
            path=args.out,
            machine=machine,
        )
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
