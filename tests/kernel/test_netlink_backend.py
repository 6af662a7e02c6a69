"""Things only the netlink backend does: caches that must never go stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from hostnet import errors
from hostnet.backends.netlink import NetlinkBackend
from hostnet.ops import AddAddress, AddLink, CreateNamespace, SetMaster
from hostnet.testing.world import World


def test_a_link_replaced_behind_hostnets_back_is_found_again() -> None:
    backend = NetlinkBackend()
    world = World(backend, tag="hk")
    try:
        ns = world.ns()
        backend.apply(AddLink(ns=ns, name="br0", kind="bridge", up=True))
        backend.apply(AddLink(ns=ns, name="p0", kind="veth", peer="p1", master="br0"))
        # another process deletes and re-creates both: same names, new indexes
        for args in (
            ["link", "del", "br0"],
            ["link", "del", "p0"],
            ["link", "add", "br0", "type", "bridge"],
            ["link", "add", "p0", "type", "veth", "peer", "name", "p1"],
        ):
            subprocess.run(["ip", "-n", ns, *args], check=True)
        backend.apply(AddAddress(ns=ns, ifname="br0", address="10.44.0.1/24"))
        backend.apply(SetMaster(ns=ns, name="p0", master="br0"))
        snap = backend.observe(ns)
        assert snap.addresses_of("br0") == ("10.44.0.1/24",)
        assert snap.link("p0").master == "br0"  # type: ignore[union-attr]
    finally:
        assert world.cleanup() == []
        backend.close()


def test_a_create_on_a_reservation_someone_replaced_mounts_nothing_over_theirs() -> None:
    backend = NetlinkBackend()
    world = World(backend, tag="hv")
    name = world.name("r")
    world.created.append(name)
    try:
        backend.reserve_namespace(name)
        # someone removes the (empty) file and makes a namespace of that name
        subprocess.run(["ip", "netns", "del", name], check=True)
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "theirs0", "type", "bridge"], check=True)
        with pytest.raises(errors.NamespaceExists):
            backend.apply(CreateNamespace(ns=name))
        assert "theirs0" in backend.observe(name).link_names()
    finally:
        assert world.cleanup() == []
        backend.close()


def test_an_nft_run_an_interrupt_cut_short_leaves_nothing_for_the_next() -> None:
    # Ctrl-C handled between running a command and reading its output left the output
    # in the (cached) context: the next listing read two JSON documents (found by a fuzz)
    from hostnet.backends.netlink import nft, nsenter

    backend = NetlinkBackend()
    world = World(backend, tag="hn")
    try:
        ns = world.ns()
        fd = nsenter.open_namespace(ns)
        try:
            ctx = nsenter.run_in(fd, nft.NftContext)
        finally:
            os.close(fd)
        real = ctx._lib

        class Interrupted:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def nft_run_cmd_from_buffer(self, handle: Any, text: bytes) -> int:
                real.nft_run_cmd_from_buffer(handle, text)
                ctx._lib = real
                raise KeyboardInterrupt  # (the command ran; its output is not read)

        ctx._lib = Interrupted()
        with pytest.raises(KeyboardInterrupt):
            ctx.run("list ruleset")
        # (an add prints nothing: not the listing left over)
        assert (
            ctx.run('{"nftables": [{"add": {"table": {"family": "inet", "name": "t"}}}]}') is None
        )
        listing = ctx.run("list ruleset")
        assert listing is not None and "nftables" in listing
        ctx.close()
    finally:
        assert world.cleanup() == []
        backend.close()


def _interrupt_second_read(chan: Any) -> None:
    """Ctrl-C between two answers of a dump: the second read of ``chan``'s socket
    raises KeyboardInterrupt (and gives the real socket back)."""
    real = chan.sock

    class Interrupted:
        def __init__(self) -> None:
            self.reads = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def recv_into(self, buffer: bytearray) -> int:
            self.reads += 1
            if self.reads == 2:
                chan.sock = real
                raise KeyboardInterrupt
            return int(real.recv_into(buffer))

    chan.sock = Interrupted()


def test_a_dump_an_interrupt_cut_short_does_not_refuse_the_next() -> None:
    # Ctrl-C between two answers of a dump left it running on the cached socket: the
    # kernel refused every later dump there (EBUSY), for the life of the process
    backend = NetlinkBackend()
    world = World(backend, tag="hd")
    try:
        ns = world.ns()
        for i in range(40):  # (a link dump of more than one answer)
            subprocess.run(
                ["ip", "-n", ns, "link", "add", f"d{i}", "type", "veth", "peer", "name", f"e{i}"],
                check=True,
            )
        backend.observe(ns)
        chan = backend._handles[ns].chan
        _interrupt_second_read(chan)
        with pytest.raises(KeyboardInterrupt):
            backend.observe(ns)
        assert len(backend.observe(ns).link_names()) == 81
    finally:
        assert world.cleanup() == []
        backend.close()


def test_a_vxlan_gets_the_udp_port_and_vni_asked_for() -> None:
    # the port travels in network byte order; sent through a host-order field it would
    # come out as 46354 for 4789
    backend = NetlinkBackend()
    world = World(backend, tag="hx")
    try:
        ns = world.ns()
        backend.apply(AddLink(ns=ns, name="vx0", kind="vxlan", vni=4242, port=4789))
        shown = subprocess.run(
            ["ip", "-n", ns, "-d", "-j", "link", "show", "vx0"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        data = json.loads(shown)[0]["linkinfo"]["info_data"]
        assert (data["id"], data["port"], data["learning"]) == (4242, 4789, False)
        link = backend.observe(ns).link("vx0")
        assert link is not None
        assert (link.kind, link.vni) == ("vxlan", 4242)
    finally:
        assert world.cleanup() == []
        backend.close()


def _index_of(ns: str, name: str) -> int:
    shown = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", name], check=True, capture_output=True, text=True
    ).stdout
    return int(json.loads(shown)[0]["ifindex"])


def test_a_macvlan_made_for_an_observed_namespace_is_addressed_without_a_lookup() -> None:
    # The kernel echoes nothing for a link created into another namespace; after an
    # observation hostnet asks for the next index there and uses it at once. If someone
    # took that index meanwhile, the kernel picks one and hostnet looks it up; one such
    # race does not stop it from asking next time.
    backend = NetlinkBackend()
    world = World(backend, tag="hi")
    lookups: list[str] = []
    look_up = backend._lookup_index

    def counted(chan: Any, name: str, ns: str | None) -> int:
        if name.startswith("eth"):  # the parent, up0, is looked up in the host
            lookups.append(name)
        return look_up(chan, name, ns)

    backend._lookup_index = counted  # type: ignore[method-assign]
    try:
        host, target = world.ns(), world.ns()
        subprocess.run(
            ["ip", "-n", host, "link", "add", "up0", "up", "type", "veth", "peer", "name", "up1"],
            check=True,
        )

        def macvlan(name: str, address: str) -> None:
            backend.apply(
                AddLink(ns=target, name=name, kind="macvlan", parent="up0", parent_ns=host)
            )
            backend.apply(AddAddress(ns=target, ifname=name, address=address))
            assert backend.observe(target).addresses_of(name) == (address,)

        top = max(link.index for link in backend.observe(target).links)
        lookups.clear()
        macvlan("eth0", "10.45.0.2/24")
        assert _index_of(target, "eth0") == top + 1
        assert lookups == []

        # another process takes the index hostnet would ask for next
        subprocess.run(
            ["ip", "-n", target, "link", "add", "taken", "index", str(top + 2), "type", "bridge"],
            check=True,
        )
        macvlan("eth1", "10.45.1.2/24")
        assert _index_of(target, "eth1") not in (top + 1, top + 2)
        assert lookups == ["eth1"]

        lookups.clear()
        newest = max(link.index for link in backend.observe(target).links)
        macvlan("eth2", "10.45.2.2/24")
        assert _index_of(target, "eth2") == newest + 1
        assert lookups == []
    finally:
        assert world.cleanup() == []
        backend.close()


def _disabled(backend: NetlinkBackend, ns: str, ifname: str) -> str:
    return backend.sysctl(ns, f"net/ipv6/conf/{ifname}/disable_ipv6")


@pytest.mark.parametrize("private", [True, False], ids=["private-procfs", "proc"])
@pytest.mark.parametrize("direct", [True, False], ids=["through-directory", "thread"])
def test_ipv6_is_turned_off_on_the_workload_end_only(
    direct: bool, private: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``AddLink(ipv6=False)`` turns IPv6 off on the end inside the workload (a veth's
    peer, a macvlan) before it comes up, whether the setting is written through the
    namespace's sysctl directory or, where the kernel was not seen to allow that, from a
    thread inside the namespace, and whether sysctls are opened through a private procfs
    or, where there is none, /proc; the host's end and the caller's own links keep
    theirs."""
    from hostnet.backends.netlink import nsenter

    if not direct:
        monkeypatch.setattr(nsenter, "_sysctl_dirs_checked", False)
    procs = nsenter._PrivateProc()
    procs.unavailable = not private
    monkeypatch.setattr(nsenter, "_procs", procs)
    backend = NetlinkBackend()
    ours = {name: _disabled(backend, None, name) for name in ("lo", "all")}
    world = World(backend, tag="h6")
    try:
        host, app, other = world.ns(), world.ns(), world.ns()
        backend.observe(app, firewall=False, addresses=False)
        backend.apply(
            AddLink(ns=host, name="v0", kind="veth", peer="eth0", peer_ns=app, up=True,
                    peer_up=True, ipv6=False)
        )  # fmt: skip
        assert (_disabled(backend, app, "eth0"), _disabled(backend, host, "v0")) == ("1", "0")
        subprocess.run(["ip", "-n", host, "link", "add", "lan0", "type", "veth",
                        "peer", "name", "lan1"], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", host, "link", "set", "lan0", "up"], check=True)
        backend.apply(
            AddLink(ns=other, name="eth0", kind="macvlan", parent="lan0", parent_ns=host,
                    up=True, ipv6=False)
        )  # fmt: skip
        link = backend.observe(other).link("eth0")
        assert link is not None and link.up
        assert _disabled(backend, other, "eth0") == "1"
        assert not [a for a in backend.observe(other).addresses if a.ifname == "eth0"]
        assert {name: _disabled(backend, None, name) for name in ours} == ours
        assert (procs.root is not None) == private
    finally:
        assert world.cleanup() == []
        backend.close()


def _procfs_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if " - proc " in line]


def test_a_sysctl_refused_only_through_a_private_procfs_is_opened_through_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A security module may refuse what is opened through hostnet's own procfs while
    allowing it through /proc: then /proc is used, from then on; a file refused through
    both (a read-only sysctl opened for writing) is refused as before."""
    from hostnet.backends.netlink import nsenter

    procs = nsenter._PrivateProc()
    monkeypatch.setattr(nsenter, "_procs", procs)
    real_open = os.open

    def refusing(path: str, flags: int, *args: Any, dir_fd: int | None = None) -> int:
        if dir_fd is not None and dir_fd == procs.root:
            raise PermissionError(13, "refused by a security module", path)
        return real_open(path, flags, *args, dir_fd=dir_fd)

    with monkeypatch.context() as patch:
        patch.setattr(nsenter.os, "open", refusing)
        with pytest.raises(PermissionError):  # (read-only everywhere)
            nsenter.open_sysctl("net/ipv4/conf/all/mc_forwarding", os.O_WRONLY)
        assert not procs.unavailable
        fd = nsenter.open_sysctl("net/ipv6/conf/lo/hop_limit", os.O_RDONLY)
    try:
        with open("/proc/sys/net/ipv6/conf/lo/hop_limit") as f:
            assert os.pread(fd, 16, 0).decode() == f.read()
    finally:
        os.close(fd)
    assert procs.unavailable


SECCOMP_KILLS_FSOPEN = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
program = b"".join([
    insn(0x20, 0, 0, 4),             # load the architecture
    insn(0x15, 0, 3, 0xC000003E),    # x86_64, else allow
    insn(0x20, 0, 0, 0),             # load the call's number
    insn(0x15, 0, 1, 430),           # fsopen: kill the process
    insn(0x06, 0, 0, 0x80000000),
    insn(0x06, 0, 0, 0x7FFF0000),    # allow
])
buf = ctypes.create_string_buffer(program)
prog = struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(prog), 0, 0) == 0  # PR_SET_SECCOMP, filter
from hostnet.backends.netlink import nsenter
fd = nsenter.open_sysctl("net/ipv4/ip_forward", os.O_RDONLY)
print(os.pread(fd, 8, 0).decode().strip(), nsenter._procs.unavailable)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter is written for x86_64")
def test_a_process_under_a_seccomp_filter_never_calls_the_mount_api() -> None:
    """A seccomp filter may kill the process for a call it does not allow (systemd's
    SystemCallFilter= does, and fsopen is in @mount) instead of refusing it: under any
    filter, sysctls are opened through /proc, and the process lives."""
    proc = subprocess.run(
        [sys.executable, "-c", SECCOMP_KILLS_FSOPEN], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert proc.stdout.split() == [f.read().strip(), "True"]


@pytest.mark.parametrize(
    ("mount", "expected"),
    [
        # a read-only /proc/sys/net: /proc, and the write fails as it did before
        ("mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,ro /proc/sys/net",
         ["False", "True"]),
        # binfmt_misc's place (mounted on most systemd hosts): nothing to do with net
        ("mount -t tmpfs none /proc/sys/fs/binfmt_misc", ["True", "written"]),
    ],
    ids=["read-only-net", "binfmt_misc"],
)  # fmt: skip
def test_nothing_mounted_below_proc_sys_net_is_gone_around(
    mount: str, expected: list[str]
) -> None:
    """A read-only mount on /proc/sys/net (a container runtime's, an admin's) is
    respected: a private procfs would not have it, so /proc is used, and a write
    there fails as it did before; a mount elsewhere below /proc/sys changes nothing.
    Run in a child's own mount and network namespaces (both go with it)."""
    if "binfmt_misc" in mount and not os.path.isdir("/proc/sys/fs/binfmt_misc"):
        pytest.skip("no /proc/sys/fs/binfmt_misc here")
    script = (
        "import os\n"
        "from hostnet.backends.netlink import nsenter\n"
        "print(nsenter._proc_sys_plain())\n"
        "try:\n"
        "    nsenter.open_sysctl('net/ipv6/conf/lo/hop_limit', os.O_WRONLY)\n"
        "    print('written')\n"
        "except OSError as exc:\n"
        "    print(exc.errno == 30)\n"  # EROFS
    )
    proc = subprocess.run(
        ["unshare", "-m", "-n", "sh", "-c", f'{mount} && exec {sys.executable} -c "$0"', script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected


def test_ipv6_goes_off_when_only_the_private_procfs_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A security module refusing writes through hostnet's own procfs (and not through
    /proc): the workload's IPv6 still goes off."""
    from hostnet.backends.netlink import nsenter

    procs = nsenter._PrivateProc()
    monkeypatch.setattr(nsenter, "_procs", procs)
    real_open = os.open

    def refusing(path: str, flags: int, *args: Any, dir_fd: int | None = None) -> int:
        if dir_fd is not None and flags & (os.O_WRONLY | os.O_RDWR) and not procs.unavailable:
            raise PermissionError(13, "refused by a security module", path)
        return real_open(path, flags, *args, dir_fd=dir_fd)

    backend = NetlinkBackend()
    world = World(backend, tag="hq")
    try:
        host, app = world.ns(), world.ns()
        backend.observe(app, firewall=False, addresses=False)
        monkeypatch.setattr(os, "open", refusing)
        backend.apply(
            AddLink(ns=host, name="v0", kind="veth", peer="eth0", peer_ns=app, up=True,
                    peer_up=True, ipv6=False)
        )  # fmt: skip
        monkeypatch.undo()
        assert _disabled(backend, app, "eth0") == "1"
        assert procs.unavailable
    finally:
        assert world.cleanup() == []
        backend.close()


@pytest.mark.parametrize("how", ["private-procfs", "no-mount-api", "read-only-proc-sys"])
def test_sysctls_are_each_namespaces_own_through_private_procfs_made_in_turns(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sysctls are opened through private procfs instances (each has its own cached
    entries, so a lookup does not walk those of every namespace opened before:
    benchmarks/sysctl_dirs.py), a new one every PROC_TURNS opens; none is mounted where
    anyone sees it. Without the mount API, or with /proc/sys read-only (a container's),
    /proc is used. Either way each namespace's own values are read."""
    from hostnet.backends.netlink import nsenter

    made: list[int | None] = []

    def counted() -> int | None:
        made.append(None if how == "no-mount-api" else mount())
        return made[-1]

    mount = nsenter._mount_proc
    monkeypatch.setattr(nsenter, "_mount_proc", counted)
    monkeypatch.setattr(nsenter, "_proc_sys_plain", lambda: how != "read-only-proc-sys")
    monkeypatch.setattr(nsenter, "_procs", nsenter._PrivateProc())
    monkeypatch.setattr(nsenter, "PROC_TURNS", 3)
    mounts = _procfs_mounts()
    backend = NetlinkBackend()
    world = World(backend, tag="hp")
    try:
        names = [world.ns() for _ in range(5)]
        for i, ns in enumerate(names):
            script = f"echo {20 + i} > /proc/sys/net/ipv6/conf/lo/hop_limit"
            subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script], check=True)
        # (two opens each: the namespace's conf directory, then the file)
        got = [backend.sysctl(ns, "net/ipv6/conf/lo/hop_limit") for ns in names]
        assert got == [str(20 + i) for i in range(5)]
        assert backend.sysctl(None, "net/ipv6/conf/lo/hop_limit") != "20"
        assert _procfs_mounts() == mounts
        expected = {"private-procfs": 4, "no-mount-api": 1, "read-only-proc-sys": 0}[how]
        assert len(made) == expected  # (after a failure, never tried again)
        assert nsenter._procs.unavailable == (how != "private-procfs")
        fd = nsenter.open_sysctl("net/ipv6/conf", os.O_PATH | os.O_DIRECTORY)
        try:  # (each procfs instance is a filesystem, a device, of its own)
            mine = os.fstat(fd).st_dev != os.stat("/proc/sys/net/ipv6/conf").st_dev
            assert mine == (how == "private-procfs")
        finally:
            os.close(fd)
    finally:
        assert world.cleanup() == []
        backend.close()


def test_the_sysctl_directory_probe_writes_nothing_outside_its_namespace() -> None:
    from hostnet.backends.netlink import nsenter

    with open("/proc/sys/net/ipv6/conf/lo/hop_limit") as f:
        before = f.read()
    assert nsenter._probe_sysctl_dirs() is True  # what this kernel does
    with open("/proc/sys/net/ipv6/conf/lo/hop_limit") as f:
        assert f.read() == before


def test_a_table_dump_an_interrupt_cut_short_does_not_refuse_the_next() -> None:
    """As for the route socket's dumps: the netfilter socket the tables are listed
    through is opened again after an interrupt left a dump running on it."""
    backend = NetlinkBackend()
    world = World(backend, tag="hf")
    try:
        ns = world.ns()
        script = "".join(f"add table inet t{i}\n" for i in range(800))  # (several answers)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                       text=True, check=True)  # fmt: skip
        assert len(backend.observe(ns).nft_tables) == 800
        chan = backend._handles[ns].netfilter
        assert chan is not None
        _interrupt_second_read(chan)
        with pytest.raises(KeyboardInterrupt):
            backend.observe(ns)
        assert len(backend.observe(ns).nft_tables) == 800
    finally:
        assert world.cleanup() == []
        backend.close()


def test_the_tables_observed_are_those_nft_lists_in_every_family() -> None:
    """The observation lists a namespace's nftables tables with one netlink dump of the
    tables alone (libnftables' `list tables` reads the whole ruleset first), named as
    `nft list tables` names them, in every family."""
    backend = NetlinkBackend()
    world = World(backend, tag="ht")
    try:
        ns = world.ns()
        assert backend.observe(ns).nft_tables == ()
        for family in ("ip", "ip6", "inet", "arp", "bridge", "netdev"):
            subprocess.run(["ip", "netns", "exec", ns, "nft", "add", "table", family,
                            f"t_{family}"], check=True)  # fmt: skip
        listed = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "list", "tables"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        expected = sorted(line.removeprefix("table ").strip() for line in listed.splitlines())
        assert len(expected) == 6
        assert list(backend.observe(ns).nft_tables) == expected
        assert backend.observe(None).nft_tables == tuple(  # (the caller's own: not these)
            sorted(
                line.removeprefix("table ").strip()
                for line in subprocess.run(
                    ["nft", "list", "tables"], capture_output=True, text=True, check=True
                ).stdout.splitlines()
            )
        )
    finally:
        assert world.cleanup() == []
        backend.close()
