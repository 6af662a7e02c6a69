"""Admission policy for decisions that widen what a workload can touch.

Host networking gives a workload the host's whole network stack (every interface, every
port, the host's loopback services), so it is refused unless the policy admits it:
globally (``allow_host_network=True``) or per workload name. Privileged host ports
(below the host's net.ipv4.ip_unprivileged_port_start, normally 1024) are admitted by
default like Docker does, and can be denied. Ports published for a host-network workload
mean nothing (the workload already uses the host's ports): refused by default, or only
warned about.

Every decision, admitted or denied, is recorded by the Controller in the store
(``Controller.admissions()`` lists them, and ``hostnet audit`` shows them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs
from attrs import frozen

Decision = Literal["admitted", "denied", "warned"]


def _names(value: bool | Iterable[str]) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):  # one workload name, not a set of letters
        return frozenset({value})
    return frozenset(value)


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
    allow_privileged_ports: bool = True
    host_publish: Literal["error", "warn"] = "error"

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
