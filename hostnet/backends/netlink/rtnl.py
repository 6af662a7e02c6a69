"""rtnetlink messages as bytes: the few hostnet sends, encoded and decoded with ``struct``.

Why not pyroute2's message classes: encoding one veth request through them costs about
0.2 ms of Python and one endpoint takes half a dozen requests, which was a third of a
bridge connect (docs/performance.md). The messages here are few and fixed, so they are
built directly; tests/unit/test_rtnl.py checks that each encodes to the same bytes as
pyroute2's classes (the one deliberate difference is the VXLAN port, which is sent in
network byte order as the kernel expects). Decoding reads only the attributes hostnet
uses.

Layout (from <linux/netlink.h> and <linux/rtnetlink.h>): a 16-byte nlmsghdr, then a
family header (ifinfomsg 16 bytes, ifaddrmsg 8, rtmsg 12, ndmsg 12), then attributes:
``u16 length, u16 type, payload``, each padded to 4 bytes; nested attributes carry
attributes as their payload.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any

NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NLA = struct.Struct("=HH")  # length, type
IFINFO = struct.Struct("=BxHiII")  # family, (pad), device type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst len, src len, tos, table, protocol,
#                                      scope, type, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, (pad), index, state, flags, type
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
STATS64 = struct.Struct("=8Q")  # the first eight counters of rtnl_link_stats64
NLA_TYPE_MASK = 0x3FFF

# <linux/if_link.h>
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_LINKINFO, IFLA_STATS64 = 10, 18, 23
IFLA_AF_SPEC, IFLA_GROUP, IFLA_NET_NS_FD, IFLA_EXT_MASK = 26, 27, 28, 29
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_MACVLAN_MODE = 1
IFLA_BR_MCAST_SNOOPING = 23
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 3, 4
IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6 = 7, 15, 17
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_INET6_ADDR_GEN_MODE = 8
IN6_ADDR_GEN_MODE_NONE = 1
ARPHRD_LOOPBACK = 772
# <linux/if_addr.h>
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
# <linux/rtnetlink.h>
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
# <linux/neighbour.h>
NDA_DST, NDA_LLADDR = 1, 2

MACVLAN_MODE_NAMES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}

# what ``link`` reads of a link's description, by level
_LINK_READ = frozenset(
    (IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO,
     IFLA_STATS64, IFLA_GROUP, IFLA_LINK_NETNSID)
)  # fmt: skip
_INFO_READ = frozenset((IFLA_INFO_KIND, IFLA_INFO_DATA))
_ROUTE_READ = frozenset((RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE))
_DATA_READ: dict[str, frozenset[int]] = {
    "bridge": frozenset((IFLA_BR_MCAST_SNOOPING,)),
    "macvlan": frozenset((IFLA_MACVLAN_MODE,)),
    "macvtap": frozenset((IFLA_MACVLAN_MODE,)),
    "vxlan": frozenset((IFLA_VXLAN_ID, IFLA_VXLAN_LINK)),
}


# -- encoding ---------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = NLA.size + len(payload)
    return NLA.pack(length, kind) + payload + b"\0" * (-length & 3)


def nested(kind: int, parts: Iterable[bytes]) -> bytes:
    return attr(kind, b"".join(parts))


def u8(kind: int, value: int) -> bytes:
    return attr(kind, bytes((value,)))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def string(kind: int, value: str) -> bytes:
    # surrogateescape: a name read from the kernel that is not UTF-8 goes back unchanged
    return attr(kind, value.encode(errors="surrogateescape") + b"\0")


def mac(kind: int, value: str) -> bytes:
    return attr(kind, bytes.fromhex(value.replace(":", "")))


def ip(kind: int, value: str) -> bytes:
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    return attr(kind, socket.inet_pton(family, value))


def ifinfo(*parts: bytes, index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    """An ifinfomsg (AF_UNSPEC) followed by ``parts`` (attributes)."""
    return IFINFO.pack(0, 0, index, flags, change) + b"".join(parts)


def ifaddr(family: int, prefixlen: int, index: int, *parts: bytes, flags: int = 0) -> bytes:
    return IFADDR.pack(family, prefixlen, flags, 0, index) + b"".join(parts)


def rtmsg(
    family: int,
    *parts: bytes,
    dst_len: int = 0,
    table: int = 0,
    proto: int = 0,
    scope: int = 0,
    kind: int = 0,
) -> bytes:
    return RTMSG.pack(family, dst_len, 0, 0, table, proto, scope, kind, 0) + b"".join(parts)


def ndmsg(family: int, index: int, state: int, *parts: bytes, flags: int = 0) -> bytes:
    return NDMSG.pack(family, index, state, flags, 0) + b"".join(parts)


def message(body: bytes, msg_type: int, flags: int, seq: int) -> bytes:
    """``body`` behind its netlink header."""
    return NLMSG.pack(NLMSG.size + len(body), msg_type, flags, seq, 0) + body


def no_linklocal() -> bytes:
    """IFLA_AF_SPEC / AF_INET6 / address generation mode none: the link gets no IPv6
    link-local address when it comes up."""
    inet6 = nested(socket.AF_INET6, [u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE)])
    return nested(IFLA_AF_SPEC, [inet6])


def hairpin() -> bytes:
    """A bridge port's hairpin mode on (reflect frames back out of the port they came in
    on), as IFLA_LINKINFO's slave data."""
    data = nested(IFLA_INFO_SLAVE_DATA, [u8(IFLA_BRPORT_MODE, 1)])
    return nested(IFLA_LINKINFO, [string(IFLA_INFO_SLAVE_KIND, "bridge"), data])


# -- decoding ---------------------------------------------------------------------------


def attrs(
    data: bytes, offset: int, end: int | None = None, only: Collection[int] | None = None
) -> dict[int, bytes]:
    """The attributes in ``data[offset:end]`` by type (the last one wins); only those of
    the types ``only`` if given (the others are not copied out: a bridge's description
    carries some 90 attributes, of which hostnet reads a dozen)."""
    end = len(data) if end is None else end
    out: dict[int, bytes] = {}
    unpack = NLA.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        kind &= NLA_TYPE_MASK
        if only is None or kind in only:
            out[kind] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def as_u32(payload: bytes | None) -> int | None:
    return None if payload is None or len(payload) < 4 else int(U32.unpack_from(payload)[0])


def as_str(payload: bytes | None) -> str | None:
    if payload is None:
        return None
    # Interface names are bytes to the kernel; one that is not UTF-8 (made by another
    # tool) must not break observing its namespace.
    return payload.split(b"\0", 1)[0].decode(errors="surrogateescape")


def as_ip(payload: bytes | None) -> str | None:
    if payload is None:
        return None
    family = socket.AF_INET6 if len(payload) == 16 else socket.AF_INET
    return socket.inet_ntop(family, payload)


def as_mac(payload: bytes | None) -> str | None:
    return None if payload is None else ":".join(f"{b:02x}" for b in payload)


def link(data: bytes) -> dict[str, Any]:
    """An RTM_NEWLINK message (header included) as the fields hostnet reads:
    index, type, flags, name, mtu, mac, master, group, link, link_netnsid (bool),
    kind, macvlan_mode, vni, vxlan_link, mcast_snooping, stats (dict or None)."""
    _family, dev_type, index, flags, _change = IFINFO.unpack_from(data, NLMSG.size)
    found = attrs(data, NLMSG.size + IFINFO.size, only=_LINK_READ)
    info = attrs(found[IFLA_LINKINFO], 0, only=_INFO_READ) if IFLA_LINKINFO in found else {}
    kind = as_str(info.get(IFLA_INFO_KIND))
    extra = (
        attrs(info[IFLA_INFO_DATA], 0, only=_DATA_READ.get(kind or "", ()))
        if IFLA_INFO_DATA in info
        else {}
    )
    mode = vni = vxlan_link = snooping = None
    if kind == "bridge" and IFLA_BR_MCAST_SNOOPING in extra:
        snooping = bool(extra[IFLA_BR_MCAST_SNOOPING][0])
    elif kind in ("macvlan", "macvtap"):
        number = as_u32(extra.get(IFLA_MACVLAN_MODE))
        mode = MACVLAN_MODE_NAMES.get(number) if number is not None else None
    elif kind == "vxlan":
        vni = as_u32(extra.get(IFLA_VXLAN_ID))
        vxlan_link = as_u32(extra.get(IFLA_VXLAN_LINK))
    raw_stats = found.get(IFLA_STATS64)
    stats = None
    if raw_stats is not None and len(raw_stats) >= STATS64.size:
        rxp, txp, rxb, txb, _rxe, _txe, rxd, txd = STATS64.unpack_from(raw_stats)
        stats = {
            "rx_packets": rxp,
            "tx_packets": txp,
            "rx_bytes": rxb,
            "tx_bytes": txb,
            "rx_dropped": rxd,
            "tx_dropped": txd,
        }
    return {
        "index": index,
        "type": dev_type,
        "flags": flags,
        "name": as_str(found.get(IFLA_IFNAME)),
        "mtu": as_u32(found.get(IFLA_MTU)),
        "mac": as_mac(found.get(IFLA_ADDRESS)),
        "master": as_u32(found.get(IFLA_MASTER)),
        "group": as_u32(found.get(IFLA_GROUP)) or 0,
        "link": as_u32(found.get(IFLA_LINK)),
        "link_netnsid": IFLA_LINK_NETNSID in found,
        "kind": kind,
        "macvlan_mode": mode,
        "vni": vni,
        "vxlan_link": vxlan_link,
        "mcast_snooping": snooping,
        "stats": stats,
    }


def address(data: bytes) -> tuple[int, int, int, str | None]:
    """An RTM_NEWADDR message as (family, prefix length, interface index, address):
    IFA_LOCAL, or IFA_ADDRESS where there is no local address (IPv6)."""
    family, prefixlen, _flags, _scope, index = IFADDR.unpack_from(data, NLMSG.size)
    found = attrs(data, NLMSG.size + IFADDR.size)
    return family, prefixlen, index, as_ip(found.get(IFA_LOCAL) or found.get(IFA_ADDRESS))


def route(data: bytes) -> dict[str, Any]:
    """An RTM_NEWROUTE message as family, dst_len, table, type, dst, gateway, oif."""
    family, dst_len, _src, _tos, table, _proto, _scope, kind, _flags = RTMSG.unpack_from(
        data, NLMSG.size
    )
    found = attrs(data, NLMSG.size + RTMSG.size, only=_ROUTE_READ)
    return {
        "family": family,
        "dst_len": dst_len,
        "table": as_u32(found.get(RTA_TABLE)) or table,
        "type": kind,
        "dst": as_ip(found.get(RTA_DST)),
        "gateway": as_ip(found.get(RTA_GATEWAY)),
        "oif": as_u32(found.get(RTA_OIF)),
    }


def names_by_index(links: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    return {int(m["index"]): str(m["name"]) for m in links}
