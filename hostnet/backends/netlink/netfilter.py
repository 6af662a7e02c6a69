"""Netfilter over netlink: forgetting connection-tracking state (the conntrack entries of
an endpoint's flows), and listing nftables tables.

Why: NAT decisions live in conntrack entries, not in the rules. A UDP client that keeps
its source port keeps hitting the entry made for its first packet: after an endpoint
went (and maybe another publishes the port now), its packets would still be DNATed to
the old address, and packets it sent while nothing published the port made an entry
with no NAT at all, which it keeps alive as long as it sends. Docker deletes such
entries for UDP and SCTP ports; hostnet does when an endpoint's setup is undone (by
address) and when a UDP or SCTP port is published (by port) (ops.ForgetFlows).

How: ctnetlink (NETLINK_NETFILTER, subsystem 1) over a socket opened in the host
namespace: one dump of every address family, matched here (by address: any entry
whose original source or destination, or whose reply source, is one of the addresses;
by port: the protocol and original destination port), then one delete per match by its
original tuple (sent back as the kernel gave it) and zone. Cost: a dump walks the
kernel's whole conntrack hash table, which all namespaces share (about 10 ms for
262,144 buckets, empty or not), so the backend skips it when the namespace's own entry
count (net.netfilter.nf_conntrack_count) is 0.
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
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
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


def _tuple(payload: bytes | None) -> tuple[str | None, str | None, int | None, int | None]:
    """(source, destination, IP protocol number, destination port) of a CTA_TUPLE_*
    payload; None for what it does not hold."""
    if payload is None:
        return None, None, None, None
    parts = rtnl.attrs(payload, 0)
    ips = rtnl.attrs(parts[CTA_TUPLE_IP], 0) if CTA_TUPLE_IP in parts else {}
    proto = rtnl.attrs(parts[CTA_TUPLE_PROTO], 0) if CTA_TUPLE_PROTO in parts else {}
    number = proto.get(CTA_PROTO_NUM)
    port = proto.get(CTA_PROTO_DST_PORT)
    return (
        rtnl.as_ip(ips.get(CTA_IP_V4_SRC) or ips.get(CTA_IP_V6_SRC)),
        rtnl.as_ip(ips.get(CTA_IP_V4_DST) or ips.get(CTA_IP_V6_DST)),
        number[0] if number else None,
        int.from_bytes(port[:2], "big") if port and len(port) >= 2 else None,
    )


def forget(chan: Channel, addresses: Collection[str] = (), ports: Collection[str] = ()) -> int:
    """Delete the conntrack entries of flows from, to or DNATed to ``addresses``, and of
    flows to the ports ``ports`` ("udp/5300", "sctp/9000": the original destination
    port), in the namespace ``chan``'s socket lives in; returns how many were deleted.
    One dump of the table, whatever the families and numbers of addresses and ports."""
    wanted = {str(a).split("/")[0] for a in addresses}
    by_port = set()
    for item in ports:
        protocol, _, number = item.partition("/")
        by_port.add((_PROTOCOLS[protocol], int(number)))
    if not wanted and not by_port:
        return 0
    try:
        # family 0: every family in one walk of the table (the walk is the cost)
        entries = chan.dump(NFGEN.pack(socket.AF_UNSPEC, 0, 0), CT_GET)
    except NetlinkError as exc:
        if exc.code in _ABSENT:
            return 0
        raise
    doomed = []
    for entry in entries:
        family = NFGEN.unpack_from(entry, rtnl.NLMSG.size)[0]
        found = rtnl.attrs(entry, rtnl.NLMSG.size + NFGEN.size)
        orig = found.get(CTA_TUPLE_ORIG)
        if orig is None:
            continue
        orig_src, orig_dst, proto_num, dport = _tuple(orig)
        reply_src = _tuple(found.get(CTA_TUPLE_REPLY))[0]
        if not wanted & {orig_src, orig_dst, reply_src} and (proto_num, dport) not in by_port:
            continue
        key = rtnl.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig)
        zone = found.get(CTA_ZONE)
        doomed.append(
            NFGEN.pack(family, 0, 0)
            + key
            + (rtnl.attr(CTA_ZONE, zone) if zone is not None else b"")
        )
    deleted = 0
    for body in doomed:
        try:
            chan.request(body, CT_DELETE)
            deleted += 1
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:  # gone meanwhile (timed out): fine
                raise
    return deleted


# -- nftables tables -------------------------------------------------------------------

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFT_GET_TABLE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
NFTA_TABLE_NAME = 1
#: nftables' address families (nfgenmsg) by the names the nft command gives them
NFT_FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}


def nft_tables(chan: Channel) -> tuple[str, ...]:
    """The nftables tables of the namespace ``chan``'s socket lives in, as "family name"
    (``nft list tables``), sorted: one dump of the tables alone. (libnftables' ``list
    tables`` reads the whole ruleset first: 0.5 ms with 5 bridge networks, 5.4 ms with
    200.) Kernel errors are raised, as libnftables' listing raised them (ENOENT and
    the like, which mean no nftables here: none)."""
    try:
        found = chan.dump(NFGEN.pack(socket.AF_UNSPEC, 0, 0), NFT_GET_TABLE)
    except NetlinkError as exc:
        if exc.code in _ABSENT:
            return ()
        raise
    names = []
    for message in found:
        family = NFGEN.unpack_from(message, rtnl.NLMSG.size)[0]
        name = rtnl.as_str(rtnl.attrs(message, rtnl.NLMSG.size + NFGEN.size).get(NFTA_TABLE_NAME))
        if name is not None:
            names.append(f"{NFT_FAMILIES.get(family, str(family))} {name}")
    return tuple(sorted(names))
