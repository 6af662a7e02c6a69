"""Networks and endpoints as objects (thin: the Controller does the work)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from attrs import frozen

from hostnet.model import PortMapping, Reservation
from hostnet.specs import NetworkSpec

if TYPE_CHECKING:
    from hostnet.controller import Controller
    from hostnet.namespace import Namespace


@frozen(kw_only=True)
class Endpoint:
    """One workload attached to one network."""

    id: str
    network: str
    workload: str
    ns: str | None  # None: host networking
    ifname: str | None = None
    mac: str | None = None
    addresses: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    reserved: tuple[Reservation, ...] = ()
    #: the addresses asked for at connect (``ip``, ``ip6``), as Docker's IPAMConfig
    static: tuple[tuple[str, str], ...] = ()
    #: the published ports as asked, as Docker's HostConfig.PortBindings: (container
    #: port/protocol, host address, host port or range), "" where the spec gave none
    asked: tuple[tuple[str, str, str], ...] = ()

    @property
    def ip(self) -> str | None:
        """The first IPv4 address, without prefix length."""
        return next((a.split("/")[0] for a in self.addresses if ":" not in a), None)

    @property
    def ip6(self) -> str | None:
        return next((a.split("/")[0] for a in self.addresses if ":" in a), None)


class Network:
    """A network on the Controller's host."""

    def __init__(self, controller: Controller, record: dict[str, Any]) -> None:
        self._ctl = controller
        self.id: str = record["id"]
        self.name: str = record["name"]
        self.driver: str = record["driver"]
        self.spec = NetworkSpec.from_json(record["spec"])
        self.data: dict[str, Any] = record["data"]
        #: when it was made (seconds since the epoch; 0.0 where the record lacks it)
        self.created_at: float = record.get("at") or 0.0

    def __repr__(self) -> str:
        return f"<Network {self.name!r} driver={self.driver} id={self.id[:12]}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def connect(
        self,
        workload: Namespace | str,
        *,
        publish: Sequence[str] = (),
        ports: Sequence[str] = (),
        hold: bool = False,
        ip: str | None = None,
        ip6: str | None = None,
        mac: str | None = None,
        temporary: bool = False,
    ) -> Endpoint:
        """Attach a workload (a Namespace, a namespace name, or for the host network a
        workload name). ``publish`` takes Docker's ``-p`` strings; ``ports`` declares the
        host ports a host-network workload will bind (reserved, and bound by hostnet
        until the workload starts when ``hold=True``). ``temporary`` (a host-network
        workload): the workload is this process's, for its lifetime; should the process
        die without detaching it, ``gc`` does (a namespace's endpoints go with the
        namespace: make that temporary, ``create_namespace(temporary=True)``)."""
        return self._ctl._connect(
            self,
            workload,
            publish=publish,
            ports=ports,
            hold=hold,
            ip=ip,
            ip6=ip6,
            mac=mac,
            temporary=temporary,
        )

    def disconnect(self, workload: Namespace | str) -> None:
        self._ctl._disconnect(self, workload)

    def publish(self, workload: Namespace | str, publish: Sequence[str]) -> list[PortMapping]:
        """Publish more ports (Docker's ``-p`` strings, as in ``connect(publish=...)``)
        of a connected workload and return the mappings added (ephemeral host ports
        chosen); they go away with the endpoint. Its cost does not grow with the number
        of ports published before (the endpoint's full list: ``endpoints()``)."""
        return self._ctl._publish(self, workload, publish)

    def disconnect_all(self) -> int:
        """Disconnect every workload at once (one kernel call for all their links)."""
        return self._ctl.disconnect_all(self.name)

    def endpoints(self) -> list[Endpoint]:
        return self._ctl._network_endpoints(self)

    def inspect(self) -> dict[str, Any]:
        return self._ctl.inspect_network(self.name)

    def delete(self, *, force: bool = False) -> None:
        self._ctl.delete_network(self.name, force=force)


class HostWorkload:
    """A workload on the host network: it has no namespace of its own, so its processes
    run in the Controller's host namespace."""

    def __init__(self, controller: Controller, endpoint: Endpoint) -> None:
        self._ctl = controller
        self.endpoint = endpoint
        self.name = endpoint.workload

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return self._ctl.backend.popen(self._ctl.host_ns, argv, **kwargs)
