"""``network``, ``connect``, ``disconnect`` and ``run`` on the real kernel, with traffic.

Every command runs as a separate process with ``--host`` set to a throwaway namespace
and its own state directory. Namespaces carry the World's unique prefix (``run`` without
``--name`` makes its own name: the command prints it, so the finalizer can remove it if
the test fails). Nothing here touches the root namespace's interfaces, routes or
firewall; every process a test starts is ended by its pid.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostnet.backends.netlink import NetlinkBackend
from hostnet.controller import Controller
from hostnet.namespace import Namespace
from hostnet.ops import DeleteNamespace
from hostnet.testing.world import World, wait_until
from tests.conftest import needs_root
from tests.kernel.netutil import SERVER, request, server

pytestmark = [pytest.mark.kernel, needs_root]

SUBNET = "10.93.0.0/24"
GATEWAY = "10.93.0.1"


def ip_netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


class Cli:
    def __init__(self, world: World, state: Path) -> None:
        self.world = world
        self.host = world.ns("host")
        self.state = state
        self.base = [sys.executable, "-m", "hostnet.cli.main",
                     "--state-dir", str(state), "--host", self.host]  # fmt: skip
        # Names ``run`` made up, to remove if a test fails before ``run`` does.
        self.generated: list[str] = []
        # Namespace objects for traffic helpers: a Controller of its own, with its own
        # state, that only opens namespaces (adopt=False records nothing).
        self.probe = Controller(
            state_dir=state.parent / "probe", host=self.host, backend=world.backend
        )

    def __call__(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *argv: str) -> str:
        result = self(*argv)
        assert result.returncode == 0, result
        return result.stdout

    def ns(self, name: str) -> Namespace:
        return self.probe.namespace(name, adopt=False)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    backend = NetlinkBackend()
    world = World(backend, tag="hk")
    cli = None
    try:
        cli = Cli(world, tmp_path / "state")
        yield cli
    finally:
        if cli is not None:
            cli.probe.close()
            for name in cli.generated:
                if name in backend.namespaces():
                    backend.apply(DeleteNamespace(ns=name))
        problems = world.cleanup()
        backend.close()
        assert not [n for n in ip_netns_list() if n.startswith(world.prefix)]
        assert not problems


def test_network_create_ls_inspect_connect_publish_disconnect_rm(cli: Cli) -> None:
    network_id = cli.ok("network", "create", "web", "--subnet", SUBNET, "-o", "mtu=1400").strip()
    bridge = f"br-{network_id[:12]}"
    host = cli.ns(cli.host)
    link = host.snapshot().link(bridge)
    assert link is not None and link.mtu == 1400
    assert f"{GATEWAY}/24" in host.snapshot().addresses_of(bridge)

    listed = [line.split() for line in cli.ok("network", "ls").splitlines()]
    assert [network_id[:12], "web", "bridge", "local"] in listed
    [info] = json.loads(cli.ok("network", "inspect", "web"))
    assert info["IPAM"]["Config"] == [{"Subnet": SUBNET, "Gateway": GATEWAY}]

    name = cli.world.name("app")
    cli.ok("ns", "create", name)
    shown = cli.ok("connect", "web", name, "-p", "18080:80")
    facts = dict(line.split(None, 1) for line in shown.splitlines())
    assert facts["ip"] == "10.93.0.2/24" and facts["ports"] == "0.0.0.0:18080->80/tcp"
    app = cli.ns(name)
    eth0 = app.snapshot().link("eth0")
    assert eth0 is not None and eth0.mac == facts["mac"] and eth0.mtu == 1400
    assert json.loads(cli.ok("network", "inspect", "web"))[0]["Containers"][name][
        "IPv4Address"
    ] == ("10.93.0.2/24")
    assert [line.split() for line in cli.ok("ports").splitlines()][1:] == [
        ["0.0.0.0", "18080", "tcp", name]
    ]

    with server(app, 80):
        # the published port answers in the host namespace, on localhost and its address
        assert request(host, "127.0.0.1", 18080).startswith(name)
        assert request(host, GATEWAY, 18080).startswith(name)
        # and the endpoint is reachable directly from the host through the bridge
        assert request(host, "10.93.0.2", 80).startswith(name)

        assert cli.ok("disconnect", "web", name) == f"{name} disconnected from web\n"
        assert app.snapshot().link_names() == {"lo"}
        assert request(host, "127.0.0.1", 18080, timeout=1).startswith("FAIL")
    assert cli.ok("ports").splitlines()[1:] == []

    assert cli.ok("network", "rm", "web") == "web\n"
    after = host.snapshot()
    assert after.link(bridge) is None
    assert after.nft_tables == ()
    assert cli.ok("ns", "rm", name) == f"{name}\n"
    assert name not in ip_netns_list()


def test_bad_input_changes_nothing_on_the_kernel(cli: Cli) -> None:
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    name = cli.world.name("app")
    cli.ok("ns", "create", name)
    host = cli.ns(cli.host)
    before = host.snapshot()
    for argv, code in [
        (["network", "create", "web2", "--subnet", "10.93.0.128/25"], 1),
        (["network", "create", "web3", "-o", "colour=blue"], 2),
        (["network", "create", "web4", "--subnet", "10.94.0.0/24", "--gateway", "10.95.0.1"], 2),
        (["connect", "web", name, "-p", "80:80:80:80"], 2),
        (["connect", "web", name, "--ip", "10.99.0.5"], 2),
        (["run", "--network", "web", "-p", "bad", "--", "true"], 125),
    ]:
        result = cli(*argv)
        assert result.returncode == code, result
        assert result.stdout == "" and result.stderr.count("\n") == 1, result
        assert result.stderr.startswith("hostnet: error: "), result
    after = host.snapshot()
    assert after.link_names() == before.link_names()
    assert after.addresses == before.addresses
    assert cli.ns(name).snapshot().link_names() == {"lo"}
    assert [line.split()[1] for line in cli.ok("network", "ls").splitlines()[1:]] == [
        "host",
        "none",
        "web",
    ]


# What `run` runs: say where it is and what it has, then exit with a known code.
REPORT = r"""
import json, socket, subprocess, sys
me = subprocess.run(["ip", "netns", "identify"], capture_output=True, text=True).stdout.strip()
print(me, flush=True)
addr = subprocess.run(["ip", "-j", "-4", "addr", "show", "eth0"], capture_output=True,
                      text=True).stdout
print(json.loads(addr)[0]["addr_info"][0]["local"], flush=True)
data = sys.stdin.read()
print(data.upper(), end="")
print("to stderr", file=sys.stderr)
sys.exit(7)
"""


def test_run_propagates_the_exit_code_and_leaves_no_namespace(cli: Cli) -> None:
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    before = ip_netns_list()
    result = subprocess.run(
        [*cli.base, "run", "--network", "web", "-p", "18080:80", "--",
         sys.executable, "-c", REPORT],
        input="hello through stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    if lines and lines[0].startswith("hostnet-run-"):
        cli.generated.append(lines[0])
    assert result.returncode == 7, result
    assert lines[0].startswith("hostnet-run-") and lines[0] not in before
    assert lines[1:] == ["10.93.0.2", "HELLO THROUGH STDIN"]
    assert result.stderr == "to stderr\n"
    assert lines[0] not in ip_netns_list()
    assert cli.ok("ports").splitlines()[1:] == []
    assert json.loads(cli.ok("network", "inspect", "web"))[0]["Containers"] == {}
    # and the network is empty again: it can go without --force
    assert cli.ok("network", "rm", "web") == "web\n"


def start_serving_run(cli: Cli) -> tuple[str, subprocess.Popen[str]]:
    """`hostnet run` of a server publishing 18080 on a new network "web"; the name of
    its namespace and the process (not yet ready: read "ready" from its stdout)."""
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    name = cli.world.name("run")
    proc = subprocess.Popen(
        [*cli.base, "run", "--network", "web", "-p", "18080:80", "--name", name, "--",
         sys.executable, "-c", SERVER, "0.0.0.0", "80", "tcp", "served"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: "Ctrl-C" reaches only it
    )  # fmt: skip
    return name, proc


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "Ctrl-C"])
def test_run_serves_a_published_port_and_cleans_up_when_stopped(cli: Cli, how: str) -> None:
    name, proc = start_serving_run(cli)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        host = cli.ns(cli.host)
        assert request(host, "127.0.0.1", 18080) == f"served {GATEWAY}"
        assert name in ip_netns_list()
        # (the command dies of the signal, and hostnet of the same one once it has
        # cleaned up: what its caller would see of the command itself)
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)  # to hostnet alone: passed on to the command
            expected = -signal.SIGTERM
        elif how == "SIGINT":
            proc.send_signal(signal.SIGINT)  # `kill -INT` of hostnet alone: passed on too
            expected = -signal.SIGINT
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
            expected = -signal.SIGINT  # the server dies of it, hostnet waits
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == expected, err
        assert "hostnet: error" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_until(lambda: name not in ip_netns_list())
    assert request(cli.ns(cli.host), "127.0.0.1", 18080, timeout=1).startswith("FAIL")
    assert cli.ok("ports").splitlines()[1:] == []


def test_ctrl_c_stops_a_shell_loop_around_run_as_it_stops_one_around_the_command(
    cli: Cli,
) -> None:
    # bash goes on with a loop after a child that exited 130 (it takes it for one that
    # handled Ctrl-C itself); one that died of SIGINT stops the loop. `run` whose
    # command died of Ctrl-C dies of it too, so the loop stops, as with `ip netns exec`
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    name = cli.world.name("loop")  # (+ the iteration: the fixture removes them if left)
    run = " ".join(shlex.quote(a) for a in [*cli.base, "run", "--network", "web"])
    loop = (
        # (exec: a Ctrl-C between the echo and the sleep would reach only the shell,
        # which, waiting for a child it then starts, lets it sleep on: the loop goes on)
        f"for i in 1 2 3; do {run} --name {name}x$i -- sh -c 'echo ready; exec sleep 30'; "
        "echo next $?; done"
    )
    proc = subprocess.Popen(
        ["bash", "-c", loop],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: "Ctrl-C" reaches only it
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()  # (and its pipes closed)
    assert "next" not in out and "ready" not in out, (out, err)
    assert proc.returncode == -signal.SIGINT, err
    assert cli.ok("ports").splitlines()[1:] == []
    assert json.loads(cli.ok("network", "inspect", "web"))[0]["Containers"] == {}


def test_gc_deletes_what_a_killed_run_left_once_its_command_is_gone(cli: Cli) -> None:
    name, proc = start_serving_run(cli)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()  # hostnet itself, outright: no cleanup runs
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    server = cli.ns(name)
    (pid,) = server.pids()  # the command outlives hostnet, with its network
    try:
        assert request(cli.ns(cli.host), "127.0.0.1", 18080) == f"served {GATEWAY}"
        kept = f"kept abandoned namespace {name}: processes {pid} still run there\n"
        assert cli.ok("gc") == kept
        assert name in ip_netns_list()
        os.kill(pid, signal.SIGKILL)  # started by this test, through hostnet
    finally:
        if server.pids():
            os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not server.pids())
    assert cli.ok("gc") == f"deleted abandoned namespace {name}\n"
    assert name not in ip_netns_list()
    assert cli.ok("ports").splitlines()[1:] == []
    assert json.loads(cli.ok("network", "inspect", "web"))[0]["Containers"] == {}
    assert cli.ok("gc") == "nothing to recover or forget\n"
    assert cli.ok("network", "rm", "web") == "web\n"


# A command that traps SIGUSR1, says so, and exits 3; it says "ready" once trapping.
TRAPS = r"""
import signal, sys, time
def got(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
    sys.exit(3)
signal.signal(signal.SIGUSR1, got)
print("ready", flush=True)
time.sleep(60)
"""


def test_run_passes_other_signals_on_and_a_live_runs_namespace_is_not_removed(
    cli: Cli,
) -> None:
    """Any signal a supervisor sends (here SIGUSR1) reaches the command, not only
    SIGTERM/SIGINT/SIGHUP (hostnet used to die of it, leaving everything behind); and
    `ns rm` of the namespace of a run still going is refused without --force."""
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    name = cli.world.name("run")
    proc = subprocess.Popen(
        [*cli.base, "run", "--network", "web", "--name", name, "--",
         sys.executable, "-c", TRAPS],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        refused = cli("ns", "rm", name)
        assert refused.returncode == 1 and "still running" in refused.stderr, refused
        assert name in ip_netns_list()
        proc.send_signal(signal.SIGUSR1)  # to hostnet alone
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (3, "got SIGUSR1\n"), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_until(lambda: name not in ip_netns_list())


# Starts a detached child that keeps running in the namespace, prints its pid, exits 0.
DAEMON = r"""
import subprocess, sys
quiet = subprocess.DEVNULL
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True, stdin=quiet, stdout=quiet, stderr=quiet)
print(child.pid, flush=True)
"""


def test_run_keeps_the_namespace_of_processes_its_command_left_behind(cli: Cli) -> None:
    """A command that starts a daemon and exits: the daemon is not cut off in a
    namespace nobody can name (hostnet used to delete it under the daemon); the
    namespace stays, said so, and gc deletes it once the daemon is gone."""
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    name = cli.world.name("run")
    result = cli("run", "--network", "web", "--name", name, "--", sys.executable, "-c", DAEMON)
    pid = int(result.stdout.split()[0]) if result.stdout.strip() else 0
    try:
        assert result.returncode == 0, result
        assert f"left 1 process(es) running in namespace {name!r} (pid {pid})" in result.stderr
        assert name in ip_netns_list()
        refused = cli("ns", "rm", name)  # not without --force while they run
        assert refused.returncode == 1 and "processes it left" in refused.stderr, refused
        assert [e["Name"] for e in json.loads(cli.ok("network", "inspect", "web"))[0][
            "Containers"].values()] == [name]  # fmt: skip
        assert (
            cli.ok("gc") == f"kept abandoned namespace {name}: processes {pid} still run there\n"
        )
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)  # started by this test's command
    assert wait_until(lambda: not cli.ns(name).pids())
    assert cli.ok("gc") == f"deleted abandoned namespace {name}\n"
    assert name not in ip_netns_list()
    assert cli.ok("network", "rm", "web") == "web\n"


def test_run_with_stdout_closed_gives_the_commands_code(cli: Cli) -> None:
    cli.ok("network", "create", "web", "--subnet", SUBNET)
    name = cli.world.name("run")
    result = subprocess.run(
        [*cli.base, "run", "--network", "web", "--name", name, "--",
         sys.executable, "-c", "import sys; sys.exit(4)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, timeout=60, check=False, close_fds=True,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    assert name not in ip_netns_list()


def test_run_with_stderr_closed_still_exits_125_for_its_own_errors(cli: Cli) -> None:
    result = subprocess.run(
        [*cli.base, "run", "--network", "nope", "--", "true"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, timeout=60, check=False, preexec_fn=lambda: os.close(2),
    )  # fmt: skip
    assert result.returncode == 125, result
