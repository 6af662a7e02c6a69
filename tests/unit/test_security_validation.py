"""SecurityPolicy refuses values that would fail open or act silently as something else."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest

from hostnet import errors
from hostnet.policy.security import SecurityPolicy


@pytest.mark.parametrize(
    "value", ["no", "false", "False", "", "yes", 0, 1, None, 1.0, [], ["no"], {"no": True}]
)
def test_allow_privileged_ports_takes_only_a_bool(value: object) -> None:
    with pytest.raises(errors.InvalidOption) as info:
        SecurityPolicy(allow_privileged_ports=value)  # type: ignore[arg-type]
    assert info.value.option == "allow_privileged_ports"
    assert info.value.value == value
    assert "allow_privileged_ports" in str(info.value)
    assert repr(value) in str(info.value)
    assert "True or False" in str(info.value)


@pytest.mark.parametrize(
    "value", ["warning", "ignore", "WARN", "Error", " warn", "", "deny", None, True, 1, ["warn"]]
)
def test_host_publish_takes_only_error_or_warn(value: object) -> None:
    with pytest.raises(errors.InvalidOption) as info:
        SecurityPolicy(host_publish=value)  # type: ignore[arg-type]
    assert info.value.option == "host_publish"
    assert info.value.value == value
    assert "host_publish" in str(info.value)
    assert "'error' or 'warn'" in str(info.value)


def test_host_publish_in_the_wrong_case_says_so() -> None:
    with pytest.raises(errors.InvalidOption, match="lower case"):
        SecurityPolicy(host_publish="WARN")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        1,
        1.5,
        b"web",
        bytearray(b"web"),
        {"web": True},
        {"web": False},  # a dict's keys would admit "web" whatever the value says
        object(),
    ],
)
def test_allow_host_network_refuses_other_types(value: object) -> None:
    with pytest.raises(errors.InvalidOption) as info:
        SecurityPolicy(allow_host_network=value)  # type: ignore[arg-type]
    assert info.value.option == "allow_host_network"
    assert info.value.value is value
    assert "allow_host_network" in str(info.value)
    assert type(value).__name__ in str(info.value)
    assert "True, False, a workload name, or a collection" in str(info.value)


@pytest.mark.parametrize(
    ("value", "item"),
    [
        (["web", 3], 3),
        ({"web", None}, None),
        (("web", b"db"), b"db"),
        ([True], True),
        ([["web"]], ["web"]),
    ],
)
def test_allow_host_network_names_must_be_strings(value: object, item: object) -> None:
    with pytest.raises(errors.InvalidOption) as info:
        SecurityPolicy(allow_host_network=value)  # type: ignore[arg-type]
    assert info.value.option == "allow_host_network"
    assert f"not {type(item).__name__} ({item!r})" in str(info.value)


@pytest.mark.parametrize("value", ["", [""], {"web", ""}])
def test_allow_host_network_names_are_never_empty(value: object) -> None:
    with pytest.raises(errors.InvalidOption, match="never empty"):
        SecurityPolicy(allow_host_network=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["yes", "no", "true", "False", "ON", "off", "1", "0", " y "])
def test_a_bare_string_that_reads_as_a_boolean_is_refused(value: str) -> None:
    with pytest.raises(errors.InvalidOption) as info:
        SecurityPolicy(allow_host_network=value)
    assert "True or False" in str(info.value)
    assert repr({value}) in str(info.value)  # how to mean a workload of that name


def test_a_boolean_word_inside_a_collection_is_a_name() -> None:
    policy = SecurityPolicy(allow_host_network={"yes"})
    assert policy.admit_host_network("yes").decision == "admitted"
    assert policy.admit_host_network("web").decision == "denied"


def test_validation_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="allow_privileged_ports"):
        SecurityPolicy(allow_privileged_ports="no")  # type: ignore[arg-type]
    assert issubclass(errors.InvalidOption, errors.ValidationError)


def test_evolve_is_validated_too() -> None:
    with pytest.raises(errors.InvalidOption, match="host_publish"):
        attrs.evolve(SecurityPolicy(), host_publish="warning")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"allow_host_network": True},
        {"allow_host_network": False},
        {"allow_host_network": "web"},
        {"allow_host_network": {"web", "api"}},
        {"allow_host_network": ["web"]},
        {"allow_host_network": ("web",)},
        {"allow_host_network": frozenset({"web"})},
        {"allow_host_network": ()},
        {"allow_privileged_ports": True},
        {"allow_privileged_ports": False},
        {"host_publish": "error"},
        {"host_publish": "warn"},
        {"allow_host_network": True, "allow_privileged_ports": False, "host_publish": "warn"},
    ],
)
def test_good_values_still_construct(kwargs: dict[str, object]) -> None:
    policy = SecurityPolicy(**kwargs)  # type: ignore[arg-type]
    assert attrs.evolve(policy) == policy


def test_good_values_still_decide() -> None:
    closed = SecurityPolicy(allow_privileged_ports=False, host_publish="error")
    assert closed.admit_privileged_port("web", 80, 1024).decision == "denied"
    assert closed.admit_host_publish("web").decision == "denied"
    assert closed.admit_host_network("web").decision == "denied"
    opened = SecurityPolicy(
        allow_host_network=True, allow_privileged_ports=True, host_publish="warn"
    )
    assert opened.admit_privileged_port("web", 80, 1024).decision == "admitted"
    assert opened.admit_host_publish("web").decision == "warned"
    assert opened.admit_host_network("web").decision == "admitted"


def test_names_from_an_iterator_are_read_once() -> None:
    def names() -> Iterator[str]:
        yield "web"
        yield "api"

    policy = SecurityPolicy(allow_host_network=names())
    assert policy.allow_host_network == frozenset({"web", "api"})
    assert policy.admit_host_network("api").decision == "admitted"
