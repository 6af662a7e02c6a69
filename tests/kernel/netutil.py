"""Real traffic for kernel-tier tests: tiny servers and clients run inside namespaces.

Servers answer with "<tag> <peer address>" so a test can see both who answered and
which source address the packet arrived from (masquerade checks). Every process is
started by the test and ended by its own pid.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hostnet.namespace import Namespace

SERVER = r"""
import socket, sys
host, port, proto, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def who(peer):
    return peer[0].removeprefix("::ffff:")
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(fam, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind((host, port))
if proto == "tcp":
    s.listen(64)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, peer = s.accept()
        c.sendall(f"{tag} {who(peer)}\n".encode())
        c.close()
    else:
        data, peer = s.recvfrom(2048)
        s.sendto(f"{tag} {who(peer)}\n".encode(), peer)
"""

CLIENT = r"""
import socket, sys
host, port, proto, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
source = int(sys.argv[5])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=timeout)
        print(s.recv(2048).decode().strip())
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if source:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", source))
        s.settimeout(timeout)
        s.sendto(b"hi", (host, port))
        print(s.recv(2048).decode().strip())
except OSError as exc:
    print(f"FAIL {type(exc).__name__}")
"""


@contextmanager
def server(
    ns: Namespace, port: int, proto: str = "tcp", *, host: str = "::", tag: str | None = None
) -> Iterator[subprocess.Popen[str]]:
    proc = ns.popen(
        [sys.executable, "-c", SERVER, host, str(port), proto, tag or ns.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"server in {ns.name} did not start: {proc.stderr.read()}")
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def request(
    ns: Namespace,
    host: str,
    port: int,
    proto: str = "tcp",
    timeout: float = 2.0,
    *,
    source_port: int = 0,
) -> str:
    """What the server answered ("<tag> <peer>"), or "FAIL <error>". ``source_port``
    (udp): send from that port, as a client that keeps its socket does."""
    out = ns.run(
        [sys.executable, "-c", CLIENT, host, str(port), proto, str(timeout), str(source_port)],
        capture_output=True,
        text=True,
        timeout=timeout + 20,
    )
    return out.stdout.strip() or f"FAIL {out.stderr.strip()[-200:]}"


def ping(ns: Namespace, address: str, count: int = 1) -> bool:
    argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "1", address]
    return ns.run(argv, capture_output=True, timeout=30).returncode == 0


def fresh_ip_forward() -> str:
    """net.ipv4.ip_forward of a namespace made now, before anyone changes it: the root
    namespace's (a new namespace copies IPv4 settings from it), unless
    devconf_inherit_init_net says to reset them (2). Read only."""
    with open("/proc/sys/net/core/devconf_inherit_init_net") as f:
        if f.read().strip() == "2":
            return "0"
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip()


ROUTER_ADVERT = r"""
import socket, struct, sys
ifname, source, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
index = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861: 255 or dropped
s.bind((source, 0, 0, index))
# type 134, code 0, checksum (the kernel's), hop limit 64, no flags, router lifetime 1800 s
advert = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
# prefix information: a /64, on-link and autonomous (SLAAC), lifetimes in seconds
advert += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0)
advert += socket.inet_pton(socket.AF_INET6, prefix)
for _ in range(3):
    s.sendto(advert, ("ff02::1", 0, 0, index))
"""


def advertise_router(ns: Namespace, ifname: str, source: str, prefix: str) -> None:
    """Send an IPv6 router advertisement out of ``ifname`` in ``ns`` from link-local
    ``source`` (the namespace's own), offering ``prefix``/64 for SLAAC and itself as
    the default router: what a rogue neighbour or a LAN's router sends."""
    ns.run([sys.executable, "-c", ROUTER_ADVERT, ifname, source, prefix], check=True, timeout=20)


def slaac_taken(ns: Namespace, ifname: str, prefix: str, wait: float) -> bool:
    """Whether ``ifname`` in ``ns`` took an address in ``prefix``/64 or a default
    route from an advertisement, within ``wait`` seconds."""
    import time

    deadline = time.monotonic() + wait
    while True:
        out = ns.run(
            ["ip", "-6", "-o", "addr", "show", "dev", ifname], capture_output=True, text=True
        ).stdout
        routes = ns.run(["ip", "-6", "route", "show", "default"], capture_output=True, text=True)
        if prefix.rstrip(":") in out or "proto ra" in routes.stdout:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
