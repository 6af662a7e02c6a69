"""The real backend: rtnetlink through pyroute2's messages, nftables through libnftables.

This package is the only place that imports pyroute2 (lazily: ``import hostnet`` does
not load it) and the only place that maps NetlinkError and errno to hostnet errors:
:func:`_translate` around every op and query, helped by nsenter (namespace files) and
nft.translate (libnftables' error text).

Per namespace it keeps one rtnetlink socket and one nftables context, both opened from a
short-lived thread inside the namespace (see nsenter). A cached handle is checked against
the namespace's inode before use, so a namespace deleted and re-created under the same
name is never confused with the old one; ``release(ns)`` drops a handle, which matters
because an open socket keeps a deleted namespace (and its veths) alive.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from hostnet import errors
from hostnet.backends.netlink import nsenter
from hostnet.backends.netlink.channel import Channel, NetlinkError, open_route_socket
from hostnet.backends.netlink.nft import NftContext
from hostnet.backends.netlink.nft import available as nft_available
from hostnet.backends.netlink.sockets import (
    bind_holder,
    diag_bound,
    find_owners,
    open_diag_socket,
)
from hostnet.backends.netlink_paths import ns_path
from hostnet.model import Address, BoundSocket, Link, LinkStats, Route, Snapshot
from hostnet.names import check_ifname
from hostnet.ops import (
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
    MoveLink,
    NftBatch,
    Op,
    RecreateLinks,
    Release,
    SetLinkUp,
    SetMaster,
    SetSysctl,
    UnbindPort,
)

# Constants from <linux/rtnetlink.h> and friends.
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
IFF_UP = 0x1
ARPHRD_LOOPBACK = 772
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x02
NTF_SELF = 0x02
AF_BRIDGE = 7
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class _Handle:
    """Everything kept open for one namespace: each was opened from a thread inside it
    and stays bound to it, so using it later needs no thread at all."""

    __slots__ = ("chan", "diag", "ident", "indexes", "nft", "sysctls")

    def __init__(self, route: socket.socket, ident: tuple[int, int] | None) -> None:
        self.chan = Channel(route)
        self.diag: socket.socket | None = None  # opened on first use (bound_sockets)
        self.ident = ident
        self.nft: NftContext | None = None
        self.sysctls: dict[str, int] = {}  # key -> fd of /proc/sys/<key>
        # interface name -> index, learnt from lookups and from the echo of creates;
        # dropped with every delete in this namespace (and with the handle)
        self.indexes: dict[str, int] = {}

    def close(self) -> None:
        self.chan.close()
        if self.diag is not None:
            self.diag.close()
        if self.nft is not None:
            self.nft.close()
        for fd in self.sysctls.values():
            os.close(fd)
        self.sysctls.clear()


class NetlinkBackend:
    """The kernel, through netlink and nftables. Needs root (CAP_NET_ADMIN and, to
    create namespaces, CAP_SYS_ADMIN)."""

    name = "netlink"

    def __init__(self) -> None:
        # The namespace this process started in is what "None" means in every op.
        self._root_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._handles: dict[str | None, _Handle] = {}
        self._held: dict[tuple[str | None, str, str, int], socket.socket] = {}
        self._lock = threading.RLock()

    # -- handles -----------------------------------------------------------------------

    @staticmethod
    def _ident(ns: str | None) -> tuple[int, int] | None:
        if ns is None:
            return None
        try:
            st = os.stat(ns_path(ns))
        except FileNotFoundError:
            raise errors.NamespaceNotFound(ns) from None
        return (st.st_dev, st.st_ino)

    def _in_ns(self, ns: str | None, fn: Any) -> Any:
        if ns is None:
            return nsenter.run_in(self._root_fd, fn) if self._off_root() else fn()
        fd = nsenter.open_namespace(ns)
        try:
            return nsenter.run_in(fd, fn)
        finally:
            os.close(fd)

    def _off_root(self) -> bool:
        # True when the calling thread is not in the namespace this backend calls root.
        return os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(self._root_fd).st_ino

    def _handle(self, ns: str | None) -> _Handle:
        ident = self._ident(ns)
        handle = self._handles.get(ns)
        if handle is not None and handle.ident == ident:
            return handle
        if handle is not None:  # the name now refers to a different namespace
            handle.close()
            del self._handles[ns]
        try:
            route = self._in_ns(ns, open_route_socket)
        except PermissionError as exc:
            raise errors.PermissionDenied(
                f"open netlink socket in {ns or 'root namespace'}"
            ) from exc
        handle = _Handle(route, ident)
        self._handles[ns] = handle
        return handle

    def _chan(self, ns: str | None) -> Channel:
        return self._handle(ns).chan

    def _nft(self, ns: str | None) -> NftContext:
        handle = self._handle(ns)
        if handle.nft is None:
            handle.nft = self._in_ns(ns, NftContext)
        return handle.nft

    def release(self, ns: str | None) -> None:
        """Close the cached socket and nftables context of ``ns``."""
        with self._lock:
            handle = self._handles.pop(ns, None)
            if handle is not None:
                handle.close()

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()
            for sock in self._held.values():
                sock.close()
            self._held.clear()
            if self._root_fd >= 0:
                os.close(self._root_fd)
                self._root_fd = -1

    # -- queries -----------------------------------------------------------------------

    def namespaces(self) -> tuple[str, ...]:
        return nsenter.list_namespaces()

    def has_namespace(self, name: str) -> bool:
        return os.path.exists(ns_path(name))

    def _index(self, chan: Channel, name: str, ns: str | None) -> int:

        handle = self._handles.get(ns)
        if handle is not None and name in handle.indexes:
            return handle.indexes[name]
        index = self._lookup_index(chan, name, ns)
        if handle is not None:
            handle.indexes[name] = index
        return index

    def _forget_indexes(self, ns: str | None) -> None:
        handle = self._handles.get(ns)
        if handle is not None:
            handle.indexes.clear()

    def _lookup_index(self, chan: Channel, name: str, ns: str | None) -> int:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_EXT_MASK", 0)]
        try:
            return chan.get_index(msg, RTM_GETLINK)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise errors.LinkNotFound(name, ns) from None
            raise

    def observe(
        self, ns: str | None, *, firewall: bool = True, addresses: bool = True
    ) -> Snapshot:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        with self._lock, _translate(f"observe {ns or 'root namespace'}", None):
            chan = self._chan(ns)
            raw_links = chan.dump(ifinfmsg(), RTM_GETLINK)
            names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in raw_links}
            links = tuple(_link_from(m, names) for m in raw_links)
            found = []
            for m in chan.dump(ifaddrmsg(), RTM_GETADDR) if addresses else ():
                addr = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
                if m["family"] == socket.AF_INET6 and ipaddress.ip_address(addr).is_link_local:
                    continue
                found.append(
                    Address(ifname=names.get(m["index"], "?"), address=f"{addr}/{m['prefixlen']}")
                )
            routes = []
            for family in (socket.AF_INET, socket.AF_INET6):
                query = rtmsg()
                query["family"] = family
                query["table"] = RT_TABLE_MAIN  # filtered by the kernel (strict check)
                try:
                    answer = chan.dump(query, RTM_GETROUTE)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # no main table yet: no routes
                        raise
                    answer = []
                for m in answer:
                    route = _route_from(m, names)
                    if route is not None:
                        routes.append(route)
            tables: tuple[str, ...] = ()
            if firewall and nft_available():
                listing = self._nft(ns).run("list tables", "nft list tables") or {}
                tables = tuple(
                    sorted(
                        f"{t['table']['family']} {t['table']['name']}"
                        for t in listing.get("nftables", [])
                        if "table" in t
                    )
                )
        return Snapshot(
            ns=ns,
            links=links,
            addresses=tuple(found),
            routes=tuple(routes),
            nft_tables=tables,
        )

    def _sysctl_fd(self, ns: str | None, key: str) -> int:
        """An fd on /proc/sys/<key> of ``ns``: /proc/sys/net resolves the namespace when
        the file is opened, so it is opened from inside and then kept. Per-interface
        keys are not kept: the interface (and its file) can go away."""
        path = _sysctl_path(key)

        def opener() -> int:
            try:
                return os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except PermissionError:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

        handle = self._handle(ns)
        fd = handle.sysctls.get(key)
        if fd is None:
            try:
                fd = self._in_ns(ns, opener)
            except FileNotFoundError:
                raise errors.NotFoundError(
                    f"no sysctl {key!r} in {ns or 'the root namespace'}"
                ) from None
            if "/conf/" not in key or "/conf/all/" in key or "/conf/default/" in key:
                handle.sysctls[key] = fd
        return fd

    def _sysctl_done(self, ns: str | None, key: str, fd: int) -> None:
        handle = self._handles.get(ns)
        if handle is None or handle.sysctls.get(key) != fd:
            os.close(fd)

    def sysctl(self, ns: str | None, key: str) -> str:
        with self._lock, _translate(f"read sysctl {key} in {ns or 'root namespace'}", None):
            fd = self._sysctl_fd(ns, key)
            try:
                return os.pread(fd, 4096, 0).decode().rstrip("\n")
            finally:
                self._sysctl_done(ns, key, fd)

    def bound_sockets(
        self,
        ns: str | None,
        ports: Collection[int] | None = None,
        *,
        owners: bool = True,
        protocols: Collection[str] | None = None,
    ) -> tuple[BoundSocket, ...]:
        with self._lock, _translate(f"list bound sockets in {ns or 'root namespace'}", None):
            handle = self._handle(ns)
            if handle.diag is None:
                handle.diag = self._in_ns(ns, open_diag_socket)
            found = diag_bound(handle.diag, ports, protocols)
        who = find_owners([inode for _, inode in found]) if owners else {}
        out = []
        for sock, inode in found:
            pid, process = who.get(inode, (None, None))
            out.append(
                BoundSocket(
                    protocol=sock.protocol,
                    address=sock.address,
                    port=sock.port,
                    pid=pid,
                    process=process,
                )
            )
        return tuple(out)

    def nft_list(self, ns: str | None, table: str) -> Mapping[str, Any] | None:
        family, _, name = table.partition(" ")
        try:
            with self._lock, _translate(f"nft list {table}", None):
                listing = self._nft(ns).run(f"list table {family} {name}", f"nft list {table}")
        except errors.NotFoundError:
            return None
        return _normalise_nft(listing or {})

    def popen(self, ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        if isinstance(argv, str | bytes):
            raise errors.ValidationError(
                "argv must be a list of arguments, not a string: no shell is ever used"
            )
        if kwargs.get("shell"):
            raise errors.ValidationError("shell=True is not supported: no shell is ever used")
        if ns is None and not self._off_root():
            return subprocess.Popen(list(argv), **kwargs)
        fd = nsenter.open_namespace(ns) if ns is not None else os.dup(self._root_fd)
        try:
            pass_fds = (*kwargs.pop("pass_fds", ()), fd)

            def enter() -> None:  # runs in the child, between fork and exec
                nsenter.setns(fd)
                os.close(fd)

            return subprocess.Popen(list(argv), pass_fds=pass_fds, preexec_fn=enter, **kwargs)
        except subprocess.SubprocessError as exc:
            raise errors.KernelError(
                f"enter namespace {ns!r} for {argv[0]!r}", 0, str(exc)
            ) from exc
        finally:
            os.close(fd)

    # -- apply -------------------------------------------------------------------------

    def apply(self, op: Op) -> None:
        handler = getattr(self, f"_apply_{type(op).__name__}", None)
        if handler is None:
            raise errors.UnsupportedError(f"the netlink backend cannot apply {type(op).__name__}")
        with self._lock, _translate(op.describe(), op):
            try:
                handler(op)
            except NetlinkError as exc:
                # A cached interface index can be stale if another process replaced
                # the link; the kernel then says ENODEV and nothing was done (every
                # multi-request op undoes its first part before raising). Forget the
                # cache and try once more with fresh lookups.
                if exc.code != errno.ENODEV or not any(h.indexes for h in self._handles.values()):
                    raise
                for handle in self._handles.values():
                    handle.indexes.clear()
                handler(op)

    def _apply_CreateNamespace(self, op: CreateNamespace) -> None:
        # lo up with one ioctl from the creating thread, and no sockets opened: most
        # callers (Controller.create_namespace) would close them at once, and the next
        # op in this namespace opens them lazily (_handle) for a fraction of a millisecond.
        nsenter.create_namespace(op.ns, nsenter.lo_up)
        self.release(op.ns)

    def _apply_DeleteNamespace(self, op: DeleteNamespace) -> None:
        # Our own socket would keep the namespace, and every veth in it, alive.
        self.release(op.ns)
        for key in [k for k in self._held if k[0] == op.ns]:
            self._held.pop(key).close()
        nsenter.delete_namespace(op.ns)

    def _apply_Adopt(self, op: Adopt) -> None:
        if op.kind == "namespace":
            self._ident(op.ns)
        elif op.kind == "link":
            self._index(self._chan(op.ns), op.name, op.ns)

    def _apply_Release(self, op: Release) -> None:
        pass

    def _ns_fd_attr(self, target: str | None) -> tuple[str, int]:
        fd = self._root_fd if target is None else nsenter.open_namespace(target)
        return ("IFLA_NET_NS_FD", fd)

    def _apply_AddLink(self, op: AddLink) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        check_ifname(op.name)
        if op.peer is not None:
            check_ifname(op.peer)
        if op.kind in ("macvlan", "macvtap") and op.parent_ns != SAME_NS:
            where = op.parent_ns  # created next to its parent, moved into op.ns by fd
        else:
            where = op.ns
        chan = self._chan(where)
        fds: list[int] = []
        try:
            msg = ifinfmsg()
            # Bridge-port and IPv6 settings can only be changed once the link exists;
            # bring it up in that second request, so nothing happens before they apply.
            settle: list[Any] = []
            if op.hairpin and op.master is not None:
                settle.append(_HAIRPIN)
            if not op.ipv6_linklocal:
                settle.append(_NO_LINKLOCAL)
            if op.up and not settle:
                msg["flags"] = msg["change"] = IFF_UP
            attrs: list[Any] = [("IFLA_IFNAME", op.name)]
            if op.mtu is not None:
                attrs.append(("IFLA_MTU", op.mtu))
            if op.mac is not None:
                attrs.append(("IFLA_ADDRESS", op.mac))
            if op.master is not None:
                attrs.append(("IFLA_MASTER", self._index(chan, op.master, op.ns)))
            if op.group is not None:
                attrs.append(("IFLA_GROUP", op.group))
            if where != op.ns:
                attr = self._ns_fd_attr(op.ns)
                if op.ns is not None:
                    fds.append(attr[1])
                attrs.append(attr)
            data: list[Any] = []
            if op.kind == "veth":
                peer: list[Any] = [("IFLA_IFNAME", op.peer)]
                if op.mtu is not None:
                    peer.append(("IFLA_MTU", op.mtu))
                if op.peer_mac is not None:
                    peer.append(("IFLA_ADDRESS", op.peer_mac))
                if op.peer_ns != SAME_NS:
                    attr = self._ns_fd_attr(op.peer_ns)
                    if op.peer_ns is not None:
                        fds.append(attr[1])
                    peer.append(attr)
                # The peer cannot be brought up in the same request (the kernel opens
                # it before the pair is linked and answers ENOTCONN); see below.
                data.append(("VETH_INFO_PEER", {"attrs": peer}))
            elif op.kind in ("macvlan", "macvtap"):
                if op.parent is None:
                    raise errors.InvalidOption("parent", None, "a macvlan needs a parent")
                attrs.append(("IFLA_LINK", self._index(chan, op.parent, where)))
                mode = op.mode or "bridge"
                if mode not in MACVLAN_MODES:
                    raise errors.InvalidOption("mode", mode, f"one of {sorted(MACVLAN_MODES)}")
                data.append(("IFLA_MACVLAN_MODE", MACVLAN_MODES[mode]))
            elif op.kind == "vxlan":
                data.append(("IFLA_VXLAN_ID", op.vni))
                data.append(("IFLA_VXLAN_LEARNING", 0))
                data.append(("IFLA_VXLAN_PORT", socket.htons(op.port or 4789)))
                if op.parent is not None:
                    data.append(("IFLA_VXLAN_LINK", self._index(chan, op.parent, where)))
                if op.local is not None:
                    key = "IFLA_VXLAN_LOCAL6" if ":" in op.local else "IFLA_VXLAN_LOCAL"
                    data.append((key, op.local))
            info: list[Any] = [("IFLA_INFO_KIND", op.kind)]
            if data:
                info.append(("IFLA_INFO_DATA", {"attrs": data}))
            attrs.append(("IFLA_LINKINFO", {"attrs": info}))
            msg["attrs"] = attrs
            try:
                echo = chan.request_echo(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
                self._learn(echo, op, where)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST and op.kind == "veth" and op.peer:
                    raise self._which_exists(op) from exc
                if exc.code == errno.EOPNOTSUPP:
                    raise errors.UnsupportedError(
                        f"this kernel has no {op.kind!r} link type (creating {op.name!r})"
                    ) from exc
                raise
            # With settings to apply, the peer comes up first, while this end is still
            # down: a veth has no carrier until both ends are up, so no IPv6 address is
            # generated before the settings (applied in the same request) take effect.
            try:
                if op.kind == "veth" and op.peer_up:
                    peer_ns = op.peer_namespace
                    peer_attrs = [] if op.ipv6_linklocal else [_NO_LINKLOCAL]
                    self._link_request(peer_ns, op.peer or "", peer_attrs, up=True)
                if settle and op.up and not op.ipv6_linklocal and op.kind == "veth":
                    # the peer is up now: this end gets its carrier the moment it comes
                    # up, so the IPv6 setting must land in an earlier request
                    self._link_request(op.ns, op.name, settle)
                    self._link_request(op.ns, op.name, [], up=True)
                elif settle:
                    self._link_request(op.ns, op.name, settle, up=True if op.up else None)
            except BaseException:
                self._link_request(op.ns, op.name, [], msg_type=RTM_DELLINK)
                raise
        finally:
            for fd in fds:
                os.close(fd)

    def _learn(self, echo: bytes | None, op: AddLink, where: str | None) -> None:
        """Keep the indexes the kernel echoed for a new link (and its veth peer)."""
        if echo is None or where != op.ns:
            return
        index, peer = _echoed_indexes(echo)
        handle = self._handles.get(op.ns)
        if handle is not None and index:
            handle.indexes[op.name] = index
        if op.kind == "veth" and op.peer and peer:
            peer_ns = op.peer_namespace
            peer_handle = self._handles.get(peer_ns)
            if peer_handle is not None:
                peer_handle.indexes[op.peer] = peer

    def _which_exists(self, op: AddLink) -> errors.HostnetError:
        try:
            self._index(self._chan(op.ns), op.name, op.ns)
            return errors.LinkExists(op.name, op.ns)
        except errors.LinkNotFound:
            peer_ns = op.peer_namespace
            return errors.LinkExists(op.peer or "", peer_ns)

    def _link_request(
        self,
        ns: str | None,
        name: str,
        attrs: list[Any],
        up: bool | None = None,
        msg_type: int = RTM_NEWLINK,
    ) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        chan = self._chan(ns)
        msg = ifinfmsg()
        msg["index"] = self._index(chan, name, ns)
        if up is not None:
            msg["change"] = IFF_UP
            msg["flags"] = IFF_UP if up else 0
        msg["attrs"] = attrs
        if msg_type == RTM_DELLINK or any(a[0] == "IFLA_NET_NS_FD" for a in attrs):
            self._forget_indexes(ns)
        chan.request(msg, msg_type)

    def _apply_DelLink(self, op: DelLink) -> None:
        self._link_request(op.ns, op.name, [], msg_type=RTM_DELLINK)

    def _apply_DelLinkGroup(self, op: DelLinkGroup) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        if op.group == 0:
            raise errors.InvalidOption("group", 0, "group 0 holds every link; refusing")
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_GROUP", op.group)]
        self._forget_indexes(op.ns)
        self._chan(op.ns).request(msg, RTM_DELLINK)

    def _apply_RecreateLinks(self, op: RecreateLinks) -> None:
        for link in op.links:
            self._apply_AddLink(link)

    def _apply_SetLinkUp(self, op: SetLinkUp) -> None:
        self._link_request(op.ns, op.name, [], up=op.up)

    def _apply_SetMaster(self, op: SetMaster) -> None:
        chan = self._chan(op.ns)
        master = 0 if op.master is None else self._index(chan, op.master, op.ns)
        self._link_request(op.ns, op.name, [("IFLA_MASTER", master)])

    def _apply_MoveLink(self, op: MoveLink) -> None:
        attr = self._ns_fd_attr(op.to_ns)
        try:
            self._link_request(op.ns, op.name, [attr])
        finally:
            if op.to_ns is not None:
                os.close(attr[1])

    def _addr_msg(self, op: AddAddress | DelAddress) -> Any:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        iface = ipaddress.ip_interface(op.address)
        msg = ifaddrmsg()
        msg["family"] = _family(op.address)
        msg["prefixlen"] = iface.network.prefixlen
        msg["index"] = self._index(self._chan(op.ns), op.ifname, op.ns)
        ip = str(iface.ip)
        attrs: list[Any] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
        if iface.version == 4 and iface.network.prefixlen < 31:
            attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
        if iface.version == 6:
            # Like Docker: no duplicate address detection, so the address is usable at
            # once instead of "tentative" for a second or more.
            msg["flags"] = IFA_F_NODAD
            attrs.append(("IFA_FLAGS", IFA_F_NODAD))
        msg["attrs"] = attrs
        return msg

    def _apply_AddAddress(self, op: AddAddress) -> None:
        msg = self._addr_msg(op)
        try:
            self._chan(op.ns).request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise errors.AddressInUse(op.address, interface=op.ifname) from exc
            raise

    def _apply_DelAddress(self, op: DelAddress) -> None:
        self._chan(op.ns).request(self._addr_msg(op), RTM_DELADDR)

    def _route_msg(self, op: AddRoute | DelRoute) -> Any:
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        dst = ipaddress.ip_network(op.dst, strict=True)
        msg = rtmsg()
        msg["family"] = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
        msg["dst_len"] = dst.prefixlen
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["type"] = RTN_UNICAST
        msg["scope"] = RT_SCOPE_UNIVERSE if op.gateway else RT_SCOPE_LINK
        attrs: list[Any] = []
        if dst.prefixlen:
            attrs.append(("RTA_DST", str(dst.network_address)))
        if op.gateway:
            attrs.append(("RTA_GATEWAY", op.gateway))
        if op.ifname:
            attrs.append(("RTA_OIF", self._index(self._chan(op.ns), op.ifname, op.ns)))
        msg["attrs"] = attrs
        return msg

    def _apply_AddRoute(self, op: AddRoute) -> None:
        msg = self._route_msg(op)
        try:
            self._chan(op.ns).request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise errors.ConflictError(f"route to {op.dst} already exists") from exc
            raise

    def _apply_DelRoute(self, op: DelRoute) -> None:
        msg = self._route_msg(op)
        msg["scope"] = RT_SCOPE_NOWHERE  # "any scope": the kernel matches it exactly else
        msg["proto"] = 0
        self._chan(op.ns).request(msg, RTM_DELROUTE)

    def _neigh_msg(
        self, ns: str | None, ifname: str, family: int, attrs: list[Any], flags: int = 0
    ) -> Any:
        from pyroute2.netlink.rtnl.ndmsg import ndmsg

        msg = ndmsg()
        msg["family"] = family
        msg["ifindex"] = self._index(self._chan(ns), ifname, ns)
        msg["state"] = NUD_PERMANENT
        msg["flags"] = flags
        msg["attrs"] = attrs
        return msg

    def _apply_AddNeighbour(self, op: AddNeighbour) -> None:
        msg = self._neigh_msg(
            op.ns,
            op.ifname,
            _family(op.address),
            [("NDA_DST", op.address), ("NDA_LLADDR", op.mac)],
        )
        self._chan(op.ns).request(msg, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL)

    def _apply_DelNeighbour(self, op: DelNeighbour) -> None:
        msg = self._neigh_msg(op.ns, op.ifname, _family(op.address), [("NDA_DST", op.address)])
        self._chan(op.ns).request(msg, RTM_DELNEIGH)

    def _apply_AddFdb(self, op: AddFdb) -> None:
        msg = self._neigh_msg(
            op.ns, op.ifname, AF_BRIDGE, [("NDA_LLADDR", op.mac), ("NDA_DST", op.dst)], NTF_SELF
        )
        self._chan(op.ns).request(msg, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL)

    def _apply_DelFdb(self, op: DelFdb) -> None:
        msg = self._neigh_msg(
            op.ns, op.ifname, AF_BRIDGE, [("NDA_LLADDR", op.mac), ("NDA_DST", op.dst)], NTF_SELF
        )
        self._chan(op.ns).request(msg, RTM_DELNEIGH)

    def _apply_SetSysctl(self, op: SetSysctl) -> None:
        fd = self._sysctl_fd(op.ns, op.key)
        try:
            os.pwrite(fd, op.value.encode(), 0)
        finally:
            self._sysctl_done(op.ns, op.key, fd)

    def _apply_NftBatch(self, op: NftBatch) -> None:
        self._nft(op.ns).run(op.commands, op.describe())

    def _apply_BindPort(self, op: BindPort) -> None:
        key = (op.ns, op.protocol, op.address, op.port)
        try:
            sock = self._in_ns(op.ns, lambda: bind_holder(op.protocol, op.address, op.port))
        except OSError as exc:
            if exc.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT):
                raise errors.UnsupportedError(
                    f"this kernel does not support {op.protocol.upper()} sockets "
                    f"(load its module, e.g. `modprobe {op.protocol}`), so hostnet cannot hold "
                    f"port {op.port}/{op.protocol}"
                ) from exc
            if exc.errno == errno.EADDRINUSE:
                holders = [
                    s for s in self.bound_sockets(op.ns, [op.port]) if s.protocol == op.protocol
                ]
                pid = holders[0].pid if holders else None
                name = holders[0].process if holders else None
                raise errors.PortInUse(
                    port=op.port,
                    protocol=op.protocol,
                    host_ip=op.address,
                    owner_pid=pid,
                    owner_name=name,
                ) from exc
            raise
        self._held[key] = sock

    def _apply_UnbindPort(self, op: UnbindPort) -> None:
        sock = self._held.pop((op.ns, op.protocol, op.address, op.port), None)
        if sock is None:
            raise errors.NotFoundError(f"port {op.address}:{op.port}/{op.protocol} is not held")
        sock.close()


_HAIRPIN = (
    "IFLA_LINKINFO",
    {
        "attrs": [
            ("IFLA_INFO_SLAVE_KIND", "bridge"),
            ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]}),  # hairpin on
        ]
    },
)
IN6_ADDR_GEN_MODE_NONE = 1
_NO_LINKLOCAL = (
    "IFLA_AF_SPEC",
    {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]})]},
)


def _echoed_indexes(message: bytes) -> tuple[int, int | None]:
    """(index, IFLA_LINK) of an echoed RTM_NEWLINK, read with struct."""
    index = struct.unpack_from("=i", message, 20)[0]
    offset = 32
    while offset + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        if kind & 0x3FFF == 5:  # IFLA_LINK
            return index, struct.unpack_from("=I", message, offset + 4)[0]
        offset += (length + 3) & ~3
    return index, None


def _sysctl_path(key: str) -> str:
    if ".." in key or key.startswith("/") or not key.startswith("net/"):
        raise errors.InvalidOption("sysctl", key, "only net/... keys, without '..'")
    return "/proc/sys/" + key


def _link_from(m: Any, names: Mapping[int, str]) -> Link:
    info = m.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    if m["ifi_type"] == ARPHRD_LOOPBACK:
        kind = "loopback"
    parent = mode = vni = None
    same_ns = m.get_attr("IFLA_LINK_NETNSID") is None
    if kind in ("macvlan", "macvtap"):
        if same_ns:
            parent = names.get(m.get_attr("IFLA_LINK"))
        if data is not None:
            mode = data.get_attr("IFLA_MACVLAN_MODE") or data.get_attr("IFLA_MACVTAP_MODE")
    elif kind == "vxlan" and data is not None:
        vni = data.get_attr("IFLA_VXLAN_ID")
        parent = names.get(data.get_attr("IFLA_VXLAN_LINK"))
    stats = m.get_attr("IFLA_STATS64")
    master = m.get_attr("IFLA_MASTER")
    return Link(
        name=m.get_attr("IFLA_IFNAME"),
        index=m["index"],
        kind=kind or "device",
        mtu=m.get_attr("IFLA_MTU"),
        mac=(m.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00").lower(),
        up=bool(m["flags"] & IFF_UP),
        master=names.get(master) if master else None,
        parent=parent,
        mode=mode if isinstance(mode, str) else None,
        vni=vni,
        group=m.get_attr("IFLA_GROUP") or 0,
        stats=LinkStats(
            rx_bytes=stats["rx_bytes"],
            tx_bytes=stats["tx_bytes"],
            rx_packets=stats["rx_packets"],
            tx_packets=stats["tx_packets"],
            rx_dropped=stats["rx_dropped"],
            tx_dropped=stats["tx_dropped"],
        )
        if stats
        else LinkStats(),
    )


def _route_from(m: Any, names: Mapping[int, str]) -> Route | None:
    table = m.get_attr("RTA_TABLE") or m["table"]
    if table != RT_TABLE_MAIN or m["type"] != RTN_UNICAST:
        return None
    family = m["family"]
    dst = m.get_attr("RTA_DST") or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    net = ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False)
    if net.version == 6 and (net.is_link_local or net.is_multicast):
        return None
    oif = m.get_attr("RTA_OIF")
    return Route(
        dst=str(net), gateway=m.get_attr("RTA_GATEWAY"), ifname=names.get(oif) if oif else None
    )


def _normalise_nft(listing: Mapping[str, Any]) -> dict[str, Any]:
    """nft's JSON listing of one table in the shape the fake's ``list_table`` returns."""
    chains: dict[str, dict[str, Any]] = {}
    sets: dict[str, list[str]] = {}
    for item in listing.get("nftables", []):
        if "chain" in item:
            c = item["chain"]
            chains[c["name"]] = {"hook": c.get("hook"), "rules": 0, "policy": c.get("policy")}
        elif "rule" in item:
            r = item["rule"]
            chain = {"hook": None, "rules": 0, "policy": None}
            chains.setdefault(r["chain"], chain)["rules"] += 1
        elif "set" in item or "map" in item:
            s = item.get("set") or item.get("map")
            elems = []
            for e in s.get("elem", []):
                key = e[0] if isinstance(e, list) and "map" in item else e
                elems.append(json.dumps(key, sort_keys=True, separators=(",", ":")))
            sets[s["name"]] = sorted(elems)
    return {"chains": dict(sorted(chains.items())), "sets": dict(sorted(sets.items()))}


@contextmanager
def _translate(action: str, op: Op | None) -> Iterator[None]:
    """The one place where kernel errors become hostnet errors."""
    try:
        yield
    except errors.HostnetError:
        raise
    except NetlinkError as exc:
        raise _from_errno(
            action, exc.code, op, str(exc.args[1] if len(exc.args) > 1 else "")
        ) from exc
    except OSError as exc:
        raise _from_errno(action, exc.errno or 0, op, exc.strerror or "") from exc


def _from_errno(action: str, code: int, op: Op | None, detail: str) -> errors.HostnetError:
    if code in (errno.EPERM, errno.EACCES):
        return errors.PermissionDenied(action)
    if code == errno.ENODEV and isinstance(op, DelLink | SetLinkUp | SetMaster | MoveLink):
        return errors.LinkNotFound(op.name, op.ns)
    if (
        code in (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV)
        and op is not None
        and op.destructive
    ):
        return errors.NotFoundError(f"{action}: already gone ({os.strerror(code)})")
    if code == errno.EEXIST:
        if isinstance(op, MoveLink):
            return errors.LinkExists(op.name, op.to_ns)
        if isinstance(op, AddLink):
            return errors.LinkExists(op.name, op.ns)
        return errors.ConflictError(f"{action}: already exists")
    if code == errno.EADDRINUSE:
        return errors.ConflictError(f"{action}: address in use")
    return errors.KernelError(action, code, detail)
