"""Fault injection: a backend wrapper that fails chosen calls to ``apply``."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hostnet import errors
from hostnet.backends.base import Backend
from hostnet.model import BoundSocket, Snapshot
from hostnet.ops import Op


class InjectedFault(errors.KernelError):
    """The error FaultyBackend raises instead of applying an op."""

    def __init__(self, op: Op, index: int) -> None:
        super().__init__(f"injected fault at apply #{index} ({op})", 5, "fault injection")
        self.index = index


class FaultyBackend:
    """Wraps a backend; the ``fail_at``-th call to ``apply`` (0-based, counting every
    call) raises InjectedFault without touching the kernel. ``fail_at=None`` never fails.
    ``fail_kinds`` fails every op whose class name is listed instead."""

    def __init__(
        self,
        inner: Backend,
        fail_at: int | None = None,
        fail_kinds: Collection[str] = (),
    ) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.fail_kinds = frozenset(fail_kinds)
        self.calls = 0
        self.applied: list[Op] = []
        self.name = f"faulty({inner.name})"

    def apply(self, op: Op) -> None:
        index = self.calls
        self.calls += 1
        if index == self.fail_at or type(op).__name__ in self.fail_kinds:
            raise InjectedFault(op, index)
        self.inner.apply(op)
        self.applied.append(op)

    def observe(
        self, ns: str | None, *, firewall: bool = True, addresses: bool = True
    ) -> Snapshot:
        return self.inner.observe(ns, firewall=firewall, addresses=addresses)

    def namespaces(self) -> tuple[str, ...]:
        return self.inner.namespaces()

    def has_namespace(self, name: str) -> bool:
        return self.inner.has_namespace(name)

    def namespace_mount(self, ns: str) -> str | None:
        return self.inner.namespace_mount(ns)

    def mount_view(self) -> str | None:
        return self.inner.mount_view()

    def namespace_id(self, ns: str | None) -> str | None:
        return self.inner.namespace_id(ns)

    def processes(self, ns: str) -> tuple[int, ...]:
        return self.inner.processes(ns)

    def sysctl(self, ns: str | None, key: str) -> str:
        return self.inner.sysctl(ns, key)

    def is_local(self, ns: str | None, address: str) -> bool:
        return self.inner.is_local(ns, address)

    def bound_sockets(
        self,
        ns: str | None,
        ports: Collection[int] | None = None,
        *,
        owners: bool = True,
        protocols: Collection[str] | None = None,
        idle: bool = False,
    ) -> tuple[BoundSocket, ...]:
        return self.inner.bound_sockets(ns, ports, owners=owners, protocols=protocols, idle=idle)

    def nft_list(self, ns: str | None, table: str) -> Mapping[str, Any] | None:
        return self.inner.nft_list(ns, table)

    def popen(self, ns: str | None, argv: Sequence[str], **kwargs: Any) -> Any:
        return self.inner.popen(ns, argv, **kwargs)

    def reserve_namespace(self, name: str) -> str:
        return self.inner.reserve_namespace(name)

    def reservation_is_unique(self, token: str) -> bool:
        return self.inner.reservation_is_unique(token)

    def release(self, ns: str | None) -> None:
        release = getattr(self.inner, "release", None)
        if release is not None:
            release(ns)

    def close(self) -> None:
        self.inner.close()
