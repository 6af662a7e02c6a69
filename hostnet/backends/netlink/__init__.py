"""The real backend: rtnetlink (messages built with struct, see rtnl), nftables through
libnftables, socket diagnostics.

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
import functools
import ipaddress
import json
import os
import socket
import subprocess
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from hostnet import errors
from hostnet.backends.netlink import netfilter, nsenter, rtnl
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

# Constants from <linux/rtnetlink.h> and friends.
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTN_LOCAL = 2  # a route's type: an address of this namespace
# route types that keep a destination out of use: blackhole, unreachable, prohibit
_KEPT_OUT = frozenset({6, 7, 8})
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
IFF_UP = 0x1
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


@functools.lru_cache(maxsize=256)
def _route_dst(dst: str) -> tuple[int, int, bytes]:
    """(family, prefix length, network address) of a route's destination, parsed once
    (most routes are one of two defaults)."""
    net = route_destination(dst)
    return _family(dst), net.prefixlen, net.network_address.packed


class _Opened:
    """What a namespace's handle keeps, opened from inside it: a route socket, and the
    namespace's /proc/sys/net/ipv6/conf directory (None without IPv6)."""

    def __init__(self) -> None:
        self.route = open_route_socket()
        try:
            flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            self.ipv6conf: int | None = nsenter.open_sysctl("net/ipv6/conf", flags)
        except FileNotFoundError:
            self.ipv6conf = None
        except BaseException:
            self.route.close()
            raise

    def close(self) -> None:  # (a thread interrupted while opening: nsenter)
        self.route.close()
        if self.ipv6conf is not None:
            os.close(self.ipv6conf)


class _Handle:
    """Everything kept open for one namespace: each was opened from a thread inside it
    and stays bound to it, so using it later needs no thread at all."""

    __slots__ = (
        "chan",
        "diag",
        "ident",
        "indexes",
        "ipv6conf",
        "netfilter",
        "nft",
        "sysctls",
        "top_index",
    )

    def __init__(self, opened: _Opened, ident: tuple[int, int] | None) -> None:
        self.chan = Channel(opened.route)
        # the namespace's /proc/sys/net/ipv6/conf (None: it has no IPv6), see _ipv6_off
        self.ipv6conf = opened.ipv6conf
        self.diag: socket.socket | None = None  # opened on first use (bound_sockets)
        # ctnetlink and nftables' tables (opened on first use: ForgetFlows, observe)
        self.netfilter: Channel | None = None
        self.ident = ident
        self.nft: NftContext | None = None
        self.sysctls: dict[str, int] = {}  # key -> fd of /proc/sys/<key>
        # interface name -> index, learnt from lookups and from creates; dropped with
        # every delete in this namespace (and with the handle)
        self.indexes: dict[str, int] = {}
        # the highest index an observation of this namespace saw (0: none yet)
        self.top_index = 0

    def close(self) -> None:
        self.chan.close()
        if self.diag is not None:
            self.diag.close()
        if self.netfilter is not None:
            self.netfilter.close()
        if self.nft is not None:
            self.nft.close()
        for fd in self.sysctls.values():
            os.close(fd)
        self.sysctls.clear()
        if self.ipv6conf is not None:
            os.close(self.ipv6conf)
            self.ipv6conf = None


MACVLANS = ("macvlan", "macvtap")

#: refusals in a row after which a backend stops asking for interface indexes
INDEX_REFUSALS = 3


class _Gate:
    """The backend's lock, and the span over which a namespace name, once checked to
    still name the namespace its cached handle was opened in, counts as checked: one
    ``stat`` per namespace per backend call instead of one per request."""

    __slots__ = ("_depth", "_lock", "checked")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self.checked: set[str | None] = set()

    def __enter__(self) -> None:
        self._lock.acquire()
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if not self._depth:
            self.checked.clear()
        self._lock.release()

    @property
    def held(self) -> bool:
        return self._depth > 0


class NetlinkBackend:
    """The kernel, through netlink and nftables. Needs root (CAP_NET_ADMIN and, to
    create namespaces, CAP_SYS_ADMIN)."""

    name = "netlink"

    def __init__(self) -> None:
        # The namespace this process started in is what "None" means in every op.
        self._root_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._handles: dict[str | None, _Handle] = {}
        self._held: dict[tuple[str | None, str, str, int], socket.socket] = {}
        self._lock = _Gate()
        # Links made for another namespace ask for an index there (see _create_link),
        # until the kernel has refused INDEX_REFUSALS in a row.
        self._index_refusals = 0
        # (name, unique mount id, cookie) of the namespace CreateNamespace made last
        self._born: tuple[str, str | None, int | None] | None = None
        # names reserved by reserve_namespace (with their tokens), for the next
        # CreateNamespace of each
        self._reserved: dict[str, str] = {}

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
        handle = self._handles.get(ns)
        if handle is not None and handle.chan.broken:  # (a dump an interrupt cut short)
            handle.close()
            del self._handles[ns]
            handle = None
        if handle is not None and ns in self._lock.checked:
            return handle
        ident = self._ident(ns)
        if handle is not None and handle.ident == ident:
            if self._lock.held:
                self._lock.checked.add(ns)
            return handle
        if handle is not None:  # the name now refers to a different namespace
            handle.close()
            del self._handles[ns]
        self._lock.checked.discard(ns)
        try:
            opened = self._in_ns(ns, _Opened)
        except PermissionError as exc:
            raise errors.PermissionDenied(
                f"open netlink socket in {ns or 'root namespace'}"
            ) from exc
        handle = _Handle(opened, ident)
        self._handles[ns] = handle
        if self._lock.held:
            self._lock.checked.add(ns)
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
            self._lock.checked.discard(ns)
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

    def processes(self, ns: str) -> tuple[int, ...]:
        return nsenter.processes_in(ns)

    def namespace_mount(self, ns: str) -> str | None:
        try:
            return nsenter.mount_id(ns_path(ns))
        except FileNotFoundError:
            raise errors.NamespaceNotFound(ns) from None

    def mount_view(self) -> str | None:
        return nsenter.mount_view()

    def namespace_id(self, ns: str | None) -> str | None:
        born = self._born
        if born is not None and born[0] == ns:
            self._born = None
        if (
            born is not None
            and born[0] == ns
            and born[1] is not None
            and born[1] == nsenter.mount_id(ns_path(ns))
        ):
            cookie = born[2]  # made by this backend just now: no socket needed
        else:
            with self._lock, _translate(f"identify namespace {ns}", None):
                cookie = nsenter.netns_cookie(self._handle(ns).chan.sock)
        return None if cookie is None else f"{nsenter.boot_id()}/{cookie}"

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
        msg = rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, name), rtnl.u32(rtnl.IFLA_EXT_MASK, 0))
        try:
            return chan.get_index(msg, RTM_GETLINK)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise errors.LinkNotFound(name, ns) from None
            raise

    def observe(
        self, ns: str | None, *, firewall: bool = True, addresses: bool = True
    ) -> Snapshot:
        with self._lock, _translate(f"observe {ns or 'root namespace'}", None):
            handle = self._handle(ns)
            chan = handle.chan
            raw_links = [rtnl.link(m) for m in chan.dump(rtnl.ifinfo(), RTM_GETLINK)]
            names = rtnl.names_by_index(raw_links)
            handle.top_index = max(names, default=0)
            links = tuple(_link_from(m, names) for m in raw_links)
            found = []
            for m in chan.dump(rtnl.ifaddr(0, 0, 0), RTM_GETADDR) if addresses else ():
                family, prefixlen, index, addr = rtnl.address(m)
                if addr is None or (
                    family == socket.AF_INET6 and ipaddress.ip_address(addr).is_link_local
                ):
                    continue
                found.append(Address(ifname=names.get(index, "?"), address=f"{addr}/{prefixlen}"))
            routes = []
            unroutable = []
            # Both families in one dump, filtered by table in the kernel (strict check).
            # A family without a main table yet adds nothing (asked for by AF_INET
            # alone, IPv4 would answer ENOENT instead).
            query = rtnl.rtmsg(socket.AF_UNSPEC, table=RT_TABLE_MAIN)
            for m in chan.dump(query, RTM_GETROUTE):
                parsed = rtnl.route(m)
                route = _route_from(parsed, names)
                if route is not None:
                    routes.append(route)
                elif (
                    parsed["type"] in _KEPT_OUT
                    and parsed["table"] == RT_TABLE_MAIN
                    and parsed["dst"]  # (not a default one)
                ):
                    unroutable.append(f"{parsed['dst']}/{parsed['dst_len']}")
            tables: tuple[str, ...] = ()
            if firewall and nft_available():
                tables = netfilter.nft_tables(self._netfilter(ns, handle))
            cookie = nsenter.netns_cookie(handle.chan.sock)
        return Snapshot(
            ns=ns,
            links=links,
            addresses=tuple(found),
            routes=tuple(routes),
            unroutable=tuple(unroutable),
            nft_tables=tables,
            ident=None if cookie is None else f"{nsenter.boot_id()}/{cookie}",
        )

    def _sysctl_fd(self, ns: str | None, key: str) -> int:
        """An fd on /proc/sys/<key> of ``ns``: /proc/sys/net resolves the namespace when
        the file is opened, so it is opened from inside and then kept. Per-interface
        keys are not kept: the interface (and its file) can go away."""
        _check_sysctl(key)

        def opener() -> nsenter.Fds:
            opened = nsenter.Fds()  # (closed by nsenter if the caller is interrupted)
            try:
                opened.add_sysctl(key, os.O_RDWR)
            except PermissionError:
                opened.add_sysctl(key, os.O_RDONLY)
            return opened

        handle = self._handle(ns)
        fd = handle.sysctls.get(key)
        if fd is None:
            try:
                fd = self._in_ns(ns, opener).fds[0]
            except FileNotFoundError:
                raise errors.NotFoundError(
                    f"no sysctl {key!r} in {ns or 'the root namespace'}"
                ) from None
            if "/conf/" not in key or "/conf/all/" in key or "/conf/default/" in key:
                handle.sysctls[key] = fd
        return fd

    def _ipv6_off(self, ns: str | None, ifname: str) -> None:
        """``disable_ipv6`` on link ``ifname`` of ``ns``; nothing to do in a namespace
        without IPv6. Through the handle's directory of the namespace's
        net/ipv6/conf where the kernel is known to look names up in it
        (``nsenter.sysctl_dirs_stay_inside``): no thread. Otherwise from a thread
        inside ``ns``, like any sysctl of a link."""
        handle = self._handle(ns)
        if handle.ipv6conf is None:
            return  # the namespace has no IPv6 (its directory could not be opened)
        key = f"net/ipv6/conf/{ifname}/disable_ipv6"
        try:
            if nsenter.sysctl_dirs_stay_inside():
                flags = os.O_WRONLY | os.O_CLOEXEC
                try:
                    fd = os.open(f"{ifname}/disable_ipv6", flags, dir_fd=handle.ipv6conf)
                except PermissionError:  # (refused through the directory's procfs
                    # only, as a security module may: nsenter.open_sysctl tries /proc)
                    fd = self._sysctl_fd(ns, key)
            else:
                fd = self._sysctl_fd(ns, key)
        except (FileNotFoundError, errors.NotFoundError):
            # a link under IPv6's minimum MTU (its parent's, say) has no IPv6 at all
            if self._link_mtu(ns, ifname) < IPV6_MIN_MTU:
                return
            raise
        try:
            os.pwrite(fd, b"1", 0)
        finally:
            os.close(fd)

    def _link_mtu(self, ns: str | None, ifname: str) -> int:
        return int(self._get_link(ns, ifname)["mtu"])

    def _get_link(self, ns: str | None, name: str) -> dict[str, Any]:
        """Link ``name`` of ``ns`` as the kernel describes it now (LinkNotFound)."""
        ask = rtnl.ifinfo(rtnl.string(rtnl.IFLA_IFNAME, name), rtnl.u32(rtnl.IFLA_EXT_MASK, 0))
        try:
            return rtnl.link(self._chan(ns).get(ask, RTM_GETLINK))
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise errors.LinkNotFound(name, ns) from None
            raise

    def _sysctl_done(self, ns: str | None, key: str, fd: int) -> None:
        handle = self._handles.get(ns)
        if handle is None or handle.sysctls.get(key) != fd:
            os.close(fd)

    def is_local(self, ns: str | None, address: str) -> bool:
        family, dst_len, raw = _route_dst(address + ("/128" if ":" in address else "/32"))
        query = rtnl.rtmsg(family, rtnl.attr(rtnl.RTA_DST, raw), dst_len=dst_len)
        with self._lock, _translate(f"look up {address} in {ns or 'root namespace'}", None):
            try:
                answer = self._chan(ns).get(query, RTM_GETROUTE)
            except NetlinkError as exc:
                if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.EACCES):
                    return False  # no route at all (or a prohibit one): not local
                raise
        return bool(rtnl.route(answer)["type"] == RTN_LOCAL)

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
        idle: bool = False,
    ) -> tuple[BoundSocket, ...]:
        with self._lock, _translate(f"list bound sockets in {ns or 'root namespace'}", None):
            handle = self._handle(ns)
            if handle.diag is None:
                handle.diag = self._in_ns(ns, open_diag_socket)
            found = diag_bound(handle.diag, ports, protocols, idle=idle)
        who = find_owners([inode for _, inode in found]) if owners else {}
        out = []
        for sock, inode in found:
            pid, process = who.get(inode, (None, None))
            out.append(attrs.evolve(sock, pid=pid, process=process))
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
        if not argv:
            raise errors.ValidationError("argv is empty: give the command to run")
        if ns is not None and kwargs.get("preexec_fn") is not None:
            raise errors.ValidationError(
                "preexec_fn is not supported: hostnet's own enters the namespace"
            )
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
        with self._lock, _translate(None, op):
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

    def reserve_namespace(self, name: str) -> str:
        with self._lock:
            token = self._reserved[name] = nsenter.reserve_namespace(name)
            return token

    def reservation_is_unique(self, token: str) -> bool:
        return nsenter.token_is_unique(token)

    def _apply_CreateNamespace(self, op: CreateNamespace) -> None:
        # lo up with one ioctl from the creating thread, and no sockets opened: most
        # callers (Controller.create_namespace) would close them at once, and the next
        # op in this namespace opens them lazily (_handle) for a fraction of a millisecond.
        # (on the file reserved, if it is still that empty file: not on one someone
        # made after removing it, nor on their namespace)
        token = self._reserved.pop(op.ns, None)
        path = ns_path(op.ns)
        reserved = (
            token is not None
            and not nsenter.is_namespace(path)
            and nsenter.same_token(token, nsenter.file_token(path))
        )
        cookie = nsenter.create_namespace(op.ns, nsenter.lo_up, reserved=reserved)
        self.release(op.ns)
        # for namespace_id, which Controller.create_namespace asks right after (the
        # unique mount id tells it is still that namespace; the inode alone could not)
        self._born = (op.ns, nsenter.mount_id(ns_path(op.ns)), cookie)

    def _apply_DeleteNamespace(self, op: DeleteNamespace) -> None:
        self._reserved.pop(op.ns, None)
        if op.reserved == BARE and nsenter.is_namespace(ns_path(op.ns)):
            raise errors.NamespaceNotFound(op.ns)  # a namespace, not the empty file meant
        if op.reserved and not nsenter.same_token(op.token or "", nsenter.entry_token(op.ns)):
            raise errors.NamespaceNotFound(op.ns)  # not made on that reservation
        if (
            op.mount is not None
            and nsenter.is_namespace(ns_path(op.ns))  # (not a file left half deleted)
            and op.mount != self.namespace_mount(op.ns)
        ):
            raise errors.NamespaceNotFound(op.ns)  # the one meant is gone: another is there
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

    def _ns_fd(self, target: str | None) -> int:
        """An fd of namespace ``target`` for IFLA_NET_NS_FD (the caller closes it unless
        ``target`` is None: then it is the backend's own)."""
        return self._root_fd if target is None else nsenter.open_namespace(target)

    def _apply_AddLink(self, op: AddLink) -> None:
        check_ifname(op.name)
        if op.peer is not None:
            check_ifname(op.peer)
        # (a macvlan is created next to its parent, moved into op.ns by fd)
        where = op.parent_ns if op.kind in MACVLANS and op.parent_ns != SAME_NS else op.ns
        chan = self._chan(where)
        fds: list[int] = []
        try:
            # Bridge-port and IPv6 settings can only be changed once the link exists;
            # bring it up in that second request, so nothing happens before they apply.
            settle: list[bytes] = []
            if op.hairpin and op.master is not None:
                settle.append(rtnl.hairpin())
            # (a link under IPv6's minimum MTU has no IPv6 to configure: the kernel
            # refuses the setting, EAFNOSUPPORT)
            has_ipv6 = op.mtu is None or op.mtu >= IPV6_MIN_MTU
            if not op.ipv6_linklocal and has_ipv6:
                settle.append(rtnl.no_linklocal())
            # (with IPv6 to turn off first; a veth's workload end is its peer, which
            # comes up in a request of its own anyway)
            up = IFF_UP if op.up and not settle and (op.ipv6 or op.kind == "veth") else 0
            attrs = [rtnl.string(rtnl.IFLA_IFNAME, op.name)]
            if op.mtu is not None:
                attrs.append(rtnl.u32(rtnl.IFLA_MTU, op.mtu))
            if op.mac is not None:
                attrs.append(rtnl.mac(rtnl.IFLA_ADDRESS, op.mac))
            if op.master is not None:
                attrs.append(rtnl.u32(rtnl.IFLA_MASTER, self._index(chan, op.master, op.ns)))
            if op.group is not None:
                attrs.append(rtnl.u32(rtnl.IFLA_GROUP, op.group))
            if where != op.ns:
                fd = self._ns_fd(op.ns)
                if op.ns is not None:
                    fds.append(fd)
                attrs.append(rtnl.u32(rtnl.IFLA_NET_NS_FD, fd))
            data: list[bytes] = []
            if op.kind == "veth":
                peer = [rtnl.string(rtnl.IFLA_IFNAME, op.peer or "")]
                if op.mtu is not None:
                    peer.append(rtnl.u32(rtnl.IFLA_MTU, op.mtu))
                if op.peer_mac is not None:
                    peer.append(rtnl.mac(rtnl.IFLA_ADDRESS, op.peer_mac))
                if op.peer_ns != SAME_NS:
                    fd = self._ns_fd(op.peer_ns)
                    if op.peer_ns is not None:
                        fds.append(fd)
                    peer.append(rtnl.u32(rtnl.IFLA_NET_NS_FD, fd))
                # The peer cannot be brought up in the same request (the kernel opens
                # it before the pair is linked and answers ENOTCONN); see below.
                data.append(rtnl.attr(rtnl.VETH_INFO_PEER, rtnl.ifinfo(*peer)))
            elif op.kind in MACVLANS:
                if op.parent is None:
                    raise errors.InvalidOption("parent", None, "a macvlan needs a parent")
                # Looked up every time: a parent is the admin's link, which may have been
                # renamed since, its name given to another (the cached index would still
                # work, and put the endpoint on the wrong LAN).
                parent = self._lookup_index(chan, op.parent, where)
                attrs.append(rtnl.u32(rtnl.IFLA_LINK, parent))
                mode = op.mode or "bridge"
                if mode not in MACVLAN_MODES:
                    raise errors.InvalidOption("mode", mode, f"one of {sorted(MACVLAN_MODES)}")
                data.append(rtnl.u32(rtnl.IFLA_MACVLAN_MODE, MACVLAN_MODES[mode]))
            elif op.kind == "bridge" and op.mcast_snooping is not None:
                data.append(rtnl.u8(rtnl.IFLA_BR_MCAST_SNOOPING, int(op.mcast_snooping)))
            elif op.kind == "vxlan":
                data.append(rtnl.u32(rtnl.IFLA_VXLAN_ID, op.vni or 0))
                data.append(rtnl.u8(rtnl.IFLA_VXLAN_LEARNING, 0))
                port = (op.port or 4789).to_bytes(2, "big")  # network byte order
                data.append(rtnl.attr(rtnl.IFLA_VXLAN_PORT, port))
                if op.parent is not None:
                    index = self._index(chan, op.parent, where)
                    data.append(rtnl.u32(rtnl.IFLA_VXLAN_LINK, index))
                if op.local is not None:
                    key = rtnl.IFLA_VXLAN_LOCAL6 if ":" in op.local else rtnl.IFLA_VXLAN_LOCAL
                    data.append(rtnl.ip(key, op.local))
            info = [rtnl.string(rtnl.IFLA_INFO_KIND, op.kind)]
            if data:
                info.append(rtnl.nested(rtnl.IFLA_INFO_DATA, data))
            attrs.append(rtnl.nested(rtnl.IFLA_LINKINFO, info))
            # A link made for another namespace is not echoed back: ask for an index
            # above every one observed there, so the next op needs no lookup.
            moved = self._handles.get(op.ns) if where != op.ns else None
            index = moved.top_index + 1 if moved is not None and moved.top_index else 0
            try:
                echo, index = self._create_link(chan, attrs, up, index)
                if moved is not None:  # 0 if the index was taken: the next op looks
                    moved.top_index = index
                    if index:
                        moved.indexes[op.name] = index
                self._learn(echo, op, where)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST and op.kind == "veth" and op.peer:
                    raise self._which_exists(op) from exc
                if exc.code == errno.EINVAL and op.kind in MACVLANS and op.mtu:
                    parent_mtu = self._get_link(where, op.parent or "")["mtu"]
                    if parent_mtu is not None and op.mtu > parent_mtu:
                        raise errors.MtuAboveParent(
                            op.name, op.mtu, op.parent or "", parent_mtu
                        ) from exc
                if exc.code == errno.EOPNOTSUPP:
                    # the same errno for a master that takes no ports (not a bridge)
                    master = (
                        f"{op.master!r} takes no ports (is it a bridge?), or " if op.master else ""
                    )
                    raise errors.UnsupportedError(
                        f"{master}this kernel has no {op.kind!r} link type (creating {op.name!r})"
                    ) from exc
                raise
            # With settings to apply, the peer comes up first, while this end is still
            # down: a veth has no carrier until both ends are up, so no IPv6 address is
            # generated before the settings (applied in the same request) take effect.
            try:
                if not op.ipv6:  # before the workload's end comes up
                    if op.kind == "veth":
                        self._ipv6_off(op.peer_namespace, op.peer or "")
                    else:
                        self._ipv6_off(op.ns, op.name)
                        if op.up and not settle:
                            self._link_request(op.ns, op.name, [], up=True)
                if op.kind == "veth" and op.peer_up:
                    peer_ns = op.peer_namespace
                    peer_attrs = [] if op.ipv6_linklocal or not has_ipv6 else [rtnl.no_linklocal()]
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

    def _create_link(
        self, chan: Channel, attrs: list[bytes], up: int, index: int
    ) -> tuple[bytes | None, int]:
        """RTM_NEWLINK asking for ``index`` (0: any); the echo and the index asked for
        that the link got (0 if none was asked for, or it could not be had)."""
        asked = bool(index) and self._index_refusals < INDEX_REFUSALS
        if asked:
            msg = rtnl.ifinfo(*attrs, index=index, flags=up, change=up)
            try:
                echo = chan.request_echo(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
                self._index_refusals = 0
                return echo, index
            except NetlinkError as exc:
                # EBUSY or EEXIST: taken since the observation (a race), or looked up
                # in the sender's namespace (kernels before the lookup moved to the
                # target one, in 2025), where NLM_F_EXCL makes the kernel refuse and
                # change nothing; or the name exists, which the request below says
                # again. Only the second keeps happening.
                if exc.code not in (errno.EBUSY, errno.EEXIST):
                    raise
        msg = rtnl.ifinfo(*attrs, flags=up, change=up)
        echo = chan.request_echo(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        if asked:
            self._index_refusals += 1
        return echo, 0

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
        attrs: list[bytes],
        up: bool | None = None,
        msg_type: int = RTM_NEWLINK,
        moves: bool = False,
    ) -> None:
        chan = self._chan(ns)
        index = self._index(chan, name, ns)
        change = 0 if up is None else IFF_UP
        msg = rtnl.ifinfo(*attrs, index=index, flags=IFF_UP if up else 0, change=change)
        if msg_type == RTM_DELLINK or moves:
            self._forget_indexes(ns)
        chan.request(msg, msg_type)

    def _apply_DelLink(self, op: DelLink) -> None:
        if op.recreate is None or (op.recreate.kind not in MACVLANS and not op.same_mac):
            self._link_request(op.ns, op.name, [], msg_type=RTM_DELLINK)
            return
        # Only a link of the kind hostnet made: a macvlan endpoint (eth0...) dies with
        # its parent, and the workload may have made an eth0 of its own since (the
        # other links hostnet deletes have names of its own: veth<id>, br-<id>). A link
        # hostnet gave a MAC (a bridge, a shim, a macvlan endpoint) is deleted only if
        # it still has it, when asked: one of that name with another MAC was made by
        # someone else since (a teardown retried by gc runs long after it was planned).
        # (Not one more request for every veth: the delete after it took a tick more.)
        found = self._get_link(op.ns, op.name)
        guard = op.recreate.mac.lower() if op.same_mac and op.recreate.mac else None
        mac = found["mac"].lower() if found["mac"] is not None else None
        if found["kind"] != op.recreate.kind or (guard and mac and mac != guard):
            raise errors.LinkNotFound(op.name, op.ns)  # the one meant is gone
        self._forget_indexes(op.ns)
        self._chan(op.ns).request(rtnl.ifinfo(index=found["index"]), RTM_DELLINK)

    def _apply_DelLinkGroup(self, op: DelLinkGroup) -> None:
        if op.group == 0:
            raise errors.InvalidOption("group", 0, "group 0 holds every link; refusing")
        msg = rtnl.ifinfo(rtnl.u32(rtnl.IFLA_GROUP, op.group))
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
        self._link_request(op.ns, op.name, [rtnl.u32(rtnl.IFLA_MASTER, master)])

    def _apply_MoveLink(self, op: MoveLink) -> None:
        fd = self._ns_fd(op.to_ns)
        try:
            self._link_request(op.ns, op.name, [rtnl.u32(rtnl.IFLA_NET_NS_FD, fd)], moves=True)
        finally:
            if op.to_ns is not None:
                os.close(fd)

    def _addr_msg(self, op: AddAddress | DelAddress) -> bytes:
        # Parsed by hand: ipaddress.ip_interface costs more than the rest of the message.
        text, _, plen = op.address.partition("/")
        family = _family(text)
        try:
            raw = socket.inet_pton(family, text)
            if plen and not (plen.isascii() and plen.isdigit()):
                raise ValueError(plen)
            prefixlen = int(plen) if plen else len(raw) * 8
        except (OSError, ValueError):
            raise errors.InvalidAddress(op.address, "not an address/prefix length") from None
        if not 0 <= prefixlen <= len(raw) * 8:
            raise errors.InvalidAddress(op.address, f"prefix length {prefixlen} out of range")
        index = self._index(self._chan(op.ns), op.ifname, op.ns)
        attrs = [rtnl.attr(rtnl.IFA_LOCAL, raw), rtnl.attr(rtnl.IFA_ADDRESS, raw)]
        flags = 0
        if family == socket.AF_INET and prefixlen < 31:
            host_bits = (1 << (32 - prefixlen)) - 1
            broadcast = (int.from_bytes(raw, "big") | host_bits).to_bytes(4, "big")
            attrs.append(rtnl.attr(rtnl.IFA_BROADCAST, broadcast))
        if family == socket.AF_INET6:
            # Like Docker: no duplicate address detection, so the address is usable at
            # once instead of "tentative" for a second or more.
            flags = IFA_F_NODAD
            attrs.append(rtnl.u32(rtnl.IFA_FLAGS, IFA_F_NODAD))
        return rtnl.ifaddr(family, prefixlen, index, *attrs, flags=flags)

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

    def _route_msg(self, op: AddRoute | DelRoute, *, adding: bool) -> bytes:
        family, dst_len, raw = _route_dst(op.dst)
        attrs: list[bytes] = []
        if dst_len:
            attrs.append(rtnl.attr(rtnl.RTA_DST, raw))
        if op.gateway:
            attrs.append(rtnl.ip(rtnl.RTA_GATEWAY, op.gateway))
        if op.ifname:
            index = self._index(self._chan(op.ns), op.ifname, op.ns)
            attrs.append(rtnl.u32(rtnl.RTA_OIF, index))
        if adding:
            scope = RT_SCOPE_UNIVERSE if op.gateway else RT_SCOPE_LINK
            proto = RTPROT_STATIC
        else:  # "any scope" and any protocol: the kernel matches them exactly else
            scope, proto = RT_SCOPE_NOWHERE, 0
        return rtnl.rtmsg(
            family,
            *attrs,
            dst_len=dst_len,
            table=RT_TABLE_MAIN,
            proto=proto,
            scope=scope,
            kind=RTN_UNICAST,
        )

    def _apply_AddRoute(self, op: AddRoute) -> None:
        msg = self._route_msg(op, adding=True)
        try:
            self._chan(op.ns).request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise errors.ConflictError(f"route to {op.dst} already exists") from exc
            raise

    def _apply_DelRoute(self, op: DelRoute) -> None:
        self._chan(op.ns).request(self._route_msg(op, adding=False), RTM_DELROUTE)

    def _neigh_msg(
        self, ns: str | None, ifname: str, family: int, attrs: list[bytes], flags: int = 0
    ) -> bytes:
        index = self._index(self._chan(ns), ifname, ns)
        return rtnl.ndmsg(family, index, NUD_PERMANENT, *attrs, flags=flags)

    def _apply_AddNeighbour(self, op: AddNeighbour) -> None:
        msg = self._neigh_msg(
            op.ns,
            op.ifname,
            _family(op.address),
            [rtnl.ip(rtnl.NDA_DST, op.address), rtnl.mac(rtnl.NDA_LLADDR, op.mac)],
        )
        self._chan(op.ns).request(msg, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL)

    def _apply_DelNeighbour(self, op: DelNeighbour) -> None:
        dst = rtnl.ip(rtnl.NDA_DST, op.address)
        msg = self._neigh_msg(op.ns, op.ifname, _family(op.address), [dst])
        self._chan(op.ns).request(msg, RTM_DELNEIGH)

    def _fdb_msg(self, op: AddFdb | DelFdb) -> bytes:
        attrs = [rtnl.mac(rtnl.NDA_LLADDR, op.mac), rtnl.ip(rtnl.NDA_DST, op.dst)]
        return self._neigh_msg(op.ns, op.ifname, AF_BRIDGE, attrs, NTF_SELF)

    def _apply_AddFdb(self, op: AddFdb) -> None:
        self._chan(op.ns).request(self._fdb_msg(op), RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL)

    def _apply_DelFdb(self, op: DelFdb) -> None:
        self._chan(op.ns).request(self._fdb_msg(op), RTM_DELNEIGH)

    def _apply_SetSysctl(self, op: SetSysctl) -> None:
        fd = self._sysctl_fd(op.ns, op.key)
        try:
            os.pwrite(fd, op.value.encode(), 0)
        finally:
            self._sysctl_done(op.ns, op.key, fd)

    def _apply_NftBatch(self, op: NftBatch) -> None:
        self._nft(op.ns).run(op.commands, op.describe())

    def _apply_TrackFlows(self, op: TrackFlows) -> None:
        self._ident(op.ns)  # nothing to do, in a namespace that must exist

    def _apply_ForgetFlows(self, op: ForgetFlows) -> None:
        # A conntrack dump walks the kernel's whole table, shared by all namespaces
        # (about 10 ms at 262,144 buckets, even when empty): look only when this
        # namespace tracks anything at all (its count is its own).
        handle = self._handle(op.ns)  # NamespaceNotFound, not "no sysctl", for a missing one
        try:
            count = int(self.sysctl(op.ns, "net/netfilter/nf_conntrack_count") or "0")
        except errors.NotFoundError:
            return  # no connection tracking loaded: nothing to forget
        if count == 0:
            return
        netfilter.forget(self._netfilter(op.ns, handle), op.addresses, op.ports)

    def _netfilter(self, ns: str | None, handle: _Handle) -> Channel:
        """The NETLINK_NETFILTER channel of ``ns`` (its ``handle``), opened on first use,
        and again after a dump an interrupt cut short (the kernel refuses the next
        dump on that socket, as on the route socket: _handle)."""
        if handle.netfilter is not None and handle.netfilter.broken:
            handle.netfilter.close()
            handle.netfilter = None
        if handle.netfilter is None:
            handle.netfilter = Channel(self._in_ns(ns, netfilter.open_socket))
        return handle.netfilter

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
            if exc.errno == errno.EADDRNOTAVAIL:
                raise errors.InvalidAddress(
                    op.address,
                    f"not an address of {op.ns or 'the root namespace'}: no port can be "
                    "held on it",
                ) from exc
            if exc.errno == errno.EADDRINUSE:
                holders = [
                    s
                    for s in self.bound_sockets(op.ns, [op.port], idle=True)
                    if s.blocks(op.protocol, op.address, op.port)
                ]
                if holders:
                    raise holders[0].in_the_way(op.protocol, op.address, op.port) from exc
                raise errors.PortInUse(
                    port=op.port, protocol=op.protocol, host_ip=op.address
                ) from exc
            raise
        self._held[key] = sock

    def _apply_UnbindPort(self, op: UnbindPort) -> None:
        sock = self._held.pop((op.ns, op.protocol, op.address, op.port), None)
        if sock is None:
            raise errors.NotFoundError(f"port {op.address}:{op.port}/{op.protocol} is not held")
        sock.close()


def _echoed_indexes(message: bytes) -> tuple[int, int | None]:
    """(index, IFLA_LINK) of an echoed RTM_NEWLINK."""
    index = rtnl.IFINFO.unpack_from(message, rtnl.NLMSG.size)[2]
    found = rtnl.attrs(message, rtnl.NLMSG.size + rtnl.IFINFO.size)
    return int(index), rtnl.as_u32(found.get(rtnl.IFLA_LINK))


def _check_sysctl(key: str) -> None:
    if ".." in key or key.startswith("/") or not key.startswith("net/"):
        raise errors.InvalidOption("sysctl", key, "only net/... keys, without '..'")


def _link_from(m: Mapping[str, Any], names: Mapping[int, str]) -> Link:
    kind = "loopback" if m["type"] == rtnl.ARPHRD_LOOPBACK else m["kind"]
    parent = None
    if kind in MACVLANS and not m["link_netnsid"]:
        parent = names.get(m["link"] or 0)
    elif kind == "vxlan":
        parent = names.get(m["vxlan_link"] or 0)
    stats = m["stats"]
    return Link(
        name=m["name"],
        index=m["index"],
        kind=kind or "device",
        mtu=m["mtu"],
        mac=m["mac"] or "00:00:00:00:00:00",
        up=bool(m["flags"] & IFF_UP),
        master=names.get(m["master"]) if m["master"] else None,
        parent=parent,
        mode=m["macvlan_mode"],
        vni=m["vni"],
        group=m["group"],
        mcast_snooping=m["mcast_snooping"],
        stats=LinkStats(**stats) if stats else LinkStats(),
    )


def _route_from(m: Mapping[str, Any], names: Mapping[int, str]) -> Route | None:
    if m["table"] != RT_TABLE_MAIN or m["type"] != RTN_UNICAST:
        return None
    if m["family"] not in (socket.AF_INET, socket.AF_INET6):  # an AF_UNSPEC dump has MPLS
        return None
    oif = m["oif"]
    ifname = names.get(oif) if oif else None
    if m["family"] == socket.AF_INET:
        # (the kernel keeps IPv4 destinations masked: it refuses any other)
        return Route(dst=f"{m['dst'] or '0.0.0.0'}/{m['dst_len']}", gateway=m["gateway"],
                     ifname=ifname)  # fmt: skip
    net = ipaddress.ip_network(f"{m['dst'] or '::'}/{m['dst_len']}", strict=False)
    if net.is_link_local or net.is_multicast:
        return None
    return Route(dst=str(net), gateway=m["gateway"], ifname=ifname)


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


class _translate:
    """The one place where kernel errors become hostnet errors. ``action`` None: the
    op's description, made only when something failed (it is not free: every op
    applied would pay for it)."""

    __slots__ = ("action", "op")

    def __init__(self, action: str | None, op: Op | None) -> None:
        self.action = action
        self.op = op

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None or isinstance(exc, errors.HostnetError):
            return
        op = self.op
        action = self.action if self.action is not None else op.describe() if op else "?"
        if isinstance(exc, NetlinkError):
            detail = str(exc.args[1] if len(exc.args) > 1 else "")
            raise _from_errno(action, exc.code, op, detail) from exc
        if isinstance(exc, OSError):
            raise _from_errno(action, exc.errno or 0, op, exc.strerror or "") from exc


def _from_errno(action: str, code: int, op: Op | None, detail: str) -> errors.HostnetError:
    if code == errno.EACCES and isinstance(op, AddAddress) and ":" in op.address:
        # what the kernel says when IPv6 is off on the interface: not a privilege
        return errors.UnsupportedError(
            f"{action}: IPv6 is disabled on {op.ifname} in "
            f"{op.ns or 'the root namespace'} (net.ipv6.conf.*.disable_ipv6=1); turn it "
            "on there, or use a network without IPv6"
        )
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
