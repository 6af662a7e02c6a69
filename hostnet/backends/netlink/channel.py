"""A synchronous netlink channel: requests as bytes (see rtnl) over a plain socket
(rtnetlink, and ctnetlink for conntrack, which frames its messages the same way).

The socket is a plain NETLINK_ROUTE socket opened by the caller in the namespace it
should act in. Skipping pyroute2's asyncio transport keeps one request at about 20
microseconds instead of 110, and building the messages with struct (rtnl) instead of
pyroute2's classes saves up to 0.2 ms more per request (measured in benchmarks/), which
matters when an endpoint takes half a dozen requests. Kernel errors are raised as
pyroute2's NetlinkError (code and the kernel's extended-ack text), which the backend
translates into hostnet errors in one place.
"""

from __future__ import annotations

import socket
import threading

from pyroute2.netlink.exceptions import NetlinkError

from hostnet.backends.netlink import rtnl

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP = 0x1, 0x4, 0x8, 0x300
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLM_F_DUMP_INTR = 0x10  # the dump saw the objects change under it: it may miss some
#: dumps made again while the kernel says they were interrupted (then: the last one)
DUMP_TRIES = 10
NLMSGERR_ATTR_MSG = 1

# what ends an exchange: the ACK (or error) of a request, the first answer of a GET
# (which asks for no ACK), or the end of a dump
_ACK, _ONE, _DONE = 0, 1, 2


_buffers = threading.local()


def receive(sock: socket.socket) -> bytes:
    """One datagram from a netlink socket, read into this thread's buffer (1 MB, the
    sockets' receive buffer, made once per thread) and copied out at its size.
    ``sock.recv(1 << 20)`` would allocate 1 MB per call, which glibc serves with an
    mmap and a munmap unless other allocations happened to raise its threshold: 15 us
    more per read, measured, a quarter of a millisecond per connect (and the floors,
    reading into 64 KB, never paid it)."""
    buffer: bytearray | None = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = bytearray(1 << 20)
    size = sock.recv_into(buffer)
    return bytes(memoryview(buffer)[:size])


def open_route_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the calling thread's namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    # Strict checking lets dump requests filter in the kernel (routes by table).
    sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    sock.bind((0, 0))
    return sock


class Channel:
    """Requests and dumps over one socket. Not thread-safe; one per namespace."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._seq = 0
        # A dump left unread (an interrupt between two of its answers) goes on as the
        # socket is read, and the kernel refuses the next dump on it (EBUSY): such a
        # channel is done for, and its owner opens another (NetlinkBackend._handle).
        self.broken = False
        self.interrupted = False  # the last exchange had NLM_F_DUMP_INTR

    def close(self) -> None:
        self.sock.close()

    def _exchange(self, body: bytes, msg_type: int, flags: int, until: int) -> list[bytes]:
        try:
            return self._answers(body, msg_type, flags, until)
        except BaseException as exc:
            if until == _DONE and not isinstance(exc, NetlinkError):  # (that ends a dump)
                self.broken = True
            raise

    def _answers(self, body: bytes, msg_type: int, flags: int, until: int) -> list[bytes]:
        self._seq += 1
        seq = self._seq
        self.sock.send(rtnl.message(body, msg_type, flags, seq))
        out: list[bytes] = []
        header = rtnl.NLMSG
        self.interrupted = False
        while True:
            data = receive(self.sock)
            offset = 0
            while offset + header.size <= len(data):
                length, kind, got_flags, got, _pid = header.unpack_from(data, offset)
                if length < header.size:
                    break
                if got == seq:  # else a late answer to an earlier, abandoned request
                    if got_flags & NLM_F_DUMP_INTR:
                        self.interrupted = True
                    if kind in (NLMSG_ERROR, NLMSG_DONE):
                        code = 0
                        if length >= header.size + 4:
                            code = rtnl.I32.unpack_from(data, offset + header.size)[0]
                        if code:
                            raise _error(data[offset : offset + length], -code)
                        return out
                    out.append(data[offset : offset + length])
                    if until == _ONE:
                        return out
                offset += (length + 3) & ~3

    def request(self, body: bytes, msg_type: int, flags: int = 0) -> None:
        """Send one request and wait for its ACK; raise NetlinkError on failure."""
        self._exchange(body, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, _ACK)

    def request_echo(self, body: bytes, msg_type: int, flags: int = 0) -> bytes | None:
        """A request with NLM_F_ECHO: wait for the ACK and return the echoed message
        (None if the kernel echoed nothing)."""
        flags |= NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO
        answers = self._exchange(body, msg_type, flags, _ACK)
        return answers[-1] if answers else None

    def get(self, body: bytes, msg_type: int) -> bytes:
        """A single-object GET; returns the answer (raises NetlinkError, e.g. ENODEV)."""
        return self._exchange(body, msg_type, NLM_F_REQUEST, _ONE)[0]

    def get_index(self, body: bytes, msg_type: int) -> int:
        """A single-link GET answered with just the link's index (from the ifinfomsg
        header, attributes not decoded)."""
        answer = self.get(body, msg_type)
        return int(rtnl.IFINFO.unpack_from(answer, rtnl.NLMSG.size)[2])

    def dump(self, body: bytes, msg_type: int) -> list[bytes]:
        """Every message of a dump, undecoded. A dump the kernel marks interrupted (the
        objects changed while it was read in parts, so some may be missing) is made
        again, as libnftables does, up to DUMP_TRIES times."""
        for _ in range(DUMP_TRIES):
            found = self._exchange(body, msg_type, NLM_F_REQUEST | NLM_F_DUMP, _DONE)
            if not self.interrupted:
                break
        return found


def _error(message: bytes, code: int) -> NetlinkError:
    """The NetlinkError for an error message, with the kernel's extended-ack text
    (NLMSGERR_ATTR_MSG) when there is one."""
    _length, kind, flags, _seq, _pid = rtnl.NLMSG.unpack_from(message)
    detail = None
    start = rtnl.NLMSG.size + 4  # the error code, then the request's header (or all of it)
    if flags & NLM_F_ACK_TLVS and kind == NLMSG_DONE:  # a failed dump: no request inside
        detail = rtnl.as_str(rtnl.attrs(message, start).get(NLMSGERR_ATTR_MSG))
    elif flags & NLM_F_ACK_TLVS and len(message) >= start + rtnl.NLMSG.size:
        original = (
            rtnl.NLMSG.size if flags & NLM_F_CAPPED else rtnl.NLMSG.unpack_from(message, start)[0]
        )
        tlvs = rtnl.attrs(message, start + ((original + 3) & ~3))
        detail = rtnl.as_str(tlvs.get(NLMSGERR_ATTR_MSG))
    return NetlinkError(code, detail) if detail else NetlinkError(code)


__all__ = ["Channel", "NetlinkError", "open_route_socket", "receive"]
