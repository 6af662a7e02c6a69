"""Races between processes on the connect paths, on the real kernel: several processes,
each with its own Controller on one state directory and one throwaway host, released at
the same moment. Whatever wins, the loser gets a typed error (or both succeed, when
one after the other they would), and the kernel holds exactly what the store says."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostnet import errors
from hostnet.backends.netlink import NetlinkBackend
from hostnet.backends.netlink_paths import ns_path
from hostnet.controller import Controller
from hostnet.ops import CreateNamespace
from hostnet.testing.world import remove_prefixed, unique_prefix
from tests.kernel import together
from tests.kernel.test_recovery import PARENT, check_consistent, make_lan

TRIALS = int(os.environ.get("HOSTNET_RACE_TRIALS", "4"))

CHILD = r"""
import json, sys
from hostnet import errors
from hostnet.controller import Controller
host, state, action, network, workload, kwargs = sys.argv[1:]
ctl = Controller(host=host, state_dir=state, backend="netlink", recover=False)
print("ready", flush=True)
sys.stdin.readline()  # everyone starts at once
try:
    if action == "connect":
        ep = ctl.network(network).connect(workload, **json.loads(kwargs))
        print("ok", ep.ifname, flush=True)
    else:
        raise SystemExit(f"unknown action {action}")
except errors.HostnetError as exc:
    print("error", type(exc).__name__, exc, flush=True)
"""

Job = tuple[str, str, str, dict[str, Any]]  # action, network, workload, keyword arguments


def run_together(host: str, state: Path, jobs: list[Job]) -> list[str]:
    """One process per job, released at once; what each printed ("ok ..." or
    "error <type> <message>")."""
    argvs = [[host, str(state), *job[:3], json.dumps(job[3])] for job in jobs]
    return together.run_together(CHILD, argvs, accept=("ok", "error"))


class Host:
    """A throwaway host namespace with a macvlan parent, and a Controller for it."""

    def __init__(self, state: Path) -> None:
        self.prefix = unique_prefix("hz")
        self.name = f"{self.prefix}host"
        self.state = state
        self.backend = NetlinkBackend()
        self.backend.apply(CreateNamespace(ns=self.name))
        make_lan(self.backend, self.name, f"{self.prefix}lan")
        self.infra = {self.name: {PARENT}, f"{self.prefix}lan": {"eth0"}}
        self.ctl = Controller(
            host=self.name, state_dir=state, backend=self.backend, forwarding=True
        )

    def check(self) -> None:
        """The kernel and the store agree; no journal is left."""
        check_consistent(self.ctl, self.prefix, self.infra)

    def close(self) -> None:
        self.ctl.close()
        problems = remove_prefixed(self.backend, self.prefix)
        self.backend.close()
        if problems:
            raise problems[0]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    made = Host(tmp_path / "state")
    try:
        yield made
    finally:
        made.close()


@pytest.mark.slow
def test_one_namespace_connected_to_two_networks_at_once_gets_both(host: Host) -> None:
    """One after the other, both connects work and the first network keeps the default
    route; at the same moment both saw a namespace without one, and both planned it."""
    ctl = host.ctl
    ctl.create_network("a", driver="bridge", subnet="10.84.0.0/24")
    ctl.create_network(
        "b",
        driver="macvlan",
        parent=PARENT,
        subnet="192.168.50.0/24",
        gateway="192.168.50.1",
        ip_range="192.168.50.128/25",
    )
    for trial in range(TRIALS):
        ns = ctl.create_namespace(f"{host.prefix}two{trial}")
        outputs = run_together(
            host.name, host.state, [("connect", "a", ns.name, {}), ("connect", "b", ns.name, {})]
        )
        assert all(out.startswith("ok") for out in outputs), (trial, outputs)
        assert sorted(out.split()[1] for out in outputs) == ["eth0", "eth1"]
        snap = ctl.backend.observe(ns.name)
        ctl.backend.release(ns.name)
        defaults = [r for r in snap.routes if r.dst == "0.0.0.0/0"]
        assert len(defaults) == 1, (trial, snap.routes)
        host.check()
        ns.delete()
        host.check()


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["bridge", "macvlan"])
def test_one_static_mac_asked_twice_at_once_goes_to_one(host: Host, driver: str) -> None:
    """Like a static address: one connect gets the MAC, the other is refused naming the
    endpoint that has it (the kernel lets two ports of a bridge share a MAC, and refuses
    a second macvlan child with it only when it comes up, naming nobody)."""
    ctl = host.ctl
    if driver == "bridge":
        ctl.create_network("n", driver="bridge", subnet="10.86.0.0/24")
    else:
        ctl.create_network("n", driver="macvlan", parent=PARENT, subnet="192.168.50.0/24")
    for trial in range(TRIALS):
        mac = f"02:42:0a:56:00:{trial % 256:02x}"
        names = [ctl.create_namespace(f"{host.prefix}m{trial}{i}").name for i in (0, 1)]
        outputs = run_together(
            host.name, host.state, [("connect", "n", ns, {"mac": mac}) for ns in names]
        )
        (won,) = [ns for ns, out in zip(names, outputs, strict=True) if out.startswith("ok")]
        (lost,) = [out for out in outputs if out.startswith("error")]
        assert lost.startswith("error AddressInUse") and repr(won) in lost, (trial, outputs)
        assert [ep.mac for ep in ctl.endpoints()] == [mac]
        host.check()
        for ns in names:
            ctl.delete_namespace(ns)
        host.check()


def test_a_namespace_mid_delete_is_not_found(host: Host) -> None:
    """`ip netns del` unmounts /run/netns/NAME before it removes the file (and `ip netns
    add` makes the file before it mounts the namespace on it): a connect that opens it in
    between gets an empty file, on which setns fails with EINVAL."""
    ctl = host.ctl
    web = ctl.create_network("web", driver="bridge", subnet="10.85.0.0/24")
    name = f"{host.prefix}mid"
    Path(ns_path(name)).touch()  # the file, with no namespace mounted on it
    try:
        with pytest.raises(errors.NamespaceNotFound, match=name):
            web.connect(name, publish=["8080:80"])
        with pytest.raises(errors.NamespaceNotFound, match=name):
            ctl.backend.observe(name)
    finally:
        Path(ns_path(name)).unlink()
    host.check()
    assert ctl.ports() == [] and ctl.store.dump()["addresses"] == []
