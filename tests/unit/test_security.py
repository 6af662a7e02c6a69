"""The security policy: who may use host networking, privileged ports, host publish."""

from __future__ import annotations

import attrs
import pytest

from hostnet.policy.security import Admission, SecurityPolicy


def test_defaults_deny_host_networking_and_allow_privileged_ports() -> None:
    policy = SecurityPolicy()
    decision = policy.admit_host_network("web")
    assert decision == Admission(
        what="host-network",
        workload="web",
        decision="denied",
        reason="host networking is denied by default",
    )
    assert not decision.admitted
    assert policy.admit_privileged_port("web", 80, 1024).admitted
    assert policy.admit_host_publish("web").decision == "denied"


def test_allow_host_network_globally() -> None:
    policy = SecurityPolicy(allow_host_network=True)
    for workload in ("web", "db", "anything"):
        decision = policy.admit_host_network(workload)
        assert decision.decision == "admitted"
        assert decision.admitted
        assert decision.workload == workload
        assert "every workload" in decision.reason


@pytest.mark.parametrize("allowed", [{"web"}, ["web", "cache"], ("web",), frozenset({"web"})])
def test_allow_host_network_per_workload(allowed) -> None:
    policy = SecurityPolicy(allow_host_network=allowed)
    assert policy.allow_host_network == frozenset(allowed)
    assert policy.admit_host_network("web").decision == "admitted"
    assert "listed" in policy.admit_host_network("web").reason
    assert policy.admit_host_network("db").decision == "denied"
    assert policy.admit_host_network("we").decision == "denied"  # names, not substrings


def test_a_single_name_is_one_name_not_a_set_of_letters() -> None:
    policy = SecurityPolicy(allow_host_network="web")
    assert policy.admit_host_network("w").decision == "denied"
    assert policy.admit_host_network("web").decision == "admitted"


def test_allow_nobody_explicitly() -> None:
    assert SecurityPolicy(allow_host_network=False).admit_host_network("web").decision == (
        "denied"
    )
    assert SecurityPolicy(allow_host_network=()).admit_host_network("web").decision == "denied"


@pytest.mark.parametrize(
    ("allow", "port", "first", "decision"),
    [
        (True, 80, 1024, "admitted"),
        (False, 80, 1024, "denied"),
        (False, 1023, 1024, "denied"),
        (False, 1024, 1024, "admitted"),
        (False, 8080, 1024, "admitted"),
        (False, 80, 80, "admitted"),  # the host lowered ip_unprivileged_port_start
        (False, 80, 0, "admitted"),
        (False, 443, 1000, "denied"),
    ],
)
def test_privileged_port_decisions(allow: bool, port: int, first: int, decision: str) -> None:
    policy = SecurityPolicy(allow_privileged_ports=allow)
    admission = policy.admit_privileged_port("web", port, first)
    assert admission.decision == decision
    assert admission.what == f"privileged-port:{port}"
    assert admission.workload == "web"
    if decision == "denied":
        assert str(first) in admission.reason


def test_host_publish_error_or_warn() -> None:
    denied = SecurityPolicy(host_publish="error").admit_host_publish("web")
    warned = SecurityPolicy(host_publish="warn").admit_host_publish("web")
    assert denied.decision == "denied" and not denied.admitted
    assert warned.decision == "warned" and warned.admitted
    assert denied.what == warned.what == "publish-on-host-network"
    assert "host networking" in denied.reason


def test_policy_is_a_frozen_value() -> None:
    policy = SecurityPolicy(allow_host_network={"web"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.allow_host_network = True  # type: ignore[misc]
    assert policy == SecurityPolicy(allow_host_network=["web"])
    assert "web" in repr(policy)
