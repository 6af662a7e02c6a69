"""hostnet: Docker's network drivers as a daemonless Python library.

    import hostnet
    ctl = hostnet.Controller()
    ns = ctl.create_namespace("app1")
    ctl.attach(ns, driver="none")
    ns.delete()

``import hostnet`` is cheap and works without root: the netlink backend (and pyroute2)
load only when a Controller first needs the kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hostnet.errors import (
    ApplyError,
    ConflictError,
    HostnetError,
    NotFoundError,
    PolicyDenied,
    PortInUse,
    TeardownError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "BridgeDriver",
    "ConflictError",
    "Controller",
    "Driver",
    "Endpoint",
    "HostDriver",
    "HostnetError",
    "MacvlanDriver",
    "Namespace",
    "Network",
    "NoneDriver",
    "NotFoundError",
    "OverlayDriver",
    "PolicyDenied",
    "PortAllocator",
    "PortInUse",
    "SecurityPolicy",
    "TeardownError",
    "ValidationError",
    "__version__",
    "register_driver",
]

_LAZY = {
    "Controller": "hostnet.controller",
    "Namespace": "hostnet.namespace",
    "Network": "hostnet.network",
    "Endpoint": "hostnet.network",
    "Driver": "hostnet.drivers.base",
    "register_driver": "hostnet.drivers.base",
    "NoneDriver": "hostnet.drivers.none",
    "HostDriver": "hostnet.drivers.host",
    "BridgeDriver": "hostnet.drivers.bridge",
    "MacvlanDriver": "hostnet.drivers.macvlan",
    "OverlayDriver": "hostnet.drivers.overlay",
    "PortAllocator": "hostnet.policy.ports",
    "SecurityPolicy": "hostnet.policy.security",
}

if TYPE_CHECKING:
    from hostnet.controller import Controller
    from hostnet.drivers.base import Driver, register_driver
    from hostnet.drivers.bridge import BridgeDriver
    from hostnet.drivers.host import HostDriver
    from hostnet.drivers.macvlan import MacvlanDriver
    from hostnet.drivers.none import NoneDriver
    from hostnet.drivers.overlay import OverlayDriver
    from hostnet.namespace import Namespace
    from hostnet.network import Endpoint, Network
    from hostnet.policy.ports import PortAllocator
    from hostnet.policy.security import SecurityPolicy


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostnet' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
