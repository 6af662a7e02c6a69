"""Host networking and host ports on the real kernel, with the host in a namespace."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from hostnet import errors
from hostnet.policy.ports import PortAllocator, PortRequest, parse_reserved
from hostnet.policy.security import SecurityPolicy


def _wait_listening(ctl, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.port == port for s in ctl.backend.bound_sockets(ctl.host_ns, [port])):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} in the host namespace")


def test_host_network_is_denied_unless_admitted(hostnet_host) -> None:
    ctl = hostnet_host.controller
    with pytest.raises(errors.PolicyDenied):
        ctl.attach("web", driver="host", ports=["8080/tcp"])
    assert ctl.ports() == []
    ctl.policy = SecurityPolicy(allow_host_network={"web"})
    ep = ctl.attach("web", driver="host", ports=["8080/tcp"])
    assert [(r.port, r.protocol) for r in ep.reserved] == [(8080, "tcp")]
    decisions = [(a["workload"], a["decision"]) for a in ctl.admissions()]
    assert decisions[:2] == [("web", "denied"), ("web", "admitted")]
    info = ctl.inspect("web")
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["NetworkSettings"]["SandboxKey"] == ""
    ctl.detach("web")
    assert ctl.ports() == []


def test_conflict_names_the_process_holding_the_port(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    host = ctl.namespace(ctl.host_ns)
    port = 18080
    server = host.popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess_devnull(),
        stderr=subprocess_devnull(),
    )
    try:
        _wait_listening(ctl, port)
        with pytest.raises(errors.PortInUse) as info:
            ctl.attach("web", driver="host", ports=[f"{port}/tcp"])  # 0.0.0.0 clashes too
        assert info.value.owner_pid == server.pid
        assert info.value.owner_name and "python" in info.value.owner_name
        assert str(server.pid) in str(info.value)
        assert ctl.ports() == [] and ctl.endpoints() == []
        # another address, protocol or port is fine
        ctl.attach("dns", driver="host", ports=[f"{port}/udp"])
    finally:
        server.kill()
        server.wait()


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL


def test_hold_keeps_other_processes_off_the_port_in_the_host_namespace(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    ctl.attach("web", driver="host", ports=["127.0.0.1:18081/tcp", "18082/udp"], hold=True)
    host = ctl.namespace(ctl.host_ns)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, getattr(socket, sys.argv[1]))\n"
        "try:\n"
        "    s.bind(('127.0.0.1', int(sys.argv[2])))\n"
        "    print('bound')\n"
        "except OSError as e:\n"
        "    print('busy', e.errno)\n"
    )
    out = host.run(
        [sys.executable, "-c", probe, "SOCK_STREAM", "18081"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("busy")
    out = host.run(
        [sys.executable, "-c", probe, "SOCK_DGRAM", "18082"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("busy")
    # the machine's own namespace is untouched: the hold lives in the host namespace
    held = [
        s
        for s in ctl.backend.bound_sockets(None, [18081, 18082])
        if s.pid is not None and s.pid == __import__("os").getpid()
    ]
    assert held == []
    ctl.unhold("web")
    out = host.run(
        [sys.executable, "-c", probe, "SOCK_STREAM", "18081"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("bound")
    ctl.detach("web")


def test_second_workload_cannot_take_a_reserved_port(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    ctl.attach("a", driver="host", ports=["127.0.0.1:9000-9002/tcp"])
    with pytest.raises(errors.PortInUse) as info:
        ctl.attach("b", driver="host", ports=["9001/tcp"])
    assert info.value.holder == "a"
    ctl.attach("c", driver="host", ports=["127.0.0.2:9001/tcp"])  # another specific address


def test_ephemeral_range_comes_from_the_host_namespace(hostnet_host) -> None:
    ctl = hostnet_host.controller
    host = ctl.namespace(ctl.host_ns)
    host.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40009"], check=True)
    host.run(["sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=40001"], check=True)
    low, high = map(int, ctl.backend.sysctl(ctl.host_ns, "net/ipv4/ip_local_port_range").split())
    assert (low, high) == (40000, 40009)
    reserved = parse_reserved(ctl.backend.sysctl(ctl.host_ns, "net/ipv4/ip_local_reserved_ports"))
    with socket.socket() as blocker:  # a socket in the machine's namespace must not matter
        blocker.bind(("127.0.0.1", 0))
        allocator = PortAllocator(
            host=ctl.host_key,
            ephemeral=(low, high),
            reserved=reserved,
            bound=ctl.backend.bound_sockets(ctl.host_ns),
        )
        with ctl.store.transaction() as tx:
            got = allocator.reserve(
                tx, [PortRequest(), PortRequest(), PortRequest()], owner="t", workload="t"
            )
        ports = [r[0].port for r in got]
        assert ports == [40000, 40002, 40003]
