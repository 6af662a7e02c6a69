"""The host driver: no namespace of its own; the workload shares the host's stack.

Planning holds the ports the workload declared when asked to (``hold=True``): a bound
socket per port in the host namespace so no other process can take it while the
workload starts. Admission and port reservation happen in the Controller before this
runs (policy is not the driver's business)."""

from __future__ import annotations

from typing import ClassVar

from hostnet.drivers.base import ConnectContext, Driver
from hostnet.ops import BindPort, Plan


class HostDriver(Driver):
    name = "host"
    builtin: ClassVar[bool] = True
    needs_namespace: ClassVar[bool] = False
    exclusive: ClassVar[bool] = True

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        host = ctx.network.host_ns
        return tuple(
            BindPort(ns=host, protocol=r.protocol, address=r.host_ip, port=r.port)
            for r in ctx.endpoint.held
        )
