"""Which sockets are bound in a namespace, and which process owns each.

/proc/thread-self/net/{tcp,tcp6,udp,udp6} and /proc/thread-self/net/sctp/eps list the
sockets of the reading *thread's* namespace (unlike /proc/net, which follows the main
thread), so these files are read from a thread inside the namespace. Owners are found by
matching socket inodes against /proc/<pid>/fd links, which is only done for the ports
asked about because it walks every process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Collection

import psutil

from hostnet.model import BoundSocket

TCP_LISTEN = 0x0A
UDP_UNCONN = 0x07


def _decode_addr(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(struct.unpack("<I", raw)[0]))
    # IPv6 in /proc is four host-order 32-bit words
    words = struct.unpack("<4I", raw)
    return str(ipaddress.IPv6Address(struct.pack(">4I", *words)))


def read_bound(ports: Collection[int] | None = None) -> list[tuple[BoundSocket, int]]:
    """(socket, inode) pairs for listening TCP, bound UDP and SCTP endpoints of the
    calling thread's namespace; only ``ports`` when given."""
    out: list[tuple[BoundSocket, int]] = []
    base = "/proc/thread-self/net"
    for proto, fname, state_ok in (
        ("tcp", "tcp", TCP_LISTEN),
        ("tcp", "tcp6", TCP_LISTEN),
        ("udp", "udp", UDP_UNCONN),
        ("udp", "udp6", UDP_UNCONN),
    ):
        try:
            with open(os.path.join(base, fname)) as fh:
                next(fh)
                lines = fh.readlines()
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], int(parts[3], 16), int(parts[9])
            addr_hex, port_hex = local.split(":")
            port = int(port_hex, 16)
            if ports is not None and port not in ports:
                continue
            if proto == "tcp" and state != state_ok:
                continue
            if port == 0:
                continue
            out.append(
                (BoundSocket(protocol=proto, address=_decode_addr(addr_hex), port=port), inode)
            )
    try:
        with open(os.path.join(base, "sctp", "eps")) as fh:
            next(fh)
            for line in fh:
                parts = line.split()
                # ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...
                port, inode = int(parts[5]), int(parts[7])
                if ports is not None and port not in ports:
                    continue
                for addr in parts[8:] or ["0.0.0.0"]:
                    out.append((BoundSocket(protocol="sctp", address=addr, port=port), inode))
    except (FileNotFoundError, StopIteration):
        pass
    return out


def owners(inodes: Collection[int]) -> dict[int, tuple[int, str]]:
    """inode -> (pid, process name), for the inodes asked about."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, tuple[int, str]] = {}
    if not wanted:
        return found
    for pid in psutil.pids():
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in found:
                try:
                    name = psutil.Process(pid).name()
                except psutil.Error:
                    name = "?"
                found[inode] = (pid, name)
        if len(found) == len(wanted):
            break
    return found


def bind_holder(protocol: str, address: str, port: int) -> socket.socket:
    """A socket bound to address:port (listening for tcp), to hold the port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM, "sctp": socket.SOCK_STREAM}
    proto = socket.IPPROTO_SCTP if protocol == "sctp" else 0
    sock = socket.socket(family, kind[protocol] | socket.SOCK_CLOEXEC, proto)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        if protocol in ("tcp", "sctp"):
            sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock
