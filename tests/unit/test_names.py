"""Name validation: what may reach the kernel (interface names) or a path (namespaces)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostnet.errors import HostnetError, InvalidName, ValidationError
from hostnet.names import check_ifname, check_namespace_name, check_network_name

SAFE_FIRST = string.ascii_letters + string.digits + "_"
SAFE_REST = SAFE_FIRST + ".-"


@pytest.mark.parametrize(
    "name",
    ["app1", "a", "A-b_c.d", "_hidden", "0", "x" * 64, "ns.with.dots", "web-1.prod_2"],
)
def test_valid_namespace_names_are_returned_unchanged(name: str) -> None:
    assert check_namespace_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * 65, "bytes"),
        ("a/b", "/"),
        ("/etc", "/"),
        ("..", ".."),
        (".", "is not a name"),
        ("a..b", ".."),
        ("../../etc/passwd", ".."),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\n", "whitespace"),
        ("café", "ASCII"),
        ("名前", "ASCII"),
        ("-rf", "not first"),
        (".hidden", "not first"),
        ("a:b", "may contain"),
        ("a$b", "may contain"),
        ("a;rm", "may contain"),
        ("a\x00b", "may contain"),
    ],
)
def test_invalid_namespace_names_are_refused_with_a_reason(name: str, why: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_namespace_name(name)
    err = info.value
    assert err.kind == "namespace"
    assert err.name == name
    assert why in err.reason
    assert repr(name) in str(err)


def test_namespace_name_limit_is_64_bytes() -> None:
    assert check_namespace_name("n" * 64) == "n" * 64
    with pytest.raises(InvalidName, match="65 bytes, the limit is 64"):
        check_namespace_name("n" * 65)


@pytest.mark.parametrize(
    "name", ["eth0", "lo", "veth1a2b3c4d5e6", "br-0123456789a", "x" * 15, "vlan.100", "a@b", "a+b"]
)
def test_valid_interface_names(name: str) -> None:
    assert check_ifname(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * 16, "16 bytes, the limit is 15"),
        ("eth0/1", "/"),
        ("..", ".."),
        ("eth 0", "whitespace"),
        ("éth0", "ASCII"),
        ("-eth0", "not first"),
        (".eth0", "not first"),
        ("eth0:1", "may contain"),
    ],
)
def test_invalid_interface_names(name: str, why: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_ifname(name)
    assert info.value.kind == "interface"
    assert why in info.value.reason


@pytest.mark.parametrize("value", [None, 5, b"eth0", ["eth0"]])
def test_non_strings_are_invalid_names_not_type_errors(value: object) -> None:
    for check in (check_ifname, check_namespace_name, check_network_name):
        with pytest.raises(InvalidName, match="must be a string"):
            check(value)


def test_invalid_name_is_a_value_error_and_a_hostnet_error() -> None:
    with pytest.raises(ValueError) as info:
        check_namespace_name("a/b")
    assert isinstance(info.value, InvalidName)
    assert isinstance(info.value, ValidationError)
    assert isinstance(info.value, HostnetError)


def test_network_names_must_start_with_a_letter_or_digit() -> None:
    assert check_network_name("web") == "web"
    assert check_network_name("9net.a_b-c") == "9net.a_b-c"
    for bad in ("_web", "-web", ".web", "a/b", "we b", "x" * 65):
        with pytest.raises(InvalidName):
            check_network_name(bad)


@given(
    st.text(alphabet=SAFE_FIRST, min_size=1, max_size=1),
    st.text(alphabet=SAFE_REST, max_size=14),
)
def test_any_name_from_the_portable_alphabet_is_accepted(first: str, rest: str) -> None:
    name = first + rest
    if ".." in name:
        with pytest.raises(InvalidName):
            check_ifname(name)
        return
    assert check_ifname(name) == name
    assert check_namespace_name(name) == name


@given(st.text(max_size=80))
def test_whatever_passes_is_safe_for_paths_and_netlink(name: str) -> None:
    for check, limit in ((check_ifname, 15), (check_namespace_name, 64)):
        try:
            accepted = check(name)
        except InvalidName:
            continue
        assert accepted == name
        assert name.isascii()
        assert 1 <= len(name.encode()) <= limit
        assert "/" not in name and ".." not in name and "\x00" not in name
        assert not any(c.isspace() for c in name)
        assert name[0] not in "-."


@pytest.mark.parametrize("name", ["all", "default"])
def test_interface_names_the_kernel_keeps_for_its_settings(name: str) -> None:
    with pytest.raises(InvalidName, match="reserved"):
        check_ifname(name)
    assert check_ifname(f"{name}0") == f"{name}0"
