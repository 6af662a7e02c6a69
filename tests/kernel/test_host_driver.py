"""Host networking and host ports on the real kernel, with the host in a namespace."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

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


# A process in the host namespace that binds a socket (IPV6_V6ONLY as given, -1: the
# default), listens unless told not to, says "ready" and waits.
_BINDER = (
    "import socket, sys, time\n"
    "family, kind, address, port, v6only, listen = sys.argv[1:]\n"
    "s = socket.socket(getattr(socket, family), getattr(socket, kind))\n"
    "if v6only != '-1':\n"
    "    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))\n"
    "s.bind((address, int(port)))\n"
    "if listen == '1':\n"
    "    s.listen(1)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


@contextlib.contextmanager
def _running(ctl, argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A process in the host namespace, once it said "ready"; killed afterwards."""
    proc = ctl.namespace(ctl.host_ns).popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _bound(ctl, address: str, port: int, kind: str = "tcp", v6only: int = -1, listen=None):
    listen = kind == "tcp" if listen is None else listen  # UDP sockets do not listen
    family = "AF_INET6" if ":" in address else "AF_INET"
    sock_type = "SOCK_STREAM" if kind == "tcp" else "SOCK_DGRAM"
    args = [family, sock_type, address, str(port), str(v6only), "1" if listen else "0"]
    return _running(ctl, [sys.executable, "-c", _BINDER, *args])


def _refused(ctl, spec: str) -> errors.PortInUse:
    with pytest.raises(errors.PortInUse) as info:
        ctl.attach("web", driver="host", ports=[spec])
    assert ctl.ports() == [] and ctl.endpoints() == []
    return info.value


def test_a_tcp_port_bound_without_listening_is_in_use(hostnet_host) -> None:
    # bind() alone takes the port: the workload's own bind would fail with EADDRINUSE
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    with _bound(ctl, "127.0.0.1", 18090, listen=False) as proc:
        shown = ctl.backend.bound_sockets(ctl.host_ns, [18090], idle=True)
        if not shown:
            pytest.skip("this kernel does not report TCP sockets that are only bound (6.9+)")
        err = _refused(ctl, "18090/tcp")
        with open(f"/proc/{proc.pid}/comm") as comm:  # "python3", or "python" in a venv
            assert (err.owner_pid, err.owner_name) == (proc.pid, comm.read().strip())
        assert _refused(ctl, "127.0.0.1:18090/tcp").owner_pid == proc.pid
        ctl.attach("other", driver="host", ports=["127.0.0.2:18090/tcp"], hold=True)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_an_ipv4_mapped_socket_holds_the_ipv4_port(hostnet_host, proto: str) -> None:
    # a socket on ::ffff:127.0.0.1 takes port 18091 of 127.0.0.1 (and of 0.0.0.0)
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    with _bound(ctl, "::ffff:127.0.0.1", 18091, proto, v6only=0) as proc:
        assert _refused(ctl, f"127.0.0.1:18091/{proto}").owner_pid == proc.pid
        assert _refused(ctl, f"18091/{proto}").owner_pid == proc.pid
        ctl.attach("other", driver="host", ports=[f"127.0.0.2:18091/{proto}"], hold=True)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_socket_on_any_ipv6_address_blocks_ipv4_only_when_dual_stack(
    hostnet_host, proto: str
) -> None:
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    with (
        _bound(ctl, "::", 18092, proto, v6only=0) as dual,
        _bound(ctl, "::", 18093, proto, v6only=1) as only6,
    ):
        for spec in ("127.0.0.1:18092", "18092", "[::1]:18092", "[::]:18092"):
            assert _refused(ctl, f"{spec}/{proto}").owner_pid == dual.pid
        for spec in ("[::1]:18093", "[::]:18093"):
            assert _refused(ctl, f"{spec}/{proto}").owner_pid == only6.pid
        # IPv4 is free beside an IPv6-only socket: the kernel lets the hold bind it
        ctl.attach("v4", driver="host", ports=[f"18093/{proto}"], hold=True)


def test_the_error_names_the_process_on_the_clashing_address(hostnet_host) -> None:
    # 127.0.0.1:18094 is held by a socket in flight in a unix socket (no process has
    # it); the process that holds [::1]:18094 must not be blamed for it
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    script = (
        "import array, socket, time\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', 18094))\n"
        "s.listen(1)\n"
        "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "fds = array.array('i', [s.fileno()])\n"
        "a.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])\n"
        "s.close()\n"
        "v6 = socket.socket(socket.AF_INET6)\n"
        "v6.bind(('::1', 18094))\n"
        "v6.listen(1)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with _running(ctl, [sys.executable, "-c", script]) as proc:
        err = _refused(ctl, "127.0.0.1:18094/tcp")
        assert err.owner_pid is None and "not visible" in str(err)
        assert _refused(ctl, "[::1]:18094/tcp").owner_pid == proc.pid


def test_a_published_port_is_refused_beside_a_listener_not_an_idle_bind(hostnet_host) -> None:
    # a DNAT shadows a listening service, so that clash is refused; a TCP socket bound
    # but not listening serves nothing and blocks no DNAT, and finding those costs a
    # walk of the kernel's whole bind hash table per connect (docs/decisions.md, Ports)
    ctl = hostnet_host.controller
    web = ctl.create_network("web", driver="bridge", subnet="10.93.0.0/24")
    app = ctl.create_namespace(hostnet_host.name("app"))
    with _bound(ctl, "0.0.0.0", 18096, listen=True) as proc:
        with pytest.raises(errors.PortInUse) as info:
            web.connect(app, publish=["18096:80"])
        assert info.value.owner_pid == proc.pid
    assert ctl.ports() == [] and ctl.endpoints() == []
    with _bound(ctl, "0.0.0.0", 18097, listen=False):
        ep = web.connect(app, publish=["18097:80"])
        assert [m.host_port for m in ep.ports] == [18097]
    web.disconnect(app)
    web.delete()


TIME_WAIT = """
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
server.bind(("127.0.0.1", 18095))
server.listen(1)
client = socket.create_connection(("127.0.0.1", 18095))
conn, _ = server.accept()
conn.close()  # the server closes first: its side of the connection waits in TIME_WAIT
client.recv(1)
client.close()
server.close()
"""


def test_a_hold_binds_beside_connections_in_time_wait(hostnet_host) -> None:
    # a host-network service restarted: its old connections still wait in TIME_WAIT,
    # which keep no server off the port (servers set SO_REUSEADDR), nor a hold
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    host = ctl.namespace(ctl.host_ns, adopt=False)
    host.run([sys.executable, "-c", TIME_WAIT], check=True, timeout=30)
    waiting = host.run(
        ["ss", "-Htan", "state", "time-wait", "sport", "= :18095"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert waiting.strip()
    ep = ctl.attach("web", driver="host", ports=["127.0.0.1:18095/tcp"], hold=True)
    assert [(r.host_ip, r.port) for r in ep.reserved] == [("127.0.0.1", 18095)]
    ctl.detach("web")


def test_a_hold_on_an_address_the_host_lacks_is_an_address_error(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ctl.policy = SecurityPolicy(allow_host_network=True)
    with pytest.raises(errors.InvalidAddress, match=r"192\.0\.2\.1"):
        ctl.attach("web", driver="host", ports=["192.0.2.1:18096/tcp"], hold=True)
    assert ctl.ports() == [] and ctl.endpoints() == []
