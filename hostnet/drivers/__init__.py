"""Network drivers and their registry. See :mod:`hostnet.drivers.base`."""

from __future__ import annotations

from hostnet.drivers.base import (
    ConnectContext,
    Driver,
    NetworkContext,
    driver_class,
    get_driver,
    register_driver,
    registry,
    unregister_driver,
)

__all__ = [
    "ConnectContext",
    "Driver",
    "NetworkContext",
    "driver_class",
    "get_driver",
    "register_driver",
    "registry",
    "unregister_driver",
]
