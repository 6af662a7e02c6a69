"""``hostnet demo`` as a user runs it: a separate process, as root, on the real kernel.

The demo builds everything in namespaces named ``hostnet-demo-<hex>-*`` and must remove
all of them, whether it finishes, fails or is interrupted; the root namespace's
firewall must be exactly as before. A demo that hangs is stopped (SIGTERM, then SIGKILL
by its pid) and whatever it left is removed by the test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hostnet.cli.demo import PREFIX, checks_for
from tests.conftest import needs_root

pytestmark = [pytest.mark.kernel, needs_root]

DEMO = [sys.executable, "-m", "hostnet.cli.main", "demo"]
TIMEOUT = 120


def demo_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    names = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    return {name for name in names if name.startswith(PREFIX)}


def root_nft_tables() -> str:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout


class Run:
    """One demo process; ``stop`` ends it by its pid if it is still running."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*DEMO, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C sent to its group reaches only it
        )

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # let it clean up first
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture
def guard() -> Iterator[list[Run]]:
    """Runs the test starts; afterwards they are stopped, and the machine checked and
    repaired: no demo namespace left, the root firewall unchanged."""
    before_ns = demo_namespaces()
    before_nft = root_nft_tables()
    runs: list[Run] = []
    try:
        yield runs
    finally:
        for run in runs:
            run.stop()
        leaked = demo_namespaces() - before_ns
        for name in leaked:  # made during this test: ours to remove
            subprocess.run(["ip", "netns", "delete", name], check=False)
        assert not leaked, f"the demo left namespaces behind: {sorted(leaked)}"
        assert root_nft_tables() == before_nft


def check_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"(PASS|FAIL|SKIP) ", line)]


def test_demo_passes_every_check_and_leaves_nothing(guard: list[Run]) -> None:
    run = Run()
    guard.append(run)
    code, out, err = run.finish()
    assert code == 0, out + err
    assert err == ""
    lines = check_lines(out)
    assert len(lines) == len(checks_for("10.201.0.2")), out
    assert all(line.startswith("PASS ") for line in lines), out
    assert "All 6 checks passed." in out
    # what it built is shown: both networks with their subnets, and the three namespaces
    assert re.search(r"^frontend\s+bridge\s+10\.201\.0\.0/24\s+10\.201\.0\.1\s+br-", out, re.M)
    assert re.search(r"^backend\s+bridge\s+10\.202\.0\.0/24", out, re.M)
    assert re.search(r"^web\s+frontend\s+10\.201\.0\.\d+/24\s+\S+\s+0\.0\.0\.0:8080->80/tcp", out,
                     re.M)  # fmt: skip
    for role in ("client", "db"):
        assert re.search(rf"^{role}\s+(frontend|backend)\s+10\.20[12]\.0\.\d+/24", out, re.M)
    assert "Cleaned up" in out


def test_demo_json_report(guard: list[Run]) -> None:
    run = Run("--json")
    guard.append(run)
    code, out, err = run.finish()
    assert code == 0, out + err
    report = json.loads(out)
    assert report["passed"] is True and report["cleanup_errors"] == []
    assert [c["result"] for c in report["checks"]] == ["PASS"] * 6
    assert {n["Name"] for n in report["networks"]} == {"frontend", "backend"}
    assert {n["Role"] for n in report["namespaces"]} == {"web", "client", "db"}
    assert report["prefix"].startswith(PREFIX)


@pytest.mark.parametrize(
    ("how", "after"),
    [
        ("SIGINT", "What hostnet built"),  # while the checks are about to run
        ("SIGTERM", "What hostnet built"),
        ("SIGINT", "namespaces named"),  # while it is still building
        ("SIGTERM", "namespaces named"),
    ],
)
def test_an_interrupted_demo_removes_everything(guard: list[Run], how: str, after: str) -> None:
    run = Run()
    guard.append(run)
    assert run.proc.stdout is not None
    seen = []
    for line in run.proc.stdout:
        seen.append(line)
        if after in line:
            break
    else:
        pytest.fail("the demo ended before the point to interrupt it: " + "".join(seen))
    signum = getattr(signal, how)  # SIGINT: what Ctrl-C delivers
    run.proc.send_signal(signum)
    code, out, err = run.finish()
    assert code == -signum, "".join(seen) + out + err  # cleaned up, then dies of it
    assert "Traceback" not in err
    assert "Cleaned up" in out, "".join(seen) + out + err
