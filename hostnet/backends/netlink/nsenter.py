"""Entering network namespaces without switching a long-lived thread.

The network namespace is per thread. To work in a namespace we start a short-lived
thread, ``setns`` it there, do the work (typically: open a socket, which stays bound to
that namespace for its whole life) and let the thread end. The calling thread never
changes namespace. Creating a namespace is the same trick with ``unshare`` followed by a
bind mount of ``/proc/thread-self/ns/net`` onto ``/run/netns/NAME``, which is exactly what
``ip netns add`` leaves behind, so both tools see the same namespaces.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import platform
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

from hostnet import errors
from hostnet.backends.netlink_paths import NETNS_RUN_DIR, ns_path

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: name, ifr_flags (40 bytes on 64-bit)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_statx = getattr(_libc, "statx", None)  # glibc 2.28 and later
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]

_run_dir_ready = False
_run_dir_lock = threading.Lock()


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise _oserror("setns")


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that ends with it, wait, and return its result or
    raise its exception. A bare ``_thread`` and a lock: threading.Thread's start and
    join handshakes cost a third more, and this runs once per namespace hostnet opens."""
    box: list[T] = []
    fail: list[BaseException] = []
    finished: list[bool] = []
    done = _thread.allocate_lock()
    done.acquire()

    def body() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed back to the caller below
            fail.append(exc)
        finally:
            finished.append(True)
            done.release()

    _thread.start_new_thread(body, ())
    try:
        done.acquire()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): wait for the thread anyway, so the caller's
        # clean-up never races it, and close what it opened for a caller now gone. The
        # signal's handler may run just after the acquire succeeded (a signal the
        # kernel gave the thread): the lock is ours then, and the thread done.
        while not finished and not done.acquire(timeout=0.1):
            pass
        close = getattr(box[0], "close", None) if box else None
        if callable(close):
            close()
        raise
    if fail:
        raise fail[0]
    return box[0]


def run_in(fd: int | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` with the network namespace ``fd`` (None: this thread's own) and return
    its result or raise its exception. Only a fresh, short-lived thread is switched."""
    if fd is None:
        return fn()

    def inside() -> T:
        setns(fd)
        return fn()

    return in_fresh_thread(inside)


_sysctl_dirs_checked: bool | None = None


def sysctl_dirs_stay_inside() -> bool:
    """Whether a namespace's /proc/sys/net/ipv6/conf directory, opened from inside it,
    looks names up in that namespace when a thread of another namespace opens files
    through it (``openat``), as Linux does: below /proc/sys/net, a namespace's sysctl
    directories belong to its own table set. Then a link's setting can be written
    without a thread into the namespace (the netlink backend's ``_ipv6_off``).

    Checked once per process in a throwaway namespace, never taken on trust: the
    probe gives that namespace's lo a hop limit the caller's lo does not have, and
    reads it back through the directory. Nothing outside the throwaway namespace is
    written (the caller's own value is only read), and the namespace goes with the
    thread and the directory."""
    global _sysctl_dirs_checked
    if _sysctl_dirs_checked is None:
        _sysctl_dirs_checked = _probe_sysctl_dirs()
    return _sysctl_dirs_checked


def _probe_sysctl_dirs() -> bool:
    key = "lo/hop_limit"
    try:
        with open(f"/proc/sys/net/ipv6/conf/{key}") as f:
            ours = f.read().strip()
    except OSError:
        return False  # no IPv6 here: nothing to write through such a directory
    mark = "17" if ours != "17" else "19"

    def inside() -> Fds:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare(CLONE_NEWNET)")
        with open(f"/proc/sys/net/ipv6/conf/{key}", "w") as f:
            f.write(mark)
        opened = Fds()
        # the namespace itself, held: the directory alone does not keep it alive once
        # the thread is gone, and a namespace being torn down has no files any more
        opened.add("/proc/thread-self/ns/net", os.O_RDONLY)
        # (opened as the backend opens its namespaces' directories)
        opened.add_sysctl("net/ipv6/conf", os.O_PATH | os.O_DIRECTORY)
        return opened

    held: Fds | None = None
    try:
        held = in_fresh_thread(inside)
        fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC, dir_fd=held.fds[1])
        try:
            return os.pread(fd, 16, 0).decode().strip() == mark
        finally:
            os.close(fd)
    except OSError:
        return False
    finally:
        if held is not None:
            held.close()


class Fds:
    """File descriptors opened together, closed together (also by in_fresh_thread when
    the caller is interrupted while waiting)."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def add(self, path: str, flags: int) -> None:
        self._keep(lambda: os.open(path, flags | os.O_CLOEXEC))

    def add_sysctl(self, key: str, flags: int) -> None:
        self._keep(lambda: open_sysctl(key, flags))

    def _keep(self, opener: Callable[[], int]) -> None:
        try:
            self.fds.append(opener())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


# -- sysctls -----------------------------------------------------------------------------

# The mount API's calls, numbered alike on the architectures below (not on alpha or mips,
# for example: /proc is used there).
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_MOUNT_API_NUMBERED = platform.machine() in {
    "x86_64", "i686", "aarch64", "armv7l", "riscv64", "s390x", "ppc64le", "loongarch64",
}  # fmt: skip
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 1
_FSCONFIG_CMD_CREATE = 6
_libc.syscall.restype = ctypes.c_long

#: sysctl opens made through one private procfs before the next is made
PROC_TURNS = 32


class _PrivateProc:
    """Private instances of procfs, for opening sysctls of many namespaces in turn at a
    cost that does not grow with their number.

    The kernel keeps one cached directory entry per network namespace for each of
    /proc/sys/net's per-namespace directories (``ipv6``, ``ipv4``, ...), all under the
    one entry of ``net`` and with the same name, so they share a hash chain: the first
    lookup of ``net/ipv6`` in a namespace walks the entries of every namespace that
    made one before it, each compared under a lock. Measured on this kernel: 20 us for
    the first namespace, 270 us after 1000 (benchmarks/sysctl_dirs.py); the entries
    stay for as long as their namespaces live. A procfs instance of our own has its own
    entries: made with the mount API (``fsopen``, ``fsconfig``, ``fsmount``: a mount
    attached nowhere, seen by no one else, gone with its last descriptor), and a new one
    after every :data:`PROC_TURNS` opens, a lookup walks a chain of at most that.

    /proc is used, as before, where that cannot be had or should not be: no mount API
    (before Linux 5.2) or no right to mount procfs; one procfs per pid namespace (before
    5.8: no entries of its own); a seccomp filter (which may kill the process for the
    call rather than refuse it); anything mounted on /proc/sys or at or below
    /proc/sys/net, such as a container's read-only /proc/sys (an instance of our own
    would go around it); and from the first open refused through an instance but
    allowed through /proc (a security module). The instances are the process's: a
    thread of another namespace looks names up in its own through them, as through
    /proc."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.root: int | None = None  # the instance's root directory
        self.turns = 0
        self.unavailable = False

    def open(self, key: str, flags: int) -> int:
        with self.lock:  # (held while the root is used: another thread may renew it)
            root = self._root()
            if root is not None:
                try:
                    return os.open("sys/" + key, flags | os.O_CLOEXEC, dir_fd=root)
                except PermissionError:
                    # (refused through it: allowed through /proc, it is not used
                    # again; refused there too, the error is the file's, raised here)
                    fd = os.open("/proc/sys/" + key, flags | os.O_CLOEXEC)
                    self.unavailable = True
                    return fd
            return os.open("/proc/sys/" + key, flags | os.O_CLOEXEC)

    def _root(self) -> int | None:
        if self.unavailable:
            return None
        if self.root is None:
            self.root = _first_proc()
            self.unavailable = self.root is None
        elif self.turns >= PROC_TURNS:
            fresh = _mount_proc()
            if fresh is not None:  # (else: keep the last one)
                os.close(self.root)  # (files opened through it keep it until closed)
                self.root, self.turns = fresh, 0
        self.turns += 1
        return self.root


def _first_proc() -> int | None:
    """The first private procfs instance, where one may be used (see _PrivateProc)."""
    if _seccomp_filtered() or not _proc_sys_plain():
        return None
    root = _mount_proc()
    if root is not None and os.fstat(root).st_dev == _proc_device():
        os.close(root)  # (the one procfs of the pid namespace: no entries of its own)
        return None
    return root


def _seccomp_filtered() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split()[1] != "0"
    except OSError:
        pass
    return True  # (cannot tell)


def _proc_sys_plain() -> bool:
    """Whether /proc/sys is writable and nothing is mounted on it or at or below
    /proc/sys/net (elsewhere below it, binfmt_misc for one, changes nothing here)."""
    try:
        if os.statvfs("/proc/sys").f_flag & os.ST_RDONLY:
            return False
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except (OSError, IndexError):
        return False
    return not any(
        p in ("/proc/sys", "/proc/sys/net") or p.startswith("/proc/sys/net/") for p in points
    )


def _proc_device() -> int | None:
    try:
        return os.stat("/proc").st_dev
    except OSError:
        return None


def _mount_proc() -> int | None:
    """The root of a new procfs instance, attached nowhere; None where it cannot be had."""
    if not _MOUNT_API_NUMBERED:
        return None
    fs = _libc.syscall(_SYS_FSOPEN, b"proc", _FSOPEN_CLOEXEC)
    if fs < 0:
        return None
    try:
        if _libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0) < 0:
            return None
        root = _libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0)
        return int(root) if root >= 0 else None
    finally:
        os.close(fs)


_procs = _PrivateProc()


def _after_fork() -> None:
    _procs.lock = threading.Lock()  # (a thread of the parent may have held it)


os.register_at_fork(after_in_child=_after_fork)


def open_sysctl(key: str, flags: int) -> int:
    """An fd on sysctl ``key`` (``net/ipv6/conf``, ``net/ipv4/ip_forward``...) of the
    calling thread's network namespace, opened through a private procfs instance
    (:class:`_PrivateProc`) where the kernel allows one. As with /proc/sys, a file or
    directory below ``net`` stays with the namespace it was opened in."""
    return _procs.open(key, flags)


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point, like ``ip netns add`` does, so namespaces
    created here stay visible to processes in other mount namespaces."""
    global _run_dir_ready
    with _run_dir_lock:
        if _run_dir_ready:
            return
        os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
        path = NETNS_RUN_DIR.encode()
        if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0:
            if ctypes.get_errno() == errno.EINVAL:  # not a mount point yet
                if _libc.mount(path, path, b"none", MS_BIND | MS_REC, None) != 0:
                    raise _oserror("bind-mount /run/netns")
                if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0:
                    raise _oserror("make /run/netns shared")
            else:
                raise _oserror("make /run/netns shared")
        _run_dir_ready = True


def reserve_namespace(name: str) -> str:
    """Make /run/netns/NAME, an empty file for a namespace about to be mounted there
    (``create_namespace(..., reserved=True)``); NamespaceExists if the name is taken.
    Returns its token (``entry_token``): the same while the file exists, so no one
    else's namespace can have it then (Rule 5: recovery deletes only a namespace
    hostnet made). Once the file is gone, the next one made often gets its inode number
    (the kernel reuses it at once), but not its token: that has the file handle too,
    with the inode's generation, drawn anew for every file made (``same_token``)."""
    try:
        _prepare_run_dir()
    except PermissionError as exc:
        raise errors.PermissionDenied(f"create namespace {name!r}") from exc
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise errors.PermissionDenied(f"create namespace {name!r}") from exc
        raise errors.KernelError(f"create namespace {name!r}", exc.errno or 0, str(exc)) from exc
    try:
        fd = os.open(ns_path(name), os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except FileExistsError:
        raise errors.NamespaceExists(name) from None
    except PermissionError as exc:
        raise errors.PermissionDenied(f"create namespace {name!r}") from exc
    try:
        return _token(os.fstat(fd).st_ino, _file_handle(fd, b"", _AT_EMPTY_PATH))
    finally:
        os.close(fd)


# A token is the file's inode number and, where the filesystem gives file handles (ext4,
# tmpfs, xfs, btrfs...), its handle: "INODE/HANDLE". The inode number alone is reused
# at once by the next file made once this one is deleted; the handle holds the inode's
# generation too, a random number drawn for each new inode, so that a file made later
# on the same inode has another token (but for a chance of 1 in 2**32).
_AT_EMPTY_PATH = 0x1000
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
#: open_tree(2) (Linux 5.2), numbered as the mount API's calls (``_MOUNT_API_NUMBERED``)
_SYS_OPEN_TREE = 428
_HANDLE_BYTES = 128  # (MAX_HANDLE_SZ)
_name_to_handle_at = getattr(_libc, "name_to_handle_at", None)  # glibc 2.14 and later
if _name_to_handle_at is not None:
    _name_to_handle_at.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]


def _token(inode: int, handle: str | None) -> str:
    return str(inode) if handle is None else f"{inode}/{handle}"


def _file_handle(dirfd: int, name: bytes, flags: int = 0) -> str | None:
    """The file handle of ``name`` under ``dirfd`` (type and bytes, in hex), None where
    the filesystem or the C library gives none."""
    if _name_to_handle_at is None:
        return None
    buf = ctypes.create_string_buffer(8 + _HANDLE_BYTES)  # struct file_handle
    struct.pack_into("Ii", buf, 0, _HANDLE_BYTES, 0)
    mount = ctypes.c_int()
    if _name_to_handle_at(dirfd, name, buf, ctypes.byref(mount), flags) != 0:
        return None  # (EOPNOTSUPP: no handles here; the caller compares inodes alone)
    size, kind = struct.unpack_from("Ii", buf, 0)
    return f"{kind}:{buf.raw[8 : 8 + size].hex()}"


def token_is_unique(token: str) -> bool:
    """Whether ``token`` has the file's handle (see above), not the inode alone, and
    this process can read it back under a mounted namespace (``entry_token``)."""
    return "/" in token and _open_tree_works()


def same_token(recorded: str, now: str | None) -> bool:
    """Whether the token read ``now`` is the one ``recorded``. One recorded without a
    handle (by a version before session 13, or on a filesystem without handles) is
    matched by the inode alone, as then. One recorded with a handle is matched only by
    the same handle: read without one (``open_tree`` refused here: a user namespace
    with locked mounts, a seccomp filter), it cannot be told from a file made later on
    the same inode number, so it is not taken for it (the namespace is left, never
    another's deleted)."""
    if now is None:
        return False
    file, handle = recorded.partition("/")[::2]
    file_now, handle_now = now.partition("/")[::2]
    return file == file_now and (not handle or handle == handle_now)


_open_tree_ok: bool | None = None


def _open_tree_works() -> bool:
    """Whether open_tree(2) can copy the /run/netns mount here (see ``entry_token``);
    asked once per process (again while /run/netns does not exist yet). Not tried under
    a seccomp filter, which may kill the process for a call it does not know instead of
    refusing it (as for the private procfs above)."""
    global _open_tree_ok
    if _open_tree_ok is None:
        if not _MOUNT_API_NUMBERED or _seccomp_filtered():
            _open_tree_ok = False
            return False
        tree = _open_tree()
        if tree < 0:
            if ctypes.get_errno() == errno.ENOENT:
                return False  # (no /run/netns yet: nothing to read; asked again later)
            _open_tree_ok = False
            return False
        os.close(tree)
        _open_tree_ok = True
    return _open_tree_ok


def _open_tree() -> int:
    """A copy of the /run/netns mount without the mounts on it (a namespace's bind
    mount among them), attached nowhere; negative if refused."""
    return int(
        _libc.syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(-100),  # AT_FDCWD
            NETNS_RUN_DIR.encode(),
            ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC),
        )
    )


def entry_token(name: str) -> str | None:
    """The token of the file /run/netns/NAME (None: there is none): the file's own,
    whatever is mounted on it. Read through a copy of the /run/netns mount without the
    mounts on it (open_tree), which sees the file a namespace covers; where that cannot
    be had, the inode as the directory lists it, which is the file's own too."""
    tree = _open_tree() if _open_tree_works() else -1
    if tree >= 0:
        try:
            inode = os.stat(name, dir_fd=tree, follow_symlinks=False).st_ino
            return _token(inode, _file_handle(tree, name.encode()))
        except FileNotFoundError:
            return None
        finally:
            os.close(tree)
    try:  # (ENOSYS, EPERM: the inode alone)
        with os.scandir(NETNS_RUN_DIR) as entries:
            for entry in entries:
                if entry.name == name:
                    return str(entry.inode())
    except FileNotFoundError:
        pass
    return None


def file_token(path: str) -> str | None:
    """The token of ``path``, a file with nothing mounted on it (None: none there)."""
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return None
    # (made again between the two calls, the token is neither file's: no match)
    return _token(inode, _file_handle(-100, path.encode()))  # (AT_FDCWD)


def create_namespace(name: str, setup: Callable[[], T], *, reserved: bool = False) -> T:
    """Create the named namespace, run ``setup`` inside it (from the creating thread) and
    return its result; ``reserved``: on the file ``reserve_namespace`` made for it. On
    any failure nothing is left behind (the reserved file neither)."""
    if not reserved:
        reserve_namespace(name)
    path = ns_path(name)
    mounted = False

    def body() -> T:
        nonlocal mounted
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare(CLONE_NEWNET)")
        if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None):
            raise _oserror(f"bind-mount {path}")
        mounted = True
        return setup()

    try:
        return in_fresh_thread(body)
    except BaseException as failure:
        if mounted:
            _libc.umount2(path.encode(), MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if isinstance(failure, OSError) and failure.errno in (errno.EPERM, errno.EACCES):
            raise errors.PermissionDenied(f"create namespace {name!r}") from failure
        if isinstance(failure, OSError) and not isinstance(failure, errors.HostnetError):
            raise errors.KernelError(
                f"create namespace {name!r}", failure.errno or 0, str(failure)
            ) from failure
        raise


def delete_namespace(name: str) -> None:
    """Unmount and remove /run/netns/NAME. The kernel destroys the namespace (and its
    links) once nothing else holds it: no process inside, no open socket or fd."""
    path = ns_path(name)
    if not os.path.exists(path):
        raise errors.NamespaceNotFound(name)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err in (errno.EPERM, errno.EACCES):
            raise errors.PermissionDenied(f"delete namespace {name!r}")
        if err != errno.EINVAL:  # EINVAL: not mounted (a stale file); just remove it
            raise errors.KernelError(f"delete namespace {name!r}", err)
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise errors.NamespaceNotFound(name) from None


def lo_up() -> int | None:
    """Bring up ``lo`` in the calling thread's namespace with SIOCGIFFLAGS/SIOCSIFFLAGS:
    what ``ip link set lo up`` amounts to, without opening a netlink socket. Returns the
    namespace's cookie (``netns_cookie``), read from the same socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        answer = fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
        flags = _IFREQ.unpack(answer)[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))
        return netns_cookie(sock)


#: getsockopt(SOL_SOCKET, SO_NETNS_COOKIE) (Linux 5.14): a 64-bit number the kernel
#: gives each network namespace, never reused until the machine reboots (unlike the
#: namespace's inode number, which the next namespace made often gets).
SO_NETNS_COOKIE = 71


def netns_cookie(sock: socket.socket) -> int | None:
    """The cookie of the namespace ``sock`` was opened in; None on older kernels."""
    try:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return None


_STATX_INO = 0x100
_STATX_MNT_ID_UNIQUE = 0x4000  # Linux 6.8: mount ids never reused until reboot
_AT_FDCWD = -100


def mount_id(path: str) -> str | None:
    """The bind mount that names a namespace (its unique mount id, with the inode): one
    statx, no thread. While that mount exists it keeps its namespace alive, so the same
    value means the same namespace. None where the kernel has no unique mount ids."""
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statx
    if _statx(_AT_FDCWD, path.encode(), 0, _STATX_INO | _STATX_MNT_ID_UNIQUE, buf) != 0:
        code = ctypes.get_errno()
        if code == errno.ENOENT:
            raise FileNotFoundError(code, os.strerror(code), path)
        return None
    (mask,) = struct.unpack_from("I", buf, 0)  # stx_mask
    (ino,) = struct.unpack_from("Q", buf, 32)  # stx_ino
    (mnt,) = struct.unpack_from("Q", buf, 144)  # stx_mnt_id
    if not mask & _STATX_MNT_ID_UNIQUE:
        return None
    return f"{boot_id()}/{mnt}/{ino}"


def mount_view() -> str | None:
    """The calling thread's mount namespace: the unique id of its root mount (each mount
    namespace has its own copy of every mount; the namespace's inode number is reused
    by the next one made), None if the kernel cannot tell."""
    try:
        return mount_id("/")
    except OSError:
        return None


@functools.cache
def boot_id() -> str:
    """This boot of the machine (cookies start again after a reboot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


def list_namespaces() -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(NETNS_RUN_DIR)))
    except FileNotFoundError:
        return ()


def processes_in(name: str) -> tuple[int, ...]:
    """Pids of the processes whose network namespace is the named one (their main
    thread's), sorted; walks /proc."""
    fd = open_namespace(name)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        if any(
            mine.st_ino == st.st_ino and mine.st_dev == st.st_dev
            for mine in _net_namespaces_of(entry.name)
        ):
            found.append(int(entry.name))
    return tuple(sorted(found))


def _net_namespaces_of(pid: str) -> list[os.stat_result]:
    """The network namespace of process ``pid``: its main thread's; or, when that thread
    has exited while others run on (its /proc/PID/ns is gone then), its threads'."""
    try:
        return [os.stat(f"/proc/{pid}/ns/net")]
    except OSError:
        pass
    out = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                out.append(os.stat(f"/proc/{pid}/task/{task.name}/ns/net"))
            except OSError:
                continue
    except OSError:  # gone meanwhile
        pass
    return out


def is_namespace(path: str) -> bool:
    """Whether ``path`` has a namespace mounted on it (not the empty file that `ip netns
    del`, or a delete cut short, leaves between unmounting and unlinking)."""
    try:
        return os.stat(path).st_dev == _nsfs_device()
    except FileNotFoundError:
        return False


def open_namespace(name: str) -> int:
    """An O_RDONLY fd on the named namespace (caller closes it)."""
    try:
        fd = os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.NamespaceNotFound(name) from None
    except PermissionError as exc:
        raise errors.PermissionDenied(f"open namespace {name!r}") from exc
    # `ip netns del` unmounts the namespace before it removes the file, and `ip netns
    # add` (or create_namespace) makes the file before it mounts one on it: in between
    # the file is empty, and setns on it fails with EINVAL
    if os.fstat(fd).st_dev != _nsfs_device():
        os.close(fd)
        raise errors.NamespaceNotFound(name)
    return fd


@functools.cache
def _nsfs_device() -> int:
    """The device of the filesystem namespace files live on (nsfs)."""
    return os.stat("/proc/self/ns/net").st_dev
