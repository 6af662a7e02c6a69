"""Fault injection on the real kernel: a plan that fails at any op leaves the kernel and
the store exactly as they were."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hostnet.backends.netlink import NetlinkBackend
from hostnet.controller import Controller
from hostnet.ops import CreateNamespace, DeleteNamespace
from hostnet.policy.security import SecurityPolicy
from hostnet.testing import FaultyBackend, InjectedFault
from hostnet.testing.world import unique_prefix


@pytest.fixture
def rig(tmp_path: Path):
    backend = NetlinkBackend()
    prefix = unique_prefix("hf")
    host = f"{prefix}host"
    backend.apply(CreateNamespace(ns=host))
    made = [host]
    try:
        yield backend, host, prefix, tmp_path / "state", made
    finally:
        for name in backend.namespaces():
            if name.startswith(prefix):
                backend.apply(DeleteNamespace(ns=name))
        backend.close()


def kernel_state(backend: NetlinkBackend, prefix: str) -> dict:
    out = {}
    for name in backend.namespaces():
        if name.startswith(prefix):
            snap = backend.observe(name)
            sockets = sorted((s.protocol, s.address, s.port) for s in backend.bound_sockets(name))
            out[name] = (snap.links, snap.addresses, snap.routes, snap.nft_tables, sockets)
    return out


def controller(backend, host, state, fail_at=None) -> Controller:
    return Controller(
        backend=FaultyBackend(backend, fail_at=fail_at),
        host=host,
        state_dir=state,
        policy=SecurityPolicy(allow_host_network=True),
        recover=False,
    )


def test_create_namespace_failing_leaves_nothing(rig) -> None:
    backend, host, prefix, state, _ = rig
    before_kernel = kernel_state(backend, prefix)
    ctl = controller(backend, host, state, fail_at=0)
    before_store = ctl.store.dump()
    with pytest.raises(InjectedFault):
        ctl.create_namespace(f"{prefix}a")
    assert kernel_state(backend, prefix) == before_kernel
    assert ctl.store.dump() == before_store
    ctl.close()


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_host_workload_with_held_ports_failing_at_each_op(rig, fail_at: int) -> None:
    backend, host, prefix, state, _ = rig
    ports = ["127.0.0.1:18090/tcp", "18091/udp", "[::1]:18092/tcp"]
    before_kernel = kernel_state(backend, prefix)
    ctl = controller(backend, host, state, fail_at=fail_at)
    before_store = ctl.store.dump()
    with pytest.raises(InjectedFault):
        ctl.attach("web", driver="host", ports=ports, hold=True)
    assert kernel_state(backend, prefix) == before_kernel
    assert ctl.store.dump() == before_store
    ctl.close()
    # and without a fault the same plan works and is undone by detach
    ok = controller(backend, host, state)
    ok.attach("web", driver="host", ports=ports, hold=True)
    held = {(s.protocol, s.port) for s in backend.bound_sockets(host)}
    assert {("tcp", 18090), ("udp", 18091), ("tcp", 18092)} <= held
    ok.detach("web")
    assert kernel_state(backend, prefix) == before_kernel
    ok.close()


def test_none_driver_failing_leaves_lo_down(rig) -> None:
    backend, host, prefix, state, _ = rig
    name = f"{prefix}raw"
    subprocess.run(["ip", "netns", "add", name], check=True)  # lo starts down
    setup = controller(backend, host, state)
    setup.namespace(name)  # adopt
    setup.close()
    before_kernel = kernel_state(backend, prefix)
    ctl = controller(backend, host, state, fail_at=0)
    before_store = ctl.store.dump()
    with pytest.raises(InjectedFault):
        ctl.attach(name, driver="none")
    assert kernel_state(backend, prefix) == before_kernel
    assert not backend.observe(name).link("lo").up
    assert ctl.store.dump() == before_store
    ctl.close()


def test_sctp_hold_works_or_says_the_kernel_lacks_sctp(rig) -> None:
    import socket

    from hostnet import errors

    backend, host, _prefix, state, _ = rig
    ctl = controller(backend, host, state)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        has_sctp = True
    except OSError:
        has_sctp = False
    before = ctl.store.dump()
    if has_sctp:
        ctl.attach("s", driver="host", ports=["18094/sctp"], hold=True)
        assert ("sctp", 18094) in {(s.protocol, s.port) for s in backend.bound_sockets(host)}
    else:
        with pytest.raises(errors.UnsupportedError, match="SCTP"):
            ctl.attach("s", driver="host", ports=["18094/sctp"], hold=True)
        assert ctl.store.dump() == before
    ctl.close()
