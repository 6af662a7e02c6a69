"""Forgetting connection-tracking state: the conntrack entries of an endpoint's flows.

Why: NAT decisions live in conntrack entries, not in the rules. A UDP client that keeps
its source port keeps hitting the entry made for its first packet, so after a port was
unpublished or an endpoint disconnected (and maybe replaced under the same published
port) its packets would still be DNATed to the old address until the entry times out,
30 s to minutes later. Docker and netavark delete such entries; hostnet does when an
endpoint's setup is undone (ops.ForgetFlows).

How: ctnetlink (NETLINK_NETFILTER, subsystem 1) over a socket opened in the host
namespace: one dump per address family, matched here (any entry whose original source
or destination, or whose reply source, is one of the addresses: flows from the
endpoint, to it, and DNATed to it), then one delete per match by its original tuple
(sent back as the kernel gave it) and zone. Cost: a dump walks the kernel's whole
conntrack hash table, which all namespaces share (about 10 ms for 262,144 buckets,
empty or not), so the backend skips it when the namespace's own entry count
(net.netfilter.nf_conntrack_count) is 0; otherwise one dump per teardown call,
whatever the number of addresses.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Collection

from hostnet.backends.netlink import rtnl
from hostnet.backends.netlink.channel import Channel, NetlinkError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE = 1, 2, 18
CTA_TUPLE_IP = 1
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
NFGEN = struct.Struct("=BBH")  # family, version (0), resource id (big-endian, 0)

# errors that mean "no conntrack here", so nothing to forget
_ABSENT = (errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT)


def open_socket() -> socket.socket:
    """A NETLINK_NETFILTER socket in the calling thread's namespace."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    return sock


def _ips(tuple_payload: bytes | None) -> tuple[str | None, str | None]:
    """(source, destination) of a CTA_TUPLE_* payload."""
    if tuple_payload is None:
        return None, None
    ip = rtnl.attrs(tuple_payload, 0).get(CTA_TUPLE_IP)
    if ip is None:
        return None, None
    found = rtnl.attrs(ip, 0)
    src = found.get(CTA_IP_V4_SRC) or found.get(CTA_IP_V6_SRC)
    dst = found.get(CTA_IP_V4_DST) or found.get(CTA_IP_V6_DST)
    return rtnl.as_ip(src), rtnl.as_ip(dst)


def forget(sock: socket.socket, addresses: Collection[str]) -> int:
    """Delete the conntrack entries of flows from, to or DNATed to ``addresses`` in the
    namespace ``sock`` lives in; returns how many were deleted."""
    wanted = {str(a).split("/")[0] for a in addresses}
    families = {socket.AF_INET6 if ":" in a else socket.AF_INET for a in wanted}
    chan = Channel(sock)  # any netlink family: requests and answers are framed alike
    deleted = 0
    for family in sorted(families):
        try:
            entries = chan.dump(NFGEN.pack(family, 0, 0), CT_GET)
        except NetlinkError as exc:
            if exc.code in _ABSENT:
                continue
            raise
        doomed = []
        for entry in entries:
            found = rtnl.attrs(entry, rtnl.NLMSG.size + NFGEN.size)
            orig = found.get(CTA_TUPLE_ORIG)
            orig_src, orig_dst = _ips(orig)
            reply_src, _ = _ips(found.get(CTA_TUPLE_REPLY))
            if orig is not None and wanted & {orig_src, orig_dst, reply_src}:
                key = rtnl.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig)
                zone = found.get(CTA_ZONE)
                doomed.append(key + (rtnl.attr(CTA_ZONE, zone) if zone is not None else b""))
        for key in doomed:
            try:
                chan.request(NFGEN.pack(family, 0, 0) + key, CT_DELETE)
                deleted += 1
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:  # gone meanwhile (timed out): fine
                    raise
    return deleted
