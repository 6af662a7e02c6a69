"""The overlay driver (VXLAN across hosts) is not available yet.

What it will be (DESIGN.md, "Drivers"): a VXLAN device per network with a VNI from a
shared pool, bridged with the endpoints, static FDB and neighbour entries for remote
endpoints learned from a multi-host store (etcd). The kernel objects it needs (AddLink
kind "vxlan", AddFdb, AddNeighbour) are already modelled by both backends and checked
by the contract suite; the multi-host store is not written. Until it is, creating an
overlay network fails before anything changes, with this explanation.
"""

from __future__ import annotations

from typing import ClassVar

from hostnet import errors
from hostnet.drivers.base import ConnectContext, Driver
from hostnet.ops import Plan
from hostnet.specs import NetworkSpec

REASON = (
    "the overlay driver needs hostnet's multi-host store (etcd), which is not available "
    "in this version; use bridge networks on one host, or macvlan to put endpoints on a "
    "shared LAN"
)


class OverlayDriver(Driver):
    name = "overlay"
    scope: ClassVar[str] = "swarm"

    def validate(self, spec: NetworkSpec) -> NetworkSpec:
        raise errors.UnsupportedError(REASON)

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        raise errors.UnsupportedError(REASON)
