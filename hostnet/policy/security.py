"""Admission policy for decisions that widen what a workload can touch.

Host networking gives a workload the host's whole network stack (every interface, every
port, the host's loopback services), so it is refused unless the policy admits it:
globally (``allow_host_network=True``) or per workload name. Privileged host ports
(below the host's net.ipv4.ip_unprivileged_port_start, normally 1024) are admitted by
default like Docker does, and can be denied. Ports published for a host-network workload
mean nothing (the workload already uses the host's ports): refused by default, or only
warned about.

Every field is checked when the policy is built, because a wrong value here fails open or
silently: ``allow_privileged_ports="no"`` is truthy, ``host_publish="warning"`` would act
as "error". Booleans must be real bools, ``host_publish`` one of its values, and names
strings; anything else raises ``InvalidOption`` (a ``ValueError``) naming the field.

Every decision, admitted or denied, is recorded by the Controller in the store
(``Controller.admissions()`` lists them, and ``hostnet audit`` shows them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import attrs
from attrs import frozen

from hostnet.errors import InvalidOption

Decision = Literal["admitted", "denied", "warned"]
HostPublish = Literal["error", "warn"]

_HOST_PUBLISH: tuple[str, ...] = get_args(HostPublish)
_NAMES = "True, False, a workload name, or a collection of workload names"
# A bare string is one workload name, but these read as a boolean from a config file or
# an environment variable; taking "false" as a name would quietly mean something else.
_BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "1", "0"})


def _names(value: bool | Iterable[str]) -> bool | frozenset[str]:
    given: object = value  # the annotation is for callers; check what really came
    if isinstance(given, bool):
        return given
    if isinstance(given, str):  # one workload name, not a set of letters
        if given.strip().lower() in _BOOL_WORDS:
            raise InvalidOption(
                "allow_host_network",
                given,
                f"reads like a boolean: give True or False, or {{{given!r}}} for a "
                "workload of that name",
            )
        items: Iterable[object] = (given,)
    elif isinstance(given, Iterable) and not isinstance(given, bytes | bytearray | Mapping):
        items = given  # a dict's keys or a bytes' ints are not meant as names
    else:
        raise InvalidOption(
            "allow_host_network", given, f"{type(given).__name__} is not accepted; give {_NAMES}"
        )
    names: set[str] = set()
    for item in items:  # once: an iterator cannot be read twice
        if not isinstance(item, str):
            raise InvalidOption(
                "allow_host_network",
                given,
                f"workload names are strings, not {type(item).__name__} ({item!r}); give {_NAMES}",
            )
        if not item:
            raise InvalidOption("allow_host_network", given, "a workload name is never empty")
        names.add(item)
    return frozenset(names)


def _is_bool(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    # bool is an int, but 0/1 and "no" are not: "no" is truthy and would fail open
    if not isinstance(value, bool):
        raise InvalidOption(
            attribute.name, value, f"give True or False, not {type(value).__name__}"
        )


def _is_host_publish(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not (isinstance(value, str) and value in _HOST_PUBLISH):
        reason = "give " + " or ".join(repr(v) for v in _HOST_PUBLISH)
        if isinstance(value, str) and value.lower() in _HOST_PUBLISH:
            reason += " (lower case)"
        raise InvalidOption(attribute.name, value, reason)


@frozen(kw_only=True)
class Admission:
    what: str
    workload: str
    decision: Decision
    reason: str

    @property
    def admitted(self) -> bool:
        return self.decision != "denied"


@frozen(kw_only=True)
class SecurityPolicy:
    """What a Controller admits.

    >>> SecurityPolicy().admit_host_network("web").decision
    'denied'
    >>> SecurityPolicy(allow_host_network={"web"}).admit_host_network("web").decision
    'admitted'
    """

    allow_host_network: bool | frozenset[str] = attrs.field(default=False, converter=_names)
    allow_privileged_ports: bool = attrs.field(default=True, validator=_is_bool)
    host_publish: HostPublish = attrs.field(default="error", validator=_is_host_publish)

    def admit_host_network(self, workload: str) -> Admission:
        what = "host-network"
        if self.allow_host_network is True:
            return Admission(
                what=what,
                workload=workload,
                decision="admitted",
                reason="policy allows host networking for every workload",
            )
        if isinstance(self.allow_host_network, frozenset) and workload in self.allow_host_network:
            return Admission(
                what=what,
                workload=workload,
                decision="admitted",
                reason="workload is listed in allow_host_network",
            )
        return Admission(
            what=what,
            workload=workload,
            decision="denied",
            reason="host networking is denied by default",
        )

    def admit_privileged_port(
        self, workload: str, port: int, first_unprivileged: int
    ) -> Admission:
        what = f"privileged-port:{port}"
        if port >= first_unprivileged:
            return Admission(
                what=what, workload=workload, decision="admitted", reason="not a privileged port"
            )
        if self.allow_privileged_ports:
            return Admission(
                what=what,
                workload=workload,
                decision="admitted",
                reason=f"policy allows host ports below {first_unprivileged}",
            )
        return Admission(
            what=what,
            workload=workload,
            decision="denied",
            reason=f"host ports below {first_unprivileged} are denied by policy",
        )

    def admit_host_publish(self, workload: str) -> Admission:
        what = "publish-on-host-network"
        reason = (
            "published ports mean nothing with host networking: the workload already "
            "binds host ports directly"
        )
        if self.host_publish == "warn":
            return Admission(what=what, workload=workload, decision="warned", reason=reason)
        return Admission(what=what, workload=workload, decision="denied", reason=reason)
