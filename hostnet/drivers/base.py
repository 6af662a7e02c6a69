"""The Driver interface and the driver registry.

A driver is pure: from a NetworkInfo / EndpointInfo and observed Snapshots it returns a
Plan. It never touches the kernel or the store. The Controller allocates (addresses,
ports), admits (policy), journals and applies.

Registry: built-in drivers are registered by import path and loaded on first use;
third-party drivers register through the ``hostnet.drivers`` entry-point group (or
``register_driver``). A name that is already taken is refused (an entry point that
wants one is skipped, with a warning). docs/drivers.md is the guide for writing one.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, ClassVar

import attrs
from attrs import frozen

from hostnet import errors
from hostnet.model import IPV6_MIN_MTU, PortMapping, Snapshot
from hostnet.ops import SAME_NS, AddRoute, CreateNamespace, DeleteNamespace, Op, Plan
from hostnet.specs import EndpointInfo, NetworkInfo, NetworkSpec

ENTRY_POINT_GROUP = "hostnet.drivers"
#: the option every driver takes an MTU as (Docker's name)
OPT_MTU = "com.docker.network.driver.mtu"


@frozen(kw_only=True)
class NetworkContext:
    network: NetworkInfo
    host: Snapshot | None  # the Controller's host namespace, when the driver asked for it
    sysctls: Mapping[str, str] = attrs.field(factory=dict)  # the driver's host_sysctls
    allow_forwarding: bool = False  # may the driver turn on IP forwarding on the host
    known_shared: frozenset[str] = frozenset()  # shared setup already recorded in the store


@frozen(kw_only=True)
class ConnectContext:
    network: NetworkInfo
    endpoint: EndpointInfo
    target: Snapshot | None  # the workload's namespace (None for host networking)
    host: Snapshot | None = None


class Driver(ABC):
    """Base class of network drivers.

    Class attributes say what the Controller must do around the driver:

    - ``builtin``: one predefined network per host named like the driver ("none",
      "host"); users cannot create more.
    - ``needs_namespace``: endpoints live in the workload's own namespace.
    - ``allocates_addresses``: the Controller asks IPAM for addresses before planning.
    - ``exclusive``: a workload on this network can be on no other network.
    - ``observe_host``: give ``plan_create`` a snapshot of the host (and
      ``plan_connect`` too with ``observe_host_on_connect``: a dump of the host grows
      with its number of links, so connect avoids it unless the driver needs it).
    - ``host_sysctls``: sysctls of the host namespace ``plan_shared`` needs to read.
    - ``link_group``: the network gets a link group of its own (``data["group"]``) for
      its endpoints' host-side links, so they can all be deleted in one kernel call.
    - ``options``: the option keys the default ``validate`` accepts (others are
      ``InvalidOption``); ``not_supported``: option keys Docker's driver of that name
      takes and this one does not, each with what to do instead (a clearer refusal).
    - ``scope``: Docker's ``Scope`` of the driver's networks, as ``inspect`` shows it.
    """

    name: ClassVar[str]
    scope: ClassVar[str] = "local"
    builtin: ClassVar[bool] = False
    needs_namespace: ClassVar[bool] = True
    allocates_addresses: ClassVar[bool] = False
    exclusive: ClassVar[bool] = False
    observe_host: ClassVar[bool] = False
    observe_host_on_connect: ClassVar[bool] = False
    options: ClassVar[frozenset[str]] = frozenset()
    #: options Docker's driver of that name takes and this one does not: what to do
    not_supported: ClassVar[Mapping[str, str]] = {}
    host_sysctls: ClassVar[tuple[str, ...]] = ()
    link_group: ClassVar[bool] = False

    def validate(self, spec: NetworkSpec) -> NetworkSpec:
        """Check options before anything happens; return the spec, normalised."""
        unknown = sorted(k for k, _ in spec.options if k not in self.options)
        docker = [k for k in unknown if k in self.not_supported]
        if docker:
            raise errors.InvalidOption(
                docker[0],
                spec.option(docker[0]),
                f"Docker's {self.name} driver takes this option, hostnet's does not "
                f"({self.not_supported[docker[0]]})",
            )
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise errors.InvalidOption(
                unknown[0],
                spec.option(unknown[0]),
                f"unknown option for the {self.name} driver (known: {allowed})",
            )
        return spec

    def decide(self, spec: NetworkSpec, network_id: str, host: Snapshot | None) -> dict[str, Any]:
        """Driver-specific choices recorded with the network (a bridge name...)."""
        return {}

    def check_siblings(self, spec: NetworkSpec, others: list[NetworkSpec]) -> None:
        """Refuse a new network that cannot live beside the host's other networks
        (beyond overlapping subnets, which IPAM refuses for every driver)."""
        return None

    def max_endpoints(self, spec: NetworkSpec) -> int | None:
        """How many endpoints the network can have (None: no limit)."""
        return None

    def default_host_ip(self, spec: NetworkSpec) -> str:
        """The host address ports are published on when a ``-p`` spec names none."""
        return "0.0.0.0"

    def plan_publish(
        self, network: NetworkInfo, endpoint: EndpointInfo, mappings: tuple[PortMapping, ...]
    ) -> Plan:
        """Ops that publish more ports of an existing endpoint."""
        raise errors.InvalidOption(
            "publish",
            [m.as_spec() for m in mappings],
            f"the {self.name} driver does not publish ports",
        )

    def wants_mac(self, spec: NetworkSpec) -> bool:
        """Whether endpoints get a MAC address chosen by hostnet."""
        return True

    def inherited_mac(self, network: NetworkInfo) -> str | None:
        """The MAC endpoints get from the kernel when hostnet chooses none
        (``wants_mac`` False), as far as the network's data knows it."""
        return None

    def link_layer(self, spec: NetworkSpec) -> str | None:
        """What the network's endpoints share a link layer with beyond the network
        itself (so their MACs must differ from those of other networks with the same
        value), None if only each other."""
        return None

    def host_addresses(self, spec: NetworkSpec) -> tuple[str, ...]:
        """Names of addresses the network needs for the host itself (the macvlan shim);
        the Controller reserves them from the network's IPv4 subnet, outside its ip range,
        as ``data["host_addresses"][name]``."""
        return ()

    def plan_shared(self, ctx: NetworkContext) -> dict[str, Plan]:
        """Host-wide setup (firewall tables, forwarding), by key. A key is shared by
        every network whose driver lists it in ``shared_keys``, whatever the driver: the
        Controller applies a key's plan with the first network that needs it, records
        it, hands it to another user when that network goes, and undoes it with the
        last one. Two drivers that need the same host setting should use the same key
        (bridge's: "sysctl:net/ipv4/ip_forward", "sysctl:net/ipv6/conf/all/forwarding")."""
        return {}

    def shared_keys(self, spec: NetworkSpec) -> tuple[str, ...]:
        """Every key ``plan_shared`` may return (so the Controller can tell the driver
        which of them already exist)."""
        return ()

    def plan_create(self, ctx: NetworkContext) -> Plan:
        """Ops that create the network on the host (a bridge, its firewall chains)."""
        return ()

    @abstractmethod
    def plan_connect(self, ctx: ConnectContext) -> Plan:
        """Ops that attach one workload."""

    def describe_endpoint(self, network: NetworkInfo, endpoint: EndpointInfo) -> dict[str, Any]:
        """The workload's NetworkSettings.Networks.<network> entry (Docker's shape)."""
        ip, prefix, ip6, prefix6 = "", 0, "", 0
        for address in endpoint.addresses:
            addr, _, plen = address.partition("/")
            if ":" in addr and not ip6:
                ip6, prefix6 = addr, int(plen)
            elif ":" not in addr and not ip:
                ip, prefix = addr, int(plen)
        gw = next((g for g in endpoint.gateways if ":" not in g), "")
        gw6 = next((g for g in endpoint.gateways if ":" in g), "")
        return {
            # the addresses asked for, as Docker keeps them (null: none was)
            "IPAMConfig": dict(endpoint.static) or None,
            # Docker's keys hostnet has no value for: no links, aliases or DNS
            "Links": None,
            "Aliases": None,
            "DriverOpts": None,
            "DNSNames": None,
            "NetworkID": network.id,
            "EndpointID": endpoint.id,
            "Gateway": gw,
            "IPAddress": ip,
            "IPPrefixLen": prefix,
            "IPv6Gateway": gw6,
            "GlobalIPv6Address": ip6,
            "GlobalIPv6PrefixLen": prefix6,
            "MacAddress": endpoint.mac or "",
        }


# -- planning helpers shared by drivers -------------------------------------------------


def default_routes(ep: EndpointInfo, target: Snapshot, *, internal: bool) -> list[Op]:
    """A default route per gateway family, unless the namespace has one already (the
    first network connected keeps it, as in Docker) or the network is internal."""
    if internal or ep.ns is None:
        return []
    ops: list[Op] = []
    for gateway in ep.gateways:
        dst = "::/0" if ":" in gateway else "0.0.0.0/0"
        if not any(r.dst == dst for r in target.routes):
            ops.append(AddRoute(ns=ep.ns, dst=dst, gateway=gateway, ifname=ep.ifname))
    return ops


# -- option values shared by drivers ----------------------------------------------------

# Docker's (Go's strconv.ParseBool: 1, t, T, true, True, TRUE...), in any case here,
# and yes/on, no/off
_TRUE, _FALSE = ("true", "t", "1", "yes", "on"), ("false", "f", "0", "no", "off")


def option_bool(key: str, value: str) -> str:
    """A boolean option value, normalised to "true"/"false" (Docker's spelling)."""
    lowered = value.lower()
    if lowered not in _TRUE + _FALSE:
        raise errors.InvalidOption(key, value, "expected true or false")
    return "true" if lowered in _TRUE else "false"


def canonical_options(
    spec: NetworkSpec,
    aliases: Mapping[str, str],
    normalise: Callable[[str, str], str] = lambda _key, value: value,
) -> dict[str, str]:
    """``spec``'s options under their canonical names, each value passed through
    ``normalise(name, value)``. One option given twice (under two of its names, say
    ``mode`` and ``macvlan_mode``) with values that differ is an error, not a silent
    pick of one."""
    out: dict[str, str] = {}
    named: dict[str, tuple[str, str]] = {}
    for given, raw in spec.options:
        key = aliases.get(given, given)
        value = normalise(key, raw)
        if key in out and out[key] != value:
            first, first_raw = named[key]
            raise errors.InvalidOption(
                given, raw, f"the same option is also given as {first}={first_raw!r}; give one"
            )
        out[key], named[key] = value, (given, raw)
    return out


def option_mtu(key: str, value: str) -> str:
    if not (value.isascii() and value.isdigit() and 68 <= int(value) <= 65535):
        raise errors.InvalidOption(key, value, "an MTU between 68 and 65535")
    return str(int(value))


def respec(spec: NetworkSpec, options: dict[str, str]) -> NetworkSpec:
    """``spec`` with normalised options (and IPv6 on when an IPv6 subnet is given)."""
    ipv6 = spec.enable_ipv6 or any(":" in s.subnet for s in spec.subnets)
    mtu = options.get(OPT_MTU)
    if ipv6 and mtu is not None and int(mtu) < IPV6_MIN_MTU:
        # the kernel takes the link, then refuses its IPv6 address (EINVAL)
        raise errors.InvalidOption(
            "mtu", mtu, f"a network with IPv6 needs an MTU of at least {IPV6_MIN_MTU}"
        )
    return NetworkSpec(
        name=spec.name,
        driver=spec.driver,
        subnets=spec.subnets,
        internal=spec.internal,
        enable_ipv6=ipv6,
        options=options,
        labels=dict(spec.labels),
    )


# -- registry ---------------------------------------------------------------------------

_BUILTIN: dict[str, str] = {
    "none": "hostnet.drivers.none:NoneDriver",
    "host": "hostnet.drivers.host:HostDriver",
    "bridge": "hostnet.drivers.bridge:BridgeDriver",
    "macvlan": "hostnet.drivers.macvlan:MacvlanDriver",
    "overlay": "hostnet.drivers.overlay:OverlayDriver",
}

#: Docker drivers hostnet does not ship, with what to do instead.
_HINTS: dict[str, str] = {
    "ipvlan": "hostnet has no ipvlan driver yet; use macvlan, or register one via the "
    "'hostnet.drivers' entry-point group",
    "nat": "'nat' is a Windows driver; use bridge",
    "transparent": "'transparent' is a Windows driver; use macvlan",
}

_registry: dict[str, type[Driver] | str] = dict(_BUILTIN)
_entry_points_loaded = False
_lock = threading.Lock()

#: A read-only view of the registry: name -> Driver class or "module:Class".
registry: Mapping[str, type[Driver] | str] = MappingProxyType(_registry)


#: what a driver may be registered as (no spaces or quotes: it appears in commands)
_DRIVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")


def register_driver(name: str, driver: type[Driver] | str, *, replace: bool = False) -> None:
    """Register a driver class (or a lazy "package.module:Class" path) under ``name``.

    >>> class Mine(Driver):
    ...     name = "mine"
    ...     def plan_connect(self, ctx): return ()
    >>> register_driver("mine", Mine)
    >>> unregister_driver("mine")
    """
    if not isinstance(name, str) or not _DRIVER_NAME.fullmatch(name):
        raise errors.InvalidName(
            "driver",
            name,
            "1 to 64 letters, digits and . _ : / -, starting with a letter or digit",
        )
    if isinstance(driver, str):
        module_name, _, attr = driver.partition(":")
        if not module_name or not attr:
            raise errors.InvalidOption(
                "driver", driver, 'a Driver subclass, or a "package.module:Class" path'
            )
    else:
        problem = _not_a_driver(driver)
        if problem is not None:
            raise errors.InvalidOption("driver", driver, problem)
    with _lock:
        if name in _registry and not replace:
            raise errors.ConflictError(
                f"a network driver named {name!r} is already registered ({_registry[name]!r}); "
                "pass replace=True to override it deliberately"
            )
        _registry[name] = driver


def unregister_driver(name: str) -> None:
    with _lock:
        if name in _BUILTIN:
            raise errors.ConflictError(f"{name!r} is a built-in driver and cannot be removed")
        _registry.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _registry:
                if _registry[ep.name] != ep.value:
                    # skipped, not raised: one bad plugin must not make every other
                    # driver's first lookup in a process fail
                    warnings.warn(
                        f"entry point {ep.value!r} wants driver name {ep.name!r}, which is "
                        f"already taken by {_registry[ep.name]!r}; it is ignored",
                        errors.HostnetWarning,
                        stacklevel=4,
                    )
                continue
            _registry[ep.name] = ep.value


def driver_class(name: str) -> type[Driver]:
    if name not in _registry:
        _load_entry_points()
    entry = _registry.get(name)
    if entry is None:
        raise errors.DriverNotFound(name, sorted(_registry), _HINTS.get(name))
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise errors.DriverNotFound(
                name,
                sorted(_registry),
                f"{entry!r} could not be loaded ({exc}); is its package installed?",
            ) from exc
        except Exception as exc:  # the plugin's own module failed while importing
            raise errors.DriverNotFound(
                name,
                sorted(_registry),
                f"importing {entry!r} raised {type(exc).__name__}: {exc}",
            ) from exc
        problem = _not_a_driver(cls)
        if problem is not None:
            raise errors.DriverNotFound(name, sorted(_registry), f"{entry!r} is {problem}")
        loaded: type[Driver] = cls
        with _lock:
            _registry[name] = loaded
        return loaded
    return entry


def get_driver(name: str) -> Driver:
    """An instance of the driver registered as ``name``."""
    return driver_class(name)()


def _not_a_driver(obj: object) -> str | None:
    """Why ``obj`` cannot be registered as a driver (None: it can)."""
    if not (isinstance(obj, type) and issubclass(obj, Driver)):
        return "not a hostnet Driver subclass"
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        return f"an abstract Driver (it does not implement {missing})"
    return None


_UNINSTALLED = (
    "the network was made with it, and its package is not installed (any more): its "
    "networks can be listed, inspected, disconnected and deleted, not connected to"
)


class _Uninstalled(Driver):
    """Stands in for the driver of a recorded network that is not installed (any more):
    enough to list, inspect, disconnect and delete the network from its records, which
    need no planning."""

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        raise errors.DriverNotFound(self.name, sorted(registry), _UNINSTALLED)


def installed_driver(name: str) -> Driver:
    """The driver a recorded network was made with, to plan more work on it."""
    try:
        return get_driver(name)
    except errors.DriverNotFound as exc:
        raise errors.DriverNotFound(name, exc.available, exc.hint or _UNINSTALLED) from exc


def recorded_driver(name: str) -> type[Driver]:
    """The class of the driver a network was recorded with; a stand-in (scope "local",
    nothing built in or exclusive about it) when it is not installed."""
    try:
        return driver_class(name)
    except errors.DriverNotFound:
        stand_in: type[Driver] = type(f"Uninstalled_{name}", (_Uninstalled,), {"name": name})
        return stand_in


# -- calling drivers --------------------------------------------------------------------


@contextmanager
def driver_call(driver: Driver, method: str) -> Iterator[None]:
    """Around a call of a driver's method: a hostnet error passes (refusing input is a
    driver's job), any other exception is the driver's bug, said as DriverError."""
    try:
        yield
    except errors.HostnetError:
        raise
    except Exception as exc:
        raise errors.DriverError(
            driver.name, method, f"raised {type(exc).__name__}: {exc}"
        ) from exc


def checked_plan(driver: Driver, method: str, plan: object, where: Collection[str | None]) -> Plan:
    """``plan`` as returned by ``driver.<method>``, if it is a sequence of Ops acting
    only in ``where`` (None: the root namespace) and in namespaces it creates itself;
    DriverError otherwise, before anything is journaled or applied. The Controller
    gives a driver its host namespace, and the workload's when it connects one: a plan
    reaching elsewhere (``ns=None`` meant as "the host" is the usual slip) would
    change a namespace the caller never named, the machine's own one included."""
    if not isinstance(plan, (tuple, list)):
        raise errors.DriverError(
            driver.name, method, f"returned {type(plan).__name__}, not a tuple of Ops"
        )
    allowed: set[str | None] = set(where)
    made: set[str | None] = set()  # namespaces the plan created, from that op on
    for op in plan:
        if not isinstance(op, Op):
            raise errors.DriverError(
                driver.name, method, f"its plan holds {op!r}, which is not a hostnet.ops Op"
            )
        if isinstance(op, CreateNamespace):
            if op.ns is None or op.ns in allowed:
                raise errors.DriverError(
                    driver.name, method, f"{op} makes a namespace that exists already"
                )
            made.add(op.ns)
            allowed.add(op.ns)
            continue
        if isinstance(op, DeleteNamespace) and op.ns not in made:
            raise errors.DriverError(
                driver.name, method, f"{op} deletes a namespace the plan did not make"
            )
        outside = _namespaces(op) - allowed
        if outside:
            shown = ", ".join(sorted(_shown(n) for n in outside))
            mine = ", ".join(sorted(_shown(n) for n in allowed))
            raise errors.DriverError(
                driver.name,
                method,
                f"{op} acts in {shown}; it may act only in {mine}",
            )
    return tuple(plan)


def _namespaces(op: Op) -> set[str | None]:
    """Every namespace ``op`` names, those of the ops it carries (an inverse to
    recreate) included."""
    names: set[str | None] = {op.ns}
    for field in attrs.fields(type(op)):
        value = getattr(op, field.name)
        if field.name in ("peer_ns", "parent_ns", "to_ns") and value != SAME_NS:
            names.add(value)
        for inner in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(inner, Op):
                names |= _namespaces(inner)
    return names


def _shown(ns: str | None) -> str:
    return "the root namespace" if ns is None else repr(ns)
