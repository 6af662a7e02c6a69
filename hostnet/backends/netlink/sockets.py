"""Which sockets are bound in a namespace, and which process owns each.

Bound sockets come from the kernel's socket diagnostics (NETLINK_SOCK_DIAG, what ``ss``
uses) over a socket opened inside the namespace: listening TCP and SCTP, and every UDP
socket. /proc/net/tcp would do too, but the kernel walks its whole connection hash table
to print it, which takes milliseconds on a machine with a lot of memory; the
diagnostics dump of listening sockets does not. Owners are found by matching socket
inodes against /proc/<pid>/fd links, only for the sockets asked about, because that
walks every process.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Collection

import psutil

from hostnet.model import BoundSocket

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
TCP_LISTEN = 10
ALL_STATES = 0xFFFFFFFF
IPPROTO_SCTP = 132

#: (protocol name, IP protocol, states to ask for)
_QUERIES = (
    ("tcp", socket.IPPROTO_TCP, 1 << TCP_LISTEN),
    ("udp", socket.IPPROTO_UDP, ALL_STATES),
    ("sctp", IPPROTO_SCTP, 1 << TCP_LISTEN),
)


def open_diag_socket() -> socket.socket:
    """A NETLINK_SOCK_DIAG socket in the calling thread's namespace."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
    )
    sock.bind((0, 0))
    return sock


def _dump(
    sock: socket.socket, family: int, protocol: int, states: int, seq: int
) -> list[tuple[str, int, int]]:
    from pyroute2.netlink.diag import inet_diag_msg, inet_diag_req

    req = inet_diag_req()
    req["sdiag_family"] = family
    req["sdiag_protocol"] = protocol
    req["idiag_states"] = states
    req["header"]["type"] = SOCK_DIAG_BY_FAMILY
    req["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    req["header"]["sequence_number"] = seq
    req.encode()
    sock.send(req.data[: req["header"]["length"]])
    out: list[tuple[str, int, int]] = []
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _flags, got_seq, _pid = struct.unpack_from("IHHII", data, offset)
            if length < 16:
                return out
            if got_seq == seq:
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("i", data, offset + 16)[0]
                    if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT):
                        return out  # the kernel has no diagnostics for this protocol
                    raise OSError(code, os.strerror(code))
                msg = inet_diag_msg(data[offset : offset + length])
                msg.decode()
                out.append((msg["idiag_src"], msg["idiag_sport"], msg["idiag_inode"]))
            offset += (length + 3) & ~3


def diag_bound(
    sock: socket.socket,
    ports: Collection[int] | None = None,
    protocols: Collection[str] | None = None,
) -> list[tuple[BoundSocket, int]]:
    """(socket, inode) pairs of the namespace ``sock`` lives in; only ``ports`` and
    ``protocols`` if given."""
    found: list[tuple[BoundSocket, int]] = []
    seq = 0
    for name, protocol, states in _QUERIES:
        if protocols is not None and name not in protocols:
            continue
        for family in (socket.AF_INET, socket.AF_INET6):
            seq += 1
            for address, port, inode in _dump(sock, family, protocol, states, seq):
                if port == 0 or (ports is not None and port not in ports):
                    continue
                found.append((BoundSocket(protocol=name, address=address, port=port), inode))
    return found


def find_owners(inodes: Collection[int]) -> dict[int, tuple[int, str]]:
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
