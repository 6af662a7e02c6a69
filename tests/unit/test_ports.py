"""Docker's -p syntax and host port allocation (PortAllocator over a real LocalStore)."""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostnet.errors import ExhaustedError, InvalidOption, InvalidPort, PortInUse
from hostnet.model import BoundSocket, clashes, kernel_clashes
from hostnet.policy.ports import (
    PortAllocator,
    PortRequest,
    PublishSpec,
    Reservation,
    parse_host_port,
    parse_publish,
    parse_reserved,
)
from hostnet.stores.local import LocalStore

# -- parsing ----------------------------------------------------------------------------


def _host(spec: PublishSpec) -> tuple[object, ...]:
    h = spec.host
    return (h.protocol, h.host_ip, h.start, h.end, h.pick_one, h.count)


@pytest.mark.parametrize(
    ("spec", "host", "container"),
    [
        ("80", ("tcp", "0.0.0.0", None, None, False, 1), (80, 80)),
        ("8080:80", ("tcp", "0.0.0.0", 8080, 8080, False, 1), (80, 80)),
        ("8080:80/udp", ("udp", "0.0.0.0", 8080, 8080, False, 1), (80, 80)),
        ("127.0.0.1:8080:80/tcp", ("tcp", "127.0.0.1", 8080, 8080, False, 1), (80, 80)),
        ("[::1]:8080:80", ("tcp", "::1", 8080, 8080, False, 1), (80, 80)),
        ("[0:0::1]:8080:80/sctp", ("sctp", "::1", 8080, 8080, False, 1), (80, 80)),
        ("[::]:53:53/udp", ("udp", "::", 53, 53, False, 1), (53, 53)),
        ("127.0.0.1::80", ("tcp", "127.0.0.1", None, None, False, 1), (80, 80)),
        ("[::1]::80", ("tcp", "::1", None, None, False, 1), (80, 80)),
        ("80-82", ("tcp", "0.0.0.0", None, None, False, 3), (80, 82)),
        ("8000-8002:80-82", ("tcp", "0.0.0.0", 8000, 8002, False, 3), (80, 82)),
        ("8000-8010:80", ("tcp", "0.0.0.0", 8000, 8010, True, 1), (80, 80)),
        ("80/UDP", ("udp", "0.0.0.0", None, None, False, 1), (80, 80)),
        ("1:65535", ("tcp", "0.0.0.0", 1, 1, False, 1), (65535, 65535)),
        # as Docker takes them: an empty address is none; without brackets, every ':'
        # but the ports' is the address's
        (":8080:80", ("tcp", "0.0.0.0", 8080, 8080, False, 1), (80, 80)),
        ("::1:8080:80", ("tcp", "::1", 8080, 8080, False, 1), (80, 80)),
        ("2001:db8::1::80/udp", ("udp", "2001:db8::1", None, None, False, 1), (80, 80)),
        # host port 0 is any free one, as Docker takes it
        ("0:80", ("tcp", "0.0.0.0", None, None, False, 1), (80, 80)),
        ("127.0.0.1:0:80/udp", ("udp", "127.0.0.1", None, None, False, 1), (80, 80)),
        ("[::1]:0:80", ("tcp", "::1", None, None, False, 1), (80, 80)),
    ],
)
def test_parse_publish(spec: str, host: tuple[object, ...], container: tuple[int, int]) -> None:
    parsed = parse_publish(spec)
    assert _host(parsed) == host
    assert (parsed.container_start, parsed.container_end) == container
    assert parsed.protocol == host[0]


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "0",
        "65536",
        "8080:0",
        "0:80-81",  # any one port for two container ports
        "0-5:80-85",
        "00:80",
        "65536:80",
        "8080:65536",
        "82-80",
        "8010-8000:80",
        "8000-8001:80-82",  # mismatched ranges
        "8000:80-81",  # one host port for two container ports
        "80/icmp",
        "80/tcp/udp",
        "abc",
        "a:b",
        "80:",
        "80-",
        "-80",
        "80--81",
        "+80",
        " 80",
        "80 ",
        "1.2.3.4:80",  # an address where the host port goes
        "1.2.3.4:80:80:80",
        "999.1.1.1:80:80",
        "localhost:80:80",
        "::1:80",  # (the address would be ":")
        "1:2:3:4",
        "[::1:8080:80",
        "[::1]8080:80",
        "[nonsense]:80:80",
        "[fe80::1%eth0]:8080:80",  # nftables would drop the zone
        # an address with no host port after it (Docker refuses these too); taken as
        # "any port", a typo would publish on one nobody asked for
        "[::]:80",
        "[2001:db8::5]:9000/udp",
        "[127.0.0.1]:80",
        # a bracket without its pair is a typo, not a character to drop
        "127.0.0.1]:8090:80",
        "::]:8092:80",
        "[::1:8080:80]",
    ],
)
def test_parse_publish_refuses_bad_input(spec: str) -> None:
    with pytest.raises(InvalidPort) as info:
        parse_publish(spec)
    assert info.value.spec == spec
    assert isinstance(info.value, ValueError)
    assert repr(spec) in str(info.value)


def test_port_bindings_show_the_host_port_as_typed() -> None:
    # HostConfig.PortBindings keeps what was asked: "0" for any port, "" for none
    assert parse_publish("0:80").bindings() == [("80/tcp", "", "0")]
    assert parse_publish("127.0.0.1::80/udp").bindings() == [("80/udp", "127.0.0.1", "")]
    assert parse_publish("80-81").bindings() == [("80/tcp", "", ""), ("81/tcp", "", "")]


@pytest.mark.parametrize("value", [None, 80, b"80", ["80"]])
def test_parse_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidPort):
        parse_publish(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidPort):
        parse_host_port(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["²", "٨٠", "8080:²", "٨٠٨٠:80"])
def test_non_ascii_digits_are_invalid_ports(spec: str) -> None:
    with pytest.raises(InvalidPort):
        parse_publish(spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080", ("tcp", "0.0.0.0", 8080, 8080)),
        ("8080/udp", ("udp", "0.0.0.0", 8080, 8080)),
        ("127.0.0.1:8080", ("tcp", "127.0.0.1", 8080, 8080)),
        ("[::1]:8080/sctp", ("sctp", "::1", 8080, 8080)),
        ("[::]:53/udp", ("udp", "::", 53, 53)),
        ("8000-8010", ("tcp", "0.0.0.0", 8000, 8010)),
    ],
)
def test_parse_host_port(spec: str, expected: tuple[object, ...]) -> None:
    r = parse_host_port(spec)
    assert (r.protocol, r.host_ip, r.start, r.end) == expected
    assert not r.pick_one


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "0",
        "65536",
        "80-79",
        "80/icmp",
        "8080:80",
        "1.2.3.4:80:90",
        "[::1]",
        "[::1]80",
        "localhost:80",
        "::1:80",
        "abc",
        "80-",
        ":80",
        "[fe80::1%eth0]:8080",
    ],
)
def test_parse_host_port_refuses_bad_input(spec: str) -> None:
    with pytest.raises(InvalidPort):
        parse_host_port(spec)


ports = st.integers(min_value=1, max_value=65535)
protocols = st.sampled_from(["tcp", "udp", "sctp"])
host_ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    # an IPv4-mapped one reads back as its IPv4 address (test_mapped_host_ip...)
    st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(lambda a: f"[{a}]"),
)


@given(host_ips, ports, ports, protocols)
def test_parse_publish_reads_back_what_was_written(
    ip: str, host_port: int, container_port: int, proto: str
) -> None:
    parsed = parse_publish(f"{ip}:{host_port}:{container_port}/{proto}")
    assert parsed.host.host_ip == str(ipaddress.ip_address(ip.strip("[]")))
    assert (parsed.host.start, parsed.host.end) == (host_port, host_port)
    assert (parsed.container_start, parsed.container_end) == (container_port, container_port)
    assert parsed.protocol == proto


@given(ports, ports, st.integers(min_value=0, max_value=100))
def test_equal_length_ranges_map_one_to_one(h: int, c: int, extra: int) -> None:
    if max(h, c) + extra > 65535:
        return
    parsed = parse_publish(f"{h}-{h + extra}:{c}-{c + extra}")
    assert parsed.host.count == extra + 1 == parsed.container_end - parsed.container_start + 1


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_garbage_is_an_invalid_port_or_a_valid_spec(text: str) -> None:
    try:
        parsed = parse_publish(text)
    except InvalidPort:
        return
    assert parsed.protocol in ("tcp", "udp", "sctp")
    assert 1 <= parsed.container_start <= parsed.container_end <= 65535
    if parsed.host.start is not None:
        assert 1 <= parsed.host.start <= parsed.host.end <= 65535  # type: ignore[operator]


def test_parse_reserved() -> None:
    assert parse_reserved("") == set()
    assert parse_reserved("8000-8002,9000\n") == {8000, 8001, 8002, 9000}


# -- address clash rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("0.0.0.0", "127.0.0.1", True),
        ("10.0.0.1", "0.0.0.0", True),
        ("0.0.0.0", "0.0.0.0", True),
        ("::", "::1", True),
        ("fd00::1", "::", True),
        ("::1", "fd00::1", False),
        ("127.0.0.1", "::1", False),
        ("0.0.0.0", "::1", False),
        ("::", "127.0.0.1", False),
        ("0.0.0.0", "::", False),
    ],
)
def test_reservation_clashes(a: str, b: str, clash: bool) -> None:
    assert clashes(a, b) is clash
    assert clashes(b, a) is clash


@pytest.mark.parametrize(
    ("bound", "wanted", "clash"),
    [
        ("::", "127.0.0.1", True),  # dual-stack by default
        ("::", "0.0.0.0", True),
        ("::", "::1", True),
        ("0.0.0.0", "::", False),  # hostnet's :: is IPv6 only (published or held)
        ("127.0.0.1", "::", False),
        ("0.0.0.0", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("127.0.0.1", "::1", False),
        ("::1", "0.0.0.0", False),
        ("::1", "127.0.0.1", False),
    ],
)
def test_kernel_clashes(bound: str, wanted: str, clash: bool) -> None:
    assert kernel_clashes(bound, wanted) is clash


def test_an_ipv6_only_socket_on_any_address_leaves_ipv4_free(store: LocalStore) -> None:
    assert not kernel_clashes("::", "0.0.0.0", v6only=True)
    assert kernel_clashes("::", "::1", v6only=True)
    sock = BoundSocket(
        protocol="tcp", address="::", port=8080, pid=7, process="nginx", v6only=True
    )
    alloc = alloc_(bound=[sock])
    reserve(store, alloc, req(8080), owner="v4")  # IPv4 is free
    with pytest.raises(PortInUse) as info:
        reserve(store, alloc, req(8080, "::"), owner="v6")
    assert info.value.owner_pid == 7


# -- PortAllocator ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Iterator[LocalStore]:
    s = LocalStore(tmp_path / "state")
    yield s
    s.close()


def reserve(
    store: LocalStore,
    alloc: PortAllocator,
    *requests: PortRequest,
    owner: str = "o1",
    workload: str = "web",
) -> list[list[Reservation]]:
    with store.transaction() as tx:
        return alloc.reserve(tx, list(requests), owner=owner, workload=workload)


def release(store: LocalStore, owner: str) -> None:
    with store.transaction() as tx:
        tx.forget(owner)


def rows(store: LocalStore) -> list[tuple[str, str, int, str]]:
    return [
        (r["protocol"], r["host_ip"], r["port"], r["workload"])
        for r in store.read(lambda tx: tx.ports())
    ]


def req(port: int | None = None, ip: str = "0.0.0.0", proto: str = "tcp", end: int | None = None):
    return PortRequest(
        protocol=proto, host_ip=ip, start=port, end=end if end is not None else port
    )


def alloc_(ephemeral: tuple[int, int] = (40000, 40009), **kw) -> PortAllocator:
    return PortAllocator(host="", ephemeral=ephemeral, **kw)


def test_explicit_reservation_is_stored(store: LocalStore) -> None:
    got = reserve(store, alloc_(), req(8080), req(9000, "127.0.0.1", "udp"))
    assert got == [
        [Reservation(protocol="tcp", host_ip="0.0.0.0", port=8080)],
        [Reservation(protocol="udp", host_ip="127.0.0.1", port=9000)],
    ]
    assert sorted(rows(store)) == [
        ("tcp", "0.0.0.0", 8080, "web"),
        ("udp", "127.0.0.1", 9000, "web"),
    ]


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("0.0.0.0", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("::", "::1", True),
        ("::1", "::", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("127.0.0.1", "::1", False),
        ("0.0.0.0", "::", False),
        ("::", "0.0.0.0", False),
    ],
)
def test_conflict_rules_between_reservations(
    store: LocalStore, first: str, second: str, clash: bool
) -> None:
    alloc = alloc_()
    reserve(store, alloc, req(8080, first), owner="a", workload="web")
    if clash:
        with pytest.raises(PortInUse) as info:
            reserve(store, alloc, req(8080, second), owner="b", workload="api")
        err = info.value
        assert (err.port, err.protocol, err.host_ip) == (8080, "tcp", second)
        assert err.holder == "web"
        assert err.owner_pid is None
        assert "'web'" in str(err)
        assert rows(store) == [("tcp", first, 8080, "web")]
    else:
        reserve(store, alloc, req(8080, second), owner="b", workload="api")
        assert len(rows(store)) == 2


def test_protocols_are_separate(store: LocalStore) -> None:
    alloc = alloc_()
    for owner, proto in enumerate(("tcp", "udp", "sctp")):
        reserve(store, alloc, req(8080, proto=proto), owner=str(owner))
    with pytest.raises(PortInUse):
        reserve(store, alloc, req(8080, proto="udp"), owner="x")
    assert sorted(r[0] for r in rows(store)) == ["sctp", "tcp", "udp"]


def test_hosts_are_separate(store: LocalStore) -> None:
    reserve(store, PortAllocator(host="h1", ephemeral=(40000, 40009)), req(8080), owner="a")
    reserve(store, PortAllocator(host="h2", ephemeral=(40000, 40009)), req(8080), owner="b")
    with pytest.raises(PortInUse):
        reserve(store, PortAllocator(host="h1", ephemeral=(40000, 40009)), req(8080), owner="c")


@pytest.mark.parametrize(
    ("bound_ip", "wanted_ip", "clash"),
    [
        ("0.0.0.0", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("::", "127.0.0.1", True),
        ("::", "0.0.0.0", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "0.0.0.0", False),
    ],
)
def test_conflict_with_a_socket_of_another_process_names_it(
    store: LocalStore, bound_ip: str, wanted_ip: str, clash: bool
) -> None:
    sock = BoundSocket(protocol="tcp", address=bound_ip, port=8080, pid=4242, process="nginx")
    alloc = alloc_(bound=[sock])
    if not clash:
        reserve(store, alloc, req(8080, wanted_ip))
        return
    with pytest.raises(PortInUse) as info:
        reserve(store, alloc, req(8080, wanted_ip))
    err = info.value
    assert (err.owner_pid, err.owner_name, err.holder) == (4242, "nginx", None)
    assert "4242" in str(err) and "nginx" in str(err)
    assert rows(store) == []


def test_a_socket_whose_owner_is_hidden_still_conflicts(store: LocalStore) -> None:
    alloc = alloc_(bound=[BoundSocket(protocol="udp", address="0.0.0.0", port=53)])
    with pytest.raises(PortInUse, match="not visible") as info:
        reserve(store, alloc, req(53, proto="udp"))
    assert info.value.owner_pid is None
    reserve(store, alloc, req(53, proto="tcp"))  # another protocol is free


def test_range_is_all_or_nothing(store: LocalStore) -> None:
    alloc = alloc_()
    reserve(store, alloc, req(8005), owner="db", workload="db")
    with pytest.raises(PortInUse) as info:
        reserve(store, alloc, req(8000, end=8010), owner="web")
    assert info.value.port == 8005 and info.value.holder == "db"
    assert rows(store) == [("tcp", "0.0.0.0", 8005, "db")]


def test_several_requests_are_all_or_nothing(store: LocalStore) -> None:
    alloc = alloc_()
    reserve(store, alloc, req(9000), owner="db", workload="db")
    with pytest.raises(PortInUse):
        reserve(store, alloc, req(8080), req(8081, proto="udp"), req(9000), owner="web")
    assert rows(store) == [("tcp", "0.0.0.0", 9000, "db")]
    # the same port twice in one call clashes with itself: the call is wrong
    with pytest.raises(InvalidPort, match="port specifications publish host port"):
        reserve(store, alloc, req(8080), req(8080, "127.0.0.1"), owner="web")
    assert rows(store) == [("tcp", "0.0.0.0", 9000, "db")]


def test_pick_one_of_a_host_range(store: LocalStore) -> None:
    alloc = alloc_(bound=[BoundSocket(protocol="tcp", address="0.0.0.0", port=8001, pid=7)])
    reserve(store, alloc, req(8000), owner="a")
    pick = PortRequest(start=8000, end=8002, pick_one=True)
    assert reserve(store, alloc, pick, owner="b") == [
        [Reservation(protocol="tcp", host_ip="0.0.0.0", port=8002)]
    ]
    with pytest.raises(ExhaustedError, match="8000-8002"):
        reserve(store, alloc, pick, owner="c")


def ephemeral(n: int = 1, ip: str = "0.0.0.0", proto: str = "tcp") -> PortRequest:
    return PortRequest(protocol=proto, host_ip=ip, ephemeral=n)


def picked(result: list[list[Reservation]]) -> list[int]:
    return [r.port for got in result for r in got]


def test_ephemeral_picks_from_the_given_range(store: LocalStore) -> None:
    alloc = alloc_((40000, 40009))
    got = [picked(reserve(store, alloc, ephemeral(), owner=str(i)))[0] for i in range(10)]
    assert sorted(got) == list(range(40000, 40010))


def test_ephemeral_skips_reserved_and_bound_ports(store: LocalStore) -> None:
    alloc = alloc_(
        (40000, 40009),
        reserved={40000, 40001},
        bound=[BoundSocket(protocol="tcp", address="::", port=40002, pid=1, process="sshd")],
    )
    reserve(store, alloc, req(40003, "127.0.0.1"), owner="held")
    assert picked(reserve(store, alloc, ephemeral(), owner="a")) == [40004]
    # but an explicit request may use a port the kernel keeps out of the ephemeral range
    assert picked(reserve(store, alloc, req(40000), owner="b")) == [40000]


def test_ephemeral_cursor_moves_on_so_a_released_port_is_not_reused_at_once(
    store: LocalStore,
) -> None:
    alloc = alloc_((40000, 40009))
    first = picked(reserve(store, alloc, ephemeral(), owner="a"))
    release(store, "a")
    second = picked(reserve(store, alloc, ephemeral(), owner="b"))
    assert first == [40000] and second == [40001]


def test_ephemeral_cursor_is_per_protocol(store: LocalStore) -> None:
    alloc = alloc_((40000, 40009))
    assert picked(reserve(store, alloc, ephemeral(), owner="a")) == [40000]
    assert picked(reserve(store, alloc, ephemeral(proto="udp"), owner="b")) == [40000]


def test_ephemeral_wraps_around(store: LocalStore) -> None:
    alloc = alloc_((40000, 40002))
    for owner in "abc":
        reserve(store, alloc, ephemeral(), owner=owner)
    release(store, "b")  # 40001 free; the cursor is past the end of the range
    assert picked(reserve(store, alloc, ephemeral(), owner="d")) == [40001]
    release(store, "a")
    assert picked(reserve(store, alloc, ephemeral(), owner="e")) == [40000]


def test_ephemeral_exhausted(store: LocalStore) -> None:
    alloc = alloc_((40000, 40002), reserved={40001})
    reserve(store, alloc, ephemeral(), ephemeral(), owner="a")
    with pytest.raises(ExhaustedError, match="40000-40002") as info:
        reserve(store, alloc, ephemeral(), owner="b")
    assert not isinstance(info.value, PortInUse)
    # another address family, or protocol, still has room
    assert picked(reserve(store, alloc, ephemeral(ip="::1"), owner="c")) == [40000]
    assert picked(reserve(store, alloc, ephemeral(proto="udp"), owner="d")) == [40000]


def test_ephemeral_ports_for_a_container_range(store: LocalStore) -> None:
    # one ephemeral port each, as Docker picks them: the next free ones, in a row or not
    alloc = alloc_((40000, 40009))
    reserve(store, alloc, req(40001), owner="x")
    reserve(store, alloc, req(40003), owner="x")
    assert picked(reserve(store, alloc, ephemeral(3), owner="a")) == [40000, 40002, 40004]
    assert picked(reserve(store, alloc, ephemeral(2), owner="b")) == [40005, 40006]
    with pytest.raises(ExhaustedError):
        reserve(store, alloc, ephemeral(4), owner="c")
    assert picked(reserve(store, alloc, ephemeral(3), owner="d")) == [40007, 40008, 40009]


def test_ephemeral_failure_keeps_the_cursor(store: LocalStore) -> None:
    alloc = alloc_((40000, 40002))
    reserve(store, alloc, ephemeral(), owner="a")
    with pytest.raises(PortInUse):
        reserve(store, alloc, ephemeral(), req(40000), owner="b")  # rolled back
    assert picked(reserve(store, alloc, ephemeral(), owner="c")) == [40001]


@pytest.mark.parametrize("bad", [(0, 10), (10, 5), (1, 65536)])
def test_allocator_refuses_a_bad_ephemeral_range(bad: tuple[int, int]) -> None:
    with pytest.raises(InvalidOption):
        PortAllocator(host="", ephemeral=bad)


# -- property: no clashing reservations, and refusals only for real clashes ------------

IPS = ["0.0.0.0", "127.0.0.1", "127.0.0.2", "::", "::1"]
PORT_POOL = [40000, 40001, 40002, 8080]
BOUND = (
    BoundSocket(protocol="tcp", address="0.0.0.0", port=8080, pid=99, process="x"),
    BoundSocket(protocol="udp", address="::", port=40001, pid=98, process="y"),
)


def _clash(a: str, b: str) -> bool:
    """The rule written out independently of the module under test."""
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    return x.version == y.version and (x == y or x.is_unspecified or y.is_unspecified)


def _kernel_clash(bound: str, wanted: str) -> bool:
    b = ipaddress.ip_address(bound)
    if b.version == 6 and b.is_unspecified:
        return True  # another process's :: socket is dual-stack
    return _clash(bound, wanted)  # hostnet's own :: is IPv6 only


actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.sampled_from(["tcp", "udp"]),
            st.sampled_from(IPS),
            st.one_of(st.none(), st.sampled_from(PORT_POOL)),
        ),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=30)),
    ),
    max_size=30,
)


@settings(deadline=None, max_examples=60)
@given(actions)
def test_random_reserve_release_never_double_books(steps: Sequence[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        alloc = PortAllocator(host="", ephemeral=(40000, 40002), bound=BOUND)
        model: dict[str, tuple[str, str, int]] = {}
        try:
            for n, step in enumerate(steps):
                if step[0] == "release":
                    owners = sorted(model)
                    if owners:
                        victim = owners[step[1] % len(owners)]
                        release(store, victim)
                        del model[victim]
                    continue
                _, proto, ip, port = step
                owner = f"o{n}"
                taken = [(p, i, q) for (p, i, q) in model.values() if p == proto]

                def free(q: int, ip=ip, proto=proto, taken=taken) -> bool:
                    return not any(t[2] == q and _clash(t[1], ip) for t in taken) and not any(
                        s.protocol == proto and s.port == q and _kernel_clash(s.address, ip)
                        for s in BOUND
                    )

                request = req(port, ip, proto) if port else ephemeral(ip=ip, proto=proto)
                try:
                    got = picked(reserve(store, alloc, request, owner=owner))
                except PortInUse as err:
                    assert port is not None and not free(port), (step, model)
                    assert err.port == port
                    continue
                except ExhaustedError:
                    assert port is None
                    assert not any(free(q) for q in range(40000, 40003)), (step, model)
                    continue
                (q,) = got
                assert free(q), (step, model)
                if port is not None:
                    assert q == port
                else:
                    assert 40000 <= q <= 40002
                model[owner] = (proto, ip, q)
            stored = store.read(lambda tx: tx.ports())
            assert sorted(
                (r["owner"], r["protocol"], r["host_ip"], r["port"]) for r in stored
            ) == (sorted((o, *v) for o, v in model.items()))
            for i, a in enumerate(stored):
                for b in stored[i + 1 :]:
                    if (a["protocol"], a["port"]) == (b["protocol"], b["port"]):
                        assert not _clash(a["host_ip"], b["host_ip"]), (a, b)
        finally:
            store.close()


@pytest.mark.parametrize(("v6only", "blocked"), [(False, True), (True, False)])
def test_the_fake_kernel_binds_as_the_kernel_does(v6only: bool, blocked: bool) -> None:
    # a socket on :: takes the IPv4 port too unless it is IPv6-only (DESIGN rule 6: the
    # fake enforces what the kernel enforces)
    from hostnet.backends.fake import FakeKernel
    from hostnet.ops import BindPort

    kernel = FakeKernel(seed=1)
    kernel.bind_external(None, "tcp", "::", 8080, pid=7, process="nginx", v6only=v6only)
    if blocked:
        with pytest.raises(PortInUse) as info:
            kernel.apply(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080))
        assert info.value.owner_pid == 7
    else:
        kernel.apply(BindPort(ns=None, protocol="tcp", address="0.0.0.0", port=8080))
    with pytest.raises(PortInUse):  # IPv6 either way
        kernel.apply(BindPort(ns=None, protocol="tcp", address="::1", port=8080))


def test_mapped_host_ip_reads_back_as_its_ipv4_address() -> None:
    assert parse_publish("[::ffff:127.0.0.1]:8080:80").host.host_ip == "127.0.0.1"
    assert parse_publish("[::ffff:0:0]:8080:80").host.host_ip == "0.0.0.0"
