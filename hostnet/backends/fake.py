"""An in-memory model of the Linux kernel's networking objects.

This is a model, not a recorder: it refuses what the kernel refuses, with the same hostnet
errors the netlink backend raises. The rules it enforces (each one is checked against the
real kernel by the contract suite in :mod:`hostnet.testing.contract`):

- interface names are 1..15 bytes and unique within a namespace;
- a veth is two links; deleting either end deletes both, wherever the peer lives;
- deleting a link deletes its macvlan/vxlan children and detaches bridge ports;
- moving a link into a namespace that already has that name fails with EEXIST;
- deleting a namespace destroys its links (and therefore the peers of its veths);
- an address needs its link; the same address twice on a link is EEXIST;
- a route needs its device, and a gateway reachable through a connected prefix on an
  up link (ENETUNREACH otherwise); the same route twice is EEXIST;
- IPv4 routes through a link are flushed when it goes down or is deleted;
- lo gets 127.0.0.1/8 and ::1/128 when it comes up; ::1 goes away when it goes down;
- a master must be a bridge in the same namespace;
- a macvlan parent must exist in the namespace the op names and must not be loopback;
  a passthru macvlan takes its parent exclusively, and its MAC; another comes up only
  with a MAC that is not its parent's or an up sibling's (EADDRINUSE);
- binding a port that another socket of the same family holds is EADDRINUSE, with the
  wildcard address clashing with every address of its family.

State belongs to the instance; two fakes never share anything.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import json
import os
import random
import subprocess
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from hostnet import errors
from hostnet.backends.fakenft import FakeNftables
from hostnet.model import (
    IPV6_MIN_MTU,
    Address,
    BoundSocket,
    Link,
    LinkStats,
    Route,
    Snapshot,
    route_destination,
)
from hostnet.names import check_ifname
from hostnet.ops import (
    BARE,
    SAME_NS,
    AddAddress,
    AddFdb,
    AddLink,
    AddNeighbour,
    AddRoute,
    Adopt,
    BindPort,
    CreateNamespace,
    DelAddress,
    DeleteNamespace,
    DelFdb,
    DelLink,
    DelLinkGroup,
    DelNeighbour,
    DelRoute,
    ForgetFlows,
    MoveLink,
    NftBatch,
    Op,
    RecreateLinks,
    Release,
    SetLinkUp,
    SetMaster,
    SetSysctl,
    TrackFlows,
    UnbindPort,
)

KNOWN_KINDS = frozenset({"veth", "bridge", "macvlan", "macvtap", "vxlan"})
MACVLAN_MODES = frozenset({"bridge", "private", "vepa", "passthru", "source"})

#: Per-interface settings a link has from its start (net/ipv{4,6}/conf/<link>/<key>)
IF_SYSCTLS = {
    "route_localnet": "0",
    "accept_dad": "1",
    "disable_ipv6": "0",
    "forwarding": "0",
    "accept_source_route": "1",
}


def _link_of_sysctl(key: str) -> str | None:
    """The interface a key like net/ipv4/conf/<link>/<setting> is of (None for the
    namespace's own, conf/all and conf/default included)."""
    parts = key.split("/")
    if len(parts) == 5 and parts[0] == "net" and parts[2] == "conf":
        return None if parts[3] in ("all", "default") else parts[3]
    return None


DEFAULT_SYSCTLS = {
    "net/ipv4/ip_forward": "0",
    "net/ipv4/ip_local_port_range": "32768\t60999",
    "net/ipv4/ip_local_reserved_ports": "",
    "net/ipv6/conf/all/forwarding": "0",
    "net/ipv4/conf/all/route_localnet": "0",
    "net/ipv4/ip_unprivileged_port_start": "1024",
    "net/ipv4/ip_nonlocal_bind": "0",
    "net/ipv6/ip_nonlocal_bind": "0",
}


def _random_mac(rng: random.Random) -> str:
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{o:02x}" for o in octets)


@attrs.define(eq=False)
class _Link:
    name: str
    index: int
    kind: str
    mtu: int
    mac: str
    ns: _Namespace
    up: bool = False
    master: _Link | None = None
    parent: _Link | None = None
    peer: _Link | None = None
    mode: str | None = None
    vni: int | None = None
    local: str | None = None
    port: int | None = None
    group: int = 0
    mcast_snooping: bool | None = None
    # bridges: a MAC given at creation stays; otherwise the kernel shows the lowest MAC
    # of the ports, and zeros once the last port has left (see _shown_mac)
    mac_set: bool = True
    had_ports: bool = False


def _shown_mac(link: _Link) -> str:
    """The MAC the kernel shows: a bridge without one of its own takes the lowest MAC of
    its ports (compared as bytes), and all zeros once its last port has left."""
    if link.kind != "bridge" or link.mac_set:
        return link.mac
    ports = [x.mac for x in link.ns.links.values() if x.master is link]
    if ports:
        return min(ports, key=lambda mac: bytes.fromhex(mac.replace(":", "")))
    return "00:00:00:00:00:00" if link.had_ports else link.mac


@attrs.define(eq=False)
class _Namespace:
    name: str | None
    links: dict[str, _Link] = attrs.field(factory=dict)
    addresses: list[tuple[str, str]] = attrs.field(factory=list)  # (ifname, "ip/len")
    routes: list[Route] = attrs.field(factory=list)
    sysctls: dict[str, str] = attrs.field(factory=lambda: dict(DEFAULT_SYSCTLS))
    sockets: list[BoundSocket] = attrs.field(factory=list)
    idle: set[BoundSocket] = attrs.field(factory=set)  # tcp: bound, not listening
    neighbours: set[tuple[str, str, str]] = attrs.field(factory=set)
    fdb: set[tuple[str, str, str]] = attrs.field(factory=set)
    nft: FakeNftables = attrs.field(factory=FakeNftables)
    cookie: int = 0  # as the kernel's netns cookie: never given to another namespace
    file: str = ""  # the token of the file it is mounted on (reserve_namespace)


class FakeKernel:
    """The fake backend. ``FakeKernel()`` starts with a root namespace holding ``lo``
    (up) and ``eth0``; named namespaces are created by ops like on the real kernel.

    >>> from hostnet.ops import CreateNamespace
    >>> k = FakeKernel()
    >>> k.apply(CreateNamespace(ns="app1"))
    >>> [link.name for link in k.observe("app1").links]
    ['lo']
    """

    name = "fake"

    def __init__(self, *, seed: int | None = None, root_links: Sequence[str] = ("eth0",)):
        self._rng = random.Random(seed)
        self._index = itertools.count(1)
        self._cookies = itertools.count(1)
        self._namespaces: dict[str | None, _Namespace] = {}
        # names reserved for a namespace, not made yet: the token of each one's file
        self._reserved: dict[str, str] = {}
        self._files = itertools.count(1)
        self._held: set[tuple[str | None, str, str, int]] = set()
        root = self._new_namespace(None)
        root.links["lo"].up = True
        self._lo_up(root)
        for name in root_links:
            link = self._add(root, name, "device", mtu=1500)
            link.up = True

    # -- helpers the tests use to stand in for the world outside hostnet -------------

    def bind_external(
        self,
        ns: str | None,
        protocol: str,
        address: str,
        port: int,
        pid: int,
        process: str,
        *,
        listening: bool = True,
        v6only: bool = False,
    ) -> None:
        """Pretend another process bound a port in ``ns`` (a TCP one listening on it,
        unless ``listening`` is false; one on ``::`` dual-stack unless ``v6only``)."""
        space = self._ns(ns)
        sock = BoundSocket(
            protocol=protocol,
            address=address,
            port=port,
            pid=pid,
            process=process,
            v6only=v6only and ":" in address,
        )
        self._bind(space, sock)
        if protocol == "tcp" and not listening:
            space.idle.add(sock)

    def unbind_external(self, ns: str | None, protocol: str, address: str, port: int) -> None:
        space = self._ns(ns)
        space.sockets = [
            s
            for s in space.sockets
            if (s.protocol, s.address, s.port) != (protocol, address, port)
        ]
        space.idle = {s for s in space.idle if s in space.sockets}

    def set_sysctl(self, ns: str | None, key: str, value: str) -> None:
        self._ns(ns).sysctls[key] = value

    def add_device(self, ns: str | None, name: str, mtu: int = 1500, up: bool = True) -> None:
        """Add a kind-less device (a stand-in for a NIC) to a namespace."""
        space = self._ns(ns)
        self._check_new_name(space, name)
        self._add(space, name, "device", mtu=mtu).up = up

    def dump(self) -> dict[str, Any]:
        """Everything, as plain data: for comparing states before and after."""
        out: dict[str, Any] = {name: "reserved" for name in self._reserved}
        for key, space in sorted(self._namespaces.items(), key=lambda kv: str(kv[0])):
            snap = self.observe(key)
            out[str(key)] = {
                "links": sorted((attrs.asdict(link) for link in snap.links), key=str),
                "addresses": sorted(map(str, snap.addresses)),
                "routes": sorted(map(str, snap.routes)),
                "sysctls": dict(space.sysctls),
                "sockets": sorted(map(str, space.sockets)),
                "nft": space.nft.dump(),
                "neigh": sorted(space.neighbours),
                "fdb": sorted(space.fdb),
            }
        return out

    # -- Backend -----------------------------------------------------------------------

    def namespaces(self) -> tuple[str, ...]:
        # (a name reserved is listed, as its file in /run/netns is)
        return tuple(sorted({*(k for k in self._namespaces if k is not None), *self._reserved}))

    def has_namespace(self, name: str) -> bool:
        return name in self._namespaces or name in self._reserved

    def reserve_namespace(self, name: str) -> str:
        if self.has_namespace(name):
            raise errors.NamespaceExists(name)
        token = self._reserved[name] = str(next(self._files))
        return token

    def reservation_is_unique(self, token: str) -> bool:
        return True  # (a count, never reused)

    def observe(
        self, ns: str | None, *, firewall: bool = True, addresses: bool = True
    ) -> Snapshot:
        space = self._ns(ns)
        links = tuple(
            Link(
                name=link.name,
                index=link.index,
                kind=link.kind,
                mtu=link.mtu,
                mac=_shown_mac(link),
                up=link.up,
                master=link.master.name if link.master else None,
                parent=link.parent.name if link.parent and link.parent.ns is space else None,
                mode=link.mode,
                vni=link.vni,
                group=link.group,
                mcast_snooping=link.mcast_snooping,
                stats=LinkStats(),
            )
            for link in sorted(space.links.values(), key=lambda x: x.index)
        )
        return Snapshot(
            ns=ns,
            links=links,
            addresses=tuple(Address(ifname=i, address=a) for i, a in space.addresses)
            if addresses
            else (),
            routes=tuple(space.routes),
            nft_tables=space.nft.table_names() if firewall else (),
            ident=f"fake/{space.cookie}",
        )

    def sysctl(self, ns: str | None, key: str) -> str:
        space = self._ns(ns)
        self._check_ipv6_conf(space, key)
        try:
            return space.sysctls[key]
        except KeyError:
            pass
        link = _link_of_sysctl(key)
        if link is not None and link in space.links and key.rsplit("/", 1)[1] in IF_SYSCTLS:
            return IF_SYSCTLS[key.rsplit("/", 1)[1]]  # the default of a link's setting
        raise errors.NotFoundError(f"no sysctl {key!r} in the fake kernel")

    def bound_sockets(
        self,
        ns: str | None,
        ports: Collection[int] | None = None,
        *,
        owners: bool = True,
        protocols: Collection[str] | None = None,
        idle: bool = False,
    ) -> tuple[BoundSocket, ...]:
        space = self._ns(ns)
        found = [
            s
            for s in space.sockets
            if (ports is None or s.port in ports)
            and (protocols is None or s.protocol in protocols)
            and (idle or s not in space.idle)
        ]
        if not owners:
            found = [attrs.evolve(s, pid=None, process=None) for s in found]
        return tuple(found)

    def nft_list(self, ns: str | None, table: str) -> Mapping[str, Any] | None:
        return self._ns(ns).nft.list_table(table)

    def namespace_mount(self, ns: str) -> str | None:
        return f"fake-mount/{self._ns(ns).cookie}"

    def mount_view(self) -> str | None:
        return "fake"

    def namespace_id(self, ns: str | None) -> str | None:
        return f"fake/{self._ns(ns).cookie}"

    def processes(self, ns: str) -> tuple[int, ...]:
        self._ns(ns)
        return ()  # it starts none (popen is unsupported)

    def popen(self, ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        raise errors.UnsupportedError(
            "the fake backend has no processes; run this on the netlink backend as root"
        )

    def release(self, ns: str | None) -> None:
        pass

    def close(self) -> None:
        pass

    def apply(self, op: Op) -> None:
        handler = getattr(self, f"_apply_{type(op).__name__}", None)
        if handler is None:
            raise errors.UnsupportedError(f"the fake backend does not model {type(op).__name__}")
        handler(op)

    # -- namespaces --------------------------------------------------------------------

    def _ns(self, ns: str | None) -> _Namespace:
        try:
            return self._namespaces[ns]
        except KeyError:
            raise errors.NamespaceNotFound(str(ns)) from None

    def _new_namespace(self, name: str | None) -> _Namespace:
        space = _Namespace(name, cookie=next(self._cookies))
        self._namespaces[name] = space
        self._add(space, "lo", "loopback", mtu=65536, mac="00:00:00:00:00:00")
        return space

    def _apply_CreateNamespace(self, op: CreateNamespace) -> None:
        token = self._reserved.pop(op.ns, None)
        if token is None:  # (not reserved: its file is made now)
            token = self.reserve_namespace(op.ns)
            del self._reserved[op.ns]
        space = self._new_namespace(op.ns)
        space.file = token
        # as the kernel (devconf_inherit_init_net 0): IPv4 settings are copied from the
        # root namespace, IPv6 ones start from their defaults
        root = self._namespaces[None].sysctls
        for key in ("net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet"):
            space.sysctls[key] = root[key]
        space.links["lo"].up = True
        self._lo_up(space)

    def _apply_DeleteNamespace(self, op: DeleteNamespace) -> None:
        if op.ns in self._reserved:  # a file without a namespace: removed
            if op.token not in (None, BARE, self._reserved[op.ns]):
                raise errors.NamespaceNotFound(op.ns)
            del self._reserved[op.ns]
            return
        space = self._ns(op.ns)
        if op.token is not None and op.token != space.file:  # (BARE: never)
            raise errors.NamespaceNotFound(op.ns)  # not made on that reservation
        if op.mount is not None and op.mount != self.namespace_mount(op.ns):
            raise errors.NamespaceNotFound(op.ns)  # the one meant is gone
        for link in list(space.links.values()):
            if link.name in space.links:
                self._delete_link(link)
        self._held = {h for h in self._held if h[0] != op.ns}
        del self._namespaces[op.ns]

    def _apply_Adopt(self, op: Adopt) -> None:
        space = self._ns(op.ns)
        if op.kind == "link" and op.name not in space.links:
            raise errors.LinkNotFound(op.name, op.ns)

    def _apply_Release(self, op: Release) -> None:
        pass

    # -- links -------------------------------------------------------------------------

    def _check_new_name(self, space: _Namespace, name: str) -> None:
        check_ifname(name)  # the same rule the netlink backend applies before the kernel
        if name in space.links:
            raise errors.LinkExists(name, space.name)

    def _add(
        self, space: _Namespace, name: str, kind: str, *, mtu: int, mac: str | None = None
    ) -> _Link:
        link = _Link(
            name=name,
            index=next(self._index),
            kind=kind,
            mtu=mtu,
            mac=(mac or _random_mac(self._rng)).lower(),
            ns=space,
        )
        space.links[name] = link
        for family in ("ipv4", "ipv6"):  # a new link takes conf/default's settings
            for setting in IF_SYSCTLS:
                default = space.sysctls.get(f"net/{family}/conf/default/{setting}")
                if default is not None:
                    space.sysctls[f"net/{family}/conf/{name}/{setting}"] = default
        return link

    def _link(self, space: _Namespace, name: str) -> _Link:
        try:
            return space.links[name]
        except KeyError:
            raise errors.LinkNotFound(name, space.name) from None

    def _apply_AddLink(self, op: AddLink) -> None:
        space = self._ns(op.ns)
        if op.kind not in KNOWN_KINDS:
            raise errors.UnsupportedError(f"this kernel has no {op.kind!r} link type")
        self._check_new_name(space, op.name)
        if op.mtu is not None and not 68 <= op.mtu <= 65535:
            raise errors.KernelError(f"create {op.name}", 22, f"mtu {op.mtu} out of range")
        for mac in filter(None, (op.mac, op.peer_mac)):
            raw = bytes.fromhex(mac.replace(":", ""))
            if raw[0] & 1 or not any(raw):  # multicast or all zero: EADDRNOTAVAIL
                raise errors.KernelError(f"create {op.name}", 99, f"{mac} is not a unicast MAC")
        master = None
        if op.master is not None:
            master = self._link(space, op.master)
            if master.kind != "bridge":
                raise errors.KernelError(f"create {op.name}", 95, f"{op.master} is not a bridge")
            if op.kind == "bridge":
                raise errors.KernelError(f"create {op.name}", 40, "a bridge in a bridge")
        if op.kind == "veth":
            if not op.peer:
                raise errors.InvalidOption("peer", op.peer, "a veth needs a peer name")
            peer_space = space if op.peer_ns == SAME_NS else self._ns(op.peer_ns)
            self._check_new_name(peer_space, op.peer)
            if peer_space is space and op.peer == op.name:
                raise errors.LinkExists(op.peer, space.name)
            mtu = op.mtu or 1500
            link = self._add(space, op.name, "veth", mtu=mtu, mac=op.mac)
            peer = self._add(peer_space, op.peer, "veth", mtu=mtu, mac=op.peer_mac)
            link.peer, peer.peer = peer, link
            peer.up = op.peer_up
        elif op.kind in ("macvlan", "macvtap"):
            mode = op.mode or "bridge"
            if mode not in MACVLAN_MODES:
                raise errors.KernelError(f"create {op.name}", 22, f"unknown macvlan mode {mode}")
            if not op.parent:
                raise errors.KernelError(f"create {op.name}", 22, "a macvlan needs a parent")
            parent_space = space if op.parent_ns == SAME_NS else self._ns(op.parent_ns)
            parent = self._link(parent_space, op.parent)
            if parent.kind == "loopback":
                raise errors.KernelError(f"create {op.name}", 22, "lo cannot be a macvlan parent")
            if parent.master is not None:  # the bridge has the port's frames: EBUSY
                raise errors.KernelError(f"create {op.name}", 16, f"{op.parent} is a bridge port")
            if parent.kind in ("macvlan", "macvtap"):
                parent = parent.parent or parent
            siblings = [
                x
                for s in self._namespaces.values()
                for x in s.links.values()
                if x.parent is parent and x.kind in ("macvlan", "macvtap")
            ]
            if siblings and (mode == "passthru" or any(x.mode == "passthru" for x in siblings)):
                raise errors.KernelError(
                    f"create {op.name}", 22, f"{parent.name} has a passthru macvlan"
                )
            if (
                siblings
                and mode != siblings[0].mode
                and (mode == "passthru" or siblings[0].mode == "passthru")
            ):
                raise errors.KernelError(f"create {op.name}", 22, "mode clash on parent")
            # passthru: the parent's MAC, whatever was asked
            given = parent.mac if mode == "passthru" else op.mac
            link = self._add(space, op.name, op.kind, mtu=op.mtu or parent.mtu, mac=given)
            if op.mtu is not None and op.mtu > parent.mtu:
                del space.links[op.name]
                raise errors.MtuAboveParent(op.name, op.mtu, op.parent or "", parent.mtu)
            link.parent, link.mode = parent, mode
        elif op.kind == "vxlan":
            if op.vni is None or not 0 <= op.vni < 2**24:
                raise errors.KernelError(f"create {op.name}", 34, f"vni {op.vni} out of range")
            port = op.port or 8472
            for other in space.links.values():
                if other.kind == "vxlan" and other.vni == op.vni and (other.port or 8472) == port:
                    raise errors.LinkExists(op.name, space.name)
            lower = self._link(space, op.parent) if op.parent else None
            link = self._add(space, op.name, "vxlan", mtu=op.mtu or 1450, mac=op.mac)
            link.parent, link.vni, link.local, link.port = lower, op.vni, op.local, port
        else:  # bridge: snooping on unless told otherwise, as in the kernel
            link = self._add(space, op.name, op.kind, mtu=op.mtu or 1500, mac=op.mac)
            link.mcast_snooping = op.mcast_snooping is not False
            link.mac_set = op.mac is not None
        if op.hairpin and master is None:
            raise errors.KernelError(f"create {op.name}", 95, "hairpin needs a bridge master")
        link.master = master
        if master is not None:
            master.had_ports = True
            self._ports_changed(master)
        link.group = op.group or 0
        if not op.ipv6:  # on the workload's end, if it has IPv6 at all
            end = link.peer if op.kind == "veth" and link.peer is not None else link
            if end.mtu >= IPV6_MIN_MTU:
                end.ns.sysctls[f"net/ipv6/conf/{end.name}/disable_ipv6"] = "1"
        if op.up:
            try:
                self._set_up(link, True)
            except errors.KernelError:  # the kernel unregisters a link it cannot open
                del space.links[op.name]
                raise

    def _delete_link(self, link: _Link) -> None:
        doomed = [link]
        if link.peer is not None:
            doomed.append(link.peer)
        for space in self._namespaces.values():
            for other in space.links.values():
                if other.parent is link and other.kind in ("macvlan", "macvtap", "vxlan"):
                    if other.kind == "vxlan":
                        other.parent = None
                    else:
                        doomed.append(other)
        for dead in doomed:
            space = dead.ns
            if space.links.get(dead.name) is not dead:
                continue
            del space.links[dead.name]
            self._forget_name(space, dead.name)
            if dead.master is not None and dead.master not in doomed:
                self._ports_changed(dead.master)
            space.addresses = [(i, a) for i, a in space.addresses if i != dead.name]
            space.routes = [r for r in space.routes if r.ifname != dead.name]
            for other in space.links.values():
                if other.master is dead:
                    other.master = None
            self._prune_routes(space)

    def _apply_DelLink(self, op: DelLink) -> None:
        space = self._ns(op.ns)
        link = self._link(space, op.name)
        guard = op.recreate.mac if op.same_mac and op.recreate is not None else None
        if guard is not None and link.mac != guard.lower():
            raise errors.LinkNotFound(op.name, op.ns)  # another link of that name
        # (the kind is checked where the netlink backend checks it)
        if (
            op.recreate is not None
            and (op.same_mac or op.recreate.kind in ("macvlan", "macvtap"))
            and link.kind != op.recreate.kind
        ):
            raise errors.LinkNotFound(op.name, op.ns)  # another link of that name
        if link.kind == "loopback":
            raise errors.KernelError(f"delete {op.name}", 95, "lo cannot be deleted")
        self._delete_link(link)

    def _apply_DelLinkGroup(self, op: DelLinkGroup) -> None:
        space = self._ns(op.ns)
        if op.group == 0:
            raise errors.InvalidOption("group", 0, "group 0 holds every link; refusing")
        members = [x for x in space.links.values() if x.group == op.group]
        if not members:  # as the kernel: nothing to delete is ENODEV
            raise errors.NotFoundError(f"no link in group {op.group} in {op.ns or 'root'}")
        for link in members:
            if space.links.get(link.name) is link:
                self._delete_link(link)

    def _apply_RecreateLinks(self, op: RecreateLinks) -> None:
        for link in op.links:
            self._apply_AddLink(link)

    def _apply_MoveLink(self, op: MoveLink) -> None:
        space = self._ns(op.ns)
        link = self._link(space, op.name)
        target = self._ns(op.to_ns)
        if link.kind in ("loopback", "bridge"):  # (NETIF_F_NETNS_LOCAL)
            raise errors.KernelError(f"move {op.name}", 22, f"a {link.kind} cannot move")
        if target is space:
            return
        if op.name in target.links:
            raise errors.LinkExists(op.name, target.name)
        # the kernel takes the link down, drops its addresses, routes and master
        self._set_up(link, False)
        del space.links[op.name]
        space.addresses = [(i, a) for i, a in space.addresses if i != op.name]
        space.routes = [r for r in space.routes if r.ifname != op.name]
        self._forget_name(space, op.name)
        if link.master is not None:
            left, link.master = link.master, None
            self._ports_changed(left)
        for other in space.links.values():
            if other.master is link:
                other.master = None
        link.ns = target
        target.links[op.name] = link

    @staticmethod
    def _forget_name(space: _Namespace, name: str) -> None:
        """What a namespace keeps by a link's name goes when the link leaves it: a link
        made again (or moved in) under that name starts afresh."""
        for key in [k for k in space.sysctls if _link_of_sysctl(k) == name]:
            del space.sysctls[key]
        space.neighbours = {n for n in space.neighbours if n[0] != name}
        space.fdb = {f for f in space.fdb if f[0] != name}

    @staticmethod
    def _ports_changed(bridge: _Link) -> None:
        """As the kernel: a bridge's MTU is its smallest port's, 1500 once the last
        port has left (unless it was changed after the bridge was made, which no op
        does)."""
        ports = [x.mtu for x in bridge.ns.links.values() if x.master is bridge]
        bridge.mtu = min(ports) if ports else 1500

    def _set_up(self, link: _Link, up: bool) -> None:
        space = link.ns
        if link.up == up:
            return
        if up and link.kind in ("macvlan", "macvtap") and link.mode != "passthru":
            parent = link.parent
            assert parent is not None
            if parent.mac == link.mac or any(
                x.up and x.parent is parent and x is not link and x.mac == link.mac
                for s in self._namespaces.values()
                for x in s.links.values()
            ):
                raise errors.KernelError(f"set {link.name} up", 98, "address already in use")
        link.up = up
        if link.kind == "loopback" and up:
            self._lo_up(space)
        if up:
            for ifname, addr in space.addresses:
                if ifname == link.name:
                    self._add_prefix_route(space, ifname, addr)
        else:
            # IPv4 keeps its addresses; IPv6 loses them (keep_addr_on_down is 0), and
            # every route through the link goes
            space.addresses = [
                (i, a) for i, a in space.addresses if not (i == link.name and ":" in a)
            ]
            space.routes = [r for r in space.routes if r.ifname != link.name]
            self._prune_routes(space)

    def _lo_up(self, space: _Namespace) -> None:
        for addr in ("127.0.0.1/8", "::1/128"):
            if ("lo", addr) not in space.addresses:
                space.addresses.append(("lo", addr))

    def _apply_SetLinkUp(self, op: SetLinkUp) -> None:
        self._set_up(self._link(self._ns(op.ns), op.name), op.up)

    def _apply_SetMaster(self, op: SetMaster) -> None:
        space = self._ns(op.ns)
        link = self._link(space, op.name)
        if op.master is None:
            if link.master is not None:
                left, link.master = link.master, None
                self._ports_changed(left)
            return
        master = self._link(space, op.master)
        if master.kind != "bridge" or master is link:
            raise errors.KernelError(f"enslave {op.name}", 95, f"{op.master} is not a bridge")
        if link.kind == "bridge":
            raise errors.KernelError(f"enslave {op.name}", 40, "a bridge in a bridge")
        if link.kind == "loopback":
            raise errors.KernelError(f"enslave {op.name}", 22, "lo cannot be a bridge port")
        if any(
            x.parent is link and x.kind in ("macvlan", "macvtap")
            for s in self._namespaces.values()
            for x in s.links.values()
        ):  # its macvlan children have its frames
            raise errors.KernelError(f"enslave {op.name}", 16, f"{op.name} is a macvlan parent")
        link.master = master
        master.had_ports = True
        self._ports_changed(master)

    # -- addresses and routes ----------------------------------------------------------

    def _apply_AddAddress(self, op: AddAddress) -> None:
        space = self._ns(op.ns)
        link = self._link(space, op.ifname)
        try:
            if "%" in op.address:  # ipaddress takes a zone ("fd00::1%eth0"); netlink has none
                raise ValueError(op.address)
            iface = ipaddress.ip_interface(op.address)
        except ValueError:  # as the netlink backend's encoder says
            raise errors.InvalidAddress(op.address, "not an address/prefix length") from None
        addr = str(iface)
        if any(
            i == op.ifname and ipaddress.ip_interface(a).ip == iface.ip for i, a in space.addresses
        ):
            raise errors.AddressInUse(addr, interface=op.ifname)
        space.addresses.append((op.ifname, addr))
        if link.up:
            self._add_prefix_route(space, op.ifname, addr)

    def _add_prefix_route(self, space: _Namespace, ifname: str, addr: str) -> None:
        iface = ipaddress.ip_interface(addr)
        if iface.version == 4 and iface.network.prefixlen == 32:
            return
        if iface.version == 6 and iface.network.prefixlen == 128:
            return
        if ifname == "lo":
            return
        route = Route(dst=str(iface.network), ifname=ifname)
        if route not in space.routes:
            space.routes.append(route)

    def _apply_DelAddress(self, op: DelAddress) -> None:
        space = self._ns(op.ns)
        self._link(space, op.ifname)
        iface = ipaddress.ip_interface(op.address)
        for i, a in space.addresses:
            if i == op.ifname and ipaddress.ip_interface(a) == iface:
                space.addresses.remove((i, a))
                break
        else:
            raise errors.NotFoundError(f"address {op.address} is not on {op.ifname}")
        still = any(
            ipaddress.ip_interface(a).network == iface.network
            for i, a in space.addresses
            if i == op.ifname
        )
        if not still:
            space.routes = [
                r
                for r in space.routes
                if not (
                    r.ifname == op.ifname and r.gateway is None and r.dst == str(iface.network)
                )
            ]
        self._prune_routes(space)

    def _reachable(self, space: _Namespace, gateway: str, ifname: str | None) -> str | None:
        gw = ipaddress.ip_address(gateway)
        for route in space.routes:
            if route.gateway is not None:
                continue
            net = ipaddress.ip_network(route.dst)
            if net.version == gw.version and gw in net and (ifname in (None, route.ifname)):
                link = space.links.get(route.ifname or "")
                if link is not None and link.up:
                    return route.ifname
        if gw.version == 6 and gw.is_link_local and ifname is not None:
            return ifname
        return None

    def _prune_routes(self, space: _Namespace) -> None:
        """IPv4 gateway routes whose next hop is no longer reachable are flushed."""
        keep = []
        for route in space.routes:
            if (
                route.gateway is not None
                and route.family == 4
                and self._reachable(space, route.gateway, route.ifname) is None
            ):
                continue
            keep.append(route)
        space.routes = keep

    def _apply_AddRoute(self, op: AddRoute) -> None:
        space = self._ns(op.ns)
        dst = route_destination(op.dst)
        ifname = op.ifname
        if ifname is not None:
            link = self._link(space, ifname)
            if not link.up and (op.gateway is None or dst.version == 6):
                raise errors.KernelError(f"add route {op.dst}", 100, f"{ifname} is down")
        if op.gateway is not None:
            via = self._reachable(space, op.gateway, ifname)
            if via is None:
                raise errors.KernelError(
                    f"add route {op.dst} via {op.gateway}", 101, "gateway is not reachable"
                )
            ifname = via
        if ifname is None:
            raise errors.KernelError(f"add route {op.dst}", 19, "no device or gateway")
        route = Route(dst=str(dst), gateway=op.gateway, ifname=ifname)
        if any(r.dst == route.dst for r in space.routes):
            raise errors.ConflictError(f"route to {op.dst} already exists")
        space.routes.append(route)

    def _apply_DelRoute(self, op: DelRoute) -> None:
        space = self._ns(op.ns)
        dst = str(route_destination(op.dst))
        for route in space.routes:
            if (
                route.dst == dst
                and (op.gateway is None or route.gateway == op.gateway)
                and (op.ifname is None or route.ifname == op.ifname)
            ):
                space.routes.remove(route)
                return
        raise errors.NotFoundError(f"no route to {op.dst} in {op.ns or 'the root namespace'}")

    # -- neighbours and fdb ------------------------------------------------------------

    def _apply_AddNeighbour(self, op: AddNeighbour) -> None:
        space = self._ns(op.ns)
        self._link(space, op.ifname)
        if any(n[:2] == (op.ifname, op.address) for n in space.neighbours):  # (EEXIST)
            raise errors.ConflictError(f"neighbour {op.address} on {op.ifname} exists")
        space.neighbours.add((op.ifname, op.address, op.mac))

    def _apply_DelNeighbour(self, op: DelNeighbour) -> None:
        space = self._ns(op.ns)
        try:
            space.neighbours.remove((op.ifname, op.address, op.mac))
        except KeyError:
            raise errors.NotFoundError(f"no neighbour {op.address} on {op.ifname}") from None

    def _apply_AddFdb(self, op: AddFdb) -> None:
        space = self._ns(op.ns)
        self._link(space, op.ifname)  # (any link takes entries; a vxlan's say where to)
        if any(f[:2] == (op.ifname, op.mac) for f in space.fdb):  # (EEXIST)
            raise errors.ConflictError(f"fdb entry {op.mac} on {op.ifname} exists")
        space.fdb.add((op.ifname, op.mac, op.dst))

    def _apply_DelFdb(self, op: DelFdb) -> None:
        space = self._ns(op.ns)
        try:
            space.fdb.remove((op.ifname, op.mac, op.dst))
        except KeyError:
            raise errors.NotFoundError(f"no fdb entry {op.mac} on {op.ifname}") from None

    # -- sysctls, nftables, sockets ----------------------------------------------------

    def _apply_SetSysctl(self, op: SetSysctl) -> None:
        space = self._ns(op.ns)
        if op.key not in space.sysctls and not op.key.startswith("net/"):
            raise errors.NotFoundError(f"no sysctl {op.key!r}")
        link = _link_of_sysctl(op.key)
        if link is not None and link not in space.links:  # (its directory comes with it)
            raise errors.NotFoundError(f"no sysctl {op.key!r}: no interface {link!r}")
        self._check_ipv6_conf(space, op.key)
        space.sysctls[op.key] = op.value

    @staticmethod
    def _check_ipv6_conf(space: _Namespace, key: str) -> None:
        """A link under IPv6's minimum MTU has no IPv6, so no net/ipv6/conf/<link>."""
        link = _link_of_sysctl(key)
        found = space.links.get(link) if link is not None else None
        if found is not None and key.startswith("net/ipv6/") and found.mtu < IPV6_MIN_MTU:
            raise errors.NotFoundError(f"no sysctl {key!r}: {link} has no IPv6 (MTU {found.mtu})")

    def _apply_NftBatch(self, op: NftBatch) -> None:
        space = self._ns(op.ns)
        trial = copy.deepcopy(space.nft)
        trial.run(json.loads(op.commands))  # raises without touching space.nft
        space.nft = trial

    def _apply_TrackFlows(self, op: TrackFlows) -> None:
        self._ns(op.ns)

    def _apply_ForgetFlows(self, op: ForgetFlows) -> None:
        self._ns(op.ns)  # no packets here, so no connection-tracking state to forget

    def _bind(self, space: _Namespace, sock: BoundSocket) -> None:
        for other in space.sockets:
            # the kernel's rule, both ways: a dual-stack socket on :: takes IPv4 too
            if other.blocks(sock.protocol, sock.address, sock.port) or sock.blocks(
                other.protocol, other.address, other.port
            ):
                raise other.in_the_way(sock.protocol, sock.address, sock.port)
        space.sockets.append(sock)

    def _apply_BindPort(self, op: BindPort) -> None:
        space = self._ns(op.ns)
        ip = ipaddress.ip_address(op.address)
        if ip.version == 6 and ip.ipv4_mapped is not None:  # on an IPv6-only socket
            raise errors.KernelError(f"bind {op.address}", 22, "Invalid argument")
        if not self._local(space, ip):
            raise errors.InvalidAddress(
                op.address,
                f"not an address of {op.ns or 'the root namespace'}: no port can be held on it",
            )
        self._bind(
            space,
            BoundSocket(
                protocol=op.protocol,
                address=op.address,
                port=op.port,
                pid=os.getpid(),
                process="python3",
                v6only=":" in op.address,  # as the netlink backend binds its holds
            ),
        )
        self._held.add((op.ns, op.protocol, op.address, op.port))

    def is_local(self, ns: str | None, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        space = self._ns(ns)
        for ifname, addr in space.addresses:
            iface = ipaddress.ip_interface(addr)
            if iface.ip == ip or (ifname == "lo" and ip.version == 4 and ip in iface.network):
                return True
        return False

    def _local(self, space: _Namespace, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether a socket may bind ``ip`` in ``space``: a wildcard, one of its own
        addresses (``is_local``), or any with ip_nonlocal_bind."""
        if ip.is_unspecified or space.sysctls.get(f"net/ipv{ip.version}/ip_nonlocal_bind") == "1":
            return True
        return self.is_local(space.name, str(ip))

    def _apply_UnbindPort(self, op: UnbindPort) -> None:
        key = (op.ns, op.protocol, op.address, op.port)
        if key not in self._held:
            raise errors.NotFoundError(f"port {op.address}:{op.port}/{op.protocol} is not held")
        self._held.discard(key)
        self.unbind_external(op.ns, op.protocol, op.address, op.port)
