"""Named network namespaces (the ones ``ip netns`` shows), as objects."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hostnet.backends.netlink_paths import ns_path
from hostnet.errors import NamespaceNotFound
from hostnet.model import Address, Link, LinkStats, Route, Snapshot

if TYPE_CHECKING:
    from hostnet.controller import Controller
    from hostnet.network import Endpoint, Network


class Namespace:
    """A named network namespace on the Controller's machine.

    Get one from :meth:`Controller.create_namespace` (created, ``lo`` up) or
    :meth:`Controller.namespace` (an existing one). As a context manager it deletes the
    namespace on exit::

        with ctl.create_namespace("app1") as ns:
            ns.run(["ip", "addr"], check=True)
    """

    def __init__(self, controller: Controller, name: str, *, managed: bool) -> None:
        self._ctl = controller
        self.name = name
        self.managed = managed

    def __repr__(self) -> str:
        return f"<Namespace {self.name!r}{'' if self.managed else ' (not created by hostnet)'}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespace) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Namespace", self.name))

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        # even when the namespace is already gone, its records must go
        with contextlib.suppress(NamespaceNotFound):
            self.delete()

    @property
    def path(self) -> str:
        """The bind mount that keeps the namespace alive (/run/netns/NAME)."""
        return ns_path(self.name)

    def exists(self) -> bool:
        return self._ctl.backend.has_namespace(self.name)

    # -- what is inside ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._ctl._observe(self.name)

    def interfaces(self) -> tuple[Link, ...]:
        return self.snapshot().links

    def addresses(self) -> tuple[Address, ...]:
        return self.snapshot().addresses

    def routes(self) -> tuple[Route, ...]:
        return self.snapshot().routes

    def counters(self) -> dict[str, LinkStats]:
        """Per-interface packet and byte counters."""
        return {link.name: link.stats for link in self.snapshot().links}

    # -- processes ---------------------------------------------------------------------

    def pids(self) -> tuple[int, ...]:
        """Pids of the processes running in the namespace, sorted."""
        return self._ctl.backend.processes(self.name)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespace (no shell; setns in the child before exec).
        Keyword arguments are those of subprocess.Popen."""
        return self._ctl.backend.popen(self.name, argv, **kwargs)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = None,
        capture_output: bool = False,
        text: bool = False,
        input: Any = None,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Like subprocess.run, inside the namespace: ``check``, ``timeout``,
        ``capture_output``, ``text`` and ``input`` as there; other keywords go to
        :meth:`popen`."""
        if capture_output:
            kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        if input is not None:
            kwargs["stdin"] = subprocess.PIPE
        with self.popen(argv, text=text, **kwargs) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check:
            result.check_returncode()
        return result

    # -- networks ----------------------------------------------------------------------

    def connect(self, network: str | Network, **kwargs: Any) -> Endpoint:
        """Connect to ``network``, a name or a Network (see
        :meth:`hostnet.network.Network.connect`)."""
        return self._ctl.network(network).connect(self, **kwargs)

    def disconnect(self, network: str | Network) -> None:
        self._ctl.network(network).disconnect(self)

    def endpoints(self) -> list[Endpoint]:
        return self._ctl.endpoints(self.name)

    def delete(self, *, force: bool = False) -> None:
        """Disconnect every network, then delete the namespace. A namespace hostnet did
        not create is only deleted with ``force=True``."""
        self._ctl.delete_namespace(self.name, force=force)
