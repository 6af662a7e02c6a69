"""The none driver: the workload gets its own namespace with only ``lo``, up."""

from __future__ import annotations

from typing import Any, ClassVar

from hostnet import errors
from hostnet.drivers.base import ConnectContext, Driver
from hostnet.ops import Plan, SetLinkUp
from hostnet.specs import EndpointInfo, NetworkInfo


class NoneDriver(Driver):
    name = "none"
    builtin: ClassVar[bool] = True
    exclusive: ClassVar[bool] = True

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        if ctx.endpoint.ports:
            raise errors.InvalidOption(
                "publish",
                [p.as_spec() for p in ctx.endpoint.ports],
                "a workload with network mode none has no network to publish ports from",
            )
        target = ctx.target
        assert target is not None and ctx.endpoint.ns is not None
        others = sorted(link.name for link in target.links if link.kind != "loopback")
        if others:
            raise errors.ConflictError(
                f"namespace {ctx.endpoint.ns!r} has interfaces {', '.join(others)}; "
                "network mode none needs a namespace with only lo"
            )
        lo = target.link("lo")
        if lo is None or lo.up:
            return ()
        return (SetLinkUp(ns=ctx.endpoint.ns, name="lo", up=True, was_up=False),)

    def describe_endpoint(self, network: NetworkInfo, endpoint: EndpointInfo) -> dict[str, Any]:
        out = super().describe_endpoint(network, endpoint)
        out["MacAddress"] = ""
        return out
