"""Operations: the only things that change the kernel.

Invariants (the executor and both backends rely on them):

Rule 1. An Op is a frozen value naming the namespace it acts in (``ns``; None is the
        root namespace). It carries everything needed to apply it without looking
        anything up in hostnet's store.
Rule 2. Every Op knows its inverse, and ``op.inverse().inverse() == op``. Creating ops
        carry their own spec into the deleting inverse, so undoing an undo recreates the
        object exactly.
Rule 3. Ops that only *adopt* existing objects (``Adopt``) have a no-op inverse: hostnet
        deletes only what it created.
Rule 4. Ops serialise to plain JSON (``to_json``/``from_json``) so a plan can be journaled
        before it runs and finished or rolled back by another process after a crash.

A Plan is a tuple of Ops, applied in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeAlias

import attrs
from attrs import frozen

_REGISTRY: dict[str, type[Op]] = {}

#: In fields naming a second namespace (``peer_ns``, ``parent_ns``): "the op's own
#: namespace". None already means the root namespace, and "." is never a valid name.
SAME_NS = "."


@frozen(kw_only=True)
class Op:
    ns: str | None
    destructive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Journals and recorded plans name ops by class name: a second class of a name
        # (a plugin's subclass of AddRoute, called AddRoute) would make every recorded
        # AddRoute load as it. The backends apply only hostnet's own ops anyway.
        taken = _REGISTRY.get(cls.__name__)
        where = (cls.__module__, cls.__qualname__)
        if taken is not None and (taken.__module__, taken.__qualname__) != where:
            raise TypeError(
                f"an Op named {cls.__name__} exists already ({taken.__module__}); "
                "recorded plans name ops by class name: give this one another name"
            )
        _REGISTRY[cls.__name__] = cls

    def inverse(self) -> Op:
        raise NotImplementedError

    def describe(self) -> str:
        fields = ", ".join(
            f"{a.name}={getattr(self, a.name)!r}"
            for a in attrs.fields(type(self))
            if a.name != "ns"
            and getattr(self, a.name) != a.default
            and not isinstance(getattr(self, a.name), Op)
        )
        where = self.ns if self.ns is not None else "<root>"
        return f"[{where}] {type(self).__name__}({fields})"

    def __str__(self) -> str:
        return self.describe()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": type(self).__name__}
        for a in attrs.fields(type(self)):
            value = getattr(self, a.name)
            if isinstance(value, Op):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = [v.to_json() if isinstance(v, Op) else v for v in value]
            out[a.name] = value
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Op:
        data = dict(data)
        name = data.pop("op", None)
        cls = _REGISTRY.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"unknown op {name!r} (journal from another hostnet version?)")
        kwargs: dict[str, Any] = {}
        for a in attrs.fields(cls):
            if a.name not in data:
                continue
            value = data[a.name]
            if isinstance(value, dict) and "op" in value:
                value = Op.from_json(value)
            elif isinstance(value, list):
                value = tuple(
                    Op.from_json(v) if isinstance(v, dict) and "op" in v else v for v in value
                )
            kwargs[a.name] = value
        return cls(**kwargs)


Plan: TypeAlias = tuple[Op, ...]


def plan_to_json(plan: Plan) -> list[dict[str, Any]]:
    return [op.to_json() for op in plan]


def plan_from_json(data: list[dict[str, Any]]) -> Plan:
    return tuple(Op.from_json(d) for d in data)


def inverse_plan(plan: Plan) -> Plan:
    """The ops that undo ``plan``, in the order to apply them."""
    return tuple(op.inverse() for op in reversed(plan))


# -- namespaces -------------------------------------------------------------------------


@frozen(kw_only=True)
class CreateNamespace(Op):
    """Create the named namespace (bind-mounted under /run/netns) with ``lo`` up."""

    ns: str

    def inverse(self) -> Op:
        return DeleteNamespace(ns=self.ns)


#: ``DeleteNamespace.reserved`` for "only a name's empty file, never a namespace"
BARE = ""


def token_parts(token: str) -> tuple[str, str | None]:
    """A reservation token (``Backend.reserve_namespace``) as journaled: the file's
    part, which every version of hostnet reads, and the rest after a "/" (None: none),
    which versions before session 13 never wrote. The two are journaled apart
    (``DeleteNamespace.handle``, a journal's ``@handle:NAME``) so that an older
    recovery still reads the part it knows, and ignores the rest, instead of finding a
    token it cannot match and leaving the namespace."""
    file, sep, rest = token.partition("/")
    return file, (rest if sep else None)


def joined_token(file: str | None, rest: str | None) -> str | None:
    """``token_parts`` undone."""
    return file if file is None or rest is None else f"{file}/{rest}"


@frozen(kw_only=True)
class DeleteNamespace(Op):
    """Delete a namespace; the kernel destroys its links (and their veth peers).
    ``mount`` (``Backend.namespace_mount`` when it was planned): if the name is now on
    another mount, the namespace meant is gone (someone made another since, which is not
    to be deleted): the op counts as already done. Journals replayed after a crash, and
    failed teardowns retried by gc, run ops planned long before."""

    ns: str
    # guards, not part of what the op does (its inverse, CreateNamespace, has none)
    mount: str | None = attrs.field(default=None, eq=False)
    #: ``Backend.reserve_namespace``'s token for the file the namespace was to be made
    #: on: a namespace of that name on another file is not the one meant (recovery);
    #: BARE: only an empty file of that name, no namespace, is
    reserved: str | None = attrs.field(default=None, eq=False)
    #: the rest of that token (``token_parts``), where it has one
    handle: str | None = attrs.field(default=None, eq=False)
    destructive: ClassVar[bool] = True

    @property
    def token(self) -> str | None:
        """The whole reservation token this delete is guarded by (None: none)."""
        return joined_token(self.reserved, self.handle)

    def inverse(self) -> Op:
        return CreateNamespace(ns=self.ns)


@frozen(kw_only=True)
class Adopt(Op):
    """Take note of an object hostnet did not create. Applying checks it exists;
    the inverse does nothing, so rollback and teardown never delete it."""

    kind: str  # "namespace" or "link"
    name: str

    def inverse(self) -> Op:
        return Release(ns=self.ns, kind=self.kind, name=self.name)


@frozen(kw_only=True)
class Release(Op):
    kind: str
    name: str

    def inverse(self) -> Op:
        return Adopt(ns=self.ns, kind=self.kind, name=self.name)


# -- links ------------------------------------------------------------------------------


@frozen(kw_only=True)
class AddLink(Op):
    """Create a link. Kind-specific fields:

    veth:    ``peer`` is created directly in ``peer_ns`` (SAME_NS: in ``ns``; None: the
             root namespace), with ``peer_mac``; ``mtu`` applies to both ends.
    bridge:  ``mcast_snooping`` (None: the kernel's default, on).
    macvlan: ``parent`` (a link in ``parent_ns``) and ``mode``; the child is created
             directly in ``ns``.
    vxlan:   ``vni``, ``parent`` (underlay device), ``local``, ``port``.
    ``up`` brings the link (and a veth's peer) up as part of creation.
    ``hairpin`` (with ``master``): the bridge may send frames back out the port they
    came in on, so an endpoint can reach its own published port through the host.
    ``ipv6_linklocal=False``: no IPv6 link-local address on the link (and its veth
    peer), so no IPv6 neighbour and router chatter on an IPv4-only network.
    ``ipv6=False``: IPv6 off (``disable_ipv6``) on the workload's end (a veth's peer,
    the link itself for other kinds) before it comes up, so an endpoint of an IPv4-only
    network takes no address or route from a router advertisement (as Docker does).
    """

    name: str
    kind: str
    mtu: int | None = None
    mac: str | None = None
    up: bool = False
    master: str | None = None
    hairpin: bool = False
    group: int | None = None
    ipv6_linklocal: bool = True
    ipv6: bool = True
    peer: str | None = None
    peer_ns: str | None = SAME_NS
    peer_mac: str | None = None
    peer_up: bool = False
    parent: str | None = None
    parent_ns: str | None = SAME_NS
    mode: str | None = None
    vni: int | None = None
    local: str | None = None
    port: int | None = None
    mcast_snooping: bool | None = None

    @property
    def peer_namespace(self) -> str | None:
        """Where a veth's peer lives (``peer_ns`` with SAME_NS resolved)."""
        return self.ns if self.peer_ns == SAME_NS else self.peer_ns

    def inverse(self) -> Op:
        return DelLink(ns=self.ns, name=self.name, recreate=self)


@frozen(kw_only=True)
class DelLink(Op):
    """Delete a link. With ``same_mac`` (set by recovery, which runs ops planned long
    before), a link of that name of another kind, or with another MAC than ``recreate``
    (the inverse) gives it, is not the one meant, and counts as already gone; so is one
    of another kind when ``recreate`` is a macvlan (an endpoint's ``eth0`` dies with its
    parent, and the workload may make its own)."""

    name: str
    recreate: AddLink | None = None
    # a guard, not part of what the op does
    same_mac: bool = attrs.field(default=False, eq=False)
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        if self.recreate is None:
            raise ValueError(f"{self} does not know how to recreate what it deletes")
        return self.recreate


@frozen(kw_only=True)
class DelLinkGroup(Op):
    """Delete every link of link group ``group`` in ``ns`` in one kernel call: the
    kernel then waits for one RCU grace period for all of them instead of one per link,
    which turns a 1000-endpoint teardown from tens of seconds into well under one."""

    group: int
    recreate: tuple[AddLink, ...] = ()
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        return RecreateLinks(ns=self.ns, group=self.group, links=self.recreate)


@frozen(kw_only=True)
class RecreateLinks(Op):
    """Create the links of a group again (the inverse of DelLinkGroup)."""

    group: int
    links: tuple[AddLink, ...] = ()

    def inverse(self) -> Op:
        return DelLinkGroup(ns=self.ns, group=self.group, recreate=self.links)


@frozen(kw_only=True)
class MoveLink(Op):
    """Move a link from ``ns`` into ``to_ns`` (it arrives down, without addresses)."""

    name: str
    to_ns: str | None

    def inverse(self) -> Op:
        return MoveLink(ns=self.to_ns, name=self.name, to_ns=self.ns)


@frozen(kw_only=True)
class SetLinkUp(Op):
    name: str
    up: bool
    was_up: bool

    def inverse(self) -> Op:
        return SetLinkUp(ns=self.ns, name=self.name, up=self.was_up, was_up=self.up)


@frozen(kw_only=True)
class SetMaster(Op):
    name: str
    master: str | None
    previous: str | None = None

    def inverse(self) -> Op:
        return SetMaster(ns=self.ns, name=self.name, master=self.previous, previous=self.master)


# -- addresses and routes ---------------------------------------------------------------


@frozen(kw_only=True)
class AddAddress(Op):
    ifname: str
    address: str  # "10.0.0.2/24"

    def inverse(self) -> Op:
        return DelAddress(ns=self.ns, ifname=self.ifname, address=self.address)


@frozen(kw_only=True)
class DelAddress(Op):
    ifname: str
    address: str
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        return AddAddress(ns=self.ns, ifname=self.ifname, address=self.address)


@frozen(kw_only=True)
class AddRoute(Op):
    dst: str  # "0.0.0.0/0", "10.1.0.0/24"
    gateway: str | None = None
    ifname: str | None = None

    def inverse(self) -> Op:
        return DelRoute(ns=self.ns, dst=self.dst, gateway=self.gateway, ifname=self.ifname)


@frozen(kw_only=True)
class DelRoute(Op):
    dst: str
    gateway: str | None = None
    ifname: str | None = None
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        return AddRoute(ns=self.ns, dst=self.dst, gateway=self.gateway, ifname=self.ifname)


# -- sysctls, firewall, sockets ---------------------------------------------------------


@frozen(kw_only=True)
class SetSysctl(Op):
    """Write /proc/sys/<key> (key like "net/ipv4/ip_forward") in ``ns``; the inverse
    restores ``previous``."""

    key: str
    value: str
    previous: str

    def inverse(self) -> Op:
        return SetSysctl(ns=self.ns, key=self.key, value=self.previous, previous=self.value)


@frozen(kw_only=True)
class NftBatch(Op):
    """One nftables transaction (libnftables JSON ``{"nftables": [...]}``) and the
    transaction that undoes it. Applied atomically: all of it or none."""

    commands: str
    undo: str

    def inverse(self) -> Op:
        return NftBatch(ns=self.ns, commands=self.undo, undo=self.commands)

    def describe(self) -> str:
        words = []
        try:
            for item in json.loads(self.commands).get("nftables", []):
                for verb, body in item.items():
                    for kind, obj in body.items():
                        words.append(f"{verb} {kind} {obj.get('name') or obj.get('chain') or ''}")
        except (ValueError, AttributeError, TypeError):
            pass  # not libnftables JSON: describe what was understood, never fail
        summary = "; ".join(words[:3]) + (f"; +{len(words) - 3} more" if len(words) > 3 else "")
        where = self.ns if self.ns is not None else "<root>"
        return f"[{where}] NftBatch({summary.strip()})"


@frozen(kw_only=True)
class TrackFlows(Op):
    """Nothing to do now: it stands in a setup plan so that undoing the plan forgets the
    connection-tracking state it names (its inverse, ForgetFlows; fields as there)."""

    addresses: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()

    def inverse(self) -> Op:
        return ForgetFlows(ns=self.ns, addresses=self.addresses, ports=self.ports)


@frozen(kw_only=True)
class ForgetFlows(Op):
    """Delete conntrack entries in ``ns``: of flows from, to or DNATed to ``addresses``
    (an endpoint's), and of flows to the host ports ``ports`` ("udp/5300"), so that a
    client keeping its source port is not sent on by an entry made before (to an
    address that is gone, or with no NAT at all). Nothing to forget is not an error."""

    addresses: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()

    def inverse(self) -> Op:
        return TrackFlows(ns=self.ns, addresses=self.addresses, ports=self.ports)


@frozen(kw_only=True)
class BindPort(Op):
    """Hold a host port: keep a socket bound so no other process can take it."""

    protocol: str
    address: str
    port: int

    def inverse(self) -> Op:
        return UnbindPort(ns=self.ns, protocol=self.protocol, address=self.address, port=self.port)


@frozen(kw_only=True)
class UnbindPort(Op):
    protocol: str
    address: str
    port: int
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        return BindPort(ns=self.ns, protocol=self.protocol, address=self.address, port=self.port)


# -- forwarding database and neighbours (overlay) ---------------------------------------


@frozen(kw_only=True)
class AddNeighbour(Op):
    """A permanent neighbour entry (ip -> mac) on ``ifname``."""

    ifname: str
    address: str
    mac: str

    def inverse(self) -> Op:
        return DelNeighbour(ns=self.ns, ifname=self.ifname, address=self.address, mac=self.mac)


@frozen(kw_only=True)
class DelNeighbour(Op):
    ifname: str
    address: str
    mac: str
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        return AddNeighbour(ns=self.ns, ifname=self.ifname, address=self.address, mac=self.mac)


@frozen(kw_only=True)
class AddFdb(Op):
    """A static forwarding entry: frames for ``mac`` on vxlan ``ifname`` go to ``dst``."""

    ifname: str
    mac: str
    dst: str

    def inverse(self) -> Op:
        return DelFdb(ns=self.ns, ifname=self.ifname, mac=self.mac, dst=self.dst)


@frozen(kw_only=True)
class DelFdb(Op):
    ifname: str
    mac: str
    dst: str
    destructive: ClassVar[bool] = True

    def inverse(self) -> Op:
        return AddFdb(ns=self.ns, ifname=self.ifname, mac=self.mac, dst=self.dst)


def _deleted_links(plan: Plan) -> set[tuple[str | None, str]]:
    gone: set[tuple[str | None, str]] = set()
    for op in plan:
        if isinstance(op, DelLink):
            gone.add((op.ns, op.name))
            made = op.recreate
            if made is not None and made.kind == "veth" and made.peer:
                peer_ns = made.peer_namespace
                gone.add((peer_ns, made.peer))
    return gone


def teardown_plan(recorded: Plan) -> Plan:
    """The ops that undo a recorded plan, minus those made pointless by deleting a link
    later in the same plan: the kernel drops a link's addresses, routes, neighbours and
    per-interface sysctls with it (and a veth takes its peer along)."""
    undo = inverse_plan(recorded)
    gone = _deleted_links(undo)
    if not gone:
        return undo
    out: list[Op] = []
    for op in undo:
        if isinstance(op, DelAddress | DelRoute | DelNeighbour | DelFdb | SetLinkUp | SetMaster):
            ifname = getattr(op, "ifname", None) or getattr(op, "name", None)
            if (op.ns, ifname) in gone:
                continue
        if isinstance(op, SetSysctl) and any(
            op.ns == ns and f"/conf/{name}/" in op.key for ns, name in gone
        ):
            continue
        out.append(op)
    return tuple(out)


def merge_nft(ops: Plan) -> Plan:
    """Fold every NftBatch of a namespace into the first one of that namespace (one
    nftables transaction instead of many), keeping the other ops in order; every
    ForgetFlows of a namespace into one, last (one conntrack dump instead of many); and
    every TrackFlows of a namespace into its first (they do nothing when applied)."""
    merged: dict[str | None, tuple[list[Any], list[Any]]] = {}
    forget: dict[str | None, tuple[list[str], list[str]]] = {}
    track: dict[str | None, tuple[list[str], list[str]]] = {}
    out: list[Op] = []
    for op in ops:
        if isinstance(op, ForgetFlows | TrackFlows):
            into = forget if isinstance(op, ForgetFlows) else track
            if isinstance(op, TrackFlows) and op.ns not in track:
                out.append(op)  # placeholder, replaced below
            addresses, ports = into.setdefault(op.ns, ([], []))
            addresses.extend(op.addresses)
            ports.extend(op.ports)
            continue
        if not isinstance(op, NftBatch):
            out.append(op)
            continue
        commands = json.loads(op.commands).get("nftables", [])
        undo = json.loads(op.undo).get("nftables", []) if op.undo.strip() else []
        if op.ns in merged:
            merged[op.ns][0].extend(commands)
            merged[op.ns][1][:0] = undo
        else:
            merged[op.ns] = (commands, undo)
            out.append(op)  # placeholder, replaced below
    result: list[Op] = []
    for op in out:
        if isinstance(op, NftBatch):
            commands, undo = merged[op.ns]
            result.append(
                NftBatch(
                    ns=op.ns,
                    commands=json.dumps({"nftables": commands}, separators=(",", ":")),
                    undo=json.dumps({"nftables": undo}, separators=(",", ":")),
                )
            )
        elif isinstance(op, TrackFlows):
            addresses, ports = track[op.ns]
            result.append(TrackFlows(ns=op.ns, addresses=_unique(addresses), ports=_unique(ports)))
        else:
            result.append(op)
    for ns, (addresses, ports) in forget.items():
        result.append(ForgetFlows(ns=ns, addresses=_unique(addresses), ports=_unique(ports)))
    return tuple(result)


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def group_teardown(plan: Plan, ns: str | None, group: int) -> Plan:
    """A teardown plan where every DelLink of a link created in ``group`` (in ``ns``)
    becomes one DelLinkGroup, after the firewall changes (merged into one batch)."""
    grouped: list[AddLink] = []
    rest: list[Op] = []
    for op in plan:
        if (
            isinstance(op, DelLink)
            and op.ns == ns
            and op.recreate is not None
            and op.recreate.group == group
        ):
            grouped.append(op.recreate)
        else:
            rest.append(op)
    if not grouped:
        return merge_nft(tuple(rest))
    merged = merge_nft(tuple(rest))
    nft = [op for op in merged if isinstance(op, NftBatch)]
    others = [op for op in merged if not isinstance(op, NftBatch)]
    return (*nft, DelLinkGroup(ns=ns, group=group, recreate=tuple(grouped)), *others)


def split_nft(op: NftBatch) -> Plan:
    """One NftBatch per command of ``op`` (for applying what can be applied of a batch
    the kernel refused as a whole); each part's undo is unknown and left empty."""
    try:
        commands = json.loads(op.commands).get("nftables", [])
    except (ValueError, AttributeError):
        return (op,)
    return tuple(
        NftBatch(
            ns=op.ns, commands=json.dumps({"nftables": [c]}, separators=(",", ":")), undo="{}"
        )
        for c in commands
    )
