"""Every error hostnet raises.

Each error says what was asked, what stood in the way and what to do, and carries the
facts a caller needs as attributes (``.port``, ``.owner_pid``, ``.network``...), not
just text. Errors from pyroute2, nftables and errno are translated once, in the netlink
backend, with ``raise ... from exc``; nothing above the backend sees a NetlinkError.

    HostnetError
    ├── ValidationError (also ValueError)      bad input, caught before any kernel change
    │   ├── InvalidName
    │   ├── InvalidPort
    │   ├── InvalidAddress
    │   └── InvalidOption
    ├── NotFoundError (also LookupError)
    │   ├── NamespaceNotFound
    │   ├── LinkNotFound
    │   ├── NetworkNotFound
    │   ├── EndpointNotFound
    │   └── DriverNotFound                     with an install hint
    ├── ConflictError
    │   ├── NamespaceExists
    │   ├── LinkExists
    │   ├── NetworkExists
    │   ├── AddressInUse
    │   ├── SubnetOverlap                      names the other network or route
    │   ├── PortInUse                          names the pid and process holding the port
    │   ├── LinkDown                           a parent interface that is not up
    │   ├── AlreadyConnected                   the workload is on that network already
    │   ├── NetworkInUse                       a network that still has endpoints
    │   └── Busy                               another process is changing what this needs
    ├── ExhaustedError                         no free subnet, address or port left
    ├── PolicyDenied                           the security policy refused (host networking...)
    ├── PermissionDenied                       missing CAP_NET_ADMIN or root
    ├── UnsupportedError                       the kernel or backend cannot do this
    ├── DriverError                            a (third-party) driver misbehaved
    ├── KernelError                            any other kernel failure, with .errno
    ├── ApplyError                             a plan failed; rolled back; see .cause
    ├── TeardownError                          teardown finished with errors; see .errors
    └── StoreError                             the state store is unusable
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Sequence
from typing import Any


class HostnetError(Exception):
    """Root of every error hostnet raises."""


class ValidationError(HostnetError, ValueError):
    """Input that can never work; raised before anything changes."""


class InvalidName(ValidationError):
    def __init__(self, kind: str, name: object, reason: str) -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        super().__init__(f"invalid {kind} name {name!r}: {reason}")


class InvalidPort(ValidationError):
    def __init__(self, spec: object, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"invalid port specification {spec!r}: {reason}")


class InvalidAddress(ValidationError):
    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid address {value!r}: {reason}")


class InvalidOption(ValidationError):
    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"invalid option {option}={value!r}: {reason}")


class NotFoundError(HostnetError, LookupError):
    """The object asked for does not exist."""


class NamespaceNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"network namespace {name!r} does not exist (see `ip netns list` or `hostnet ns ls`)"
        )


class LinkNotFound(NotFoundError):
    def __init__(self, name: str, namespace: str | None) -> None:
        self.name = name
        self.namespace = namespace
        where = f"namespace {namespace!r}" if namespace else "the root namespace"
        super().__init__(f"interface {name!r} does not exist in {where}")


class NetworkNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"network {name!r} does not exist (see `hostnet network ls`)")


class EndpointNotFound(NotFoundError):
    def __init__(self, network: str, workload: str) -> None:
        self.network = network
        self.workload = workload
        super().__init__(f"{workload!r} is not connected to network {network!r}")


class DriverNotFound(NotFoundError):
    def __init__(self, name: str, available: Sequence[str], hint: str | None = None) -> None:
        self.name = name
        self.available = tuple(available)
        self.hint = hint
        msg = f"no network driver named {name!r}; available: {', '.join(self.available)}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class ConflictError(HostnetError):
    """The request clashes with something that already exists."""


class NamespaceExists(ConflictError):
    def __init__(self, name: str, advice: str | None = None) -> None:
        self.name = name
        super().__init__(
            f"network namespace {name!r} already exists; "
            + (
                advice
                or "open it with Controller.namespace(name) (CLI: name it where a namespace "
                "is asked for) or choose another name"
            )
        )


class MtuAboveParent(ConflictError):
    """A macvlan link asked for a larger MTU than its parent has (now)."""

    def __init__(self, name: str, mtu: int, parent: str, parent_mtu: int | None) -> None:
        self.name, self.mtu, self.parent, self.parent_mtu = name, mtu, parent, parent_mtu
        now = f" ({parent_mtu})" if parent_mtu is not None else ""
        super().__init__(
            f"cannot make {name!r} with MTU {mtu}: larger than the MTU of its parent "
            f"{parent!r}{now}; raise the parent's MTU, or make the network again with a "
            "smaller mtu option (or none: then endpoints take the parent's)"
        )


class LinkExists(ConflictError):
    def __init__(self, name: str, namespace: str | None) -> None:
        self.name = name
        self.namespace = namespace
        where = f"namespace {namespace!r}" if namespace else "the root namespace"
        super().__init__(f"interface {name!r} already exists in {where}")


class NetworkExists(ConflictError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"network {name!r} already exists")


class AddressInUse(ConflictError):
    """An address already taken: in a network's IPAM (``network``, ``holder``) or on
    an interface in the kernel (``interface``)."""

    def __init__(
        self,
        address: str,
        network: str | None = None,
        holder: str | None = None,
        *,
        interface: str | None = None,
    ) -> None:
        self.address = address
        self.network = network
        self.holder = holder
        self.interface = interface
        by = f" by {holder!r}" if holder else ""
        where = f"network {network!r}" if network is not None else f"interface {interface!r}"
        super().__init__(f"address {address} on {where} is already in use{by}")


class SubnetOverlap(ConflictError):
    def __init__(self, subnet: str, other: str, other_subnet: str) -> None:
        self.subnet = subnet
        self.other = other
        self.other_subnet = other_subnet
        super().__init__(
            f"subnet {subnet} overlaps {other_subnet} of {other}; choose a disjoint subnet"
        )


class PortInUse(ConflictError):
    """A host port is reserved by hostnet or bound by another process.

    ``owner_pid`` and ``owner_name`` name the process holding the port when the kernel
    says who it is; ``holder`` names the hostnet workload when it is a reservation, and
    ``held_for_gc`` says that workload is gone but a failed teardown still names it;
    ``abandoned``, that its namespace is gone or its temporary namespace's process died
    (``gc`` frees the port); ``held_on``, the address the holder has (the one asked, or
    one it clashes with: ``0.0.0.0`` asked, ``127.0.0.1`` held).
    """

    def __init__(
        self,
        *,
        port: int,
        protocol: str,
        host_ip: str,
        owner_pid: int | None = None,
        owner_name: str | None = None,
        holder: str | None = None,
        held_for_gc: bool = False,
        abandoned: bool = False,
        held_on: str | None = None,
    ) -> None:
        self.port = port
        self.held_on = held_on
        self.protocol = protocol
        self.host_ip = host_ip
        self.owner_pid = owner_pid
        self.owner_name = owner_name
        self.holder = holder
        self.held_for_gc = held_for_gc
        on = ""  # the address the holder has, when not the one asked
        if held_on is not None and held_on != host_ip:
            on = f" on {held_on}" if ":" not in held_on else f" on [{held_on}]"
        if holder is not None and held_for_gc:
            who = (
                f"still reserved for hostnet workload {holder!r}{on}: a teardown that failed "
                "names it, and `hostnet gc` frees the port when it finishes that teardown"
            )
        elif holder is not None and abandoned:
            who = (
                f"reserved for hostnet workload {holder!r}{on}, whose namespace is gone or "
                "whose process (a `hostnet run`) died: `hostnet gc` frees the port"
            )
        elif holder is not None:
            who = f"reserved by hostnet workload {holder!r}{on}"
        elif owner_pid is not None:
            who = f"bound by process {owner_pid} ({owner_name or 'unknown'}){on}"
        else:
            who = f"bound by a socket whose owner is not visible{on}"
        shown = f"[{host_ip}]" if ":" in host_ip else host_ip
        super().__init__(
            f"host port {shown}:{port}/{protocol} is {who}; free it or choose another port"
        )


class LinkDown(ConflictError):
    def __init__(self, name: str, namespace: str | None, what: str = "interface") -> None:
        self.name = name
        self.namespace = namespace
        where = f"namespace {namespace!r}" if namespace else "the root namespace"
        super().__init__(
            f"{what} {name!r} in {where} is down; bring it up first (ip link set {name} up)"
        )


class AlreadyConnected(ConflictError):
    """The workload has an endpoint on that network already (an idempotent caller may
    take this as done)."""

    def __init__(self, workload: str, network: str) -> None:
        self.workload = workload
        self.network = network
        super().__init__(f"{workload!r} is already connected to {network!r}")


class NetworkInUse(ConflictError):
    def __init__(self, network: str, endpoints: Sequence[str]) -> None:
        self.network = network
        self.endpoints = tuple(endpoints)
        super().__init__(
            f"network {network!r} still has endpoints {', '.join(self.endpoints)}; "
            "disconnect them first or delete with force=True (CLI: network rm --disconnect)"
        )


class Busy(ConflictError):
    """Another process is in the middle of changing something this request depends on
    (the host's shared firewall setup while it creates or deletes a network); hostnet
    waited for it and gave up."""

    def __init__(self, what: str, holder: str, waited: float) -> None:
        self.what = what
        self.holder = holder
        self.waited = waited
        super().__init__(
            f"{what} is being changed by another process ({holder}); waited {waited:.1f} s. "
            "Try again in a moment, or run `hostnet gc` if that process died"
        )


class ExhaustedError(HostnetError):
    """A pool (subnets, addresses, ports, VNIs) has nothing left."""


class PolicyDenied(HostnetError):
    def __init__(self, what: str, reason: str, remedy: str) -> None:
        self.what = what
        self.reason = reason
        self.remedy = remedy
        super().__init__(f"{what} refused by policy: {reason}; {remedy}")


class PermissionDenied(HostnetError, PermissionError):
    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(
            f"{action}: permission denied; this needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN "
            "(run as root, or use the fake backend for tests without privileges)"
        )


class UnsupportedError(HostnetError):
    """The running kernel or the chosen backend cannot do what was asked."""


class DriverError(HostnetError):
    """A network driver misbehaved: it raised an unexpected exception, or returned a plan
    hostnet refuses to apply (not a tuple of Ops, or ops outside the namespaces it may
    act in). A bug in the driver, not in the caller's input; nothing was changed."""

    def __init__(self, driver: str, method: str, problem: str) -> None:
        self.driver = driver
        self.method = method
        super().__init__(
            f"network driver {driver!r} ({method}): {problem}; this is a bug in the "
            "driver, nothing was changed"
        )


class KernelError(HostnetError, OSError):
    """A kernel call failed for a reason without a more specific hostnet error."""

    def __init__(self, action: str, err: int, detail: str = "") -> None:
        self.action = action
        self.errno_name = _errno.errorcode.get(err, str(err))
        text = f"{action}: {self.errno_name}"
        if detail:
            text += f" ({detail})"
        OSError.__init__(self, err, text)

    def __str__(self) -> str:
        return str(self.args[1])


class ApplyError(HostnetError):
    """Applying a plan failed at one op *and* undoing the completed ops failed too.

    ``cause`` is the error of the failing op; ``rollback_errors`` lists the errors met
    while undoing. The records stay, and ``hostnet gc`` retries the undo. (When the
    rollback is clean, the caller gets the failing op's own error instead.)
    """

    def __init__(
        self, op: Any, cause: BaseException, rollback_errors: Sequence[BaseException] = ()
    ) -> None:
        self.op = op
        self.cause = cause
        self.rollback_errors = tuple(rollback_errors)
        msg = f"{op} failed: {cause}"
        if self.rollback_errors:
            msg += f"; rollback also failed: {'; '.join(map(str, self.rollback_errors))}"
        else:
            msg += "; everything it had done was rolled back"
        super().__init__(msg)


class TeardownError(HostnetError):
    """Teardown went through every step; these ones failed."""

    def __init__(self, what: str, errors: Sequence[BaseException]) -> None:
        self.what = what
        self.errors = tuple(errors)
        super().__init__(
            f"{what}: {len(self.errors)} step(s) failed: " + "; ".join(map(str, errors))
        )


class StoreError(HostnetError):
    """The state store cannot be used (schema from a newer hostnet, corrupt, unwritable)."""


class HostnetWarning(UserWarning):
    """Something was allowed by policy but deserves attention (see ``hostnet audit``)."""
