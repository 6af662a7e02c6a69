"""The ``hostnet`` command on the real kernel, run as a separate process.

Every command runs with ``--host`` set to a throwaway namespace and its own state
directory; every namespace carries the World's unique prefix and is deleted afterwards,
even when a test fails. Nothing here touches the root namespace's interfaces, routes or
firewall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostnet.testing.world import World
from tests.conftest import needs_root

pytestmark = [pytest.mark.kernel, needs_root]


def ip_netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


class Cli:
    def __init__(self, world: World, state: Path) -> None:
        self.world = world
        self.host = world.ns("host")
        self.state = state

    def __call__(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hostnet.cli.main",
             "--state-dir", str(self.state), "--host", self.host, *argv],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip


@pytest.fixture
def world() -> Iterator[World]:
    from hostnet.backends.netlink import NetlinkBackend

    backend = NetlinkBackend()
    world = World(backend, tag="hc")
    try:
        yield world
    finally:
        problems = world.cleanup()
        backend.close()
        assert not [n for n in ip_netns_list() if n.startswith(world.prefix)]
        assert not problems


@pytest.fixture
def cli(world: World, tmp_path: Path) -> Cli:
    return Cli(world, tmp_path / "state")


def test_ns_create_exec_rm(cli: Cli) -> None:
    name = cli.world.name("x")

    created = cli("ns", "create", name)
    assert (created.returncode, created.stdout, created.stderr) == (0, f"{name}\n", "")
    assert name in ip_netns_list()

    listed = json.loads(cli("--json", "ns", "ls").stdout)
    mine = {d["name"]: d for d in listed if d["name"].startswith(cli.world.prefix)}
    assert mine[name]["managed"] is True
    assert mine[cli.host]["host"] is True

    links = cli("ns", "exec", name, "--", "ip", "-o", "link")
    assert links.returncode == 0, links.stderr
    lines = links.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].split(":")[1].strip() == "lo"

    assert cli("ns", "exec", name, "--", "sh", "-c", "exit 3").returncode == 3

    removed = cli("ns", "rm", name)
    assert (removed.returncode, removed.stderr) == (0, "")
    assert name not in ip_netns_list()


def test_ns_exec_runs_inside_and_passes_streams(cli: Cli) -> None:
    name = cli.world.name("x")
    assert cli("ns", "create", name).returncode == 0
    inode = os.stat(f"/run/netns/{name}").st_ino

    where = cli("ns", "exec", name, "--", "readlink", "/proc/self/ns/net")
    assert where.stdout.strip() == f"net:[{inode}]"

    echoed = cli("ns", "exec", name, "--", "cat", stdin="hello\n")
    assert (echoed.returncode, echoed.stdout) == (0, "hello\n")

    both = cli("ns", "exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (both.returncode, both.stdout, both.stderr) == (4, "out\n", "err\n")

    missing = cli("ns", "exec", name, "--", "hostnet-no-such-command")
    assert missing.returncode == 127
    assert missing.stderr.startswith("hostnet: error: cannot run")


def test_errors_are_one_line_and_the_host_is_protected(cli: Cli) -> None:
    refused = cli("ns", "rm", cli.host)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "host namespace" in refused.stderr
    assert cli.host in ip_netns_list()

    gone = cli("ns", "rm", cli.world.name("never"))
    assert (gone.returncode, gone.stdout) == (1, "")
    assert gone.stderr.startswith("hostnet: error: ") and "Traceback" not in gone.stderr

    invalid = cli("ns", "create", "bad/name")
    assert invalid.returncode == 2
    assert invalid.stderr == (
        "hostnet: error: invalid namespace name 'bad/name': must not contain '/'\n"
    )


def test_attach_none_and_gc_on_the_kernel(cli: Cli) -> None:
    name = cli.world.name("x")
    assert cli("ns", "create", name).returncode == 0
    assert cli("attach", name, "--driver", "none").returncode == 0
    (inspected,) = json.loads(cli("inspect", name).stdout)
    assert inspected["HostConfig"]["NetworkMode"] == "none"
    assert inspected["NetworkSettings"]["SandboxKey"] == f"/run/netns/{name}"

    # deleted behind hostnet's back: audit sees the stale record, gc forgets it
    subprocess.run(["ip", "netns", "delete", name], check=True)
    audit = json.loads(cli("--json", "audit").stdout)
    assert {"kind": "stale-record", "subject": name}.items() <= audit[0].items()
    gc = cli("gc")
    assert (gc.returncode, gc.stdout) == (0, f"forgot stale {name}\n")
    assert json.loads(cli("--json", "audit").stdout) == []


def test_run_on_the_host_network_runs_in_the_host_namespace(cli: Cli) -> None:
    # `docker run --network host`: the command shares the host's network namespace
    # (here the throwaway namespace playing the host), admitted by the policy
    inode = os.stat(f"/run/netns/{cli.host}").st_ino
    refused = cli("run", "--network", "host", "--", "true")
    assert refused.returncode == 125 and "refused by policy" in refused.stderr
    where = cli(
        "--allow-host-network", "run", "--network", "host", "--name", "job1", "--",
        "readlink", "/proc/self/ns/net",
    )  # fmt: skip
    assert (where.returncode, where.stderr) == (0, ""), where
    assert where.stdout.strip() == f"net:[{inode}]"
    # detached once it ended: no workload left on the host network
    assert json.loads(cli("--json", "network", "inspect", "host").stdout)[0]["Containers"] == {}


def test_gc_detaches_a_host_run_killed_outright(cli: Cli) -> None:
    # `run --network host` killed with SIGKILL: its workload was recorded for good
    import signal

    from hostnet.testing.world import wait_until

    run = subprocess.Popen(
        [sys.executable, "-m", "hostnet.cli.main", "--state-dir", str(cli.state),
         "--host", cli.host, "--allow-host-network", "run", "--network", "host",
         "--name", "jobk", "--", "sleep", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    children: list[int] = []

    def started() -> bool:
        try:
            with open(f"/proc/{run.pid}/task/{run.pid}/children") as f:
                children[:] = [int(p) for p in f.read().split()]
        except OSError:
            return False
        return bool(children)

    try:
        assert wait_until(started, timeout=20)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        listed = json.loads(cli("--json", "network", "inspect", "host").stdout)
        assert "jobk" in listed[0]["Containers"]
        report = json.loads(cli("--json", "gc").stdout)
        assert report["abandoned"] == ["jobk"]
        listed = json.loads(cli("--json", "network", "inspect", "host").stdout)
        assert listed[0]["Containers"] == {}
    finally:
        for pid in children:  # the command it started (ours): ended by its pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if run.poll() is None:
            run.kill()
            run.wait()
