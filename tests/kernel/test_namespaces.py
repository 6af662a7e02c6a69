"""Namespaces on the real kernel: created, visible to ip, processes inside, deleted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hostnet import errors
from hostnet.testing.world import wait_until


def ip_netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_create_is_visible_to_ip_and_has_only_lo_up(hostnet_host) -> None:
    ctl = hostnet_host.controller
    name = hostnet_host.name("app")
    ns = ctl.create_namespace(name)
    assert name in ip_netns_list()
    links = ns.interfaces()
    assert [(link.name, link.up) for link in links] == [("lo", True)]
    out = subprocess.run(
        ["ip", "-n", name, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert len(out.splitlines()) == 1 and "lo:" in out and "UP" in out
    ns.delete()
    assert name not in ip_netns_list()


def test_processes_run_inside_the_namespace(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ns = ctl.create_namespace(hostnet_host.name("app"))
    inode = os.stat(ns.path).st_ino
    result = ns.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"net:[{inode}]"
    # the caller's own thread never moved
    assert os.readlink("/proc/thread-self/ns/net") != f"net:[{inode}]"
    with pytest.raises(errors.ValidationError):
        ns.popen("echo hi")  # a string would need a shell; hostnet never uses one
    # input=, as subprocess.run takes it
    assert ns.run(["cat"], input="hi", capture_output=True, text=True).stdout == "hi"
    assert ns.run(["wc", "-c"], input=b"abc", capture_output=True).stdout.strip() == b"3"
    ns.delete()


def test_counters_addresses_and_routes(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ns = ctl.create_namespace(hostnet_host.name("app"))
    before = ns.counters()["lo"]
    ns.run(
        ["ping", "-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1"], check=True, capture_output=True
    )
    after = ns.counters()["lo"]
    assert after.rx_packets >= before.rx_packets + 4  # 2 requests + 2 replies through lo
    assert {a.address for a in ns.addresses()} >= {"127.0.0.1/8", "::1/128"}
    assert ns.routes() == ()
    ns.delete()


def test_exists_and_missing(hostnet_host) -> None:
    ctl = hostnet_host.controller
    name = hostnet_host.name("app")
    ctl.create_namespace(name)
    with pytest.raises(errors.NamespaceExists):
        ctl.create_namespace(name)
    ctl.delete_namespace(name)
    with pytest.raises(errors.NamespaceNotFound):
        ctl.delete_namespace(name)
    with pytest.raises(errors.NamespaceNotFound):
        ctl.namespace(name)


def test_namespace_made_by_ip_is_adopted_not_deleted(hostnet_host) -> None:
    ctl = hostnet_host.controller
    name = hostnet_host.name("ipns")
    subprocess.run(["ip", "netns", "add", name], check=True)
    ns = ctl.namespace(name)
    assert not ns.managed
    with pytest.raises(errors.ConflictError):
        ns.delete()
    assert name in ip_netns_list()
    ctl.attach(ns, driver="none")  # lo was down (ip netns add): none brings it up
    assert ns.interfaces()[0].up
    ns.delete(force=True)
    assert name not in ip_netns_list()


@pytest.mark.parametrize("bad", ["a/b", "..", "has space", "x" * 65, "caf\u00e9", "", "-x"])
def test_bad_names_change_nothing(hostnet_host, bad: str) -> None:
    def ours() -> set[str]:  # other processes may be making namespaces meanwhile
        return {n for n in ip_netns_list() if n.startswith(hostnet_host.prefix) or n == bad}

    before, store_before = ours(), hostnet_host.controller.store.dump()
    with pytest.raises(errors.InvalidName):
        hostnet_host.controller.create_namespace(bad)
    assert ours() == before
    assert hostnet_host.controller.store.dump() == store_before


def test_list_shows_every_named_namespace(hostnet_host) -> None:
    ctl = hostnet_host.controller
    mine = ctl.create_namespace(hostnet_host.name("app"))
    listed = {n.name: n for n in ctl.namespaces()}
    assert listed[mine.name].managed
    assert hostnet_host.host in listed  # made by the fixture, through hostnet
    other = hostnet_host.name("ipns")
    subprocess.run(["ip", "netns", "add", other], check=True)
    assert not {n.name: n for n in ctl.namespaces()}[other].managed
    mine.delete()


def test_context_manager_deletes(hostnet_host) -> None:
    name = hostnet_host.name("app")
    with hostnet_host.controller.create_namespace(name) as ns:
        assert ns.exists()
    assert name not in ip_netns_list()


def test_missing_capabilities_give_a_clear_error(tmp_path) -> None:
    """Without CAP_NET_ADMIN and CAP_SYS_ADMIN: a clear PermissionDenied, no traceback
    from pyroute2, nothing created. (setpriv drops the capabilities for the child.)"""
    code = (
        "import hostnet\n"
        "from hostnet import errors\n"
        f"ctl = hostnet.Controller(backend='netlink', state_dir={str(tmp_path)!r})\n"
        "try:\n"
        "    ctl.create_namespace('hnnopriv')\n"
        "except errors.PermissionDenied as exc:\n"
        "    print('DENIED', exc)\n"
        "ns = ctl.namespaces()\n"
    )
    result = subprocess.run(
        ["setpriv", "--bounding-set", "-net_admin,-sys_admin", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("DENIED")
    assert "CAP_NET_ADMIN" in result.stdout
    assert "Traceback" not in result.stderr
    assert "hnnopriv" not in ip_netns_list()


def test_pids_and_test_cleanup_ends_what_a_test_left_running(hostnet_host) -> None:
    from hostnet.testing.world import World

    ns = hostnet_host.controller.create_namespace(hostnet_host.name("app"))
    assert ns.pids() == ()
    world = World(hostnet_host.backend, tag="hk")
    other = world.ns()
    with ns.popen(["sleep", "60"]) as a, hostnet_host.backend.popen(other, ["sleep", "60"]) as b:
        assert ns.pids() == (a.pid,)
        assert hostnet_host.backend.processes(other) == (b.pid,)
        # a test that fails here leaves b running: its namespace's cleanup ends it
        assert world.cleanup() == []
        assert b.wait(timeout=5) == -9
        assert a.poll() is None
        a.kill()
    assert world.backend.namespaces().count(other) == 0
    ns.delete()
    with pytest.raises(errors.NamespaceNotFound):
        ns.pids()


# Its main thread exits (pthread_exit), a thread of it runs on: a daemon's shape that
# /proc/PID/ns no longer shows (the main thread's), found through its threads'.
LEADER_EXITS = r"""
import ctypes, sys, threading, time
threading.Thread(target=time.sleep, args=(60,)).start()
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


def test_pids_finds_a_process_whose_main_thread_has_exited(hostnet_host) -> None:
    import subprocess
    import sys

    ns = hostnet_host.controller.create_namespace(hostnet_host.name("app"))
    with ns.popen([sys.executable, "-c", LEADER_EXITS], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            assert wait_until(lambda: not os.path.exists(f"/proc/{p.pid}/ns/net"))
            assert ns.pids() == (p.pid,)
        finally:
            p.kill()
    assert wait_until(lambda: ns.pids() == ())


def test_popen_misuse_is_a_validation_error(hostnet_host) -> None:
    ns = hostnet_host.controller.create_namespace(hostnet_host.name("app"))
    with pytest.raises(errors.ValidationError, match="empty"):
        ns.popen([])
    with pytest.raises(errors.ValidationError, match="preexec_fn"):
        ns.popen(["true"], preexec_fn=lambda: None)
    assert ns.pids() == ()
    ns.delete()


def test_audit_names_processes_with_cap_net_admin(hostnet_host) -> None:
    ctl = hostnet_host.controller
    ns = ctl.create_namespace(hostnet_host.name("app"))
    plain = ["setpriv", "--bounding-set", "-net_admin", "--", "sleep", "60"]
    # root of a user namespace of its own: its capabilities do not reach this network
    # namespace (owned by the machine's user namespace)
    userns = ["unshare", "-U", "-r", "sleep", "60"]
    with ns.popen(plain) as weak, ns.popen(["sleep", "60"]) as strong, ns.popen(userns) as own:
        try:

            def started(pid: int) -> bool:  # past setpriv's and unshare's own work
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        return f.read().strip() == "sleep"
                except OSError:
                    return False

            assert wait_until(lambda: all(started(p.pid) for p in (weak, strong, own)))
            found = [f for f in ctl.audit() if f["kind"] == "cap-net-admin"]
            assert [
                (f["subject"], f"process {strong.pid} (sleep)" in f["detail"]) for f in found
            ] == [(ns.name, True)]
            assert str(weak.pid) not in str(found) and str(own.pid) not in str(found)
        finally:
            weak.kill()
            strong.kill()
            own.kill()
    ns.delete()
