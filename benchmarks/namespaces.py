#!/usr/bin/env python3
"""Creating and deleting named network namespaces: hostnet against a raw syscall floor,
the `ip` command and pyroute2, measured in the same run.

    sudo python3 benchmarks/namespaces.py -n 500

Every method leaves the same thing behind: /run/netns/NAME bind-mounted to a fresh
network namespace whose ``lo`` is up (checked during the warm-up), and delete removes it.

- floor:    what `ip netns add` + `ip link set lo up` do in the kernel, and nothing else:
            create the mount point, unshare(CLONE_NEWNET) in a short-lived thread, bind
            /proc/thread-self/ns/net onto it, SIOCGIFFLAGS/SIOCSIFFLAGS on lo. Delete is
            umount2(MNT_DETACH) + unlink. (/run/netns is made a shared mount once, before
            timing, as hostnet does once per process.)
- hostnet:  Controller(backend="netlink").create_namespace / delete_namespace, including
            validation and the store's journal (SQLite), which is what a user pays.
- ip:       `ip netns add NAME` + `ip -n NAME link set lo up`; `ip netns del NAME`.
- pyroute2: pyroute2.netns.create(NAME) + IPRoute(netns=NAME).link("set", index=1,
            state="up"); pyroute2.netns.remove(NAME).

The methods take turns in rounds of ``--batch`` namespaces each, the order rotating every
round, so machine noise and the kernel's asynchronous namespace destruction (the
cleanup_net workqueue, which runs after delete has returned) fall on all of them alike.
Two phases, each with N namespaces per method:

- churn: every round, each method creates its batch, then each deletes it (at most
         4 x batch namespaces exist): the steady-state cost of one create and one delete.
- hold:  all the creates first, so 4 x N namespaces exist at the end, then all the
         deletes: does the cost grow with the number of namespaces?

Every namespace is named hnbns<pid>-..., and all of them are removed in a ``finally``
block, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import gc
import math
import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from common import (
    NETNS_RUN_DIR,
    Target,
    Timer,
    cleanup_signals,
    drift,
    fresh_thread,
    ignore_signals,
    ip_netns_names,
    machine_info,
    paired_ratio,
    ratio_table,
    remove_namespace,
    rotation,
    summarize,
    sweep_namespaces,
    unique_prefix,
    write_results,
)

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = struct.Struct("16sh22x")  # struct ifreq on 64-bit Linux: name + ifr_flags, 40 bytes

CAP_DAC_READ_SEARCH = 2
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522

IMPORT_TARGET_MS = 150.0
CREATE_TARGET_RATIO = 1.5

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.argtypes += [ctypes.c_ulong]
_libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _ns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def _lo_flags(sock: socket.socket) -> int:
    answer = fcntl.ioctl(sock, SIOCGIFFLAGS, IFREQ.pack(b"lo", 0))
    flags: int = IFREQ.unpack(answer)[1]
    return flags


def _lo_up_ioctl() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        fcntl.ioctl(sock, SIOCSIFFLAGS, IFREQ.pack(b"lo", _lo_flags(sock) | IFF_UP))


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so that every method
    starts from the same state and none pays this inside its timings."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    path = NETNS_RUN_DIR.encode()
    if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0:
        _check(_libc.mount(path, path, b"none", MS_BIND | MS_REC, None), "bind /run/netns")
        _check(_libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None), "share /run/netns")


def namespace_ready(name: str) -> bool:
    """True when /run/netns/NAME is a namespace other than ours whose lo is up."""
    fd = os.open(_ns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        ours, mounted = os.stat("/proc/thread-self/ns/net"), os.fstat(fd)
        if mounted.st_dev != ours.st_dev or mounted.st_ino == ours.st_ino:
            return False  # not a namespace (nothing mounted there), or our own

        def probe() -> bool:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                return bool(_lo_flags(s) & IFF_UP)

        return bool(fresh_thread(probe))
    finally:
        os.close(fd)


# -- the four methods ------------------------------------------------------------------


class Method(Protocol):
    key: str
    label: str

    def create(self, name: str) -> None: ...
    def delete(self, name: str) -> None: ...
    def close(self) -> None: ...


class Floor:
    """The minimal syscalls behind `ip netns add NAME` + `ip -n NAME link set lo up`."""

    key = "floor"
    label = "raw syscalls (floor)"

    def __init__(self) -> None:
        _prepare_run_dir()

    def create(self, name: str) -> None:
        path = _ns_path(name)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))

        def body() -> None:
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            mount_point = path.encode()
            _check(
                _libc.mount(b"/proc/thread-self/ns/net", mount_point, b"none", MS_BIND, None),
                f"bind-mount {path}",
            )
            _lo_up_ioctl()

        try:
            fresh_thread(body)
        except BaseException:
            remove_namespace(name)
            raise

    def delete(self, name: str) -> None:
        path = _ns_path(name)
        _check(_libc.umount2(path.encode(), MNT_DETACH), f"umount {path}")
        os.unlink(path)

    def close(self) -> None:
        pass


class Hostnet:
    """hostnet's public API, with its store in a temporary directory."""

    key = "hostnet"
    label = "hostnet Controller"

    def __init__(self) -> None:
        import hostnet

        self.state_dir = tempfile.mkdtemp(prefix="hnb-state-")
        try:
            with Timer() as t:
                self.ctl = hostnet.Controller(state_dir=self.state_dir, backend="netlink")
        except BaseException:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        self.open_ms = t.ms

    def create(self, name: str) -> None:
        self.ctl.create_namespace(name)

    def delete(self, name: str) -> None:
        self.ctl.delete_namespace(name)

    def close(self) -> None:
        self.ctl.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class IpCommand:
    """iproute2's `ip`, one subprocess per command, as a shell script would run it."""

    key = "ip"
    label = "ip subprocesses"

    def __init__(self) -> None:
        ip = shutil.which("ip")
        if ip is None:
            raise SystemExit("the `ip` command (iproute2) is not installed")
        self.ip = ip
        self.version = subprocess.run(
            [ip, "-V"], capture_output=True, text=True, check=False
        ).stdout.strip()

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

    def create(self, name: str) -> None:
        self._run("netns", "add", name)
        self._run("-n", name, "link", "set", "lo", "up")

    def delete(self, name: str) -> None:
        self._run("netns", "del", name)

    def close(self) -> None:
        pass


class Pyroute2:
    """pyroute2 as its users write it: netns.create, then IPRoute(netns=...) for lo."""

    key = "pyroute2"
    label = "pyroute2"

    def __init__(self) -> None:
        from pyroute2 import IPRoute, netns

        self._iproute = IPRoute
        self._netns = netns

    def create(self, name: str) -> None:
        self._netns.create(name)
        with self._iproute(netns=name) as ipr:
            ipr.link("set", index=1, state="up")

    def delete(self, name: str) -> None:
        self._netns.remove(name)

    def close(self) -> None:
        pass


# -- measuring -------------------------------------------------------------------------


def net_namespace_objects() -> int | None:
    """Kernel objects of struct net, live and dying (from /proc/slabinfo; approximate for
    SLUB). Deleted namespaces stay counted until cleanup_net has destroyed them."""
    try:
        with open("/proc/slabinfo") as fh:
            for line in fh:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Names:
    """Unique namespace names: PREFIX + method initial + serial number."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._serial = 0

    def take(self, method: Method, count: int) -> list[str]:
        names = []
        for _ in range(count):
            self._serial += 1
            names.append(f"{self.prefix}{method.key[0]}{self._serial}")
        return names


def warm_up(methods: Sequence[Method], names: Names, per_method: int) -> None:
    """Exercise every method (lazy imports, page cache, SQLite) and check that each leaves
    the same thing behind: a namespace with lo up, and nothing after delete."""
    for method in methods:
        for name in names.take(method, per_method):
            method.create(name)
            if not namespace_ready(name):
                raise RuntimeError(f"{method.label}: {name} is not a namespace with lo up")
            method.delete(name)
            if os.path.lexists(_ns_path(name)):
                raise RuntimeError(f"{method.label}: {name} still exists after delete")


class Run:
    """One phase of the benchmark: every sample, in the order it was taken."""

    def __init__(self, methods: Sequence[Method], names: Names) -> None:
        self.methods = list(methods)
        self.names = names
        self.create: dict[str, list[float]] = {m.key: [] for m in methods}
        self.delete: dict[str, list[float]] = {m.key: [] for m in methods}
        self.slab: list[int | None] = []

    def measure(
        self, n: int, batch: int, *, hold: bool, progress: Callable[[int, int], None]
    ) -> None:
        """Create and delete ``n`` namespaces per method, in rounds of ``batch`` per
        method with the method order rotating every round.

        churn (hold=False): every round, each method creates its batch, then each deletes
        its batch; at most methods x batch namespaces exist at any time.
        hold (hold=True): all rounds of creates first, so methods x n namespaces exist at
        the end, then all rounds of deletes in the same order.
        """
        rounds = math.ceil(n / batch)
        made: list[dict[str, list[str]]] = []
        self.slab.append(net_namespace_objects())
        for r in range(rounds):
            size = min(batch, n - r * batch)
            gc.collect()  # outside the timings, so no method pays for another's garbage
            made.append({})
            for method in rotation(self.methods, r):
                made[r][method.key] = self.names.take(method, size)
                for name in made[r][method.key]:
                    with Timer() as t:
                        method.create(name)
                    self.create[method.key].append(t.ms)
            if not hold:
                self._delete_round(made[r], r)
            self.slab.append(net_namespace_objects())
            progress(r + 1, rounds * (2 if hold else 1))
        if hold:
            for r in range(rounds):
                gc.collect()
                self._delete_round(made[r], r)
                self.slab.append(net_namespace_objects())
                progress(rounds + r + 1, rounds * 2)

    def _delete_round(self, made: dict[str, list[str]], r: int) -> None:
        for method in rotation(self.methods, r):
            for name in made[method.key]:
                with Timer() as t:
                    method.delete(name)
                self.delete[method.key].append(t.ms)


# -- import time -----------------------------------------------------------------------


def _become_nobody() -> None:
    """preexec_fn: become uid/gid nobody with no capabilities except CAP_DAC_READ_SEARCH
    (kept as an ambient capability across exec). That one is needed only because the
    interpreter may live under /root (mode 700); it grants reading files, nothing else."""
    nobody = pwd.getpwnam("nobody")
    _check(_libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
    bit = 1 << CAP_DAC_READ_SEARCH
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(bit, bit, bit, 0, 0, 0)  # effective, permitted, inheritable
    _check(_libc.capset(header, data), "capset")
    _check(
        _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0),
        "prctl(PR_CAP_AMBIENT_RAISE)",
    )


def _python(code: str, *, as_nobody: bool, extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if as_nobody:
        env["HOME"] = "/nonexistent"
    return subprocess.Popen(
        [sys.executable, *extra, "-c", code],
        cwd="/",  # import the installed package, not ./hostnet
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_become_nobody if as_nobody else None,
    )


def _time_python(code: str, *, as_nobody: bool) -> float:
    with Timer() as t:
        proc = _python(code, as_nobody=as_nobody)
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {code!r} failed: {err.strip()}")
    return t.ms


IMPORTS = {
    "import hostnet": "import hostnet",
    # What `hostnet.Controller` loads on first use (the package imports it lazily).
    "from hostnet import Controller": "from hostnet import Controller",
}
CHECK_AS = "import os, sys, hostnet; print(os.getuid(), 'pyroute2' in sys.modules)"


def measure_import(runs: int) -> dict[str, Any]:
    """Cost of importing hostnet in a fresh interpreter: median wall time of
    `python -c "<import>"` minus that of `python -c pass`, all interleaved, as root and as
    nobody; plus `-X importtime`'s own figure for `import hostnet`."""
    users = {"root": False, "nobody": True}
    codes = {"pass": "pass", **IMPORTS}
    times: dict[str, dict[str, list[float]]] = {u: {c: [] for c in codes} for u in users}
    errors: dict[str, str] = {}
    facts: dict[str, Any] = {}
    for user, as_nobody in users.items():
        try:
            proc = _python(CHECK_AS, as_nobody=as_nobody)
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(err.strip().splitlines()[-1] if err.strip() else "failed")
            uid, loaded = out.split()
            facts[user] = {"uid": int(uid), "pyroute2_loaded": loaded == "True"}
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            errors[user] = str(exc)
    for i in range(runs):
        for user in rotation([u for u in users if u not in errors], i):
            for code in rotation(list(codes), i):
                times[user][code].append(_time_python(codes[code], as_nobody=users[user]))
    result: dict[str, Any] = {"runs": runs, "errors": errors}
    for user in users:
        if user in errors:
            continue
        runs_of = {code: summarize(samples) for code, samples in times[user].items()}
        result[user] = {
            **facts[user],
            "wall_ms": runs_of,
            "import_ms": {
                code: runs_of[code]["median"] - runs_of["pass"]["median"] for code in IMPORTS
            },
            "samples": times[user],
        }
    proc = _python("import hostnet", as_nobody=False, extra=["-X", "importtime"])
    _, err = proc.communicate()
    for line in err.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "hostnet":
            result["importtime_cumulative_ms"] = int(parts[1]) / 1000
    return result


# -- reporting -------------------------------------------------------------------------

METRICS = ("create", "delete", "create+delete")
PHASES = {
    "churn": "in turns of {batch} per method, each batch deleted right after it was created",
    "hold": "in turns of {batch} per method, all kept ({alive} alive), then deleted in turns",
}


def describe(phase: str, n: int, batch: int, methods: int = 4) -> str:
    return PHASES[phase].format(batch=batch, alive=methods * n)


def analyse(run: Run, batch: int) -> dict[str, Any]:
    """Per method: summaries, ratios to the floor's medians (overall and paired by round),
    drift and the raw samples."""
    floor = run.methods[0].key
    out: dict[str, Any] = {}
    for method in run.methods:
        creates, deletes = run.create[method.key], run.delete[method.key]
        both = [c + d for c, d in zip(creates, deletes, strict=True)]
        out[method.key] = {
            "label": method.label,
            "create": summarize(creates),
            "delete": summarize(deletes),
            "create+delete": summarize(both),
            "drift_first_vs_last_10pct": {"create": drift(creates), "delete": drift(deletes)},
            "samples_ms": {
                "create": creates,
                "delete": deletes,
            },
        }
    for key, data in out.items():
        data["ratio_to_floor"] = {
            metric: data[metric]["median"] / out[floor][metric]["median"] for metric in METRICS
        }
        data["ratio_to_floor_paired_by_round"] = {
            op: paired_ratio(getattr(run, op)[key], getattr(run, op)[floor], batch)
            for op in ("create", "delete")
        }
        data["overhead_over_floor_ms"] = {
            metric: data[metric]["median"] - out[floor][metric]["median"] for metric in METRICS
        }
    return out


def phase_targets(phase: str, stats: dict[str, Any]) -> list[Target]:
    hn, floor = stats["hostnet"], stats["floor"]
    ratio = hn["create"]["median"] / floor["create"]["median"]
    found = [
        Target(
            name=f"[{phase}] hostnet create <= {CREATE_TARGET_RATIO}x floor create (medians)",
            passed=ratio <= CREATE_TARGET_RATIO,
            detail=f"{hn['create']['median']:.3f} vs {floor['create']['median']:.3f} ms"
            f" = {ratio:.2f}x (paired by round "
            f"{hn['ratio_to_floor_paired_by_round']['create']:.2f}x; "
            f"+{hn['overhead_over_floor_ms']['create']:.3f} ms)",
        )
    ]
    for other in ("ip", "pyroute2"):
        parts = []
        for metric in METRICS:
            mine, theirs = hn[metric]["median"], stats[other][metric]["median"]
            parts.append(f"{metric} {mine:.3f} vs {theirs:.3f} ms ({theirs / mine:.1f}x)")
        mine, theirs = hn["create+delete"]["median"], stats[other]["create+delete"]["median"]
        found.append(
            Target(
                name=f"[{phase}] hostnet faster than {other} (create+delete medians)",
                passed=mine < theirs,
                detail="; ".join(parts),
            )
        )
    return found


def import_target(imports: dict[str, Any]) -> Target:
    measured = {
        user: imports[user]["import_ms"]["import hostnet"]
        for user in ("root", "nobody")
        if user in imports
    }
    detail = ", ".join(f"as {user}: {ms:.1f} ms" for user, ms in measured.items())
    for user, error in imports["errors"].items():
        detail += f", as {user}: FAILED ({error})"
    return Target(
        name=f"import hostnet <= {IMPORT_TARGET_MS:.0f} ms, also without root",
        passed="nobody" in measured and all(ms <= IMPORT_TARGET_MS for ms in measured.values()),
        detail=detail,
    )


def print_phase(stats: dict[str, Any], run: Run, markdown: bool) -> None:
    labels = {key: data["label"] for key, data in stats.items()}
    print(ratio_table(stats, baseline="floor", metrics=METRICS, labels=labels))
    if markdown:
        print()
        print(ratio_table(stats, baseline="floor", metrics=METRICS, labels=labels, markdown=True))
    print("\nratio to the floor, median of per-round ratios (robust to slow noise):")
    for data in stats.values():
        paired = data["ratio_to_floor_paired_by_round"]
        print(
            f"  {data['label']:<22} create {paired['create']:.2f}x   delete "
            f"{paired['delete']:.2f}x   create overhead "
            f"{data['overhead_over_floor_ms']['create']:+.3f} ms"
        )
    print("\ndrift, median of the first 10% -> the last 10% of the samples:")
    for data in stats.values():
        d = data["drift_first_vs_last_10pct"]
        c, x = d["create"], d["delete"]
        print(
            f"  {data['label']:<22} create {c['first']:.3f} -> {c['last']:.3f} ms "
            f"({c['ratio']:.2f}x)   delete {x['first']:.3f} -> {x['last']:.3f} ms "
            f"({x['ratio']:.2f}x)"
        )
    counts = [c for c in run.slab if c is not None]
    if counts:
        print(
            f"struct net objects in the kernel (approx.): {counts[0]} before, "
            f"max {max(counts)} between rounds, {counts[-1]} after the last round"
        )


def fs_type(path: str) -> str | None:
    """The file system type holding ``path`` (the store's fsyncs depend on it)."""
    best, kind = "", None
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as fh:
        for line in fh:
            _dev, mount_point, fstype, *_ = line.split()
            inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, fstype
    return kind


def _phases(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = set(chosen) - set(PHASES)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)}")
    return chosen


def measure_namespaces(
    args: argparse.Namespace, names: Names
) -> tuple[list[Method], dict[str, Run], list[str]]:
    """Warm up, run the phases; whatever happens, remove every namespace named
    ``names.prefix*``. Returns the methods, the runs and the names `ip netns list` still
    shows afterwards (none, unless the cleanup failed)."""
    methods: list[Method] = []
    runs: dict[str, Run] = {}
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 5) == 0:
            print(f"  round {done}/{total}  {time.monotonic() - started:.1f} s")

    try:
        with cleanup_signals():
            for cls in (Floor, Hostnet, IpCommand, Pyroute2):
                methods.append(cls())
            print(f"warm-up: {args.warmup} per method, names {names.prefix}*")
            warm_up(methods, names, args.warmup)
            for phase in args.phases:
                print(f"{phase}: {args.n} per method, {describe(phase, args.n, args.batch)}")
                runs[phase] = Run(methods, names)
                runs[phase].measure(args.n, args.batch, hold=phase == "hold", progress=progress)
    finally:
        with ignore_signals():
            for method in methods:
                try:
                    method.close()
                except Exception as exc:  # keep cleaning up
                    print(f"closing {method.label}: {exc}", file=sys.stderr)
            # A create cut short by Ctrl-C may still be running in a helper thread.
            for thread in threading.enumerate():
                if thread is not threading.current_thread():
                    thread.join(timeout=5)
            sweep_namespaces(names.prefix)
            leftovers = [n for n in ip_netns_names() if n.startswith(names.prefix)]
            if leftovers:
                print(f"LEFT BEHIND: {leftovers}", file=sys.stderr)
            else:
                print(f"cleanup: `ip netns list` shows no {names.prefix}* namespace")
    return methods, runs, leftovers


def print_imports(imports: dict[str, Any]) -> None:
    for user in ("root", "nobody"):
        if user not in imports:
            continue
        info = imports[user]
        base = info["wall_ms"]["pass"]["median"]
        for code, ms in info["import_ms"].items():
            print(
                f"{code} as {user} (uid {info['uid']}): {ms:.1f} ms "
                f"({info['wall_ms'][code]['median']:.1f} - {base:.1f} ms of python -c pass)"
            )
        print(f"  pyroute2 loaded by `import hostnet`: {info['pyroute2_loaded']}")
    for user, error in imports["errors"].items():
        print(f"import as {user} FAILED: {error}")
    if "importtime_cumulative_ms" in imports:
        print(f"-X importtime: hostnet {imports['importtime_cumulative_ms']:.2f} ms cumulative")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="namespaces per method and phase")
    parser.add_argument("--batch", type=int, default=10, help="namespaces per turn (10)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed, per method (10)")
    parser.add_argument("--phases", type=_phases, default=list(PHASES), help="churn,hold")
    parser.add_argument("--import-runs", type=int, default=20, help="0 skips it (20)")
    parser.add_argument("--out", type=Path, help="result file (results/namespaces.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("namespaces.py needs root (CAP_SYS_ADMIN to create namespaces)", file=sys.stderr)
        return 2
    if args.n < 10 or args.batch < 1:
        parser.error("-n must be at least 10 and --batch at least 1")

    machine = machine_info()
    print(
        f"{machine['date']}  kernel {machine['kernel']}  python {machine['python']}  "
        f"pyroute2 {machine['pyroute2']}  {machine['cpus']} CPUs  load {machine['loadavg']}"
        f"  python loop {machine['probes']['python_loop_ms']} ms, thread {machine['probes']['thread_us']} us"
    )
    imports: dict[str, Any] = {"runs": 0, "errors": {}}
    if args.import_runs:
        print(f"import: {args.import_runs} x python -c pass / {' / '.join(IMPORTS)}")
        imports = measure_import(args.import_runs)

    names = Names(unique_prefix("ns"))
    started = time.monotonic()
    methods, runs, leftovers = measure_namespaces(args, names)
    elapsed = time.monotonic() - started

    found: list[Target] = []
    phases: dict[str, Any] = {}
    for phase, run in runs.items():
        stats = analyse(run, args.batch)
        print(f"\n== {phase}: {args.n} per method, {describe(phase, args.n, args.batch)} ==")
        print_phase(stats, run, args.markdown)
        found += phase_targets(phase, stats)
        phases[phase] = {
            "order": describe(phase, args.n, args.batch),
            "methods": stats,
            "net_namespace_slab_objects_per_round": run.slab,
        }
    hn, ip = methods[1], methods[2]
    assert isinstance(hn, Hostnet) and isinstance(ip, IpCommand)
    print(f"\nfirst hostnet Controller() in the process: {hn.open_ms:.1f} ms (lazy imports)")
    if imports["runs"]:
        print_imports(imports)
        found.append(import_target(imports))
    print()
    for target in found:
        print(target)

    if not args.no_write:
        path = write_results(
            "namespaces",
            {
                "units": "ms",
                "params": {
                    "n": args.n,
                    "batch": args.batch,
                    "warmup": args.warmup,
                    "prefix": names.prefix,
                    "state_dir_fs": fs_type(tempfile.gettempdir()),
                    "iproute2": ip.version,
                    "elapsed_s": round(elapsed, 2),
                },
                "phases": phases,
                "hostnet_first_controller_open_ms": hn.open_ms,
                "import": imports,
                "targets": [t.to_json() for t in found],
                "leftover_namespaces": leftovers,
            },
            path=args.out,
            machine=machine,
        )
        print(f"\nwrote {path}")
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
