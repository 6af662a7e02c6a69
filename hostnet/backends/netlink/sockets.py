"""Which sockets are bound in a namespace, and which process owns each.

Bound sockets come from the kernel's socket diagnostics (NETLINK_SOCK_DIAG, what ``ss``
uses) over a socket opened inside the namespace: listening TCP and SCTP, and every UDP
socket; on request (``idle``) also TCP sockets bound but neither listening nor
connected (a bind() alone takes the port; kernels before 6.9 do not report them).
/proc/net/tcp would do too, but the kernel walks its whole connection hash table to
print it, which takes milliseconds on a machine with a lot of memory; the diagnostics
dump of listening sockets does not (23 us per address family here), while that of
bound ones walks the whole bind hash table (64K buckets here: 185 us per family), which
is why it is asked for only when a bind() is at stake. Owners are found by matching
socket inodes against /proc/<pid>/fd links, only for the sockets asked about, because
that walks every process.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Collection

import psutil

from hostnet.backends.netlink.channel import receive
from hostnet.model import BoundSocket

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
TCP_LISTEN = 10
TCP_BOUND_INACTIVE = 13  # a pseudo-state: bound, not listening nor connected (6.9+)
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


# struct inet_diag_req_v2: family, protocol, ext, (pad), states, then the 48-byte
# inet_diag_sockid (zeros: no filter); struct inet_diag_msg: family, state, timer,
# retrans, the sockid (source port and address first), expires, queues, uid, inode;
# then attributes, of which INET_DIAG_SKV6ONLY comes with every IPv6 socket.
_REQUEST = struct.Struct("=BBBxI48x")
_MSG_HEAD = struct.Struct("=BBBB")
_SOCKID = struct.Struct("!HH16s16s")  # ports in network byte order
_INODE = struct.Struct("=I")
_INODE_AT = _MSG_HEAD.size + 48 + 16  # after expires, rqueue, wqueue and uid
_ATTRS_AT = _INODE_AT + _INODE.size
_ATTR = struct.Struct("=HH")
INET_DIAG_SKV6ONLY = 11
_HEADER = struct.Struct("=IHHII")
_MAPPED = b"\0" * 10 + b"\xff\xff"  # ::ffff:a.b.c.d, an IPv4 address on an IPv6 socket


def _v6only(data: bytes, start: int, end: int) -> bool:
    while start + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, start)
        if length < _ATTR.size:
            break
        if kind == INET_DIAG_SKV6ONLY:
            return bool(data[start + _ATTR.size])
        start += (length + 3) & ~3
    return False


def _dump(
    sock: socket.socket, family: int, protocol: int, states: int, seq: int
) -> list[tuple[str, int, int, bool]]:
    """(address, port, inode, IPV6_V6ONLY) of each socket; an IPv4-mapped address is
    given as the IPv4 address it is (the socket takes that IPv4 port)."""
    body = _REQUEST.pack(family, protocol, 0, states)
    header = _HEADER.pack(
        _HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    sock.send(header + body)
    width = 16 if family == socket.AF_INET6 else 4
    out: list[tuple[str, int, int, bool]] = []
    while True:
        data = receive(sock)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _flags, got_seq, _pid = _HEADER.unpack_from(data, offset)
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
                at = offset + _HEADER.size
                sport, _dport, src, _dst = _SOCKID.unpack_from(data, at + _MSG_HEAD.size)
                inode = _INODE.unpack_from(data, at + _INODE_AT)[0]
                if family == socket.AF_INET6 and src.startswith(_MAPPED):
                    address = socket.inet_ntop(socket.AF_INET, src[12:])
                else:
                    address = socket.inet_ntop(family, src[:width])
                v6only = _v6only(data, at + _ATTRS_AT, offset + length)
                out.append((address, sport, inode, v6only))
            offset += (length + 3) & ~3


def diag_bound(
    sock: socket.socket,
    ports: Collection[int] | None = None,
    protocols: Collection[str] | None = None,
    *,
    idle: bool = False,
) -> list[tuple[BoundSocket, int]]:
    """(socket, inode) pairs of the namespace ``sock`` lives in; only ``ports`` and
    ``protocols`` if given; with ``idle``, TCP sockets bound but not listening too."""
    found: list[tuple[BoundSocket, int]] = []
    seq = 0
    for name, protocol, states in _QUERIES:
        if protocols is not None and name not in protocols:
            continue
        asked = states | (1 << TCP_BOUND_INACTIVE if idle and name == "tcp" else 0)
        for family in (socket.AF_INET, socket.AF_INET6):
            seq += 1
            for address, port, inode, v6only in _dump(sock, family, protocol, asked, seq):
                if port == 0 or (ports is not None and port not in ports):
                    continue
                found.append(
                    (
                        BoundSocket(protocol=name, address=address, port=port, v6only=v6only),
                        inode,
                    )
                )
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
        if protocol in ("tcp", "sctp"):
            # as every server does: connections of an earlier server in TIME_WAIT do not
            # hold the port, while a listener still does (Linux refuses the bind then)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if protocol in ("tcp", "sctp"):
            sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock
