"""The Controller: hostnet's facade. observe -> plan -> apply -> record.

A Controller acts for one host, and its host is a network namespace: the namespace this
process runs in by default, or any named namespace (``host="lab-host"``). Bridges,
firewall tables, sysctls and host ports all live in the host namespace, which is what
lets tests build whole hosts inside throwaway namespaces.

Order of every call that changes something:
1. validate input, look up drivers, admit by policy (recorded)        -- no changes yet
2. observe the namespaces involved
3. in one store transaction: allocate (ports, addresses), write pending records, plan,
   journal the plan                                                     -- store only
4. apply the plan op by op; roll back on failure                        -- kernel
5. mark the records active
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import attrs
import psutil

from hostnet import errors
from hostnet.backends import open_backend
from hostnet.backends.base import Backend
from hostnet.drivers import bridge_firewall as fw
from hostnet.drivers.base import (
    ConnectContext,
    Driver,
    NetworkContext,
    checked_plan,
    driver_call,
    driver_class,
    installed_driver,
    recorded_driver,
)
from hostnet.drivers.bridge import base_firewall, bridge_mac, network_firewall
from hostnet.executor import REBUILD_OWNER, Executor, Recovered, process_started
from hostnet.model import (
    IPV6_MIN_MTU,
    WILDCARD4,
    WILDCARD6,
    Link,
    PortMapping,
    Reservation,
    Route,
    Snapshot,
)
from hostnet.names import check_namespace_name, check_network_name
from hostnet.namespace import Namespace
from hostnet.network import Endpoint, HostWorkload, Network
from hostnet.ops import (
    AddAddress,
    AddLink,
    AddRoute,
    Adopt,
    CreateNamespace,
    DeleteNamespace,
    DelLink,
    ForgetFlows,
    NftBatch,
    Op,
    Plan,
    UnbindPort,
    group_teardown,
    merge_nft,
    plan_from_json,
    plan_to_json,
    teardown_plan,
)
from hostnet.policy import ipam
from hostnet.policy.ports import (
    PortAllocator,
    PortRequest,
    PublishSpec,
    parse_host_port,
    parse_publish,
    parse_reserved,
)
from hostnet.policy.security import Admission, SecurityPolicy
from hostnet.specs import EndpointInfo, NetworkInfo, NetworkSpec, SubnetConfig
from hostnet.stores.local import LocalStore, Tx, as_asked

T = TypeVar("T")

#: Link groups hostnet hands out start here (an arbitrary, recognisable range:
#: 0x48 is "H"); group 0 is every link's default and is never used.
LINK_GROUP_BASE = 0x48000000


def new_id() -> str:
    """A Docker-style 64-hex-digit id."""
    return secrets.token_hex(32)


class Controller:
    """Networking for one host.

    >>> ctl = Controller(backend="fake")
    >>> ns = ctl.create_namespace("app1")
    >>> [link.name for link in ns.interfaces()]
    ['lo']
    >>> ctl.attach(ns, driver="none").network
    'none'
    >>> ctl.inspect(ns)["HostConfig"]["NetworkMode"]
    'none'
    >>> ns.delete(); ctl.close()

    Arguments:
        state_dir: where the store lives (default: $HOSTNET_STATE_DIR or
            /var/lib/hostnet; with the fake backend, a fresh temporary directory).
        host: the namespace that plays the host (a name or Namespace); None is the
            namespace this process runs in.
        backend: "netlink", "fake", "auto" (netlink as root, else fake), or a Backend.
        policy: the SecurityPolicy (default: deny host networking).
        recover: finish or roll back work left by processes that died (see ``gc``).
        forwarding: may hostnet turn on IP forwarding in the host namespace (bridge
            networks need it for outbound traffic and for ports published to other
            hosts)? The previous value is recorded and restored with the last network.
            Default: yes when the host is a namespace hostnet created (a sandbox it
            manages), no otherwise (the real machine, or a namespace someone else made)
            unless asked.
    """

    #: how long create_network waits for another process that is in the middle of
    #: creating or deleting the host's shared setup (its firewall tables) before
    #: giving up with errors.Busy; a network create takes milliseconds
    busy_wait: float = 10.0

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        host: str | Namespace | None = None,
        backend: Backend | str = "auto",
        policy: SecurityPolicy | None = None,
        recover: bool = True,
        forwarding: bool | None = None,
    ) -> None:
        host_name = host.name if isinstance(host, Namespace) else host
        if host_name is not None:
            check_namespace_name(host_name)
        self.backend: Backend = open_backend(backend) if isinstance(backend, str) else backend
        self._own_backend = isinstance(backend, str)
        self._tmp_state: str | None = None
        if state_dir is None and self.backend.name == "fake":
            state_dir = self._tmp_state = tempfile.mkdtemp(prefix="hostnet-fake-")
            # (gone with the Controller even if it is never closed, or at exit)
            weakref.finalize(self, shutil.rmtree, state_dir, True)
        try:
            self.store = LocalStore(state_dir)
        except BaseException:
            self._close_backend()
            raise
        if host_name is not None and not self.backend.has_namespace(host_name):
            self.close()
            raise errors.NamespaceNotFound(host_name)
        self.host_ns: str | None = host_name
        self.host_key = host_name or ""
        self.policy = policy or SecurityPolicy()
        self.executor = Executor(self.backend, self.store)
        if forwarding is None and host_name is not None:
            record = self.store.read(lambda tx: tx.namespace(host_name))
            forwarding = bool(record and record["created"])
        self.allow_forwarding = bool(forwarding)
        self._recover = recover
        self._host_mount: str | None = None
        try:
            self._ensure_builtin_networks()
            if host_name is None:  # before recovery, which would act in this namespace
                self._refuse_other_root(
                    self.store.read(partial(_ident_of, owner="host:")),
                    self._current_ident(None),
                )
            self.recovered: list[Recovered] = self.executor.recover() if recover else []
            if self.recovered:  # a teardown it finished may have owed a default route
                self._repair_defaults()
            if recover:
                self._after_host_restart()
            else:
                self._host_mount = self._mount_of_host()
        except BaseException:
            self.close()
            raise

    def _after_host_restart(self) -> list[str]:
        """If the host is not the one the store last saw (the machine rebooted, or the
        host namespace was deleted and made again), what its records describe is gone
        from the kernel: forget its endpoints and shared setup, and make its networks
        again, with the same names, ids, bridges and subnets (as Docker does when its
        daemon starts). One process does it (the one that records the new identity);
        networks it could not make (a macvlan parent that is missing now) are tried again
        by the next Controller, with a warning."""
        now = self._current_ident(self.host_ns)
        self._host_mount = self._mount_of_host()
        if now is None:
            return []  # the kernel cannot tell
        owner = f"host:{self.host_key}"
        forgotten: list[str] = []
        legacy_lost = False

        def check(tx: Tx) -> None:
            before = tx.ident(owner)
            if before == now:
                return
            self._refuse_other_root(before, now)
            tx.set_ident(owner, now)
            if before is not None or legacy_lost:
                forgotten[:] = tx.host_restarted(self.host_key)

        before = self.store.read(partial(_ident_of, owner=owner))
        if before != now:  # else: no write
            if before is None:
                legacy_lost = self._links_all_gone()
            with self.store.transaction() as tx:
                check(tx)  # again: another process may have done it meanwhile
        if forgotten:  # (said once: by the process that saw the restart first)
            shown = ", ".join(map(repr, forgotten[:5])) + (", ..." if len(forgotten) > 5 else "")
            warnings.warn(
                f"the host namespace was restarted (a reboot, or made again): its endpoints "
                f"went with it, and hostnet forgot those of {len(forgotten)} workload(s) "
                f"({shown}) with their addresses and ports; its networks are made again: "
                "connect the workloads again",
                errors.HostnetWarning,
                stacklevel=3,
            )
        pending, marked = self.store.read(
            lambda tx: (tx.to_revive(self.host_key), tx.forwarding_allowed(self.host_key))
        )
        made: list[str] = []
        for network_id in pending:
            record = self.store.read(partial(_network_of, host=self.host_key, id=network_id))
            if record is None or record["state"] != "active":
                continue
            try:
                self._revive(record)
                made.append(record["name"])
            except _Taken:
                continue  # another process is making it, or has made it
            except errors.HostnetError as exc:
                warnings.warn(
                    f"network {record['name']!r} could not be made again after its host "
                    f"restarted ({exc}); the next Controller tries again",
                    errors.HostnetWarning,
                    stacklevel=3,
                )
        # the permission to turn forwarding on again lasts until every network that had
        # it is made again (or deleted)
        if marked and not self.store.read(lambda tx: tx.to_revive(self.host_key)):
            with self.store.transaction() as tx:
                tx.forget_forwarding_allowed(self.host_key)
        return made

    def _links_all_gone(self) -> bool:
        """For a store that never recorded its host's identity (hostnet before session
        6): whether the host holds none of the links its networks made (bridges, shims),
        as after a restart; some of them gone is damage, which audit reports."""
        made = {
            link
            for net in self.store.read(lambda tx: tx.networks(self.host_key))
            if net["state"] == "active"
            for link in _host_links(net["data"])
        }
        if not made:
            return False
        host = self.backend.observe(self.host_ns, firewall=False, addresses=False)
        return not made & {link.name for link in host.links}

    def _refuse_other_root(self, before: str | None, now: str | None) -> None:
        """The default host (the root namespace) recorded as ``before`` and found as
        ``now``: the same boot but another namespace is no restart, but a process that
        is not where this state directory's host is (`ip netns exec`, a container)."""
        if (
            self.host_ns is None
            and before is not None
            and now is not None
            and before != now
            and before.split("/")[0] == now.split("/")[0]
        ):
            raise errors.ConflictError(
                "this state directory belongs to the network namespace hostnet first "
                "ran in, and this process is in another one; pass that namespace as "
                "the host (host=..., CLI: --host) or use another state directory"
            )

    def _mount_of_host(self) -> str | None:
        if self.host_ns is None:
            return None  # the root namespace changes only with a reboot (and this process)
        try:
            return self.backend.namespace_mount(self.host_ns)
        except errors.NamespaceNotFound:
            return None

    def _host_unchanged(self) -> None:
        """Before a change: a Controller kept open while its host namespace was deleted
        and made again (what a reboot does to a host) catches up, as a new one would
        (one ``statx``; the root namespace does not change under a running process);
        and work of this process a store error left open is finished first."""
        self.executor.retry_stranded()
        if self.host_ns is None or self._host_mount is None:
            return
        if self._mount_of_host() != self._host_mount:
            self._after_host_restart()

    def _revive(self, record: dict[str, Any]) -> None:
        """Make network ``record`` again in a host that lost it (``_after_host_restart``):
        its driver plans it from its recorded spec and choices (bridge name and MAC, link
        group, addresses), and the host's shared setup when this is the first network
        made again (reading the host's sysctls as they are now)."""
        cls = driver_class(record["driver"])
        drv = cls()
        spec = NetworkSpec.from_json(record["spec"])
        network_id, data = record["id"], record["data"]
        host = self._observe(self.host_ns) if cls.observe_host else None
        sysctls = self._host_sysctls(cls.host_sysctls)
        # holds the shared setup until it is made; one per attempt, so that a rollback
        # forgets only what this attempt recorded
        owner = f"{network_id}/revive/{secrets.token_hex(4)}"
        created: list[Op] = []
        made: list[str] = []

        def prepare(tx: Tx) -> Plan:
            # one process makes it: not one that is made, or being made by another
            if network_id not in tx.to_revive(self.host_key) or any(
                o.startswith(f"{network_id}/revive/") for o in tx.journal_owners()
            ):
                raise _Taken(network_id)
            allow = self.allow_forwarding or tx.forwarding_allowed(self.host_key)
            info = NetworkInfo(id=network_id, spec=spec, host_ns=self.host_ns, data=data)
            shared, made[:], created[:] = self._plan_network(
                tx, drv, info, host, sysctls, allow_forwarding=allow, owner=owner
            )
            if not allow:
                self._warn_forwarding_off(cls, sysctls, record["name"], ipv6=spec.enable_ipv6)
            return merge_nft((*shared, *created))

        def commit(tx: Tx, plan: Plan) -> None:
            for key in made:
                tx.transfer_shared(self.host_key, key, network_id)
            tx.activate("networks", "id", network_id, plan_to_json(tuple(created)))
            tx.revived(network_id)

        self.executor.apply(prepare, owner=owner, commit=commit)

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()
        self._close_backend()

    def _close_backend(self) -> None:
        if self._own_backend:
            self.backend.close()
        if self._tmp_state is not None:
            shutil.rmtree(self._tmp_state, ignore_errors=True)
            self._tmp_state = None

    def __repr__(self) -> str:
        # (also for one whose __init__ failed half-way, as tracebacks show it)
        host = getattr(self, "host_ns", None) or "<this namespace>"
        backend = getattr(getattr(self, "backend", None), "name", "?")
        store = getattr(self, "store", None)
        return f"<Controller host={host} backend={backend} state={getattr(store, 'path', '?')}>"

    # -- helpers -----------------------------------------------------------------------

    def _observe(self, ns: str | None) -> Snapshot:
        try:
            return self.backend.observe(ns)
        finally:
            self._release(ns)

    def _release(self, ns: str | None) -> None:
        # Keep the host's handles; an open socket into any other namespace would keep it
        # (and its veths) alive if another process deleted it.
        if ns != self.host_ns:
            self.backend.release(ns)

    def _record_admission(self, admission: Admission) -> None:
        with self.store.transaction() as tx:
            tx.record_admission(
                self.host_key,
                admission.workload,
                admission.what,
                admission.decision,
                admission.reason,
            )

    def _ensure_builtin_networks(self) -> None:
        with self.store.transaction() as tx:
            for name in ("none", "host"):
                if tx.network(self.host_key, name) is None:
                    spec = NetworkSpec(name=name, driver=name)
                    network_id = new_id()
                    tx.add_network(
                        id=network_id,
                        name=name,
                        driver=name,
                        host=self.host_key,
                        spec=spec.to_json(),
                        data={},
                    )
                    tx.activate("networks", "id", network_id)

    # -- namespaces --------------------------------------------------------------------

    def create_namespace(self, name: str, *, temporary: bool = False) -> Namespace:
        """Create a named namespace (visible to ``ip netns list``) with ``lo`` up.

        ``temporary``: the namespace is this process's, for its lifetime (what ``hostnet
        run`` makes). Should the process die without deleting it (SIGKILL, a crash),
        ``gc`` deletes it, with its endpoints, once no process runs inside it."""
        check_namespace_name(name)
        if not isinstance(temporary, bool):
            raise errors.ValidationError(f"temporary must be True or False, not {temporary!r}")
        owner = f"ns:{name}"
        # before journaling: recovering a create killed in flight deletes the
        # namespace, which must then be ours, not one that was there already
        if self.backend.has_namespace(name):
            raise errors.NamespaceExists(name)

        def prepare(tx: Tx) -> Plan:
            tx.add_namespace(name, self.host_key, created=True, owner=owner)
            if temporary and self.executor.started:  # (0.0: its start time is unknown)
                tx.add_lease(owner, name, self.executor.pid, self.executor.started)
            return (CreateNamespace(ns=name),)

        # its identity: the backend that just made it knows it without a thread
        commit = self._namespace_commit(name, owner, None)
        try:
            self.executor.apply(prepare, owner=owner, commit=commit)
        except errors.NamespaceExists:
            # recorded, but deleted behind hostnet's back (`ip netns del`): forget that
            stale = self.store.read(lambda tx: tx.namespace(name))
            if stale is None or stale["state"] != "active" or not self._forget_namespace(stale):
                raise
            self.executor.apply(prepare, owner=owner, commit=commit)
        self._release(name)
        return Namespace(self, name, managed=True)

    def namespace(self, name: str, *, adopt: bool = True) -> Namespace:
        """Open an existing namespace. One hostnet did not create is adopted (recorded,
        never deleted unless told to with force=True); ``adopt=False`` only opens it."""
        check_namespace_name(name)
        record = self.store.read(lambda tx: tx.namespace(name))
        if record is not None and record["state"] == "active":
            if not self.backend.has_namespace(name):
                raise errors.NamespaceNotFound(name)
            if not self._forget_namespace(record):
                return Namespace(self, name, managed=record["created"])
            # it was deleted and made again since: the records were of the old one
        if not self.backend.has_namespace(name):
            raise errors.NamespaceNotFound(name)
        if not adopt:
            return Namespace(self, name, managed=False)
        owner = f"ns:{name}"

        def prepare(tx: Tx) -> Plan:
            tx.add_namespace(name, self.host_key, created=False, owner=owner)
            return (Adopt(ns=name, kind="namespace", name=name),)

        # its identity read before the transaction (a thread into it), not inside
        commit = self._namespace_commit(name, owner, self._current_ident(name))
        try:
            self.executor.apply(prepare, owner=owner, commit=commit)
        except errors.NamespaceExists:  # another process adopted it at the same moment
            pass
        finally:
            self._release(name)
        return Namespace(self, name, managed=False)

    def _namespace_commit(
        self, name: str, owner: str, ident: str | None
    ) -> Callable[[Tx, Plan], None]:
        """The closing step of making or adopting a namespace: its record active, with its
        identity (``ident``, or asked of the backend then) and its bind mount."""

        def commit(tx: Tx, _plan: Plan) -> None:
            tx.activate("namespaces", "name", name)
            known = ident if ident is not None else self.backend.namespace_id(name)
            tx.set_ident(owner, known, self.backend.namespace_mount(name))

        return commit

    def _replaced(self, tx: Tx, record: dict[str, Any]) -> bool:
        """Whether namespace ``record`` (a store record) is gone: no namespace has its
        name, or the one that has is another (deleted and made again since, which the
        kernel tells by its cookie, not by its inode number: that is often reused)."""
        name = record["name"]
        if not self.backend.has_namespace(name):
            return True
        recorded, mount = tx.ident_and_mount(record["owner"])
        if recorded is None:  # recorded before hostnet kept identities
            return False
        if not self.backend.has_namespace(name):
            return True
        return not self._same_namespace(name, recorded, mount)

    def _forget_namespace(self, record: dict[str, Any]) -> bool:
        """Forget the records of a namespace that is gone or replaced (``_replaced``),
        tearing down what is left of its endpoints outside it (host veths, firewall
        elements, ports, addresses); nothing inside the namespace of that name now is
        touched. False if it is still the recorded one (or records changed meanwhile)."""
        name = record["name"]
        forgot: list[str] = []
        if not self.store.read(lambda tx: self._replaced(tx, record)):
            return False  # the usual case: no journal for nothing

        def prepare(tx: Tx) -> tuple[Plan, list[str]]:
            now = tx.namespace(name)
            if now is None or now["owner"] != record["owner"] or now["state"] != "active":
                return (), []
            if not self._replaced(tx, now):
                return (), []
            forgot.append(name)
            current = self._current_ident(name)
            eps = [
                e
                for e in self._endpoint_rows(tx, ns=name)
                if current is None or e["data"].get("netns") != current
            ]
            tx.mark_deleting("endpoints", "id", [e["id"] for e in eps])
            tx.mark_deleting("namespaces", "name", [name])
            plan = tuple(op for op in merge_nft(self._undo(eps)) if op.ns != name)
            return plan, [*(e["id"] for e in eps), now["owner"]]

        self.executor.teardown(prepare, what=f"forget stale namespace {name!r}")
        return bool(forgot)

    def _same_namespace(self, name: str, ident: str, mount: str | None) -> bool:
        """Whether namespace ``name`` is still the one recorded as ``ident`` (with the bind
        mount ``mount``): the same mount answers at the cost of a ``statx``; only another
        one costs a short-lived thread into the namespace to read its cookie."""
        try:
            if mount is not None and self.backend.namespace_mount(name) == mount:
                return True
        except errors.NamespaceNotFound:
            return False
        now = self._current_ident(name)
        return now is not None and now == ident

    def _current_ident(self, name: str | None) -> str | None:
        """``Backend.namespace_id`` of ``name``, None if there is none (or no telling)."""
        try:
            return self.backend.namespace_id(name)
        except errors.NamespaceNotFound:
            return None
        finally:
            self._release(name)

    def namespaces(self) -> list[Namespace]:
        """Every named namespace on the machine (like ``ip netns list``); ``managed``
        tells which ones hostnet created."""
        records = {r["name"]: r for r in self.store.read(lambda tx: tx.namespaces())}
        created = {
            name
            for name, r in records.items()
            if r["created"] and not self.store.read(partial(self._replaced, record=r))
        }  # (one statx each: the bind mount it was made with; a thread only if another)
        return [
            Namespace(self, name, managed=name in created) for name in self.backend.namespaces()
        ]

    def delete_namespace(self, name: str, *, force: bool = False) -> None:
        """Disconnect the namespace from every network and delete it."""
        check_namespace_name(name)
        if name == self.host_ns:
            raise errors.ConflictError(
                f"{name!r} is this Controller's host namespace; delete it from another one "
                "(CLI: without --host)"
            )
        record, endpoints = self.store.read(lambda tx: (tx.namespace(name), tx.endpoints(ns=name)))
        if (
            record is not None
            and record["state"] == "active"
            and self.backend.has_namespace(name)
            and self._forget_namespace(record)
        ):
            # what hostnet recorded was deleted, and someone made another of that name
            warnings.warn(
                f"namespace {name!r} is not the one hostnet recorded: it was deleted and "
                "made again since. hostnet forgot its records of the old one"
                + (
                    " and deletes the new one (force=True)"
                    if force
                    else ", and left the new one alone"
                ),
                errors.HostnetWarning,
                stacklevel=2,
            )
            if force:
                self.delete_namespace(name, force=True)
            return
        created = bool(record and record["created"])
        # A namespace hostnet created is deleted without listing /run/netns (O(namespaces));
        # if it is already gone, teardown counts DeleteNamespace as done.
        exists = created or self.backend.has_namespace(name)
        if record is None and not exists:
            raise errors.NamespaceNotFound(name)
        if exists and not created and not force:
            raise errors.ConflictError(
                f"namespace {name!r} was not created by hostnet; delete it with force=True "
                "(CLI: `hostnet ns rm --force`, or `ip netns delete`) if you mean it"
            )
        del endpoints  # read again, inside the journaling transaction
        if not force:
            self._refuse_leased(name)

        def prepare(tx: Tx) -> tuple[Plan, list[str]]:
            _refuse_host_in_use(tx, name)
            rows = self._endpoint_rows(tx, ns=name)
            tx.mark_deleting("endpoints", "id", [e["id"] for e in rows])
            plan = list(self._undo(rows))
            owners = [e["id"] for e in rows]
            if exists:  # that one: not another made under its name before a retry
                mount = self.backend.namespace_mount(name) if created else None
                plan.append(DeleteNamespace(ns=name, mount=mount))
            current = tx.namespace(name)
            if current is not None:
                tx.mark_deleting("namespaces", "name", [name])
                owners.append(current["owner"])
            return merge_nft(tuple(plan)), owners

        self.executor.teardown(prepare, what=f"delete namespace {name!r}")
        self.backend.release(name)

    # -- networks ----------------------------------------------------------------------

    def _network_record(
        self,
        name: str,
        also: Callable[[Tx, dict[str, Any]], None] | None = None,
        *,
        applied: bool = False,
    ) -> dict[str, Any]:
        """The active network ``name`` (with its applied plan if ``applied``);
        ``also(tx, record)`` runs in the same read."""
        name = _network_name(name)  # (a Network passed where its name is expected)
        if not isinstance(name, str):  # before the store sees it (it would say StoreError)
            raise errors.InvalidName("network", name, "a network's name, a str")

        def read(tx: Tx) -> dict[str, Any]:
            record: dict[str, Any] | None = tx.network(self.host_key, name, applied=applied)
            if record is not None and record["state"] == "deleting":
                raise _being_deleted(name)
            if record is None or record["state"] != "active":
                raise errors.NetworkNotFound(name)
            if also is not None:
                also(tx, record)
            return record

        return self.store.read(read)

    def _check_modes(self, tx: Tx, driver: Driver, workload: str, network: str) -> None:
        """none and host are exclusive network modes (as in Docker)."""
        rows = tx.endpoints(workload=workload, published=False)
        if not rows:  # the usual case, without reading (and decoding) every network
            return
        ids = {r["network"] for r in rows}
        drivers = {n["id"]: n for n in tx.networks(self.host_key, applied=False, ids=ids)}
        rows = [r for r in rows if r["network"] in drivers]
        same = [r for r in rows if drivers[r["network"]]["name"] == network]
        if same:
            recorded = same[0]["data"].get("netns")
            ns = same[0]["ns"]
            if (
                ns is not None
                and recorded is not None
                and self.backend.has_namespace(ns)
                and not self._same_namespace(ns, recorded, same[0]["data"].get("netns_mount"))
            ):
                raise errors.ConflictError(
                    f"namespace {workload!r} was deleted and made again since it was "
                    f"connected to {network!r}; run `hostnet gc` to forget the old endpoint"
                )
            raise errors.AlreadyConnected(workload, network)
        if rows and (
            driver.exclusive
            or any(recorded_driver(drivers[r["network"]]["driver"]).exclusive for r in rows)
        ):
            modes = ", ".join(sorted(drivers[r["network"]]["name"] for r in rows))
            raise errors.ConflictError(
                f"{workload!r} is on {modes}; network mode none and host cannot be combined "
                "with other networks"
            )

    @staticmethod
    def _network_info(record: dict[str, Any], host_ns: str | None) -> NetworkInfo:
        return NetworkInfo(
            id=record["id"],
            spec=NetworkSpec.from_json(record["spec"]),
            host_ns=host_ns,
            data=record["data"],
        )

    def network(self, name: str | Network) -> Network:
        """The network ``name`` (a Network passes for its name)."""
        return Network(self, self._network_record(_network_name(name)))

    def networks(self) -> list[Network]:
        return [
            Network(self, r)
            for r in self.store.read(lambda tx: tx.networks(self.host_key))
            if r["state"] == "active"
        ]

    def create_network(
        self,
        name: str,
        driver: str = "bridge",
        *,
        subnet: str | Sequence[str] | None = None,
        gateway: str | Sequence[str | None] | None = None,
        ip_range: str | Sequence[str | None] | None = None,
        aux_addresses: Mapping[str, str] | None = None,
        internal: bool = False,
        ipv6: bool = False,
        options: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        **driver_options: Any,
    ) -> Network:
        """Create a network. Options can be given as ``options={...}`` (Docker's ``-o``
        names, e.g. "com.docker.network.bridge.name") or as keyword arguments (``mtu``,
        ``parent``, ``mode``, ``host_shim``, ``icc``...)."""
        check_network_name(name)
        self._host_unchanged()
        for key, flag in (("internal", internal), ("ipv6", ipv6)):
            if not isinstance(flag, bool):  # "no" would count as true
                raise errors.InvalidOption(key, flag, "True or False")
        for key, given in (("options", options), ("labels", labels)):
            if given is not None and not isinstance(given, Mapping):
                raise errors.InvalidOption(key, given, "a dict of name -> value")
        cls = driver_class(driver)
        if cls.builtin:
            raise errors.ConflictError(
                f"the {driver} network is predefined; attach workloads with "
                f"Controller.attach(..., driver={driver!r}) "
                f"(CLI: hostnet attach --driver {driver})"
            )
        # as pairs: one option given both ways (options={"mtu": ...}, mtu=...) reaches
        # the driver twice and is refused there if the values differ
        merged = (*(options or {}).items(), *driver_options.items())
        spec = NetworkSpec(
            name=name,
            driver=driver,
            subnets=_subnet_configs(subnet, gateway, ip_range, aux_addresses),
            internal=internal,
            enable_ipv6=ipv6,
            options=merged,
            labels=labels,
        )
        drv = cls()
        with driver_call(drv, "validate"):
            spec = drv.validate(spec)
        network_id = new_id()
        with driver_call(drv, "shared_keys"):
            keys = drv.shared_keys(spec)
        # A network that may make shared setup observes the host inside its journaling
        # transaction (prepare below); observed here as well, the host would be observed
        # twice, and an observation's cost grows with the host's links and routes.
        settled = self.store.read(
            lambda tx: all(tx.shared(self.host_key, key) is not None for key in keys)
        )
        host = self._observe(self.host_ns) if cls.observe_host and settled else None
        sysctls = self._host_sysctls(cls.host_sysctls)
        created: list[Op] = []
        asked = spec

        def observe_again() -> None:  # what the other process did shows in the host
            nonlocal host, sysctls
            if cls.observe_host:
                host = self._observe(self.host_ns)
            sysctls = self._host_sysctls(cls.host_sysctls)

        def prepare(tx: Tx) -> Plan:
            nonlocal spec
            if tx.network_named(self.host_key, name):  # before its subnet clashes, as Docker
                raise errors.NetworkExists(name)
            self._check_shared_settled(tx, keys)
            if (cls.observe_host and host is None) or any(
                tx.shared(self.host_key, key) is None for key in keys
            ):
                # this network may make the shared setup: plan it on the host as it is
                # now. Observed earlier, the host may still have shown the setup of the
                # last network of another process, whose teardown had not finished yet
                # (its records go only when its kernel work is done).
                observe_again()
            # (without their plans: this must not cost more with every network made)
            others = tx.networks(self.host_key, applied=False)
            spec = self._prepare_network(tx, drv, asked, host, others)
            with driver_call(drv, "decide"):
                drv.check_siblings(spec, [NetworkSpec.from_json(n["spec"]) for n in others])
                data = drv.decide(spec, network_id, host)
            for other in others:  # any state: recovery deletes by name
                taken = set(_host_links(other["data"])) & set(_host_links(data))
                if taken:
                    raise errors.LinkExists(sorted(taken)[0], self.host_ns)
            if cls.link_group:
                data["group"] = self._link_group(tx, host, others)
            wanted = drv.host_addresses(spec)
            if wanted:
                config = next(c for c in spec.subnets if c.network.version == 4)
                data["host_addresses"] = {
                    what: ipam.allocate_last(tx, network_id, config, network_id, name)
                    for what in wanted
                }
            tx.add_network(
                id=network_id,
                name=name,
                driver=driver,
                host=self.host_key,
                spec=spec.to_json(),
                data=data,
            )
            info = NetworkInfo(id=network_id, spec=spec, host_ns=self.host_ns, data=data)
            shared, _made, created[:] = self._plan_network(
                tx, drv, info, host, sysctls, allow_forwarding=self.allow_forwarding,
                owner=network_id,
            )  # fmt: skip
            # applied as one nftables transaction; recorded as the two parts they are
            return merge_nft((*shared, *created))

        def commit(tx: Tx, plan: Plan) -> None:
            tx.activate("networks", "id", network_id, plan_to_json(tuple(created)))

        self._while_busy(
            lambda: self.executor.apply(prepare, owner=network_id, commit=commit), observe_again
        )
        if not self.allow_forwarding:
            self._warn_forwarding_off(cls, sysctls, name, ipv6=spec.enable_ipv6)
        return self.network(name)

    def _plan_network(
        self,
        tx: Tx,
        drv: Driver,
        info: NetworkInfo,
        host: Snapshot | None,
        sysctls: dict[str, str],
        *,
        allow_forwarding: bool,
        owner: str,
    ) -> tuple[Plan, list[str], list[Op]]:
        """The host's shared setup a network makes when it is the first to need it
        (recorded for ``owner``), the keys of that setup, and the network's own plan."""
        with driver_call(drv, "shared_keys"):
            listed = set(drv.shared_keys(info.spec))
        ctx = NetworkContext(
            network=info,
            host=host,
            sysctls=sysctls,
            allow_forwarding=allow_forwarding,
            known_shared=frozenset(
                key for key in listed if tx.shared(self.host_key, key) is not None
            ),
        )
        shared: list[Op] = []
        made: list[str] = []
        where = (self.host_ns,)
        with driver_call(drv, "plan_shared"):
            by_key = drv.plan_shared(ctx)
            items = list(by_key.items())
        for key, returned in items:
            if key not in listed:  # its heirs are found by the keys listed (delete_network)
                raise errors.DriverError(
                    drv.name, "plan_shared", f"key {key!r} is not in its shared_keys()"
                )
            plan = checked_plan(drv, "plan_shared", returned, where)
            if tx.shared(self.host_key, key) is None:
                tx.add_shared(self.host_key, key, owner, plan_to_json(plan))
                shared.extend(plan)
                made.append(key)
        with driver_call(drv, "plan_create"):
            created = drv.plan_create(ctx)
        return tuple(shared), made, list(checked_plan(drv, "plan_create", created, where))

    @staticmethod
    def _warn_forwarding_off(
        driver: type[Driver], sysctls: dict[str, str], name: str, *, ipv6: bool
    ) -> None:
        off = [
            family
            for family, key, wanted in (
                ("IPv4", "net/ipv4/ip_forward", True),
                ("IPv6", "net/ipv6/conf/all/forwarding", ipv6),
            )
            if wanted and sysctls.get(key) == "0"
        ]
        if driver.host_sysctls and off:
            warnings.warn(
                f"{' and '.join(off)} forwarding is off in the host namespace: endpoints of "
                f"{name!r} cannot reach beyond the host over {' or '.join(off)}, and ports "
                "published to other hosts do not answer there; "
                "pass Controller(forwarding=True) (CLI: --allow-forwarding) to let hostnet "
                "turn it on (and restore it)",
                errors.HostnetWarning,
                stacklevel=3,
            )

    def _host_sysctls(self, keys: Iterable[str]) -> dict[str, str]:
        values: dict[str, str] = {}
        for key in keys:
            try:
                values[key] = self.backend.sysctl(self.host_ns, key)
            except errors.NotFoundError:
                pass  # e.g. IPv6 disabled in the host namespace
        return values

    def _while_busy(self, attempt: Callable[[], T], before_retry: Callable[[], None]) -> T:
        """Run ``attempt`` until it does not raise errors.Busy (which it raises before
        changing anything), for at most ``busy_wait`` seconds."""
        deadline = time.monotonic() + self.busy_wait
        next_recovery = 0.0
        pause = 0.01
        while True:
            try:
                return attempt()
            except errors.Busy as exc:
                now = time.monotonic()
                if now >= deadline:
                    raise errors.Busy(exc.what, exc.holder, self.busy_wait) from None
                if self._recover and now >= next_recovery:
                    # the other process may have died in the middle: finish its work,
                    # as a new Controller would (failed work is left to gc)
                    self.recovered.extend(self.executor.recover(failed=False))
                    next_recovery = now + 0.25
                else:
                    pause = min(pause * 2, 0.2)  # 20 ms, 40 ms... every 200 ms at most
                    time.sleep(pause)
                before_retry()

    def _check_shared_settled(self, tx: Tx, keys: Iterable[str]) -> None:
        """Refuse (errors.Busy, retried by the caller) to plan on shared host setup that
        another process is still creating or already deleting: its tables may not exist
        yet, or be about to go, and a network built on them would be left without."""
        for key in keys:
            shared = tx.shared(self.host_key, key)
            if shared is None:
                continue
            network_id, _, reviving = shared["owner"].partition("/revive/")
            owner = tx.network(self.host_key, network_id)
            if owner is not None and owner["state"] == "active" and not reviving:
                continue
            name = repr(owner["name"]) if owner else shared["owner"][:12]
            if shared["owner"] in tx.journal_owners(failed=True):  # waiting will not help
                what = "creation" if owner and owner["state"] == "pending" else "deletion"
                raise errors.ConflictError(
                    f"the {what} of network {name} failed and left the host's shared setup "
                    f"{key!r} half done; run `hostnet gc` to finish it, then try again"
                )
            doing = "created" if owner and owner["state"] == "pending" else "deleted"
            if reviving:
                doing = "made again after its host restarted"
            raise errors.Busy(
                f"the host's shared setup {key!r}", f"network {name} is being {doing}", 0.0
            )

    def _link_group(
        self, tx: Tx, host: Snapshot | None, networks: Sequence[dict[str, Any]]
    ) -> int:
        """A link group number no link of the host and none of ``networks`` (the
        host's) uses."""
        used = {n["data"].get("group") for n in networks}
        used |= {link.group for link in host.links} if host is not None else set()
        name = f"group:{self.host_key}"
        value = tx.next_cursor(name, LINK_GROUP_BASE)
        span = 1 << 24
        for step in range(span):
            candidate = LINK_GROUP_BASE + (value - LINK_GROUP_BASE + step) % span
            if candidate not in used:
                tx.set_cursor(name, candidate + 1)
                return candidate
        raise errors.ExhaustedError("no free link group left for a new network")

    def _prepare_network(
        self,
        tx: Tx,
        driver: Driver,
        spec: NetworkSpec,
        host: Snapshot | None,
        networks: Sequence[dict[str, Any]],
    ) -> NetworkSpec:
        """Subnets and gateways (IPAM), inside the creating transaction; ``networks``:
        the host's."""
        if not driver.allocates_addresses:
            return spec
        taken = [
            (n["name"], ipaddress.ip_network(sub["subnet"]))
            for n in networks
            for sub in n["spec"].get("subnets", ())
        ]
        configs: list[SubnetConfig] = []
        for config in spec.subnets:
            ipam.check_overlap(config.network, taken)
            taken.append((spec.name, config.network))
            configs.append(ipam.complete(ipam.keep_host_addresses(config, host)))
        if not any(c.network.version == 4 for c in configs):
            picked = ipam.pick_subnet(taken, ipam.host_networks(host))
            configs.insert(0, ipam.complete(SubnetConfig(subnet=str(picked))))
        if spec.enable_ipv6 and not any(c.network.version == 6 for c in configs):
            picked6 = ipam.pick_ula(taken, ipam.host_networks(host))
            configs.append(ipam.complete(SubnetConfig(subnet=str(picked6))))
        return attrs.evolve(spec, subnets=tuple(configs))

    def delete_network(self, name: str, *, force: bool = False) -> None:
        try:
            record = self._network_record(name, applied=True)
        except errors.ConflictError:
            # being deleted: by a deletion that failed, or that an interrupt cut short
            # in this process (a failed teardown)? Then this call finishes it, as gc would
            if not self._finish_deletion(name):
                raise
            return
        if recorded_driver(record["driver"]).builtin:
            raise errors.ConflictError(f"the predefined {name!r} network cannot be deleted")

        def prepare(tx: Tx) -> tuple[Plan, list[str]]:
            now = tx.network(self.host_key, name)  # again: this may be a retry
            if now is None or now["id"] != record["id"]:
                raise errors.NetworkNotFound(name)
            if now["state"] == "deleting":  # by another call since we looked
                raise _being_deleted(name)
            endpoints = self._endpoint_rows(tx, network=record["id"])
            if endpoints and not force:
                raise errors.NetworkInUse(name, [e["workload"] for e in endpoints])
            # Shared host setup goes with the last network that uses its key, of any
            # driver; otherwise an active one inherits it (one being deleted too
            # cannot: its own deletion would then forget the setup without undoing it).
            owned = tx.shared_owned_by(record["id"])
            others = [
                n for n in tx.networks(self.host_key, applied=False) if n["id"] != record["id"]
            ]
            failed = tx.journal_owners(failed=True)  # a create whose rollback failed is not coming
            heirs: dict[str, dict[str, Any]] = {}
            for shared in owned:
                users = [n for n in others if shared["key"] in _shared_keys(n)]
                active = [n for n in users if n["state"] == "active"]
                coming = [n for n in users if n["state"] == "pending" and n["id"] not in failed]
                if active:
                    heirs[shared["key"]] = active[0]
                elif coming:
                    # another process is creating a network on this setup right now: wait
                    # until it is active and can inherit the setup (or until it gave up)
                    raise errors.Busy(
                        f"the host's shared setup {shared['key']!r}",
                        f"network {coming[0]['name']!r} is being created on it",
                        0.0,
                    )
            tx.mark_deleting("endpoints", "id", [e["id"] for e in endpoints])
            tx.mark_deleting("networks", "id", [record["id"]])
            released.extend(e["ns"] for e in endpoints)
            gone[:] = endpoints
            plan = [
                *self._endpoints_teardown(record, endpoints),
                *teardown_plan(plan_from_json(record["applied"])),
            ]
            for shared in owned:
                heir = heirs.get(shared["key"])
                if heir is not None:
                    tx.transfer_shared(self.host_key, shared["key"], heir["id"])
                else:
                    plan.extend(teardown_plan(plan_from_json(shared["applied"])))
            return merge_nft(tuple(plan)), [*(e["id"] for e in endpoints), record["id"]]

        released: list[str | None] = []
        gone: list[dict[str, Any]] = []
        try:
            self._while_busy(
                lambda: self.executor.teardown(prepare, what=f"delete network {name!r}"),
                released.clear,
            )
        finally:
            for ns in released:
                self._release(ns)
        self._take_over_defaults(gone)

    def _finish_deletion(self, name: str) -> bool:
        """Retry the failed teardown(s) deleting network ``name`` (none in flight);
        whether the network is gone now. TeardownError if a retry fails again."""

        def failed(tx: Tx) -> list[str]:
            record = tx.network(self.host_key, name)
            if record is None or record["state"] != "deleting":
                return []
            return [
                j["id"]
                for j in tx.journals()
                if j["kind"] == "teardown"
                and j["failed"]
                and not j["retrying"]
                and record["id"] in json.loads(j["owner"])
            ]

        journals = self.store.read(failed)
        if not journals:
            return False
        for report in self.executor.recover(only=frozenset(journals)):
            if report.errors:
                problems = [errors.HostnetError(e) for e in report.errors]
                raise errors.TeardownError(f"delete network {name!r}", problems)
        self._repair_defaults()  # (as gc: routes its endpoints gave, handed on)
        return self.store.read(lambda tx: tx.network(self.host_key, name)) is None

    def _endpoint_rows(
        self,
        tx: Tx,
        *,
        network: str | None = None,
        workload: str | None = None,
        ns: str | None = None,
    ) -> list[dict[str, Any]]:
        """Endpoints to tear down (active, or left half torn down by a failed teardown);
        one still being set up by another process is refused, not pulled from under it."""
        rows = tx.endpoints(network=network, workload=workload, ns=ns)
        # a publish in flight belongs to "<endpoint id>/<suffix>"; tearing the endpoint
        # down now would free its ports while its firewall change is still coming
        publishing = {o.split("/")[0] for o in tx.journal_owners(failed=False) if "/" in o}
        busy = [r["workload"] for r in rows if r["state"] == "pending" or r["id"] in publishing]
        if busy:
            raise errors.ConflictError(
                f"{busy[0]!r} is being connected, or its ports published, by another "
                "process right now; try again in a moment (or run `hostnet gc` if that "
                "process died)"
            )
        return rows

    def _outside_replaced(self, plan: Plan, endpoints: list[dict[str, Any]]) -> Plan:
        """``plan`` without its ops inside an endpoint's namespace that is gone or was
        made again since the endpoint was connected: what was in the old one went with
        it, and the new one's links (its own eth0) are not hostnet's to remove. Only
        namespaces the plan has ops in are looked at (a macvlan's link; a bridge
        endpoint's go with its host-side veth)."""
        inside = {op.ns for op in plan}
        replaced: set[str] = set()
        for e in endpoints:
            ns, recorded = e["ns"], e["data"].get("netns")
            if ns is None or recorded is None or ns not in inside or ns in replaced:
                continue
            if not self._same_namespace(ns, recorded, e["data"].get("netns_mount")):
                replaced.add(ns)
        return tuple(op for op in plan if op.ns not in replaced) if replaced else plan

    @staticmethod
    def _undo(endpoints: list[dict[str, Any]]) -> Plan:
        plan: list[Op] = []
        for ep in endpoints:
            plan.extend(teardown_plan(plan_from_json(ep["applied"])))
        return tuple(plan)

    def _endpoints_teardown(self, record: dict[str, Any], endpoints: list[dict[str, Any]]) -> Plan:
        """One plan undoing many endpoints of a network: their firewall changes in one
        nftables transaction and, when the network has a link group, their links in one
        kernel call."""
        plan = self._outside_replaced(self._undo(endpoints), endpoints)
        group = record["data"].get("group")
        if group is None or len(endpoints) < 2:
            return merge_nft(plan)
        return group_teardown(plan, self.host_ns, group)

    def disconnect_all(self, name: str) -> int:
        """Disconnect every endpoint of a network at once (much faster than one by one);
        returns how many were disconnected."""
        record = self._network_record(name)
        gone: list[dict[str, Any]] = []

        def prepare(tx: Tx) -> tuple[Plan, list[str]]:
            gone[:] = self._endpoint_rows(tx, network=record["id"])
            tx.mark_deleting("endpoints", "id", [e["id"] for e in gone])
            # the marker owner keeps new connects off the network (their links would be
            # in the group this deletes) until the journal ends, also after a crash
            owners = [*(e["id"] for e in gone), _drain_owner(record["id"])]
            return self._endpoints_teardown(record, gone), owners

        try:
            self.executor.teardown(prepare, what=f"disconnect everything from {name!r}")
        finally:
            for ep in gone:
                self._release(ep["ns"])
        self._take_over_defaults(gone)
        return len(gone)

    @staticmethod
    def _inspect_options(record: dict[str, Any], spec: NetworkSpec) -> dict[str, str]:
        """The network's options plus the names hostnet chose (like Docker shows the
        bridge name of its default network)."""
        options = dict(spec.options)
        data = record["data"]
        if "bridge" in data:
            options.setdefault("com.docker.network.bridge.name", data["bridge"])
        if "shim" in data:
            options["hostnet.shim"] = data["shim"]
        return options

    def inspect_network(self, name: str) -> dict[str, Any]:
        """``docker network inspect``-shaped description."""
        record = self._network_record(name)
        spec = NetworkSpec.from_json(record["spec"])
        containers = {}
        for ep in self.store.read(lambda tx: tx.endpoints(network=record["id"])):
            data = ep["data"]
            v4 = next((a for a in data.get("addresses", []) if ":" not in a), "")
            v6 = next((a for a in data.get("addresses", []) if ":" in a), "")
            containers[ep["workload"]] = {
                "Name": ep["workload"],
                "EndpointID": ep["id"],
                "MacAddress": data.get("mac") or "",
                "IPv4Address": v4,
                "IPv6Address": v6,
            }
        return {
            "Name": record["name"],
            "Id": record["id"],
            "Created": rfc3339(record["at"]),
            "Driver": record["driver"],
            "Scope": recorded_driver(record["driver"]).scope,
            "EnableIPv4": not spec.subnets or any(s.network.version == 4 for s in spec.subnets),
            "EnableIPv6": spec.enable_ipv6,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [s.to_docker() for s in spec.subnets],
            },
            "Internal": spec.internal,
            "Attachable": False,  # Docker: swarm overlays only
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Options": self._inspect_options(record, spec),
            "Labels": dict(spec.labels),
            "Containers": containers,
        }

    # -- endpoints ---------------------------------------------------------------------

    def attach(
        self,
        workload: Namespace | str,
        network: str | None = None,
        *,
        driver: str | None = None,
        **kwargs: Any,
    ) -> Endpoint:
        """Attach a workload to a network; ``driver="none"`` or ``driver="host"`` picks the
        predefined network of that driver.

        For ``driver="host"`` the workload is a name (it has no namespace of its own);
        ``ports=["8080/tcp"]`` reserves the host ports it will bind, and the security
        policy must admit host networking for it."""
        if network is None:
            if driver is None:
                raise errors.InvalidOption("network", None, "give a network name or driver=")
            if not driver_class(driver).builtin:
                raise errors.InvalidOption(
                    "driver",
                    driver,
                    "only predefined networks (none, host) are picked by driver; create a "
                    "network with create_network() and pass its name",
                )
            network = driver
        return self.network(network).connect(workload, **kwargs)

    def host_workload(self, name: str) -> HostWorkload:
        """The host-network workload ``name`` (to run its processes in the host)."""
        eps = [e for e in self.endpoints(name) if e.network == "host"]
        if not eps:
            raise errors.EndpointNotFound("host", name)
        return HostWorkload(self, eps[0])

    def detach(self, workload: Namespace | str, network: str | None = None) -> None:
        """Disconnect a workload from ``network`` (default: from every network)."""
        name = _workload_name(workload)
        targets = [network] if network else [e.network for e in self.endpoints(name)]
        if not targets:
            if network:
                raise errors.EndpointNotFound(network, name)
            raise errors.NotFoundError(f"{name!r} is not connected to any network")
        problems: list[BaseException] = []
        for net in targets:  # keep going: every network is tried (teardown rule)
            try:
                self.network(net).disconnect(name)
            except errors.TeardownError as exc:
                problems.extend(exc.errors)
        if problems:
            raise errors.TeardownError(f"detach {name!r}", problems)

    def _host_ports(self, requests: Sequence[PortRequest], *, idle: bool) -> PortAllocator:
        """A PortAllocator fed with the facts of this Controller's host namespace;
        ``idle``: TCP sockets bound but not listening count as holding their port."""
        low, high = (65535, 65535)
        reserved: set[int] = set()
        bound: tuple[Any, ...] = ()
        if requests:
            low, high = map(
                int, self.backend.sysctl(self.host_ns, "net/ipv4/ip_local_port_range").split()
            )
            if any(r.start is None for r in requests):
                reserved = parse_reserved(
                    self.backend.sysctl(self.host_ns, "net/ipv4/ip_local_reserved_ports")
                )
            wanted: set[int] | None = set()
            for r in requests:
                if r.start is None or wanted is None:
                    wanted = None
                else:
                    assert r.end is not None
                    wanted.update(range(r.start, r.end + 1))
            # Owners are looked up only for the ports asked about (finding them walks
            # every process); for an ephemeral pick, only if the pick clashes.
            bound = self.backend.bound_sockets(
                self.host_ns,
                wanted,
                owners=wanted is not None,
                protocols={r.protocol for r in requests},
                # a TCP socket bound but not listening blocks a workload's own bind() (host
                # networking), not a DNAT: looking for those costs about 0.3 ms a call
                idle=idle,
            )
        return PortAllocator(
            host=self.host_key, ephemeral=(low, high), reserved=reserved, bound=bound
        )

    def _check_host_ips(self, specs: Sequence[PublishSpec]) -> None:
        """A port published on a host address must be on an address of the host, as in
        Docker (whose bind fails with "cannot assign requested address"), unless the
        host lets sockets bind addresses it does not have (ip_nonlocal_bind). One route
        lookup per address given (none for the wildcards)."""
        wanted = {s.host.host_ip for s in specs} - {WILDCARD4, WILDCARD6}
        snap: Snapshot | None = None
        for ip in sorted(wanted):
            if self.backend.is_local(self.host_ns, ip):
                continue
            if snap is None:  # (an IPv6 address still in DAD is the host's, though no
                # local route says so yet; a link-local one is not in the snapshot, and
                # is taken once its DAD is over)
                snap = self.backend.observe(self.host_ns, firewall=False)
            if ip in {a.address.split("/")[0] for a in snap.addresses}:
                continue
            key = f"net/ipv{6 if ':' in ip else 4}/ip_nonlocal_bind"
            if self.backend.sysctl(self.host_ns, key) == "1":
                continue
            where = f"namespace {self.host_ns!r}" if self.host_ns else "this host"
            lo = snap.link("lo")
            if ipaddress.ip_address(ip).is_loopback and lo is not None and not lo.up:
                command = f"ip -n {self.host_ns} link" if self.host_ns else "ip link"
                raise errors.InvalidAddress(
                    ip,
                    f"the loopback interface of {where} is down (as in a namespace `ip "
                    f"netns add` made): bring it up first ({command} set lo up)",
                )
            raise errors.InvalidAddress(
                ip,
                f"not an address of {where}: nothing would receive the published port "
                f"(Docker refuses it too); add it to an interface first, or publish on "
                f"all addresses",
            )

    def _with_owner(self, exc: errors.PortInUse) -> errors.PortInUse:
        """``exc`` naming the process that holds the port, when the kernel can tell; or
        saying that the hostnet workload holding it is gone, for ``gc`` to free."""
        if exc.holder is not None:
            if not exc.held_for_gc and self._abandoned(exc.holder):
                return errors.PortInUse(
                    port=exc.port,
                    protocol=exc.protocol,
                    host_ip=exc.host_ip,
                    holder=exc.holder,
                    abandoned=True,
                    held_on=exc.held_on,
                )
            return exc
        if exc.owner_pid is not None:
            return exc
        found = False
        for sock in self.backend.bound_sockets(self.host_ns, [exc.port], idle=True):
            if sock.blocks(exc.protocol, exc.host_ip, exc.port):
                found = True
                if sock.pid is not None:
                    return sock.in_the_way(exc.protocol, exc.host_ip, exc.port)
        if not found:  # its process closed it (or exited) in the meantime
            exc.add_note("the socket is gone now: trying again may well work")
        return exc

    def _abandoned(self, workload: str) -> bool:
        """Whether ``workload``'s namespace is gone, or is a temporary one whose process
        died (what ``gc`` cleans up)."""
        rows = self.store.read(lambda tx: tx.endpoints(workload=workload))
        if any(r["ns"] is not None and not self.backend.has_namespace(r["ns"]) for r in rows):
            return True
        # (as _gc_abandoned: a temporary namespace not while processes it left run
        # there, which gc keeps; a host-network workload's lease by its endpoint id)
        for lease in self.store.read(lambda tx: tx.leases()):
            if lease["name"] != workload or process_started(lease["pid"]) == lease["started"]:
                continue
            if lease["owner"] == f"ns:{workload}":
                if not self.backend.processes(workload):
                    return True
            elif any(r["id"] == lease["owner"] for r in rows):
                return True
        return False

    def _admit_ports(self, workload: str, requests: Sequence[PortRequest]) -> list[PortRequest]:
        """``requests`` as the policy admits them (or PolicyDenied): a request for any
        one port of a range that reaches above the privileged ports takes one of those
        when privileged ports are not allowed."""
        explicit = sorted({r.start for r in requests if r.start is not None})
        if not explicit:
            return list(requests)
        first = int(self.backend.sysctl(self.host_ns, "net/ipv4/ip_unprivileged_port_start"))
        if not self.policy.allow_privileged_ports:
            requests = [
                attrs.evolve(r, start=first)
                if r.pick_one and r.start is not None and r.end is not None
                and r.start < first <= r.end
                else r
                for r in requests
            ]  # fmt: skip
            explicit = sorted({r.start for r in requests if r.start is not None})
        for port in explicit:
            if port < first:
                admission = self.policy.admit_privileged_port(workload, port, first)
                self._record_admission(admission)
                if not admission.admitted:
                    raise errors.PolicyDenied(
                        f"host port {port} for {workload!r}",
                        admission.reason,
                        "use a port >= "
                        + str(first)
                        + " or SecurityPolicy(allow_privileged_ports=True)",
                    )
        return list(requests)

    def _connect(
        self,
        network: Network,
        workload: Namespace | str,
        *,
        publish: Sequence[str],
        ports: Sequence[str],
        hold: bool,
        ip: str | None,
        ip6: str | None,
        mac: str | None,
        temporary: bool = False,
    ) -> Endpoint:
        self._host_unchanged()
        found: list[tuple[Driver, str, str | None]] = []

        def check(tx: Tx, record: dict[str, Any]) -> None:
            # In the read that finds the network: the workload as its driver wants it,
            # then the network modes, which are checked again inside the connecting
            # transaction; this check fails early, before admissions are recorded.
            drv = installed_driver(record["driver"])
            name, ns = self._connect_target(drv, workload)
            self._check_modes(tx, drv, name, network.name)
            found.append((drv, name, ns))

        record = self._network_record(network.name, check)
        drv, name, ns = found[0]
        info = self._network_info(record, self.host_ns)
        # 1. validate
        publish, ports = _port_list("publish", publish), _port_list("ports", ports)
        if ports and drv.needs_namespace:
            raise errors.InvalidOption(
                "ports",
                list(ports),
                "only host-network workloads declare host ports; publish with publish=[...]",
            )
        if not isinstance(temporary, bool):
            raise errors.ValidationError(f"temporary must be True or False, not {temporary!r}")
        if temporary and drv.needs_namespace:
            raise errors.InvalidOption(
                "temporary",
                temporary,
                "a namespace's endpoints go with it: make the namespace temporary "
                "(create_namespace(temporary=True))",
            )
        if hold and drv.needs_namespace:
            raise errors.InvalidOption("hold", hold, "only for host-network workload ports")
        mac = _check_addressing(drv, info, ip=ip, ip6=ip6, mac=mac)
        ip = _unmapped(ip) if isinstance(ip, str) else ip
        publish_specs = [parse_publish(p, drv.default_host_ip(info.spec)) for p in publish]
        host_requests = [parse_host_port(p) for p in ports]
        # 2. admit
        if not drv.needs_namespace:
            admission = self.policy.admit_host_network(name)
            self._record_admission(admission)
            if not admission.admitted:
                raise errors.PolicyDenied(
                    f"host networking for {name!r}",
                    admission.reason,
                    f"opt in with SecurityPolicy(allow_host_network={{{name!r}}}) or "
                    "allow_host_network=True (CLI: --allow-host-network)",
                )
            if publish_specs:
                admission = self.policy.admit_host_publish(name)
                self._record_admission(admission)
                if not admission.admitted:
                    raise errors.PolicyDenied(
                        f"publishing ports for {name!r}",
                        admission.reason,
                        "declare the ports it binds with ports=[...]",
                    )
                warnings.warn(admission.reason, errors.HostnetWarning, stacklevel=3)
                publish_specs = []
        requests = self._admit_ports(name, [s.host for s in publish_specs] + host_requests)
        self._check_host_ips(publish_specs)
        # 3. observe
        allocator = self._host_ports(requests, idle=not drv.needs_namespace)
        # plan_connect needs the target's links and routes, never its addresses
        try:
            target = (
                self.backend.observe(ns, firewall=False, addresses=False)
                if ns is not None
                else None
            )
            host = self._observe(self.host_ns) if drv.observe_host_on_connect else None
            mount = self.backend.namespace_mount(ns) if ns is not None else None
        except BaseException:
            self._release(ns)  # the observation opened a socket into the namespace
            raise
        endpoint_id = new_id()
        made: list[dict[str, Any]] = []

        def prepare(tx: Tx) -> Plan:
            # checked again here: another process may have changed things meanwhile
            if tx.network_state(record["id"]) != "active":
                raise errors.NetworkNotFound(network.name)
            drain = _drain_owner(record["id"])
            if drain in tx.journal_owners():
                raise errors.ConflictError(
                    f"network {network.name!r} is being emptied (disconnect_all) by another "
                    "call right now; try again in a moment (or run `hostnet gc` if that "
                    "process died)"
                )
            if ns is not None:
                current = tx.namespace(ns)
                if current is not None and current["state"] == "deleting":
                    raise errors.ConflictError(f"namespace {ns!r} is being deleted")
            self._check_modes(tx, drv, name, network.name)
            limit = drv.max_endpoints(info.spec)
            if (
                limit is not None
                and len(tx.endpoints(network=record["id"], published=False)) >= limit
            ):
                raise errors.ConflictError(
                    f"network {network.name!r} takes at most {limit} endpoint(s) "
                    f"({info.spec.option('macvlan_mode') or drv.name} mode)"
                )
            reserved = allocator.reserve(tx, requests, owner=endpoint_id, workload=name)
            if temporary and self.executor.started:  # (0.0: its start time is unknown)
                # the endpoint's, forgotten with it; gc detaches it once the process died
                tx.add_lease(endpoint_id, name, self.executor.pid, self.executor.started)
            mappings = _mappings(publish_specs, reserved)
            flat_host = [r for got in reserved[len(publish_specs) :] for r in got]
            # the namespace's other endpoints, pending ones too: their interface names
            # and default routes are taken even if the observation did not see them
            neighbours = tx.endpoints(ns=ns) if ns is not None else []
            ghosts = [
                e["workload"]
                for e in neighbours
                if target is not None
                and target.ident is not None
                and e["data"].get("netns") not in (None, target.ident)
            ]
            if ghosts:
                raise errors.ConflictError(
                    f"namespace {ns!r} was deleted and made again since hostnet connected "
                    f"it to network(s) ({len(ghosts)} endpoint(s) of the old one are still "
                    "recorded); run `hostnet gc` to forget them"
                )
            endpoint = self._prepare_endpoint(
                tx,
                drv,
                info,
                EndpointInfo(
                    id=endpoint_id,
                    workload=name,
                    ns=ns,
                    mac=mac,
                    ports=mappings,
                    held=tuple(flat_host) if hold else (),
                    static=tuple(
                        (key, value)
                        for key, value in (("IPv4Address", ip), ("IPv6Address", ip6))
                        if value
                    ),
                ),
                ip=ip,
                ip6=ip6,
                target=target,
                neighbours=neighbours,
            )
            seen = target
            # (not one being torn down: its routes are about to go with its interface)
            claimed = {
                d
                for e in neighbours
                if e["state"] != "deleting"
                for d in e["data"].get("defaults", ())
            }
            if target is not None and claimed:
                # default routes that other endpoints of the namespace added, or are adding,
                # since it was observed: a second one would fail (EEXIST)
                routes = (*target.routes, *(Route(dst=dst) for dst in claimed))
                seen = attrs.evolve(target, routes=routes)
            with driver_call(drv, "plan_connect"):
                planned = drv.plan_connect(
                    ConnectContext(network=info, endpoint=endpoint, target=seen, host=host)
                )
            plan = checked_plan(drv, "plan_connect", planned, {self.host_ns, ns or self.host_ns})
            if mappings and type(drv).plan_publish is Driver.plan_publish:
                # a driver that publishes no ports and did not refuse them itself
                raise errors.InvalidOption(
                    "publish",
                    [m.as_spec() for m in mappings],
                    f"the {drv.name} driver does not publish ports",
                )
            row: dict[str, Any] = {
                "id": endpoint_id,
                "workload": name,
                "ns": ns,
                "data": _endpoint_json(endpoint, flat_host, plan),
            }
            row["data"]["asked"] = [list(b) for spec in publish_specs for b in spec.bindings()]
            if target is not None and target.ident is not None:
                row["data"]["netns"] = target.ident  # which namespace of that name
                if mount is not None:
                    row["data"]["netns_mount"] = mount  # its bind mount: a cheap check
            tx.add_endpoint(
                id=endpoint_id, network=record["id"], workload=name, ns=ns, data=row["data"]
            )
            made[:] = [row]
            return plan

        def commit(tx: Tx, plan: Plan) -> None:
            if tx.network_state(record["id"]) != "active":  # deleted while we worked
                raise errors.NetworkNotFound(network.name)
            tx.activate("endpoints", "id", endpoint_id, plan_to_json(plan))

        try:
            self.executor.apply(prepare, owner=endpoint_id, commit=commit)
        except errors.PortInUse as exc:
            raise self._with_owner(exc) from exc
        finally:
            self._release(ns)
        return _endpoint_from(made[0], network.name)

    def _connect_target(self, drv: Driver, workload: Namespace | str) -> tuple[str, str | None]:
        """The workload's name and namespace (None: host networking), checked."""
        if drv.needs_namespace:
            name = check_namespace_name(_workload_name(workload))
            if name == self.host_ns:
                raise errors.ConflictError(f"{name!r} is the host namespace itself")
            if not self.backend.has_namespace(name):
                raise errors.NamespaceNotFound(name)
            return name, name
        if isinstance(workload, Namespace):
            raise errors.InvalidOption(
                "workload",
                workload.name,
                "a host-network workload has no namespace of its own: pass its name",
            )
        return check_network_name(workload, "host-network workload"), None

    def _prepare_endpoint(
        self,
        tx: Tx,
        driver: Driver,
        network: NetworkInfo,
        endpoint: EndpointInfo,
        *,
        ip: str | None,
        ip6: str | None,
        target: Snapshot | None,
        neighbours: Sequence[dict[str, Any]],
    ) -> EndpointInfo:
        """Addresses (IPAM), MAC and interface name, inside the connecting transaction;
        ``neighbours``: the store's other endpoints in the same namespace."""
        if not driver.allocates_addresses:
            return endpoint  # _check_addressing refused addresses asked of it
        addresses, gateways = [], []
        for family, static in ((4, ip), (6, ip6)):
            config = next((c for c in network.spec.subnets if c.network.version == family), None)
            if config is None:
                if static:
                    raise errors.InvalidAddress(
                        static, f"network {network.name!r} has no IPv{family} subnet"
                    )
                continue
            addresses.append(
                ipam.allocate(tx, network.id, config, endpoint.id, network.name, static)
            )
            if config.gateway:
                gateways.append(config.gateway)
        if endpoint.mac is not None:  # asked for (random ones are not worth the read)
            layer = driver.link_layer(network.spec)
            nets = [(network.id, network.name)]
            if layer is not None:  # networks on the same LAN (a macvlan parent)
                same = [
                    n
                    for n in tx.networks(self.host_key, applied=False)
                    if n["id"] != network.id
                    and n["driver"] == network.spec.driver
                    and driver.link_layer(NetworkSpec.from_json(n["spec"])) == layer
                ]
                nets += [(n["id"], n["name"]) for n in same]
                for n in same:  # their shims are on that LAN too
                    if n["data"].get("shim_mac") == endpoint.mac:
                        raise errors.AddressInUse(endpoint.mac, interface=n["data"]["shim"])
            for net_id, net_name in nets:
                for other in tx.endpoints(network=net_id, published=False):
                    if other["data"].get("mac") == endpoint.mac:
                        raise errors.AddressInUse(endpoint.mac, net_name, other["workload"])
        used = {e["data"].get("ifname") for e in neighbours}
        if target is not None:
            used |= target.link_names()
        ifname = next(f"eth{i}" for i in range(10_000) if f"eth{i}" not in used)
        return attrs.evolve(
            endpoint,
            ifname=ifname,
            mac=endpoint.mac
            or (random_mac() if driver.wants_mac(network.spec) else driver.inherited_mac(network)),
            addresses=tuple(addresses),
            gateways=tuple(gateways),
        )

    def _publish(
        self, network: Network, workload: Namespace | str, publish: Sequence[str]
    ) -> list[PortMapping]:
        """Publish more ports of a connected workload: one nftables transaction, whose
        cost does not depend on how many ports are published already."""
        self._host_unchanged()
        name = _workload_name(workload)
        publish = _port_list("publish", publish)
        record = self._network_record(network.name)
        drv = installed_driver(record["driver"])
        if type(drv).plan_publish is Driver.plan_publish:  # before any admission
            raise errors.InvalidOption(
                "publish", list(publish), f"the {drv.name} driver does not publish ports"
            )
        info = self._network_info(record, self.host_ns)
        specs = [parse_publish(p, drv.default_host_ip(info.spec)) for p in publish]
        requests = self._admit_ports(name, [s.host for s in specs])
        self._check_host_ips(specs)
        allocator = self._host_ports(requests, idle=False)  # published: DNAT, no bind()
        rows = self.store.read(
            lambda tx: tx.endpoints(network=record["id"], workload=name, published=False)
        )
        if not rows or rows[0]["state"] != "active":
            raise errors.EndpointNotFound(network.name, name)
        row = rows[0]
        if row["ns"] is not None and not self.backend.has_namespace(row["ns"]):
            # deleted behind hostnet's back (`ip netns del`): nothing would answer
            raise errors.NamespaceNotFound(row["ns"])
        recorded = row["data"].get("netns")
        if (
            row["ns"] is not None
            and recorded is not None
            and not self._same_namespace(row["ns"], recorded, row["data"].get("netns_mount"))
        ):
            raise errors.ConflictError(
                f"namespace {row['ns']!r} was deleted and made again since it was connected "
                f"to {network.name!r}; run `hostnet gc` to forget the old endpoint"
            )
        endpoint = _endpoint_info(_endpoint_from(row, network.name))
        owner = f"{row['id']}/{secrets.token_hex(4)}"  # forgotten with the endpoint too
        added: list[PortMapping] = []

        def prepare(tx: Tx) -> Plan:
            now = tx.endpoints(network=record["id"], workload=name, published=False)
            if not now or now[0]["state"] != "active":
                raise errors.EndpointNotFound(network.name, name)
            reserved = allocator.reserve(tx, requests, owner=owner, workload=name)
            added[:] = _mappings(specs, reserved)
            with driver_call(drv, "plan_publish"):
                planned = drv.plan_publish(info, endpoint, tuple(added))
            where = {self.host_ns, row["ns"] or self.host_ns}
            return checked_plan(drv, "plan_publish", planned, where)

        def commit(tx: Tx, plan: Plan) -> None:
            tx.add_published(
                row["id"],
                owner=owner,
                ports=[[m.protocol, m.host_ip, m.host_port, m.container_port] for m in added],
                applied=plan_to_json(plan),
                asked=[list(b) for spec in specs for b in spec.bindings()],
            )

        try:
            self.executor.apply(prepare, owner=owner, commit=commit)
        except errors.PortInUse as exc:
            raise self._with_owner(exc) from exc
        return list(added)

    def _disconnect(self, network: Network, workload: Namespace | str) -> None:
        name = _workload_name(workload)
        record = self._network_record(network.name)
        found: list[dict[str, Any]] = []

        def prepare(tx: Tx) -> tuple[Plan, list[str]]:
            found[:] = self._endpoint_rows(tx, network=record["id"], workload=name)
            if not found:
                raise errors.EndpointNotFound(network.name, name)
            tx.mark_deleting("endpoints", "id", [found[0]["id"]])
            # its firewall changes (connect's and every publish's) in one transaction
            return self._endpoints_teardown(record, found[:1]), [found[0]["id"]]

        try:
            self.executor.teardown(prepare, what=f"disconnect {name!r} from {network.name!r}")
        finally:
            for ep in found:
                self._release(ep["ns"])
        self._take_over_defaults(found)

    def _take_over_defaults(self, gone: list[dict[str, Any]]) -> None:
        """Endpoints that gave their namespace its default routes are gone: another
        endpoint of the namespace, the first connected of a network that is not internal
        with a gateway of that family, gives them now (Docker moves the gateway the same
        way). Recorded as ops of that endpoint (a row of ``published`` without ports), so
        they are undone with it, and it hands them on in turn. Nothing is done in a
        namespace that is not the one the endpoints were connected to (deleted and made
        again since: not hostnet's)."""
        lost: dict[str, tuple[set[str], set[str]]] = {}  # ns -> (routes, identities)
        for row in gone:
            if row["ns"] is not None and row["data"].get("defaults"):
                dsts, idents = lost.setdefault(row["ns"], (set(), set()))
                dsts.update(row["data"]["defaults"])
                if row["data"].get("netns"):
                    idents.add(row["data"]["netns"])
        if not lost:
            return
        rows = self.store.read(lambda tx: tx.endpoints_in(lost))
        if not any(r["state"] == "active" for r in rows):
            return  # the usual case: nothing else in those namespaces
        nets = {r["id"]: r for r in self.store.read(lambda tx: tx.networks(self.host_key))}
        for ns, (dsts, idents) in sorted(lost.items()):
            mine = [
                r
                for r in rows
                if r["ns"] == ns
                and r["state"] == "active"
                and r["network"] in nets
                and not NetworkSpec.from_json(nets[r["network"]]["spec"]).internal
            ]
            if not mine:
                continue
            try:
                self._give_defaults(ns, dsts, idents, mine)
            except errors.HostnetError as exc:  # the disconnect itself is done
                warnings.warn(
                    f"namespace {ns!r} has no default route any more: {exc}",
                    errors.HostnetWarning,
                    stacklevel=3,
                )

    def _repair_defaults(self) -> None:
        """Give a default route, per family, to every namespace whose endpoints could
        give one and none does (the store says so): a process killed during a teardown,
        or between it and the hand-over (``_take_over_defaults``), left it without. The
        kernel is read only for namespaces that need one."""
        nets = {r["id"]: r for r in self.store.read(lambda tx: tx.networks(self.host_key))}
        rows = [
            r
            for r in self.store.read(lambda tx: tx.endpoints())
            if r["ns"] is not None and r["state"] == "active" and r["network"] in nets
        ]
        by_ns: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_ns.setdefault(row["ns"], []).append(row)
        for ns, eps in sorted(by_ns.items()):
            claimed = {d for e in eps for d in e["data"].get("defaults", ())}
            givers = [
                e for e in eps if not NetworkSpec.from_json(nets[e["network"]]["spec"]).internal
            ]
            wanted = {
                "::/0" if ":" in gw else "0.0.0.0/0"
                for e in givers
                for gw in e["data"].get("gateways", ())
            } - claimed
            if wanted:
                idents = {e["data"]["netns"] for e in eps if e["data"].get("netns")}
                try:
                    self._give_defaults(ns, wanted, idents, givers)
                except errors.HostnetError as exc:
                    warnings.warn(
                        f"namespace {ns!r} has no default route: {exc}",
                        errors.HostnetWarning,
                        stacklevel=3,
                    )

    def _give_defaults(
        self, ns: str, dsts: set[str], idents: set[str], rows: list[dict[str, Any]]
    ) -> None:
        try:
            snap = self.backend.observe(ns, firewall=False, addresses=False)
        except errors.NamespaceNotFound:
            return
        finally:
            self._release(ns)
        if snap.ident is not None and idents - {snap.ident}:
            return  # made again since: not the namespace those endpoints were in
        routes = {r.dst for r in snap.routes}
        for dst in sorted(dsts - routes):
            six = dst == "::/0"
            pick = next(
                (
                    (r, gw)
                    for r in rows
                    if r["data"].get("netns") in (None, snap.ident)
                    for gw in r["data"].get("gateways", ())
                    if (":" in gw) == six
                ),
                None,
            )
            if pick is None:
                continue
            row, gateway = pick
            owner = f"{row['id']}/{secrets.token_hex(4)}"
            route = AddRoute(ns=ns, dst=dst, gateway=gateway, ifname=row["data"]["ifname"])

            def prepare(
                tx: Tx,
                row: dict[str, Any] = row,
                owner: str = owner,
                route: AddRoute = route,
            ) -> Plan:
                # Claimed in the journaling transaction, as a connect claims its default
                # routes, so that a connect to the namespace racing with this one plans
                # none for this family; not if another endpoint claimed it meanwhile.
                for other in tx.endpoints(ns=ns):
                    if other["state"] != "deleting" and route.dst in other["data"].get(
                        "defaults", ()
                    ):
                        return ()
                tx.add_published(row["id"], owner=owner, ports=[], applied=plan_to_json((route,)))
                return (route,)

            try:
                self.executor.apply(prepare, owner=owner)
            except errors.ConflictError:
                continue  # the endpoint went, or the route came, meanwhile

    def unhold(self, workload: str) -> None:
        """Close the sockets holding a host-network workload's ports, right before the
        workload binds them itself."""
        for ep in self.endpoints(workload):
            for res in ep.reserved:
                try:
                    self.backend.apply(
                        UnbindPort(
                            ns=self.host_ns,
                            protocol=res.protocol,
                            address=res.host_ip,
                            port=res.port,
                        )
                    )
                except errors.NotFoundError:
                    pass

    def endpoints(self, workload: Namespace | str | None = None) -> list[Endpoint]:
        """Endpoints on this host, of one workload (a name, or a Namespace) or of all."""
        if workload is not None:
            workload = _workload_name(workload)
            if not isinstance(workload, str):
                raise errors.InvalidName("workload", workload, "a Namespace or a name (str)")
        nets = {r["id"]: r["name"] for r in self.store.read(lambda tx: tx.networks(self.host_key))}
        rows = self.store.read(lambda tx: tx.endpoints(workload=workload))
        return [
            _endpoint_from(row, nets[row["network"]])
            for row in rows
            if row["network"] in nets and row["state"] == "active"
        ]

    def _network_endpoints(self, network: Network) -> list[Endpoint]:
        rows = self.store.read(lambda tx: tx.endpoints(network=network.id))
        return [_endpoint_from(row, network.name) for row in rows if row["state"] == "active"]

    # -- reporting ---------------------------------------------------------------------

    def inspect(self, workload: Namespace | str) -> dict[str, Any]:
        """A Docker-shaped description of a workload's networking."""
        name = _workload_name(workload)
        check_namespace_name(name)  # every workload name is also a valid namespace name
        eps = self.endpoints(name)
        is_ns = self.backend.has_namespace(name)
        if not eps and not is_ns:
            raise errors.NotFoundError(f"no namespace or workload named {name!r}")
        networks: dict[str, Any] = {}
        ports: dict[str, Any] = {}
        bindings: dict[str, Any] = {}
        mode = ""
        for ep in eps:
            record = self._network_record(ep.network)
            drv = recorded_driver(record["driver"])()
            info = self._network_info(record, self.host_ns)
            with driver_call(drv, "describe_endpoint"):
                networks[ep.network] = drv.describe_endpoint(info, _endpoint_info(ep))
            mode = mode or ep.network
            for m in ep.ports:
                entry = {"HostIp": m.host_ip, "HostPort": str(m.host_port)}
                ports.setdefault(m.docker_key(), []).append(entry)
            for key, host_ip, host_port in ep.asked:  # as asked, "" where not given
                bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
            for r in ep.reserved:
                ports.setdefault(f"{r.port}/{r.protocol}", None)
        sandbox = "" if (mode == "host" or not is_ns) else Namespace(self, name, managed=True).path
        return {
            "Name": name,
            "HostConfig": {"NetworkMode": mode, "PortBindings": bindings},
            "NetworkSettings": {"SandboxKey": sandbox, "Ports": ports, "Networks": networks},
        }

    def ports(self) -> list[dict[str, Any]]:
        """Every host port hostnet has reserved on this host."""
        rows: list[dict[str, Any]] = self.store.read(lambda tx: tx.ports(host=self.host_key))
        return rows

    def admissions(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.store.read(lambda tx: tx.admissions())
        return [r for r in rows if r["host"] == self.host_key]

    def audit(self) -> list[dict[str, str]]:
        """Risks in the current state, most serious first."""
        findings: list[dict[str, str]] = []
        for ep in self.endpoints():
            if ep.network == "host":
                findings.append(
                    {
                        "severity": "high",
                        "kind": "host-network",
                        "subject": ep.workload,
                        "detail": "shares the host's network stack and ports",
                    }
                )
            for m in ep.ports:
                if m.host_ip in ("0.0.0.0", "::"):
                    findings.append(
                        {
                            "severity": "medium",
                            "kind": "published-on-all",
                            "subject": ep.workload,
                            "detail": f"{m.host_port}/{m.protocol} is published on "
                            f"every host address",
                        }
                    )
        for net in self.networks():
            if (
                net.driver == "bridge"
                and net.spec.option("com.docker.network.bridge.enable_icc", "true") == "true"
            ):
                findings.append(
                    {
                        "severity": "low",
                        "kind": "icc-on",
                        "subject": net.name,
                        "detail": "endpoints of this network can reach each other",
                    }
                )
            if net.driver == "macvlan" and net.spec.internal and "private_parent" not in net.data:
                findings.append(
                    {
                        "severity": "high",
                        "kind": "no-isolation",
                        "subject": net.name,
                        "detail": "an internal macvlan network an older hostnet made: its "
                        "endpoints sit on the parent's LAN, not on a private parent; "
                        "delete it and create it again",
                    }
                )
            if net.driver == "macvlan" and not net.spec.internal:  # (its own parent)
                findings.append(
                    {
                        "severity": "low",
                        "kind": "no-isolation",
                        "subject": net.name,
                        "detail": "macvlan endpoints sit on the parent's LAN: no firewall "
                        "of hostnet's isolates them from it or from other hosts there",
                    }
                )
        findings.extend(self._ipv6_left_on())
        for network_id in self.store.read(lambda tx: tx.to_revive(self.host_key)):
            lost = self.store.read(partial(_network_of, host=self.host_key, id=network_id))
            findings.append(
                {
                    "severity": "high",
                    "kind": "not-made-again",
                    "subject": lost["name"] if lost else network_id[:12],
                    "detail": "its host restarted and hostnet could not make it again "
                    "(a missing parent?); fix the cause and run `hostnet gc`, or delete it",
                }
            )
        restarted = self._restarted()
        findings.extend(restarted)
        live = set(self.backend.namespaces())
        records = self.store.read(lambda tx: tx.namespaces())
        for rec in records:
            # (one being made or deleted right now is no risk; one a dead process was
            # making is reported as unfinished work)
            if rec["state"] == "active" and rec["name"] not in live:
                findings.append(
                    {
                        "severity": "medium",
                        "kind": "stale-record",
                        "subject": rec["name"],
                        "detail": "recorded namespace is gone; run `hostnet gc`",
                    }
                )
        findings.extend(self._stale_endpoints(live, {r["name"] for r in records}))
        for lease in self.store.read(lambda tx: tx.leases()):
            if process_started(lease["pid"]) == lease["started"]:
                continue
            if lease["owner"] != f"ns:{lease['name']}":  # a host-network workload's
                findings.append(
                    {
                        "severity": "low",
                        "kind": "abandoned",
                        "subject": lease["name"],
                        "detail": f"host-network workload of pid {lease['pid']}, which has "
                        "exited; `hostnet gc` detaches it",
                    }
                )
            elif lease["name"] in live:
                findings.append(
                    {
                        "severity": "low",
                        "kind": "abandoned",
                        "subject": lease["name"],
                        "detail": f"temporary namespace of pid {lease['pid']}, which has "
                        "exited; `hostnet gc` deletes it once nothing runs inside",
                    }
                )
        workloads = {r["name"] for r in records} | {e.workload for e in self.endpoints()}
        for name in sorted((workloads & live) - {self.host_ns}):
            findings.extend(self._net_admins(name))
        for entry in self.store.read(lambda tx: tx.journals()):
            if not entry["failed"] and process_started(entry["pid"]) == entry["started"]:
                continue  # being applied by a live process right now: not a risk
            ops = len(entry["plan"])
            done = f"{entry['done']}/{ops} ops done" if entry["kind"] == "setup" else f"{ops} ops"
            what = "failed" if entry["failed"] else f"left by pid {entry['pid']}, which died"
            findings.append(
                {
                    "severity": "medium",
                    "kind": "unfinished-work",
                    "subject": entry["id"][:12],
                    "detail": f"{entry['kind']} journal ({done}), {what}: `hostnet gc` "
                    + ("rolls it back" if entry["kind"] == "setup" else "finishes it"),
                }
            )
        host = self._observe(self.host_ns)
        if not restarted:  # (else everything is missing, and gc makes it again)
            findings.extend(self._missing(host, live))
        findings.extend(self._leaks(host))
        # the same decision for the same workload, once (a service restarted 200 times
        # on port 80 is one finding, with how often), in the order first made
        repeats: dict[tuple[str, str, str, str], int] = {}
        for admission in self.admissions():
            key = (
                admission["decision"],
                admission["workload"],
                admission["what"],
                admission["reason"],
            )
            repeats[key] = repeats.get(key, 0) + 1
        for (decision, workload, what, reason), count in repeats.items():
            times = f" ({count} times)" if count > 1 else ""
            findings.append(
                {
                    "severity": "info",
                    "kind": f"admission-{decision}",
                    "subject": workload,
                    "detail": f"{what}: {reason}{times}",
                }
            )
        order = {"high": 0, "medium": 1, "low": 2, "info": 3}
        return sorted(findings, key=lambda f: order[f["severity"]])

    def _net_admins(self, name: str) -> list[dict[str, str]]:
        """Processes of namespace ``name`` with CAP_NET_ADMIN: they can change its
        interfaces, addresses, routes and firewall behind hostnet's back."""
        out = []
        try:
            pids = self.backend.processes(name)
        except errors.NotFoundError:
            return []
        for pid in pids:
            if not _has_net_admin(pid):
                continue
            try:
                process = psutil.Process(pid).name()
            except psutil.Error:
                continue
            out.append(
                {
                    "severity": "medium",
                    "kind": "cap-net-admin",
                    "subject": name,
                    "detail": f"process {pid} ({process}) has CAP_NET_ADMIN: it can change "
                    "the namespace's interfaces, routes and firewall",
                }
            )
        return out

    def _restarted(self) -> list[dict[str, str]]:
        """A host that is not the one the records describe (``_after_host_restart``
        has not caught up: audit recovers nothing)."""
        now = self._current_ident(self.host_ns)
        before = self.store.read(partial(_ident_of, owner=f"host:{self.host_key}"))
        if now is None or before is None or now == before:
            return []
        return [
            {
                "severity": "high",
                "kind": "host-restarted",
                "subject": self.host_ns or "root namespace",
                "detail": "the host is not the one the records describe (a reboot, or its "
                "namespace made again): the networks' bridges and firewall and every "
                "endpoint are gone; `hostnet gc` makes the networks again and forgets "
                "the endpoints",
            }
        ]

    def _stale_endpoints(self, live: set[str], recorded: set[str]) -> list[dict[str, str]]:
        """Endpoints whose namespace is gone, or is another of that name now (namespaces
        hostnet records are reported as stale records instead)."""
        out: list[dict[str, str]] = []
        seen: dict[str, bool] = {}
        for row in self.store.read(lambda tx: tx.endpoints()):
            ns = row["ns"]
            if ns is None or row["state"] != "active" or (ns in recorded and ns not in live):
                continue
            if ns not in seen:
                ident, mount = row["data"].get("netns"), row["data"].get("netns_mount")
                seen[ns] = ns in live and (ident is None or self._same_namespace(ns, ident, mount))
                if not seen[ns]:
                    gone = "is gone" if ns not in live else "was deleted and made again"
                    out.append(
                        {
                            "severity": "medium",
                            "kind": "stale-endpoint",
                            "subject": ns,
                            "detail": f"the namespace of its endpoint(s) {gone}; their "
                            "addresses and ports stay taken until `hostnet gc`",
                        }
                    )
        return out

    def _missing(self, host: Snapshot, live: set[str]) -> list[dict[str, str]]:
        """hostnet's own objects that are gone from the host (deleted by hand, or a
        firewall service that flushed the ruleset): what they did is not done."""
        out: list[dict[str, str]] = []
        pending = set(self.store.read(lambda tx: tx.to_revive(self.host_key)))
        names = host.link_names()
        bridges = []
        macvlans: dict[str, str] = {}
        endpoints = self.store.read(lambda tx: tx.endpoints())
        for net in self.store.read(lambda tx: tx.networks(self.host_key)):
            if net["state"] != "active" or net["id"] in pending:
                continue
            if net["driver"] == "bridge":
                bridges.append(net)
            parent = net["data"].get("parent")
            own = "private_parent" in net["data"]  # (one of its host links, seen below)
            if net["driver"] == "macvlan":
                macvlans[net["id"]] = net["name"]
                if parent and not own and parent not in names:
                    shim = " and its host shim" if net["data"].get("shim") else ""
                    out.append(
                        {
                            "severity": "high",
                            "kind": "missing-link",
                            "subject": net["name"],
                            "detail": f"its parent {parent} is gone from the host "
                            "(deleted, renamed or moved?): no workload can connect, and a "
                            f"parent deleted took its endpoints' links{shim} with it; make "
                            "the parent again (then `hostnet gc`, and reconnect the "
                            "endpoints reported below), or delete the network",
                        }
                    )
                    continue
                found = host.link(parent) if parent and not own else None
                if found is not None and not found.up:
                    out.append(
                        {
                            "severity": "medium",
                            "kind": "parent-down",
                            "subject": net["name"],
                            "detail": f"its parent {parent} is down: its endpoints are cut "
                            "off until it is up again",
                        }
                    )
                damage = _shim_damage(net, host, endpoints)
                if damage is not None:
                    out.append(
                        {
                            "severity": "high",
                            "kind": "missing-link",
                            "subject": net["name"],
                            "detail": f"{damage}: the host cannot reach the network's "
                            "endpoints; `hostnet gc` makes it again (unless the parent "
                            "cannot take it now: an MTU lowered under the network's, a "
                            "bridge port; gc says so)",
                        }
                    )
            for link in _host_links(net["data"]):
                if link not in names and link != net["data"].get("shim"):
                    out.append(
                        {
                            "severity": "high",
                            "kind": "missing-link",
                            "subject": net["name"],
                            "detail": f"its {link} is gone from the host (deleted by hand?): "
                            "its endpoints are cut off; delete the network (force) and "
                            "create it again",
                        }
                    )
        by_network = {n["id"]: n["name"] for n in bridges}
        for ep in endpoints:
            if ep["state"] != "active" or ep["ns"] not in live:
                continue
            if ep["network"] in by_network:
                veth = f"veth{ep['id'][:7]}"
                if veth not in names:
                    out.append(
                        {
                            "severity": "high",
                            "kind": "missing-link",
                            "subject": ep["workload"],
                            "detail": f"its endpoint on {by_network[ep['network']]!r} lost "
                            f"its {veth}: disconnect and connect it again",
                        }
                    )
            elif ep["network"] in macvlans and not self._macvlan_alive(ep):
                out.append(
                    {
                        "severity": "high",
                        "kind": "missing-link",
                        "subject": ep["workload"],
                        "detail": f"its endpoint on {macvlans[ep['network']]!r} lost its "
                        f"{ep['data']['ifname']} (its parent deleted or made again?): "
                        "disconnect and connect it again",
                    }
                )
        if self.store.read(lambda tx: tx.shared(self.host_key, "nft:bridge")) is None:
            return out
        base, nets = self.store.read(self._outdated_firewall)
        names_of = {n["id"]: n["name"] for n in bridges}
        for subject in (["hostnet's tables"] if base is not None else []) + [
            names_of.get(i, i[:12]) for i in nets
        ]:
            out.append(
                {
                    "severity": "high",
                    "kind": "outdated-firewall",
                    "subject": subject,
                    "detail": "its firewall rules were made by an older hostnet and lack "
                    "rules this one makes (such as the guard against forged packets to "
                    "ports published on 127.0.0.1, CVE-2020-8558): `hostnet gc` rebuilds "
                    "them as this version makes them",
                }
            )
        for subject, what in self._firewall_damage(bridges)[1]:
            if base is not None and subject.endswith(f" {fw.TABLE}") and "chain" in what:
                continue  # (a base chain an older hostnet did not make: said above)
            out.append(
                {
                    "severity": "high",
                    "kind": "missing-firewall",
                    "subject": subject,
                    "detail": f"hostnet's firewall is not as recorded: {what} (an `nft flush "
                    "ruleset`, a firewall service restarted?); bridge networks may have no "
                    "isolation, NAT or published ports: `hostnet gc` rebuilds it",
                }
            )
        return out

    def _ipv6_left_on(self) -> list[dict[str, str]]:
        """Endpoints of IPv4-only networks that an older hostnet made with IPv6 on (as
        their recorded plan says): they take addresses and routes from any router
        advertisement (CVE-2024-32473), which endpoints made since do not."""
        nets = {
            n["id"]: n
            for n in self.store.read(lambda tx: tx.networks(self.host_key))
            if n["state"] == "active"
            and n["driver"] in ("bridge", "macvlan")
            and not NetworkSpec.from_json(n["spec"]).enable_ipv6
        }
        out = []
        parents: dict[str, int] = {}  # a macvlan's MTU when it follows its parent's

        def mtu(op: AddLink) -> int:
            if op.mtu is not None or op.parent is None:
                return op.mtu or IPV6_MIN_MTU
            if not parents:
                host = self.backend.observe(self.host_ns, firewall=False, addresses=False)
                parents.update({link.name: link.mtu or 0 for link in host.links})
            return parents.get(op.parent, IPV6_MIN_MTU)

        for ep in self.store.read(lambda tx: tx.endpoints()):
            if ep["network"] not in nets or ep["state"] != "active" or ep["ns"] is None:
                continue
            if any(
                isinstance(op, AddLink)
                and op.kind in ("veth", "macvlan")
                and op.ipv6
                and mtu(op) >= IPV6_MIN_MTU
                for op in plan_from_json(ep["applied"])
            ):
                out.append(
                    {
                        "severity": "medium",
                        "kind": "ipv6-on",
                        "subject": ep["workload"],
                        "detail": f"its endpoint on {nets[ep['network']]['name']!r} was made "
                        "by an older hostnet with IPv6 on, on an IPv4-only network: it takes "
                        "addresses and routes from router advertisements (CVE-2024-32473); "
                        "disconnect and connect it again",
                    }
                )
        return out

    def _leaks(self, host: Snapshot) -> list[dict[str, str]]:
        """Objects in the host namespace that look like hostnet's but that the store
        does not know: left behind by a crash without journal, another state directory,
        or someone else."""
        known: set[str] = set()
        for net in self.store.read(lambda tx: tx.networks(self.host_key)):
            known.update(_host_links(net["data"]))
        for ep in self.store.read(lambda tx: tx.endpoints()):
            known.add(f"veth{ep['id'][:7]}")
        out = []
        by_name = {link.name: link for link in host.links}
        for link in host.links:
            if link.name not in known and _made_by_hostnet(link, by_name):
                out.append(
                    {
                        "severity": "medium",
                        "kind": "leaked-link",
                        "subject": link.name,
                        "detail": f"a {link.kind} in the host namespace that no hostnet "
                        "network or endpoint of this state directory owns (if it is no "
                        f"other's: `ip{self._ip_n()} link del {link.name}`)",
                    }
                )
        recorded = self.store.read(lambda tx: tx.shared(self.host_key, "nft:bridge"))
        for table in host.nft_tables:
            if table.endswith(" hostnet") and recorded is None:
                out.append(
                    {
                        "severity": "medium",
                        "kind": "leaked-table",
                        "subject": table,
                        "detail": "hostnet's nftables table exists but this state "
                        "directory did not make it (if no other state directory did: "
                        f"`{'ip netns exec ' + self.host_ns + ' ' if self.host_ns else ''}"
                        f"nft delete table {table}`)",
                    }
                )
        if recorded is not None:
            out.extend(self._foreign_drops(host.nft_tables))
        return out

    def _ip_n(self) -> str:
        return f" -n {self.host_ns}" if self.host_ns else ""

    def _foreign_drops(self, tables: Iterable[str]) -> list[dict[str, str]]:
        """Forward chains of other tables (iptables-nft, Docker) whose policy drops:
        an accept in hostnet's table cannot override them, so bridge networks lose
        outbound traffic and ports published to other hosts."""
        out = []
        for table in tables:
            if table.endswith(" hostnet") or table.split(" ")[0] not in ("ip", "ip6", "inet"):
                continue
            listing = self.backend.nft_list(self.host_ns, table) or {"chains": {}}
            for name, chain in listing["chains"].items():
                if chain.get("hook") == "forward" and chain.get("policy") == "drop":
                    out.append(
                        {
                            "severity": "medium",
                            "kind": "foreign-forward-drop",
                            "subject": f"{table} {name}",
                            "detail": "drops forwarded packets by default (Docker sets "
                            "this): bridge networks cannot reach beyond the host and ports "
                            "published to other hosts do not answer; accept hostnet's "
                            "bridges there (e.g. in DOCKER-USER)",
                        }
                    )
        return out

    def gc(self) -> dict[str, Any]:
        """Finish or roll back work of dead processes, then forget records of namespaces
        that no longer exist (tearing down what is left of their endpoints)."""
        recovered = self.executor.recover()
        remade = self._after_host_restart()  # one left open across a restart of its host
        self._repair_defaults()
        restored = self._restore_firewall()
        repaired = self._repair_shims()
        with self.store.transaction() as tx:
            tx.forget_orphan_cursors()  # (what an older hostnet left)
        # records first, then the kernel: a namespace made (and recorded) in between is
        # then listed as live, never taken for a stale one
        records = self.store.read(lambda tx: tx.namespaces())
        rows = self.store.read(lambda tx: tx.endpoints())
        live = set(self.backend.namespaces())
        stale: list[str] = []  # added to by the transactions that forget something

        same: dict[tuple[str, str, str | None], bool] = {}  # asked once per namespace

        def unchanged(name: str, ident: str, mount: str | None) -> bool:
            key = (name, ident, mount)
            if key not in same:
                same[key] = self._same_namespace(name, ident, mount)
            return same[key]

        for rec in records:
            if rec["state"] != "active":
                continue
            if rec["name"] in live and not self.store.read(partial(self._replaced, record=rec)):
                continue  # the namespace recorded (or no telling)
            if self._forget_namespace(rec):
                stale.append(rec["name"])
        for row in rows:
            ns = row["ns"]
            if ns is None or row["state"] != "active":
                continue
            recorded, mount = row["data"].get("netns"), row["data"].get("netns_mount")
            if ns in live and (recorded is None or unchanged(ns, recorded, mount)):
                continue

            def forget_endpoint(
                tx: Tx,
                row: dict[str, Any] = row,
                ns: str = ns,
                recorded: str | None = recorded,
                mount: str | None = mount,
            ) -> tuple[Plan, list[str]]:
                found = [e for e in self._endpoint_rows(tx, ns=ns) if e["id"] == row["id"]]
                if not found or found[0]["state"] != "active":
                    return (), []  # disconnected meanwhile
                if self.backend.has_namespace(ns) and (
                    recorded is None or self._same_namespace(ns, recorded, mount)
                ):
                    return (), []  # its namespace is back
                stale.append(row["workload"])
                tx.mark_deleting("endpoints", "id", [row["id"]])
                # what was inside its namespace went with it
                return tuple(op for op in self._undo(found) if op.ns != ns), [row["id"]]

            self.executor.teardown(
                forget_endpoint, what=f"forget stale endpoint of {row['workload']!r}"
            )
        abandoned, kept = self._gc_abandoned()
        return {
            "recovered": [
                {
                    "journal": r.journal,
                    "kind": r.kind,
                    "ops": r.ops,
                    "errors": list(r.errors),
                    "skipped": r.skipped,
                    "names": list(r.names),
                }
                for r in recovered
            ],
            "stale": stale,
            "abandoned": abandoned,
            "kept": kept,
            "remade": remade,
            "restored": restored,
            "shims": repaired,
        }

    def _macvlan_alive(self, ep: dict[str, Any]) -> bool:
        """Whether a macvlan endpoint's link is still in its namespace (it dies with its
        parent, while the namespace lives on)."""
        try:
            snap = self.backend.observe(ep["ns"], firewall=False, addresses=False)
        except errors.NamespaceNotFound:
            return True  # (gone since: a stale record, reported as such)
        finally:
            self._release(ep["ns"])
        link = snap.link(ep["data"]["ifname"])
        return link is not None and link.kind in ("macvlan", "macvtap")

    def _repair_shims(self) -> list[str]:
        """Make the host shims of macvlan networks again where one is gone, down, or
        lost its address or a route (the parent was deleted and made again, an admin or
        a network manager set it down or flushed it), as recorded: the shim's ops in the
        network's plan and the routes in its endpoints'. Not while other work is in
        flight (a connect may be adding a route through the shim). Returns the networks
        whose shim was made again; one that cannot be (the parent's MTU lowered under
        the network's, the parent made a bridge port) is warned about, and gc goes on."""
        if self.host_ns is not None and not self.backend.has_namespace(self.host_ns):
            return []  # the host itself is gone (a Controller left open)

        def damaged(tx: Tx) -> list[dict[str, Any]]:
            nets = [
                n
                for n in tx.networks(self.host_key)
                if n["driver"] == "macvlan" and n["state"] == "active" and n["data"].get("shim")
            ]
            if not nets or tx.to_revive(self.host_key):
                return []
            host = self._observe(self.host_ns)
            endpoints = tx.endpoints()
            return [n for n in nets if _shim_damage(n, host, endpoints) is not None]

        broken = self.store.read(damaged)
        if not broken:
            return []
        if not self.store.read(self._quiet):
            warnings.warn(
                "a macvlan network's host shim is not as recorded, and other work is in "
                "progress: not made again; run `hostnet gc` again in a moment",
                errors.HostnetWarning,
                stacklevel=3,
            )
            return []
        repaired: list[str] = []
        for net in broken:

            def prepare(tx: Tx, id: str = net["id"]) -> Plan:
                now = [n for n in damaged(tx) if n["id"] == id]
                if not now or not self._quiet(tx):
                    return ()  # work began meanwhile, or another process repaired it
                shim = now[0]["data"]["shim"]
                ops = _shim_ops(now[0], tx.endpoints())
                made = [op for op in ops if isinstance(op, AddLink)]
                if not made:
                    return ()
                repaired.append(now[0]["name"])
                # (a shim left in place, down or without its routes, goes first)
                there = self.backend.observe(self.host_ns, firewall=False).link(shim)
                gone = (
                    ()
                    if there is None
                    else (DelLink(ns=self.host_ns, name=shim, recreate=made[0], same_mac=True),)
                )
                return (*gone, *ops)

            try:
                self.executor.apply(prepare, owner=f"{REBUILD_OWNER}shim:{net['id']}")
            except errors.HostnetError as exc:  # (rolled back: as it was)
                if repaired and repaired[-1] == net["name"]:
                    repaired.pop()
                warnings.warn(
                    f"could not make the host shim of macvlan network {net['name']!r} "
                    f"again: {exc}",
                    errors.HostnetWarning,
                    stacklevel=3,
                )
        return repaired

    def _quiet(self, tx: Tx) -> bool:
        """No journal open of a live process (no work in flight, or one that failed)."""
        return not any(
            process_started(j["pid"]) == j["started"] and (not j["failed"] or j["retrying"])
            for j in tx.journals()
        )

    def _firewall_damage(
        self, bridges: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """hostnet's nftables tables present in the host, and what is wrong with them
        as (subject, what): a table gone, its base chains emptied (`nft flush table`),
        the chains of one of ``bridges`` (network records) gone."""
        tables = [f"inet {fw.TABLE}", f"bridge {fw.TABLE}"]
        listings = {t: self.backend.nft_list(self.host_ns, t) for t in tables}
        present = [t for t in tables if listings[t] is not None]
        damage = [(t, "the table is gone") for t in tables if listings[t] is None]
        chains: dict[str, Any] = {}
        for table in present:
            found = listings[table]
            assert found is not None
            chains.update(found["chains"])
            emptied = [
                n for n in fw.BASE_CHAINS[table] if not found["chains"].get(n, {}).get("rules")
            ]
            if emptied:  # every base chain of hostnet's has rules
                damage.append((table, f"its chain(s) {', '.join(sorted(emptied))} are empty"))
        mine = {c for net in bridges for c in fw.chain_names(net["id"])}
        foreign = sorted(c for c in chains if c[:2] in ("n-", "i-") and c not in mine)
        if foreign:  # another state directory's networks: not this one's tables to rebuild
            what = (
                f"it holds chains of networks this state directory does not know "
                f"({', '.join(foreign[:4])}): another state directory manages this host's "
                "firewall now; gc does not rebuild it"
            )
            return present, [(FOREIGN, what)]
        if not damage:  # (a table gone takes its networks' chains with it)
            for net in bridges:
                lost = [c for c in fw.chain_names(net["id"]) if not chains.get(c, {}).get("rules")]
                if lost:
                    damage.append(
                        (net["name"], f"its chain(s) {', '.join(lost)} are gone or empty")
                    )
        return present, damage

    def _outdated_firewall(self, tx: Tx) -> tuple[NftBatch | None, dict[str, NftBatch]]:
        """What of hostnet's firewall an older hostnet made, and differs from what this
        one would make (rules added since: CVE-2020-8558's guard, the mark chain,
        published ports of other networks...): the shared tables' batch as this version
        makes it (None: current), and each active bridge network's, by id."""
        shared = tx.shared(self.host_key, "nft:bridge")
        if shared is None:
            return None, {}
        now = base_firewall(self.host_ns)
        base = None if _nft_ops(shared["applied"], self.host_ns) == [now] else now
        nets: dict[str, NftBatch] = {}
        for net in tx.networks(self.host_key):
            if net["driver"] != "bridge" or net["state"] != "active":
                continue
            now = network_firewall(self._network_info(net, self.host_ns))
            if _nft_ops(net["applied"], self.host_ns) != [now]:
                nets[net["id"]] = now
        return base, nets

    def _restore_firewall(self) -> list[str]:
        """Rebuild hostnet's nftables tables when they are not as recorded (gone, flushed,
        chains deleted: an `nft flush ruleset`, a firewall service restarted; isolation,
        NAT and published ports stopped working), as `podman network reload` does: what
        is left of them is deleted, then the shared setup, each bridge network's and
        each of its endpoints' firewall work, as recorded, in the order it was done, all
        in one nftables transaction. Returns the tables rebuilt.

        Not while any journal is open (anyone's work in flight, or left to gc): the
        first network's create and the last one's delete have the record without the
        tables for a moment, a connect's elements may be on their way, and a restarted
        host's networks are being made again (nor then, or for networks still to be
        made again)."""

        def quiet(tx: Tx) -> bool:
            # (a journal that failed, or whose process died, changes nothing any more;
            # the ones alive block the rebuild, which blocks new ones: Executor)
            shared = tx.shared(self.host_key, "nft:bridge")
            return (
                shared is not None
                and self._quiet(tx)
                and not tx.to_revive(self.host_key)
                and tx.network_state(shared["owner"]) == "active"
            )

        def bridges(tx: Tx) -> list[dict[str, Any]]:
            return sorted(
                (
                    n
                    for n in tx.networks(self.host_key)
                    if n["driver"] == "bridge" and n["state"] == "active"
                ),
                key=lambda n: (n["at"], n["id"]),
            )

        if self.host_ns is not None and not self.backend.has_namespace(self.host_ns):
            return []  # the host itself is gone (a Controller left open)
        if self.store.read(lambda tx: tx.shared(self.host_key, "nft:bridge")) is None:
            return []  # no bridge network, no firewall of hostnet's
        damage = self._firewall_damage(self.store.read(bridges))[1]
        base, nets = self.store.read(self._outdated_firewall)
        if not damage and base is None and not nets:
            return []
        if damage and damage[0][0] == FOREIGN:
            warnings.warn(damage[0][1], errors.HostnetWarning, stacklevel=3)
            return []
        if not self.store.read(quiet):
            warnings.warn(
                "hostnet's firewall is not as recorded (or an older hostnet made it), and "
                "other work is in progress "
                "(or a restarted host's networks wait to be made again): not rebuilt; "
                "run `hostnet gc` again in a moment",
                errors.HostnetWarning,
                stacklevel=3,
            )
            return []
        rebuilt: list[str] = []
        upgraded: list[tuple[NftBatch | None, dict[str, NftBatch]]] = []

        def prepare(tx: Tx) -> Plan:
            nets = bridges(tx)
            present, damage = self._firewall_damage(nets)
            base, newer = self._outdated_firewall(tx)
            if (
                not quiet(tx)
                or not (damage or base is not None or newer)
                or (damage and damage[0][0] == FOREIGN)
            ):
                return ()  # work began meanwhile, or another process rebuilt them
            upgraded[:] = [(base, newer)]
            shared = tx.shared(self.host_key, "nft:bridge")
            assert shared is not None
            # what is left goes first; no undo: a rebuild cut short is not rolled back
            # (what it made is what the store describes), the next gc finishes it
            drop = [
                {"delete": {"table": {"family": t.split()[0], "name": fw.TABLE}}} for t in present
            ]
            ops: list[Op] = [
                NftBatch(ns=self.host_ns, commands=fw.batch(drop), undo="")
            ] if drop else []  # fmt: skip
            # what an older hostnet made is made as this one makes it (an upgrade), the
            # rest as recorded
            made = [[base] if base is not None else _nft_ops(shared["applied"], self.host_ns)]
            made += [
                [newer[n["id"]]] if n["id"] in newer else _nft_ops(n["applied"], self.host_ns)
                for n in nets
            ]
            ids = {n["id"] for n in nets}
            made += [
                _nft_ops(e["applied"], self.host_ns)
                for e in tx.endpoints()
                if e["network"] in ids and e["state"] == "active"
            ]
            ops += [attrs.evolve(op, undo="") for batch in made for op in batch]
            rebuilt[:] = [f"inet {fw.TABLE}", f"bridge {fw.TABLE}"]
            forget: tuple[Op, ...] = ()
            if base is not None:
                # Flows to ports published on loopback that the older rules let in from
                # outside (CVE-2020-8558) keep their NAT while their sender keeps them
                # alive; UDP and SCTP ones are forgotten (a local client's next packet
                # is NATed again). TCP connections are left to end (see decisions.md).
                looped = {
                    f"{proto}/{port}"
                    for e in tx.endpoints()
                    if e["network"] in ids and e["state"] == "active"
                    for proto, host_ip, port, _ in e["data"].get("ports", ())
                    if proto in ("udp", "sctp") and host_ip.startswith("127.")
                }
                if looped:
                    forget = (ForgetFlows(ns=self.host_ns, ports=tuple(sorted(looped))),)
            return (*merge_nft(tuple(ops)), *forget)

        def commit(tx: Tx, plan: Plan) -> None:
            # the upgraded batches are the records from now on: what gc rebuilds, and
            # what deleting the last network (or this one) undoes
            if not plan or not upgraded:
                return
            base, newer = upgraded[0]
            if base is not None:
                tx.set_shared_applied(self.host_key, "nft:bridge", plan_to_json((base,)))
            for net in bridges(tx):
                if net["id"] in newer:
                    applied = _with_nft(net["applied"], newer[net["id"]], self.host_ns)
                    tx.set_network_applied(net["id"], plan_to_json(applied))

        self.executor.apply(prepare, owner=f"{REBUILD_OWNER}{self.host_key}", commit=commit)
        return rebuilt

    def _refuse_leased(self, name: str) -> None:
        """A temporary namespace (``create_namespace(temporary=True)``) is its process's
        to delete while that process lives (another's `hostnet run`, whose command
        would lose its network under it)."""
        for lease in self.store.read(lambda tx: tx.leases()):
            pid = lease["pid"]
            if lease["owner"] != f"ns:{name}" or pid == self.executor.pid:
                continue  # (another namespace's, a host-network workload's, or ours)
            if process_started(pid) == lease["started"]:
                raise errors.ConflictError(
                    f"namespace {name!r} is the temporary namespace of process {pid} (a "
                    "`hostnet run`?), which is still running and deletes it when it is "
                    "done; delete it now with force=True (CLI: --force) if you mean it"
                )
            left = self.backend.processes(name) if self.backend.has_namespace(name) else ()
            if left:  # what its command left behind: kept for them, as gc keeps it
                raise errors.ConflictError(
                    f"namespace {name!r} was process {pid}'s (a `hostnet run`?), and "
                    f"processes it left run there still (pid {', '.join(map(str, left))}); "
                    "`hostnet gc` deletes it once they end, force=True (CLI: --force) now"
                )

    def _gc_host_lease(self, lease: dict[str, Any]) -> bool:
        """Detach the host-network workload of a dead process's lease (``connect(...,
        temporary=True)``: a ``hostnet run --network host`` killed outright). Its
        command may still run in the host namespace: the record goes, not the command
        (hostnet never kills processes it finds). Whether it did so."""
        owner, name = lease["owner"], lease["name"]
        rows = self.store.read(lambda tx: tx.endpoints(workload=name))
        mine = [r for r in rows if r["id"] == owner and r["ns"] is None and r["state"] == "active"]
        if not mine:
            return False
        try:
            self.network(mine[0]["network"]).disconnect(name)  # (by its id)
        except errors.NotFoundError:
            return False  # detached meanwhile
        except errors.HostnetError as exc:
            warnings.warn(
                f"abandoned host-network workload {name!r} not detached: {exc}",
                errors.HostnetWarning,
                stacklevel=4,
            )
            return False
        return True

    def _gc_abandoned(self) -> tuple[list[str], dict[str, list[int]]]:
        """Delete the temporary namespaces (``create_namespace(temporary=True)``) of
        processes that died, unless processes still run inside (a command that
        ``hostnet run`` started outlives a SIGKILL of hostnet): those are returned with
        their pids, and a later gc deletes them."""
        abandoned: list[str] = []
        kept: dict[str, list[int]] = {}
        for lease in self.store.read(lambda tx: tx.leases()):
            if process_started(lease["pid"]) == lease["started"]:
                continue
            name: str = lease["name"]

            def read(tx: Tx, name: str = name) -> dict[str, Any] | None:
                return tx.namespace(name)

            if lease["owner"] != f"ns:{name}":  # a host-network workload's (by its id)
                if self._gc_host_lease(lease):
                    abandoned.append(name)
                continue
            record = self.store.read(read)
            if record is None or record["owner"] != lease["owner"] or record["state"] != "active":
                continue  # being deleted, or a namespace of that name made since
            try:
                pids = self.backend.processes(name) if self.backend.has_namespace(name) else ()
                if pids:
                    kept[name] = list(pids)
                    continue
                self.delete_namespace(name)
            except errors.NotFoundError:  # deleted meanwhile, by its owner or another gc
                continue
            except errors.HostnetError as exc:  # busy, or it failed: the next gc tries again
                warnings.warn(
                    f"abandoned namespace {name!r} not deleted: {exc}",
                    errors.HostnetWarning,
                    stacklevel=3,
                )
                continue
            abandoned.append(name)
        return abandoned, kept


def _made_by_hostnet(link: Link, links: Mapping[str, Link]) -> bool:
    """Whether a host link has the marks of hostnet's own, not just its kind of name
    (Docker names its bridges br-<12 hex> and its veths veth<7 hex> too): a bridge with
    the MAC hostnet gives it (from the network id in its name), a veth in one of
    hostnet's link groups or a port of such a bridge, a shim (hn-...)."""
    name = link.name
    if name.startswith(("hn-", "hnp-", "hnq-")):  # shims, internal macvlan parents
        return True
    if name.startswith("br-") and link.kind == "bridge":
        hexid = name[3:]
        return len(hexid) >= 10 and link.mac == bridge_mac(hexid)
    if name.startswith("veth") and link.kind == "veth":
        if link.group is not None and link.group >= LINK_GROUP_BASE:
            return True
        master = links.get(link.master) if link.master else None
        return master is not None and _made_by_hostnet(master, links)
    return False


#: Bit of CAP_NET_ADMIN in /proc/<pid>/status's capability masks.
CAP_NET_ADMIN = 12


#: ``_firewall_damage``'s subject for tables that hold another state directory's networks
FOREIGN = "hostnet's tables"


def _nft_ops(applied: Any, ns: str | None) -> list[NftBatch]:
    """The nftables batches of a recorded plan that act in namespace ``ns``."""
    return [op for op in plan_from_json(applied) if isinstance(op, NftBatch) and op.ns == ns]


def _shim_ops(net: dict[str, Any], endpoints: Sequence[dict[str, Any]]) -> list[Op]:
    """What made a macvlan network's host shim, as recorded: the shim, its address and
    its routes in the network's plan, and the routes its endpoints' plans added."""
    shim = net["data"].get("shim")
    plans = [net["applied"]] + [
        e["applied"] for e in endpoints if e["network"] == net["id"] and e["state"] == "active"
    ]
    return [
        op
        for plan in plans
        for op in plan_from_json(plan)
        if (isinstance(op, AddLink) and op.name == shim)
        or (isinstance(op, (AddAddress, AddRoute)) and op.ifname == shim)
    ]


def _shim_damage(
    net: dict[str, Any], host: Snapshot, endpoints: Sequence[dict[str, Any]]
) -> str | None:
    """What is wrong with a macvlan network's host shim in ``host`` (None: nothing, no
    shim, or no parent to make one on)."""
    shim, parent = net["data"].get("shim"), net["data"].get("parent")
    if not shim or not parent or host.link(parent) is None:
        return None
    link = host.link(shim)
    if link is None:
        return f"its host shim {shim} is gone"
    if not link.up:
        return f"its host shim {shim} is down"
    addresses = set(host.addresses_of(shim))
    routes = {r.dst for r in host.routes if r.ifname == shim}
    for op in _shim_ops(net, endpoints):
        if isinstance(op, AddAddress) and op.address not in addresses:
            return f"its host shim {shim} lost its address {op.address}"
        if isinstance(op, AddRoute) and op.dst not in routes:
            return f"its host shim {shim} lost its route to {op.dst}"
    return None


def _with_nft(applied: Any, batch: NftBatch, ns: str | None) -> Plan:
    """A recorded plan with its nftables batches in ``ns`` replaced by ``batch``, where
    the first of them was (so that undoing it keeps its order)."""
    out: list[Op] = []
    for op in plan_from_json(applied):
        if isinstance(op, NftBatch) and op.ns == ns:
            if batch not in out:
                out.append(batch)
        else:
            out.append(op)
    return tuple(out)


def _has_net_admin(pid: int) -> bool:
    """Whether process ``pid`` has CAP_NET_ADMIN in its effective set, in hostnet's own
    user namespace: one it holds in a user namespace of its own (`unshare -U -r`) does
    not reach network namespaces that namespace does not own."""
    try:
        if os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"):
            return False
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def rfc3339(at: float) -> str:
    """A store timestamp as Docker writes times in inspect: Go's RFC 3339 with
    nanoseconds, trailing zeros of the fraction dropped (none: no fraction), in UTC.
    The fraction is the float's shortest decimal form, so that no binary noise shows
    up in its last digits (1700000000.123456 is .123456, not .123456001)."""
    text = repr(float(at))  # (what time.time() gave, digit for digit)
    if "e" in text or "." not in text:
        text = f"{at:.9f}"
    whole, _, fraction = text.partition(".")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(whole)))
    fraction = fraction[:9].rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


class _Taken(Exception):
    """A network another process is making again after a host restart (or has made)."""


def _network_of(tx: Tx, *, host: str, id: str) -> dict[str, Any] | None:
    return tx.network(host, id)


def _ident_of(tx: Tx, *, owner: str) -> str | None:
    return tx.ident(owner)


def _shared_keys(record: dict[str, Any]) -> tuple[str, ...]:
    """The keys of host-wide setup network ``record`` uses (``Driver.shared_keys``): the
    setup is shared by key, whatever the driver, and goes with the last user."""
    drv = recorded_driver(record["driver"])()
    with driver_call(drv, "shared_keys"):
        return tuple(drv.shared_keys(NetworkSpec.from_json(record["spec"])))


def _refuse_host_in_use(tx: Tx, name: str) -> None:
    """Namespace ``name`` may not go while it is the host of networks (of a
    ``Controller(host=name)`` on this state directory) or of host-network workloads:
    their bridges, firewall and ports would go with it while their records stayed,
    with nothing left to tear them down."""
    users = [
        r["name"]
        for r in tx.networks(host=name)
        if not recorded_driver(r["driver"]).builtin or tx.endpoints(network=r["id"])
    ]
    if users:
        raise errors.ConflictError(
            f"namespace {name!r} is the host of network(s) {', '.join(map(repr, users))}: "
            f"delete them (and detach their workloads) with Controller(host={name!r}) first"
        )


def _port_list(key: str, given: object) -> tuple[str, ...]:
    """``publish=`` or ``ports=`` as a tuple of strings (None: none), or InvalidOption."""
    if given is None:
        return ()
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise errors.InvalidOption(key, given, "give a list of port strings")
    items = tuple(given)
    for item in items:
        if not isinstance(item, str):
            raise errors.InvalidOption(key, item, "each port must be a string such as '8080:80'")
    return items


def _workload_name(workload: Namespace | str) -> str:
    return workload.name if isinstance(workload, Namespace) else workload


def _network_name(network: Network | str) -> str:
    return network.name if isinstance(network, Network) else network


def random_mac() -> str:
    """A random unicast, locally administered MAC address."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def _check_addressing(
    driver: Driver, network: NetworkInfo, *, ip: object, ip6: object, mac: object
) -> str | None:
    """Refuse, before anything is reserved or observed, addresses a connect asks for that
    the network cannot give; returns the MAC asked for, normalised."""
    for key, given in (("ip", ip), ("ip6", ip6)):
        if given is not None and not isinstance(given, str):
            raise errors.InvalidOption(key, given, "an IP address as a string")
    if not driver.allocates_addresses:
        for key, given in (("ip", ip), ("ip6", ip6), ("mac", mac)):
            if given:
                raise errors.InvalidOption(
                    key, given, f"the {driver.name} driver assigns no addresses"
                )
        return None
    checked = _check_mac(mac)
    if checked is not None and not driver.wants_mac(network.spec):
        # the kernel would ignore it, and inspect would show a MAC the link has not
        raise errors.InvalidOption(
            "mac",
            mac,
            f"endpoints of network {network.name!r} take no MAC address of their own "
            "(a passthru macvlan keeps its parent's)",
        )
    return checked


def _unmapped(ip: str) -> str:
    """An IPv4-mapped IPv6 address ("::ffff:10.0.0.5") as the IPv4 address it is (as
    Docker reads one); anything else as given."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # IPAM says what is wrong with it
    mapped = parsed.ipv4_mapped if parsed.version == 6 else None
    return str(mapped) if mapped is not None else ip


def _check_mac(mac: object) -> str | None:
    if mac is None:
        return None
    if not isinstance(mac, str):
        raise errors.InvalidOption("mac", mac, "a MAC address as a string")
    parts = mac.lower().split(":")
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts
    ):
        raise errors.InvalidAddress(mac, "not a MAC address like 02:42:ac:11:00:02")
    if int(parts[0], 16) & 1:
        raise errors.InvalidAddress(mac, "a multicast MAC cannot be an interface address")
    if parts == ["00"] * 6:  # the kernel refuses it (EADDRNOTAVAIL)
        raise errors.InvalidAddress(mac, "the all-zero MAC cannot be an interface address")
    return ":".join(parts)


def _subnet_configs(
    subnet: str | Sequence[str] | None,
    gateway: str | Sequence[str | None] | None,
    ip_range: str | Sequence[str | None] | None,
    aux: Mapping[str, str] | None,
) -> tuple[SubnetConfig, ...]:
    def address(key: str, given: object, item: object) -> None:
        if not isinstance(item, str):
            raise errors.InvalidOption(key, given, "a string, or a list of strings")
        if "%" in item:
            # ipaddress takes a zone ("fd00::1%eth0"); netlink and nftables have no
            # place for one. Checked on input only: stored specs stay readable.
            raise errors.InvalidAddress(item, "an address of a network takes no zone (%...)")

    def as_list(key: str, value: object, *, holes: bool) -> list[str | None]:
        # holes: None in a list means "the default for this subnet" (gateway, ip range)
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if isinstance(items, bytes) or not isinstance(items, Sequence):
            raise errors.InvalidOption(key, value, "a string, or a list of strings")
        for item in items:
            if not (holes and item is None):
                address(key, value, item)
        return list(items)

    subnets = as_list("subnet", subnet, holes=False)
    gateways = as_list("gateway", gateway, holes=True)
    ranges = as_list("ip_range", ip_range, holes=True)
    if aux is not None and not isinstance(aux, Mapping):
        raise errors.InvalidOption("aux_addresses", aux, "a dict of name -> address strings")
    for name, value in (aux or {}).items():
        if not isinstance(name, str):
            raise errors.InvalidOption("aux_addresses", aux, "a dict of name -> address strings")
        address("aux_addresses", aux, value)
    families = [_family(str(sub)) for sub in subnets]
    if len(families) != len(set(families)) and None not in families:
        raise errors.InvalidOption(
            "subnet", subnet, "one IPv4 and one IPv6 subnet at most (as Docker's drivers take)"
        )
    # Each gateway and ip range goes to the subnet that contains it, whatever the order
    # they were given in (as the docker CLI does); a subnet takes one of each.
    picked: dict[str, dict[int, str]] = {"gateway": {}, "ip_range": {}}
    for key, values in (("gateway", gateways), ("ip_range", ranges)):
        given: object = gateway if key == "gateway" else ip_range
        for item in values:
            if item is None:
                continue
            if not subnets:
                raise errors.InvalidOption(key, given, "needs a subnet that contains it")
            try:
                if key == "gateway":
                    ipaddress.ip_address(item)
                else:
                    ipaddress.ip_network(item, strict=True)
            except ValueError:
                what = "gateway is not an IP address" if key == "gateway" else "not a subnet"
                raise errors.InvalidAddress(item, what) from None
            homes = [i for i, sub in enumerate(subnets) if _inside(item, str(sub))]
            if not homes:
                what = "gateway is not a host" if key == "gateway" else "ip range is not inside"
                raise errors.InvalidAddress(
                    item, f"{what} of any subnet given ({', '.join(map(str, subnets))})"
                )
            if homes[0] in picked[key]:
                raise errors.InvalidOption(
                    key, given, f"two for subnet {subnets[homes[0]]}: give one per subnet"
                )
            picked[key][homes[0]] = item
    out = []
    for i, sub in enumerate(subnets):
        assert sub is not None
        gw = picked["gateway"].get(i)
        rng = picked["ip_range"].get(i)
        mine = tuple(sorted((k, v) for k, v in (aux or {}).items() if _inside(v, str(sub))))
        out.append(SubnetConfig(subnet=sub, gateway=gw, ip_range=rng, aux=mine))
    stray = [k for k, v in (aux or {}).items() if not any(_inside(v, str(s)) for s in subnets)]
    if stray:
        raise errors.InvalidAddress(
            aux[stray[0]] if aux else stray[0], f"auxiliary address {stray[0]!r} is in no subnet"
        )
    return tuple(out)


def _family(subnet: str) -> int | None:
    """4 or 6, None if ``subnet`` is not one (its own checks say why, later)."""
    try:
        return ipaddress.ip_network(subnet, strict=False).version
    except ValueError:
        return None


def _inside(value: str, subnet: str) -> bool:
    """Whether an address or a network is inside ``subnet`` (False if either is not
    one: the subnet's own checks then say what is wrong)."""
    try:
        net = ipaddress.ip_network(subnet, strict=False)
        if "/" in value:
            inner = ipaddress.ip_network(value, strict=False)
            return inner.version == net.version and inner.subnet_of(net)  # type: ignore[arg-type]
        return ipaddress.ip_address(value) in net
    except ValueError:
        return False


def _mappings(
    specs: Sequence[PublishSpec], reserved: Sequence[Sequence[Reservation]]
) -> tuple[PortMapping, ...]:
    """Published ports from parsed ``-p`` specs and the host ports reserved for them."""
    out = []
    for spec, got in zip(specs, reserved, strict=False):
        ranged = spec.container_end > spec.container_start
        for offset, res in enumerate(got):
            out.append(
                PortMapping(
                    protocol=res.protocol,
                    host_ip=res.host_ip,
                    host_port=res.port,
                    container_port=spec.container_start + (offset if ranged else 0),
                )
            )
    return tuple(out)


def _endpoint_json(
    endpoint: EndpointInfo, reserved: Sequence[Reservation], plan: Plan
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ifname": endpoint.ifname,
        "mac": endpoint.mac,
        "addresses": list(endpoint.addresses),
        "gateways": list(endpoint.gateways),
        "ports": [[m.protocol, m.host_ip, m.host_port, m.container_port] for m in endpoint.ports],
        "reserved": [[r.protocol, r.host_ip, r.port] for r in reserved],
        "options": dict(endpoint.options),
    }
    if endpoint.static:
        data["static"] = dict(endpoint.static)
    # the default routes its plan adds in its namespace (the first network connected
    # keeps them), so a connect racing with this one does not add them again
    defaults = [
        op.dst
        for op in plan
        if isinstance(op, AddRoute) and op.ns == endpoint.ns and op.dst.endswith("/0")
    ]
    if defaults:
        data["defaults"] = defaults
    return data


def _host_links(data: dict[str, Any]) -> list[str]:
    """The host-side links a network's driver made for it (its bridge, its shim)."""
    links = [str(v) for k, v in data.items() if k in ("bridge", "shim", "private_parent") and v]
    if data.get("private_parent"):  # and its veth peer, hnq-<id>
        links.append("hnq-" + str(data["private_parent"])[4:])
    return links


def _drain_owner(network_id: str) -> str:
    """The journal owner of a ``disconnect_all`` of a network (owns no records)."""
    return f"drain:{network_id}"


def _being_deleted(name: str) -> errors.ConflictError:
    return errors.ConflictError(
        f"network {name!r} is being deleted (if that failed, `hostnet gc` retries it)"
    )


def _endpoint_from(row: dict[str, Any], network_name: str) -> Endpoint:
    data = row["data"]
    return Endpoint(
        id=row["id"],
        network=network_name,
        workload=row["workload"],
        ns=row["ns"],
        ifname=data.get("ifname"),
        mac=data.get("mac"),
        addresses=tuple(data.get("addresses", ())),
        gateways=tuple(data.get("gateways", ())),
        ports=tuple(
            PortMapping(protocol=p, host_ip=h, host_port=hp, container_port=cp)
            for p, h, hp, cp in data.get("ports", ())
        ),
        reserved=tuple(
            Reservation(protocol=p, host_ip=h, port=port)
            for p, h, port in data.get("reserved", ())
        ),
        static=tuple(sorted(data.get("static", {}).items())),
        asked=tuple(
            (key, host_ip, host_port)
            for key, host_ip, host_port in data.get("asked", as_asked(data.get("ports", ())))
        ),
    )


def _endpoint_info(ep: Endpoint) -> EndpointInfo:
    return EndpointInfo(
        id=ep.id,
        workload=ep.workload,
        ns=ep.ns,
        ifname=ep.ifname,
        mac=ep.mac,
        addresses=ep.addresses,
        gateways=ep.gateways,
        ports=ep.ports,
        held=ep.reserved,
        static=ep.static,
    )


__all__ = ["Controller", "new_id", "rfc3339"]
