"""The Backend interface.

Kept small on purpose (like an HTTP transport): observe a namespace, apply one op, and a
few read-only queries about a namespace that policy needs (sysctls, bound sockets). The
executor is what calls ``apply`` for planned changes (journaled); the exceptions are
idempotent conveniences (``Controller.unhold``) and test fixtures building a world.

Errors: a backend raises only hostnet errors. In particular ``NotFoundError`` subclasses
when the object an op names is missing (rollback and teardown treat that as done), and
``ConflictError`` subclasses when it already exists.
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from hostnet.model import BoundSocket, Snapshot
from hostnet.ops import Op


@runtime_checkable
class Backend(Protocol):
    name: str

    def apply(self, op: Op) -> None:
        """Apply one op in ``op.ns``. Atomic: on error nothing of it remains."""

    def observe(
        self, ns: str | None, *, firewall: bool = True, addresses: bool = True
    ) -> Snapshot:
        """Links, addresses, routes and (unless ``firewall=False``) the nftables tables
        of one namespace."""

    def namespaces(self) -> tuple[str, ...]:
        """Names of the named namespaces (those under /run/netns), sorted."""

    def has_namespace(self, name: str) -> bool:
        """Whether the named namespace exists (cheaper than listing them all)."""

    def namespace_mount(self, ns: str) -> str | None:
        """The bind mount that names the namespace (cheap: no socket inside it). The same
        value later means the same namespace (the mount kept it alive); another value
        means another mount, of the same namespace or not (ask ``namespace_id``). None
        if the kernel cannot tell. Mounts are per mount namespace: compare only values
        read in the same ``mount_view``."""

    def mount_view(self) -> str | None:
        """Which mount namespace (``namespace_mount`` values are per mount namespace: the
        same bind mount has another id in another one) this process sees names in."""

    def namespace_id(self, ns: str | None) -> str | None:
        """Which namespace the name refers to now: the same string for as long as that
        namespace lives, another for one made later under the same name (None if the
        kernel cannot tell); None is the backend's root namespace (its identity changes
        with a reboot). ``Snapshot.ident`` is the same for an observed one."""

    def processes(self, ns: str) -> tuple[int, ...]:
        """Pids of the processes running in the named namespace, sorted."""

    def sysctl(self, ns: str | None, key: str) -> str:
        """Read /proc/sys/<key> as seen from ``ns``."""

    def is_local(self, ns: str | None, address: str) -> bool:
        """Whether ``address`` is one of ``ns``'s own, as its local routing table says
        (an interface's address; all of 127.0.0.0/8 with lo's): what a socket there may
        bind without ip_nonlocal_bind."""

    def bound_sockets(
        self,
        ns: str | None,
        ports: Collection[int] | None = None,
        *,
        owners: bool = True,
        protocols: Collection[str] | None = None,
        idle: bool = False,
    ) -> tuple[BoundSocket, ...]:
        """Listening TCP/SCTP and bound UDP sockets in ``ns`` (only ``ports`` if given),
        with the pid and name of the owning process where visible (finding owners walks
        every process: ``owners=False`` skips it); only ``protocols`` if given.
        ``idle``: also TCP sockets bound but not listening (kernels 6.9 and later), which
        take a port from a bind() but serve nothing; finding them walks the kernel's
        whole bind hash table (185 instead of 23 us per address family here)."""

    def nft_list(self, ns: str | None, table: str) -> Mapping[str, Any] | None:
        """The JSON listing of one nftables table ("inet hostnet"), None if absent."""

    def popen(self, ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` (no shell) with its network namespace set to ``ns``."""

    def reserve_namespace(self, name: str) -> str:
        """Take the name for a namespace the next ``CreateNamespace`` of it makes (in
        /run/netns: an empty file, which it is mounted on); NamespaceExists if taken.
        Returns a token: ``DeleteNamespace(reserved=token)`` deletes only a namespace
        made on that very reservation (or the reservation itself), never one made later
        under the same name by someone else. A token of two parts, ``FILE/REST``, is
        journaled as two (``ops.token_parts``): versions before session 13 read FILE."""

    def reservation_is_unique(self, token: str) -> bool:
        """Whether ``token`` (``reserve_namespace``'s) tells its file from every file
        made after it under that name. Where it does not (the netlink backend on a
        filesystem without file handles: the inode number alone, which the next file
        often gets), the executor also records the mount of the namespace made on it."""

    def release(self, ns: str | None) -> None:
        """Drop any cached handle into ``ns`` (an open socket keeps a deleted namespace
        alive)."""

    def close(self) -> None:
        """Release sockets and held ports."""
