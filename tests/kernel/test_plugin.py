"""The pytest fixtures hostnet ships for code that uses it (hostnet.testing.plugin)."""

from __future__ import annotations

import os
import subprocess
import warnings

import pytest

from hostnet import errors
from hostnet.controller import Controller
from hostnet.testing import Sandbox


def test_one_body_runs_on_both_backends(hostnet_sandbox: Sandbox) -> None:
    # the same code, the same results: a created host namespace on both, so a bridge
    # network turns forwarding on without a warning
    ctl = hostnet_sandbox.controller
    assert ctl.host_ns == hostnet_sandbox.host
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        web = ctl.create_network("web", subnet="10.93.0.0/24")
    app = ctl.create_namespace(hostnet_sandbox.name("app"))
    ep = web.connect(app, publish=["18080:80"])
    assert ep.ip == "10.93.0.2"
    assert ctl.backend.sysctl(ctl.host_ns, "net/ipv4/ip_forward") == "1"
    with pytest.raises(errors.PortInUse):
        web.connect(ctl.create_namespace(hostnet_sandbox.name("b")), publish=["18080:80"])


def test_the_fake_fixture_and_a_sandbox_keep_separate_state(
    hostnet_fake: Controller, hostnet_sandbox: Sandbox
) -> None:
    hostnet_sandbox.controller.create_namespace(hostnet_sandbox.name("k"))
    assert hostnet_fake.store.path != hostnet_sandbox.controller.store.path
    assert [f for f in hostnet_fake.audit() if f["kind"] == "stale-record"] == []
    assert hostnet_fake.gc()["stale"] == []


def test_the_fake_fixture_lets_bridges_turn_forwarding_on(hostnet_fake: Controller) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hostnet_fake.create_network("web", subnet="10.93.0.0/24")
    assert hostnet_fake.backend.sysctl(None, "net/ipv4/ip_forward") == "1"


def test_a_sandbox_deletes_what_its_controller_made_under_any_name(tmp_path) -> None:
    box = Sandbox(tmp_path / "state")
    name = f"{box.prefix[::-1]}x"  # not under the sandbox's prefix
    try:
        ns = box.controller.create_namespace(name)
        sleeper = ns.popen(["sleep", "60"])
        subprocess.run(["ip", "netns", "add", f"{name}y"], check=True)  # not its own
    except BaseException:
        box.close()
        raise
    try:
        box.close()
        assert sleeper.wait(timeout=5) == -9
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert name not in listed and f"{name}y" in listed
        assert not any(n.startswith(box.prefix) for n in listed)
    finally:
        subprocess.run(["ip", "netns", "del", f"{name}y"], check=False)


def test_sandboxes_as_context_managers_and_a_second_controller(tmp_path) -> None:
    with Sandbox(tmp_path / "a", backend="fake") as box:
        box.controller.create_network("web", subnet="10.93.0.0/24")
        with Controller(state_dir=box.state_dir, host=box.host, backend=box.backend) as again:
            assert [n.name for n in again.networks()] == ["host", "none", "web"]
    with pytest.raises(errors.NamespaceNotFound):  # another, empty fake kernel
        Controller(state_dir=box.state_dir, host=box.host, backend="fake")
    broken = Controller.__new__(Controller)
    assert repr(broken) == "<Controller host=<this namespace> backend=? state=?>"


def _listed() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


KILLED_WORKER = r"""
import os, sys, time
from pathlib import Path
from hostnet.testing import Sandbox
box = Sandbox(Path(sys.argv[1]))
ns = box.controller.create_namespace(box.name("app"))
server = ns.popen(["sleep", "300"])
print(box.prefix, server.pid, flush=True)
time.sleep(300)
"""


def test_what_a_killed_test_process_left_is_swept_and_live_sandboxes_are_not(
    tmp_path, hostnet_host: Sandbox
) -> None:
    # an xdist worker killed outright (a crash, a timeout, a cancelled CI job) never
    # closes its Sandbox: its namespaces and the servers in them stay, and its state
    # directory goes with pytest's temporary ones; the next session sweeps them
    import signal
    import sys

    from hostnet.testing import sweep_sandboxes
    from hostnet.testing.world import wait_until

    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, str(tmp_path / "worker")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    prefix, server = worker.stdout.readline().split()
    try:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert {n for n in _listed() if n.startswith(prefix)} == {
            f"{prefix}host",
            f"{prefix}app1",
        }
        assert prefix in sweep_sandboxes()
        assert not any(n.startswith(prefix) for n in _listed())
        assert wait_until(lambda: not os.path.exists(f"/proc/{server}"), timeout=5)
        assert hostnet_host.host in _listed()  # this process is alive: its box stays
        assert hostnet_host.prefix not in sweep_sandboxes()
    finally:
        worker.stdout.close()
        for name in _listed():  # (if the sweep failed)
            if name.startswith(prefix):
                subprocess.run(["ip", "netns", "del", name], check=False)


def test_sandboxes_sharing_a_state_directory_delete_only_their_own(tmp_path) -> None:
    with Sandbox(tmp_path / "shared") as first:
        with Sandbox(tmp_path / "shared") as second:
            kept = second.controller.create_namespace(f"{second.prefix[::-1]}z")
            first.controller.create_namespace(f"{first.prefix[::-1]}z")
        listed = _listed()
        assert second.host not in listed and kept.name not in listed
        assert first.host in listed and f"{first.prefix[::-1]}z" in listed


def test_the_driver_guides_example_runs_and_passes_traffic(hostnet_sandbox: Sandbox) -> None:
    # docs/drivers.md's worked example, as printed there: it must stay true
    from pathlib import Path

    from hostnet.drivers import register_driver, unregister_driver

    guide = (Path(__file__).parents[2] / "docs" / "drivers.md").read_text()
    code = guide.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    exec(compile(code, "docs/drivers.md", "exec"), scope)
    register_driver("ptp-doc", scope["PointToPoint"])  # type: ignore[arg-type]
    try:
        ctl = hostnet_sandbox.controller
        net = ctl.create_network("p", driver="ptp-doc", subnet="10.97.0.0/24")
        app = ctl.create_namespace(hostnet_sandbox.name("app"))
        ep = net.connect(app)
        assert ep.ip == "10.97.0.2"
        if hostnet_sandbox.kind == "netlink":
            from tests.kernel.netutil import ping

            assert ping(app, "10.97.0.1")  # the gateway: the host's end
            assert ping(ctl.namespace(ctl.host_ns), ep.ip)  # type: ignore[arg-type]
        net.disconnect(app)
        net.delete()
    finally:
        unregister_driver("ptp-doc")
