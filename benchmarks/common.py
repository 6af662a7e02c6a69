"""Helpers shared by hostnet's benchmarks.

Every benchmark follows the same method (see docs/performance.md):

- the baselines run in the same process and the same run as hostnet, interleaved with it
  (``rotation``), so machine noise falls on every method alike;
- each operation is timed on its own (``Timer``) and reported as median and p95
  (``summarize``), never as a mean of a loop;
- results are printed as a table of ratios to one baseline (``ratio_table``) and written
  to JSON together with the machine they were measured on (``write_results``);
- targets are printed as PASS/FAIL (``Target``), never asserted.

The namespace helpers (``unique_prefix``, ``sweep_namespaces``, ``cleanup_signals``) are
here because every kernel benchmark builds its world out of throwaway namespaces and must
remove them all, whatever happens.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import datetime
import errno
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NETNS_RUN_DIR = "/run/netns"

# -- timing ----------------------------------------------------------------------------


class Timer:
    """Wall-clock time of a block, in milliseconds.

    >>> with Timer() as t:
    ...     pass
    >>> t.ms >= 0
    True
    """

    __slots__ = ("_start", "ms")

    def __init__(self) -> None:
        self._start = 0
        self.ms = math.nan

    def __enter__(self) -> Timer:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter_ns() - self._start) / 1e6


def fresh_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that ends with it and return its result (or raise its
    exception); the caller's thread never changes namespace. A bare thread and a lock,
    as hostnet's nsenter does (threading.Thread's start and join handshakes cost a third
    more), so that no floor pays more for its thread than hostnet does."""
    box: list[T] = []
    fail: list[BaseException] = []
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the caller
            fail.append(exc)
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    done.acquire()
    if fail:
        raise fail[0]
    return box[0]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolated linearly between closest ranks
    (numpy's default), so p95 of few samples is not simply the maximum."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """median, p95, mean, min, max and n of ``samples`` (same unit as the samples)."""
    if not samples:
        return {"n": 0, "median": math.nan, "p95": math.nan, "mean": math.nan}
    return {
        "n": len(samples),
        "median": statistics.median(samples),
        "p95": percentile(samples, 95),
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "max": max(samples),
    }


def drift(samples: Sequence[float], fraction: float = 0.1) -> dict[str, float]:
    """Median of the first and of the last ``fraction`` of ``samples`` (in the order they
    were taken) and their ratio: > 1 means the operation got slower as the run went on."""
    k = max(1, int(len(samples) * fraction))
    first = statistics.median(samples[:k]) if samples else math.nan
    last = statistics.median(samples[-k:]) if samples else math.nan
    return {"first": first, "last": last, "ratio": last / first if first else math.nan}


def paired_ratio(samples: Sequence[float], baseline: Sequence[float], chunk: int) -> float:
    """Median over chunks of (median of ``samples`` / median of ``baseline``) in that
    chunk, where chunk k holds the samples taken in round k. Because both medians of a
    chunk were taken within a fraction of a second, noise that comes and goes over
    seconds (other tenants, kernel housekeeping) cancels out, which a ratio of the two
    overall medians cannot do."""
    ratios = []
    for start in range(0, min(len(samples), len(baseline)), chunk):
        mine, base = samples[start : start + chunk], baseline[start : start + chunk]
        if mine and base and statistics.median(base) > 0:
            ratios.append(statistics.median(mine) / statistics.median(base))
    return statistics.median(ratios) if ratios else math.nan


def versus(samples: Sequence[float], baseline: Sequence[float], chunk: int) -> dict[str, float]:
    """``samples`` against a second baseline of the same run: the ratio of medians, the
    paired ratio (``paired_ratio``) and the difference of medians (the overhead, in the
    samples' unit)."""
    if not samples or not baseline:  # (a method that failed at this size)
        return {"ratio": math.nan, "paired": math.nan, "overhead": math.nan}
    mine, base = statistics.median(samples), statistics.median(baseline)
    return {
        "ratio": mine / base,
        "paired": paired_ratio(samples, baseline, chunk),
        "overhead": mine - base,
    }


def rotation(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` rotated by ``round_index``: over len(items) rounds every item runs in
    every position once, so no method always runs first (or right after a noisy one)."""
    if not items:
        return []
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


# -- reporting -------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    baseline: str,
    metrics: Sequence[str],
    labels: Mapping[str, str] | None = None,
    unit: str = "ms",
    markdown: bool = False,
) -> str:
    """A table with, per method (row) and metric, the median, the p95 and the ratio of
    the median to the baseline's median.

    ``results[method][metric]`` is a ``summarize`` dict. With ``markdown`` the table is
    ready to paste into docs/performance.md.
    """
    labels = labels or {}
    rows = []
    for method, per_metric in results.items():
        row = [labels.get(method, method)]
        for metric in metrics:
            s = per_metric[metric]
            base = results[baseline][metric]["median"]
            ratio = s["median"] / base if base else math.nan
            row += [_fmt(s["median"]), _fmt(s["p95"]), f"{ratio:.2f}x"]
        rows.append(row)
    columns = ("median", "p95", f"x {baseline}")
    if markdown:
        header = ["method"]
        for metric in metrics:
            header += [f"{metric} median ({unit})", f"{metric} p95 ({unit})"]
            header += [f"{metric} x {baseline}"]
        lines = ["| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    sub = ["method", *(columns * len(metrics))]
    widths = [max(len(r[i]) for r in [sub, *rows]) for i in range(len(sub))]
    # One heading per metric, centred over its three columns.
    group = [" " * widths[0]]
    for index, metric in enumerate(metrics):
        span = sum(widths[1 + 3 * index : 4 + 3 * index]) + 4
        group.append(f"{metric} ({unit})".center(span, "-"))
    out = ["  ".join(group)]
    for index, row in enumerate([sub, *rows]):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        out.append("  ".join(cells))
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A performance goal, reported (not asserted): ``print(target)`` gives one line."""

    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_path(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    return spec.origin if spec is not None else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mem_total_mib() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def source_info() -> dict[str, Any] | None:
    """The commit of the hostnet tree being measured, and which of its files differ from
    it (results of a dirty tree are not the commit's). None outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "hostnet"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "modified": [line[3:] for line in status.splitlines()]}


def machine_info() -> dict[str, Any]:
    """What a result needs next to it to be compared with another machine's (and with
    another version of hostnet)."""
    uname = platform.uname()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total_mib": _mem_total_mib(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "hostnet": _package_version("hostnet"),
        "pyroute2": _package_version("pyroute2"),
        "hostnet_path": _module_path("hostnet"),
        "hostnet_source": source_info(),
        "probes": machine_probes(),
    }


def machine_probes() -> dict[str, float]:
    """How fast this machine is at what decides hostnet's ratios (medians of 5): the
    CPU at Python (``python_loop_ms``: a loop of 1,000,000 additions) and the hand-off
    to a fresh thread and back (``thread_us``: start one, wait for it). The floors are
    system calls and barely depend on the first; hostnet's work over them does (a
    machine three times slower at Python had ratios 1.3 to 1.4 times higher, session 12
    in docs/performance.md), so compare ratios between machines with these beside."""
    loops, threads = [], []
    for _ in range(5):
        start = time.perf_counter_ns()
        total = 0
        for i in range(1_000_000):
            total += i
        loops.append((time.perf_counter_ns() - start) / 1e6)
        for _ in range(20):
            done = threading.Event()
            start = time.perf_counter_ns()
            thread = threading.Thread(target=done.set)
            thread.start()
            done.wait()
            thread.join()
            threads.append((time.perf_counter_ns() - start) / 1e3)
    return {
        "python_loop_ms": round(statistics.median(loops), 2),
        "thread_us": round(statistics.median(threads), 1),
    }


def write_results(
    name: str,
    payload: Mapping[str, Any],
    *,
    path: str | os.PathLike[str] | None = None,
    machine: Mapping[str, Any] | None = None,
    digits: int = 4,
) -> Path:
    """Write ``payload`` plus machine info to benchmarks/results/NAME.json (or ``path``)
    and return the path. ``machine`` defaults to ``machine_info()`` taken now; pass the
    one taken at the start of the run to record the load the run started under. Floats
    are rounded to ``digits`` decimals (0.1 us for times in ms)."""
    target = Path(path) if path is not None else RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "command": " ".join(["python3", *sys.argv]),
        "machine": dict(machine) if machine is not None else machine_info(),
        **payload,
    }
    text = json.dumps(json_safe(document, digits), indent=2, allow_nan=False)
    # Lists of numbers (raw samples) on one line each, so the file stays readable.
    text = _NUMBER_LIST.sub(_one_line, text)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(target)
    return target


_NUMBER = r"(?:-?[0-9.eE+-]+|null)"
_NUMBER_LIST = re.compile(rf"\[\s*({_NUMBER}(?:,\s*{_NUMBER})*)\s*\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(item.strip() for item in match.group(1).split(",")) + "]"


def json_safe(value: Any, digits: int | None = None) -> Any:
    """``value`` with NaN floats replaced by None (JSON has no NaN) and, with ``digits``,
    floats rounded."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if digits is None else round(value, digits)
    if isinstance(value, Mapping):
        return {k: json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, digits) for v in value]
    return value


# -- throwaway namespaces --------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2


def unique_prefix(tag: str) -> str:
    """A namespace-name prefix no other run can share: "hnb" + tag + our pid in hex.
    Everything a benchmark creates is named PREFIX-..., and only that is swept."""
    return f"hnb{tag}{os.getpid():x}-"


def list_namespaces(prefix: str = "") -> list[str]:
    """Named namespaces (as ``ip netns list`` shows them) starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def ip_netns_names() -> list[str]:
    """The names `ip netns list` shows (what a run must leave none of its own in)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def remove_namespace(name: str) -> None:
    """Unmount and unlink /run/netns/NAME, tolerating a file that was never mounted or
    is already gone (what a create interrupted half-way leaves)."""
    path = os.path.join(NETNS_RUN_DIR, name)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def sweep_namespaces(prefix: str) -> list[str]:
    """Remove every namespace named ``prefix*`` and return the names that could not be
    removed. An empty prefix is refused: a sweep must never reach beyond its own run."""
    if len(prefix) < 4:
        raise ValueError(f"refusing to sweep namespaces with the short prefix {prefix!r}")
    failed = []
    for name in list_namespaces(prefix):
        try:
            remove_namespace(name)
        except OSError as exc:
            print(f"could not remove namespace {name}: {exc}", file=sys.stderr)
            failed.append(name)
    return failed


@contextlib.contextmanager
def cleanup_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt for the body, so that
    ``finally`` blocks run on ``kill`` as they do on Ctrl-C. Use it around the measuring
    code and ``ignore_signals`` around the cleanup.

    A process fork()ed without exec (pyroute2 forks a child per namespaced socket and
    stops it with SIGTERM) inherits the handler; there it exits at once instead of
    unwinding through our stack and running our cleanup a second time."""
    owner = os.getpid()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in sigs}
    try:
        yield
    finally:
        if os.getpid() != owner:
            os._exit(1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def ignore_signals() -> Iterator[None]:
    """Ignore Ctrl-C, SIGTERM and SIGHUP for the body: a second Ctrl-C must not cut a
    cleanup short and leave namespaces behind."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
