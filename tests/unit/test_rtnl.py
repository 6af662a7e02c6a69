"""The rtnetlink messages hostnet builds with struct equal pyroute2's encoding of the
same request, byte for byte, and the decoders read what pyroute2 encodes. No root."""

from __future__ import annotations

import socket
from typing import Any

import pytest

pytest.importorskip("pyroute2")

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from hostnet.backends.netlink import rtnl
from hostnet.backends.netlink.channel import Channel

RTM_NEWLINK = 16


def pyroute2_bytes(msg: Any, fields: dict[str, Any], attrs: list[Any]) -> bytes:
    """The body (after the 16-byte header) pyroute2 encodes for ``fields`` and ``attrs``."""
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg["header"]["type"] = RTM_NEWLINK
    msg.encode()
    return bytes(msg.data[16 : msg["header"]["length"]])


PEER = [
    ("IFLA_IFNAME", "eth0"),
    ("IFLA_MTU", 1450),
    ("IFLA_ADDRESS", "02:42:ac:11:00:02"),
    ("IFLA_NET_NS_FD", 7),
]


@pytest.mark.parametrize(
    ("ours", "fields", "attrs"),
    [
        pytest.param(
            rtnl.ifinfo(
                rtnl.string(rtnl.IFLA_IFNAME, "vethab12"),
                rtnl.u32(rtnl.IFLA_MTU, 1450),
                rtnl.u32(rtnl.IFLA_MASTER, 3),
                rtnl.u32(rtnl.IFLA_GROUP, 77),
                rtnl.nested(
                    rtnl.IFLA_LINKINFO,
                    [
                        rtnl.string(rtnl.IFLA_INFO_KIND, "veth"),
                        rtnl.nested(
                            rtnl.IFLA_INFO_DATA,
                            [
                                rtnl.attr(
                                    rtnl.VETH_INFO_PEER,
                                    rtnl.ifinfo(
                                        rtnl.string(rtnl.IFLA_IFNAME, "eth0"),
                                        rtnl.u32(rtnl.IFLA_MTU, 1450),
                                        rtnl.mac(rtnl.IFLA_ADDRESS, "02:42:ac:11:00:02"),
                                        rtnl.u32(rtnl.IFLA_NET_NS_FD, 7),
                                    ),
                                )
                            ],
                        ),
                    ],
                ),
            ),
            {},
            [
                ("IFLA_IFNAME", "vethab12"),
                ("IFLA_MTU", 1450),
                ("IFLA_MASTER", 3),
                ("IFLA_GROUP", 77),
                (
                    "IFLA_LINKINFO",
                    {
                        "attrs": [
                            ("IFLA_INFO_KIND", "veth"),
                            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": PEER})]}),
                        ]
                    },
                ),
            ],
            id="veth-with-peer-in-namespace",
        ),
        pytest.param(
            rtnl.ifinfo(
                rtnl.string(rtnl.IFLA_IFNAME, "mv0"),
                rtnl.u32(rtnl.IFLA_LINK, 2),
                rtnl.nested(
                    rtnl.IFLA_LINKINFO,
                    [
                        rtnl.string(rtnl.IFLA_INFO_KIND, "macvlan"),
                        rtnl.nested(rtnl.IFLA_INFO_DATA, [rtnl.u32(rtnl.IFLA_MACVLAN_MODE, 4)]),
                    ],
                ),
                flags=1,
                change=1,
            ),
            {"flags": 1, "change": 1},
            [
                ("IFLA_IFNAME", "mv0"),
                ("IFLA_LINK", 2),
                (
                    "IFLA_LINKINFO",
                    {
                        "attrs": [
                            ("IFLA_INFO_KIND", "macvlan"),
                            ("IFLA_INFO_DATA", {"attrs": [("IFLA_MACVLAN_MODE", "bridge")]}),
                        ]
                    },
                ),
            ],
            id="macvlan-up",
        ),
        pytest.param(
            rtnl.ifinfo(rtnl.hairpin(), rtnl.no_linklocal(), index=9, flags=1, change=1),
            {"index": 9, "flags": 1, "change": 1},
            [
                (
                    "IFLA_LINKINFO",
                    {
                        "attrs": [
                            ("IFLA_INFO_SLAVE_KIND", "bridge"),
                            ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]}),
                        ]
                    },
                ),
                (
                    "IFLA_AF_SPEC",
                    {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]})]},
                ),
            ],
            id="hairpin-and-no-linklocal",
        ),
        pytest.param(
            rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, "eth1"), rtnl.u32(rtnl.IFLA_EXT_MASK, 0)),
            {},
            [("IFLA_IFNAME", "eth1"), ("IFLA_EXT_MASK", 0)],
            id="get-by-name",
        ),
    ],
)
def test_link_requests_match_pyroute2(
    ours: bytes, fields: dict[str, Any], attrs: list[Any]
) -> None:
    assert ours == pyroute2_bytes(ifinfmsg(), fields, attrs)


def test_address_requests_match_pyroute2() -> None:
    ours = rtnl.ifaddr(
        socket.AF_INET,
        24,
        5,
        rtnl.ip(rtnl.IFA_LOCAL, "10.1.2.3"),
        rtnl.ip(rtnl.IFA_ADDRESS, "10.1.2.3"),
        rtnl.ip(rtnl.IFA_BROADCAST, "10.1.2.255"),
    )
    theirs = pyroute2_bytes(
        ifaddrmsg(),
        {"family": socket.AF_INET, "prefixlen": 24, "index": 5},
        [("IFA_LOCAL", "10.1.2.3"), ("IFA_ADDRESS", "10.1.2.3"), ("IFA_BROADCAST", "10.1.2.255")],
    )
    assert ours == theirs
    ours6 = rtnl.ifaddr(
        socket.AF_INET6,
        64,
        5,
        rtnl.ip(rtnl.IFA_LOCAL, "fd00::2"),
        rtnl.u32(rtnl.IFA_FLAGS, 2),
        flags=2,
    )
    theirs6 = pyroute2_bytes(
        ifaddrmsg(),
        {"family": socket.AF_INET6, "prefixlen": 64, "index": 5, "flags": 2},
        [("IFA_LOCAL", "fd00::2"), ("IFA_FLAGS", 2)],
    )
    assert ours6 == theirs6


def test_route_and_neighbour_requests_match_pyroute2() -> None:
    ours = rtnl.rtmsg(
        socket.AF_INET,
        rtnl.ip(rtnl.RTA_GATEWAY, "10.1.0.1"),
        rtnl.u32(rtnl.RTA_OIF, 4),
        table=254,
        proto=4,
        kind=1,
    )
    theirs = pyroute2_bytes(
        rtmsg(),
        {"family": socket.AF_INET, "table": 254, "proto": 4, "type": 1},
        [("RTA_GATEWAY", "10.1.0.1"), ("RTA_OIF", 4)],
    )
    assert ours == theirs
    neigh = rtnl.ndmsg(
        socket.AF_INET,
        4,
        0x80,
        rtnl.ip(rtnl.NDA_DST, "10.1.0.9"),
        rtnl.mac(rtnl.NDA_LLADDR, "02:00:00:00:00:09"),
    )
    theirs_neigh = pyroute2_bytes(
        ndmsg(),
        {"family": socket.AF_INET, "ifindex": 4, "state": 0x80},
        [("NDA_DST", "10.1.0.9"), ("NDA_LLADDR", "02:00:00:00:00:09")],
    )
    assert neigh == theirs_neigh


def test_vxlan_port_is_sent_in_network_byte_order() -> None:
    port = rtnl.attr(rtnl.IFLA_VXLAN_PORT, (4789).to_bytes(2, "big"))
    assert port[4:6] == bytes([0x12, 0xB5])


def with_header(body: bytes, msg_type: int = RTM_NEWLINK) -> bytes:
    return rtnl.message(body, msg_type, 0, 1)


def test_link_decoder_reads_what_the_kernel_sends() -> None:
    body = pyroute2_bytes(
        ifinfmsg(),
        {"index": 12, "flags": 1, "ifi_type": 1},
        [
            ("IFLA_IFNAME", "mv3"),
            ("IFLA_MTU", 1400),
            ("IFLA_ADDRESS", "02:AB:cd:00:00:01"),
            ("IFLA_MASTER", 4),
            ("IFLA_GROUP", 9),
            ("IFLA_LINK", 2),
            (
                "IFLA_LINKINFO",
                {
                    "attrs": [
                        ("IFLA_INFO_KIND", "macvlan"),
                        ("IFLA_INFO_DATA", {"attrs": [("IFLA_MACVLAN_MODE", "private")]}),
                    ]
                },
            ),
        ],
    )
    link = rtnl.link(with_header(body))
    assert link["index"] == 12
    assert link["name"] == "mv3"
    assert link["mtu"] == 1400
    assert link["mac"] == "02:ab:cd:00:00:01"
    assert (link["master"], link["group"], link["link"]) == (4, 9, 2)
    assert (link["kind"], link["macvlan_mode"]) == ("macvlan", "private")
    assert link["link_netnsid"] is False
    assert link["stats"] is None
    assert link["flags"] & 1


def test_address_and_route_decoders() -> None:
    addr = pyroute2_bytes(
        ifaddrmsg(),
        {"family": socket.AF_INET6, "prefixlen": 64, "index": 3},
        [("IFA_ADDRESS", "fd00::5")],
    )
    assert rtnl.address(with_header(addr, 20)) == (socket.AF_INET6, 64, 3, "fd00::5")
    route = pyroute2_bytes(
        rtmsg(),
        {"family": socket.AF_INET, "dst_len": 16, "table": 254, "type": 1},
        [("RTA_DST", "10.2.0.0"), ("RTA_GATEWAY", "10.1.0.1"), ("RTA_OIF", 6)],
    )
    decoded = rtnl.route(with_header(route, 24))
    assert decoded == {
        "family": socket.AF_INET,
        "dst_len": 16,
        "table": 254,
        "type": 1,
        "dst": "10.2.0.0",
        "gateway": "10.1.0.1",
        "oif": 6,
    }


class ScriptedSocket:
    """A socket whose answers are prepared messages: enough to drive a Channel."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, _size: int) -> bytes:
        return self.answer

    def recv_into(self, buffer: bytearray) -> int:
        answer = self.recv(len(buffer))
        buffer[: len(answer)] = answer
        return len(answer)

    def close(self) -> None:
        pass


def test_channel_raises_the_kernel_error_with_its_extended_ack_text() -> None:
    request = rtnl.message(rtnl.ifinfo(), RTM_NEWLINK, 0x5, 1)
    text = rtnl.attr(1, b"Invalid MTU\0")  # NLMSGERR_ATTR_MSG
    payload = rtnl.I32.pack(-22) + request + text
    error = rtnl.NLMSG.pack(16 + len(payload), 2, 0x200, 1, 0) + payload  # NLM_F_ACK_TLVS
    chan = Channel(ScriptedSocket(error))  # type: ignore[arg-type]
    with pytest.raises(NetlinkError) as info:
        chan.request(rtnl.ifinfo(), RTM_NEWLINK)
    assert info.value.code == 22
    assert info.value.args[1] == "Invalid MTU"


def test_channel_skips_late_answers_and_returns_the_echo() -> None:
    late = rtnl.NLMSG.pack(20, 2, 0, 99, 0) + rtnl.I32.pack(-1)  # seq 99: someone else's
    echo = with_header(rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, "x"), index=5))
    ack = rtnl.NLMSG.pack(20, 2, 0, 1, 0) + rtnl.I32.pack(0)
    chan = Channel(ScriptedSocket(late + echo + ack))  # type: ignore[arg-type]
    answer = chan.request_echo(rtnl.ifinfo(), RTM_NEWLINK)
    assert answer == echo
    assert rtnl.link(answer)["index"] == 5


def test_a_name_that_is_not_utf8_is_read_and_sent_back_unchanged() -> None:
    raw = rtnl.ifinfo(rtnl.attr(rtnl.IFLA_IFNAME, b"ab\xff\0"), index=4)
    name = rtnl.link(with_header(raw))["name"]
    assert isinstance(name, str)
    assert rtnl.string(rtnl.IFLA_IFNAME, name) == rtnl.attr(rtnl.IFLA_IFNAME, b"ab\xff\0")


def test_a_failed_dump_keeps_the_kernels_text() -> None:
    text = rtnl.attr(1, b"Unknown table\0")  # NLMSGERR_ATTR_MSG, right after the code
    payload = rtnl.I32.pack(-22) + text
    done = rtnl.NLMSG.pack(16 + len(payload), 3, 0x200, 1, 0) + payload  # NLMSG_DONE
    chan = Channel(ScriptedSocket(done))  # type: ignore[arg-type]
    with pytest.raises(NetlinkError) as info:
        chan.dump(rtnl.ifinfo(), 18)
    assert info.value.code == 22
    assert info.value.args[1] == "Unknown table"


def test_a_dump_the_kernel_marks_interrupted_is_made_again() -> None:
    """NLM_F_DUMP_INTR: the objects changed while the dump was read in parts, so it may
    miss some; it is asked again (the second answer here is whole), as libnftables
    does, and a kernel that keeps interrupting gets DUMP_TRIES tries, then the last
    answer stands."""
    from hostnet.backends.netlink.channel import DUMP_TRIES

    def answer(seq: int, name: str, flags: int) -> bytes:
        link = rtnl.message(
            rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, name), index=seq), RTM_NEWLINK, flags, seq
        )
        return link + rtnl.NLMSG.pack(20, 3, flags, seq, 0) + rtnl.I32.pack(0)  # + DONE

    class Answers(ScriptedSocket):
        def __init__(self, interrupted: int) -> None:
            super().__init__(b"")
            self.interrupted = interrupted

        def recv(self, _size: int) -> bytes:
            seq = len(self.sent)  # (one request per dump, numbered from 1)
            return answer(seq, f"x{seq}", 0x12 if seq <= self.interrupted else 0x2)

    chan = Channel(Answers(interrupted=1))  # type: ignore[arg-type]
    assert [rtnl.link(m)["name"] for m in chan.dump(rtnl.ifinfo(), 18)] == ["x2"]
    chan = Channel(Answers(interrupted=99))  # type: ignore[arg-type]
    assert [rtnl.link(m)["name"] for m in chan.dump(rtnl.ifinfo(), 18)] == [f"x{DUMP_TRIES}"]


def offline_backend() -> Any:
    """The netlink backend's message builders, with every interface at index 5 and no
    socket: what it would send, without a kernel."""
    from hostnet.backends.netlink import NetlinkBackend

    backend: Any = NetlinkBackend.__new__(NetlinkBackend)
    backend._chan = lambda ns: None
    backend._index = lambda chan, name, ns: 5
    return backend


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3/24", "172.18.0.5/16", "10.0.0.1/31", "10.0.0.1/32", "10.0.0.7/8", "fd00::2/64"],
)
def test_address_ops_are_sent_as_pyroute2_would_encode_them(address: str) -> None:
    import ipaddress

    from hostnet.ops import AddAddress

    iface = ipaddress.ip_interface(address)
    ip = str(iface.ip)
    if iface.version == 4:
        fields = {"family": socket.AF_INET, "prefixlen": iface.network.prefixlen, "index": 5}
        attrs: list[Any] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
        if iface.network.prefixlen < 31:  # no broadcast on point-to-point or host routes
            attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    else:  # no duplicate address detection (IFA_F_NODAD)
        fields = {"family": socket.AF_INET6, "prefixlen": 64, "index": 5, "flags": 2}
        attrs = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip), ("IFA_FLAGS", 2)]
    op = AddAddress(ns="x", ifname="eth0", address=address)
    assert offline_backend()._addr_msg(op) == pyroute2_bytes(ifaddrmsg(), fields, attrs)


@pytest.mark.parametrize("address", ["10.1.2.3", "10.1.2.3/33", "10.1.2/24", "fd00::/x"])
def test_a_malformed_address_op_is_refused_before_anything_is_sent(address: str) -> None:
    from hostnet.errors import InvalidAddress
    from hostnet.ops import AddAddress

    op = AddAddress(ns="x", ifname="eth0", address=address)
    if address == "10.1.2.3":  # no prefix length: a host address, as the kernel takes it
        assert offline_backend()._addr_msg(op)[1] == 32
        return
    with pytest.raises(InvalidAddress):
        offline_backend()._addr_msg(op)


@pytest.mark.parametrize(
    ("dst", "gateway", "ifname", "fields", "attrs"),
    [
        (
            "0.0.0.0/0",
            "10.1.0.1",
            None,
            {"family": socket.AF_INET, "dst_len": 0, "scope": 0},
            [("RTA_GATEWAY", "10.1.0.1")],
        ),
        (
            "10.9.0.0/16",
            None,
            "eth0",
            {"family": socket.AF_INET, "dst_len": 16, "scope": 253},
            [("RTA_DST", "10.9.0.0"), ("RTA_OIF", 5)],
        ),
        (
            "::/0",
            "fd00::1",
            None,
            {"family": socket.AF_INET6, "dst_len": 0, "scope": 0},
            [("RTA_GATEWAY", "fd00::1")],
        ),
    ],
)
def test_route_ops_are_sent_as_pyroute2_would_encode_them(
    dst: str, gateway: str | None, ifname: str | None, fields: dict[str, Any], attrs: list[Any]
) -> None:
    from hostnet.ops import AddRoute

    op = AddRoute(ns="x", dst=dst, gateway=gateway, ifname=ifname)
    expected = pyroute2_bytes(rtmsg(), {**fields, "table": 254, "proto": 4, "type": 1}, attrs)
    assert offline_backend()._route_msg(op, adding=True) == expected
