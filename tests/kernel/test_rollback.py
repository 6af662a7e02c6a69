"""Every op of the bridge and macvlan calls fails in turn, on the real kernel.

A setup call (create, connect, publish) that fails at op #k raises the injected error,
rolls back ops 0..k-1 and leaves the host, the target namespaces and the store exactly
as before; the same call then works. A teardown call (disconnect, delete,
disconnect_all) goes past the failing op (DESIGN rule 3): it raises, everything else
of its plan is done, the store keeps what is left for ``gc`` (or a retry), and that
finishes it with nothing leaked.

The ``ops`` of each call is the length of its plan: the retry without the fault checks
it, so a plan that grows fails here until the new op is covered too."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostnet import errors
from hostnet.backends.netlink import NetlinkBackend
from hostnet.controller import Controller
from hostnet.ops import (
    CreateNamespace,
    DeleteNamespace,
    DelLink,
    DelLinkGroup,
    NftBatch,
    Op,
    SetSysctl,
    plan_from_json,
)
from hostnet.testing import FaultyBackend, InjectedFault
from hostnet.testing.world import unique_prefix
from tests.kernel.test_recovery import PARENT, check_consistent, create_lan, make_lan

DUAL = ["10.91.0.0/24", "fd00:91::/64"]
PUBLISH = ["18080:80/tcp", "18081:81/udp"]
FORWARDING = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


@dataclass
class Rig:
    backend: NetlinkBackend
    faulty: FaultyBackend
    ctl: Controller
    host: str
    prefix: str
    infra: dict[str, set[str]]
    a: str
    b: str

    def state(self) -> dict[str, Any]:
        """The kernel (every namespace of the test) and the store, as comparable values."""
        out: dict[str, Any] = {}
        for name in sorted(n for n in self.backend.namespaces() if n.startswith(self.prefix)):
            snap = self.backend.observe(name)
            keys = list(FORWARDING) if name == self.host else []
            keys += [f"net/ipv4/conf/{k.name}/route_localnet" for k in snap.links]
            out[name] = {
                "links": {
                    (k.name, k.kind, k.mtu, k.mac, k.up, k.master, k.parent, k.mode, k.group)
                    for k in snap.links
                },
                "addresses": set(snap.addresses),
                "routes": set(snap.routes),
                "nft": ruleset(name),
                "sysctls": {key: self.backend.sysctl(name, key) for key in keys},
            }
            if name != self.host:
                self.backend.release(name)
        store = self.ctl.store
        out["store"] = store.dump()
        out["cursors"] = store.read(lambda tx: tx.c.execute("SELECT * FROM cursors").fetchall())
        return out

    def consistent(self) -> None:
        check_consistent(self.ctl, self.prefix, self.infra)


def ruleset(ns: str) -> dict[str, Any]:
    """nft's whole ruleset of ``ns`` without handles: tables, chains with their rules
    in order, sets and maps with their elements (in any order)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    items: dict[str, Any] = {}
    for item in json.loads(out)["nftables"]:
        ((kind, body),) = item.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind == "rule":
            key = f"rules {body['family']} {body['table']} {body['chain']}"
            items.setdefault(key, []).append(json.dumps(body, sort_keys=True))
            continue
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        items[f"{kind} {body.get('family')} {body.get('table')} {body['name']}"] = body
    return items


@contextmanager
def make_rig(state: Path, *, with_lan: bool) -> Iterator[Rig]:
    backend = NetlinkBackend()
    prefix = unique_prefix("hb")
    host = f"{prefix}host"
    infra: dict[str, set[str]] = {host: set()}
    ctl = None
    try:
        backend.apply(CreateNamespace(ns=host))
        if with_lan:
            make_lan(backend, host, f"{prefix}lan")
            infra = {host: {PARENT}, f"{prefix}lan": {"eth0"}}
        faulty = FaultyBackend(backend)
        ctl = Controller(backend=faulty, host=host, state_dir=state, forwarding=True)
        a, b = (ctl.create_namespace(f"{prefix}{n}").name for n in "ab")
        yield Rig(backend, faulty, ctl, host, prefix, infra, a, b)
    finally:
        if ctl is not None:
            ctl.close()
        for name in backend.namespaces():
            if name.startswith(prefix):
                backend.apply(DeleteNamespace(ns=name))
        backend.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with make_rig(tmp_path / "state", with_lan=False) as made:
        yield made


@pytest.fixture
def lan_rig(tmp_path: Path) -> Iterator[Rig]:
    """A host whose macvlan parent is a veth into a "lan" namespace (this kernel has no
    dummy or vlan links)."""
    with make_rig(tmp_path / "state", with_lan=True) as made:
        yield made


def fails_cleanly(rig: Rig, call: Callable[[], object], fail_at: int, ops: int) -> None:
    """``call`` failing at its op ``fail_at`` changes nothing; then it works."""
    before = rig.state()
    rig.faulty.fail_at = rig.faulty.calls + fail_at
    with pytest.raises(InjectedFault) as info:
        call()
    rig.faulty.fail_at = None
    assert f"{fail_at} earlier op(s) rolled back" in "".join(info.value.__notes__)
    assert rig.state() == before
    start = rig.faulty.calls
    call()
    assert rig.faulty.calls - start == ops  # every op of the plan had its turn
    rig.consistent()


def teardown_fails(
    rig: Rig, base: dict[str, Any], call: Callable[[], object], fail_at: int, ops: int
) -> Op:
    """``call`` failing at its op ``fail_at`` still does the rest, raises, and keeps its
    journal for gc; returns the op that failed. ``base``: the state before the torn
    down objects were made, which is what a clean teardown leaves."""
    rig.faulty.fail_at = rig.faulty.calls + fail_at
    with pytest.raises(errors.TeardownError) as info:
        call()
    rig.faulty.fail_at = None
    assert [type(e) for e in info.value.errors] == [InjectedFault]
    (journal,) = rig.ctl.store.read(lambda tx: tx.journals())
    assert journal["kind"] == "teardown" and journal["failed"]
    plan = plan_from_json(journal["plan"])
    assert len(plan) == ops
    failed = plan[fail_at]
    left = rig.state()
    # the store still has the records the failed journal will forget
    owners = json.loads(journal["owner"])
    ids = {r[0] for t in ("endpoints", "networks") for r in left["store"][t]}
    assert {o for o in owners if not o.startswith("drain:")} <= ids
    # the kernel has only what the failed op would have removed
    for name in left.keys() - {"store", "cursors"}:
        assert_only_from(failed, name, left[name], base[name])
    return failed


def assert_only_from(failed: Op, ns: str, left: dict[str, Any], clean: dict[str, Any]) -> None:
    """What ``left`` has more than ``clean`` (in namespace ``ns``) is all ``failed``'s."""
    extra = {k: v for k, v in left.items() if v != clean[k]}
    if isinstance(failed, NftBatch):
        assert set(extra) <= {"nft"}, extra
    elif isinstance(failed, SetSysctl):
        assert set(extra) <= {"sysctls"}, extra
        diff = {k for k, v in left["sysctls"].items() if clean["sysctls"].get(k) != v}
        assert diff <= {failed.key}
    elif isinstance(failed, DelLink | DelLinkGroup):
        assert set(extra) <= {"links", "addresses", "routes", "sysctls"}, extra
        # the links of the op (and, in the namespaces, their veth peers), with their
        # addresses and routes and per-link sysctls
        names = [failed.name] if isinstance(failed, DelLink) else [k.name for k in failed.recreate]
        stray = {link[0] for link in left["links"] - clean["links"]}
        if ns == failed.ns:
            assert stray <= set(names)
        else:
            assert all(link[1] == "veth" for link in left["links"] - clean["links"])
        assert {a.ifname for a in left["addresses"] ^ clean["addresses"]} <= stray
        assert {r.ifname for r in left["routes"] ^ clean["routes"]} <= stray
    else:  # TrackFlows, ForgetFlows: nothing the state shows
        assert extra == {}


def finish_with_gc(rig: Rig, base: dict[str, Any]) -> None:
    report = rig.ctl.gc()
    assert [r["errors"] for r in report["recovered"]] == [[]]
    after = rig.state()
    assert after == base | {"cursors": after["cursors"]}
    rig.consistent()


# -- bridge --------------------------------------------------------------------------


def web(rig: Rig) -> Any:
    return rig.ctl.create_network("web", subnet=DUAL, ipv6=True)


@pytest.mark.parametrize("fail_at", range(10))
def test_first_bridge_network(rig: Rig, fail_at: int) -> None:
    # also makes the host's firewall tables and turns forwarding on
    fails_cleanly(rig, lambda: web(rig), fail_at, ops=10)
    assert rig.backend.sysctl(rig.host, FORWARDING[0]) == "1"


@pytest.mark.parametrize("fail_at", range(6))
def test_second_bridge_network(rig: Rig, fail_at: int) -> None:
    web(rig)
    fails_cleanly(
        rig, lambda: rig.ctl.create_network("web2", subnet="10.92.0.0/24"), fail_at, ops=6
    )


@pytest.mark.parametrize("fail_at", range(8))
def test_bridge_connect(rig: Rig, fail_at: int) -> None:
    net = web(rig)
    fails_cleanly(rig, lambda: net.connect(rig.a, publish=PUBLISH), fail_at, ops=8)


@pytest.mark.parametrize("fail_at", range(3))
def test_bridge_publish(rig: Rig, fail_at: int) -> None:
    net = web(rig)
    net.connect(rig.a, publish=PUBLISH)
    more = ["18082:82/tcp", "18083:83/udp"]
    fails_cleanly(rig, lambda: net.publish(rig.a, more), fail_at, ops=3)


@pytest.mark.parametrize("fail_at", range(4))
def test_bridge_disconnect(rig: Rig, fail_at: int) -> None:
    net = web(rig)
    base = rig.state()
    net.connect(rig.a, publish=PUBLISH)
    net.publish(rig.a, ["18082:82/tcp"])
    teardown_fails(rig, base, lambda: net.disconnect(rig.a), fail_at, ops=4)
    net.disconnect(rig.a)  # a retry finishes it, and the failed attempt with it
    rig.consistent()
    # so gc later cannot undo the same ports published again since
    net.connect(rig.b, publish=PUBLISH)
    assert rig.ctl.gc()["recovered"] == []
    rig.consistent()


@pytest.mark.parametrize("fail_at", range(7))
def test_bridge_delete_network(rig: Rig, fail_at: int) -> None:
    # the host's last bridge network: its firewall tables and forwarding go too
    base = rig.state()
    net = web(rig)
    net.connect(rig.a, publish=PUBLISH)
    net.connect(rig.b, publish=["18090:80"])
    teardown_fails(rig, base, lambda: rig.ctl.delete_network("web", force=True), fail_at, ops=7)
    if fail_at % 2:
        finish_with_gc(rig, base)
        return
    rig.ctl.delete_network("web", force=True)  # a retry finishes it, as gc would
    after = rig.state()
    assert after == base | {"cursors": after["cursors"]}
    rig.consistent()
    assert rig.ctl.gc()["recovered"] == []


@pytest.mark.parametrize("fail_at", range(4))
def test_bridge_disconnect_all(rig: Rig, fail_at: int) -> None:
    net = web(rig)
    base = rig.state()
    net.connect(rig.a, publish=PUBLISH)
    net.connect(rig.b)
    teardown_fails(rig, base, net.disconnect_all, fail_at, ops=4)
    assert net.disconnect_all() == 2  # a retry finishes it, and the failed attempt with it
    rig.consistent()
    net.connect(rig.b, publish=PUBLISH)
    assert rig.ctl.gc()["recovered"] == []
    rig.consistent()


# -- macvlan -------------------------------------------------------------------------


def lan(rig: Rig) -> Any:
    return create_lan(rig.ctl)


@pytest.mark.parametrize("fail_at", range(3))
def test_macvlan_network(lan_rig: Rig, fail_at: int) -> None:
    rig = lan_rig
    fails_cleanly(rig, lambda: lan(rig), fail_at, ops=3)


@pytest.mark.parametrize("fail_at", range(3))
def test_macvlan_connect(lan_rig: Rig, fail_at: int) -> None:
    rig = lan_rig
    net = lan(rig)
    fails_cleanly(rig, lambda: net.connect(rig.a), fail_at, ops=3)


@pytest.mark.parametrize("fail_at", range(1))
def test_macvlan_disconnect(lan_rig: Rig, fail_at: int) -> None:
    rig = lan_rig
    net = lan(rig)
    base = rig.state()
    net.connect(rig.a)
    teardown_fails(rig, base, lambda: net.disconnect(rig.a), fail_at, ops=1)
    net.disconnect(rig.a)  # a retry finishes it, and the failed attempt with it
    rig.consistent()
    assert rig.state() == base | {"cursors": rig.state()["cursors"]}


@pytest.mark.parametrize("fail_at", range(2))
def test_macvlan_delete_network(lan_rig: Rig, fail_at: int) -> None:
    rig = lan_rig
    base = rig.state()
    net = lan(rig)
    net.connect(rig.a)
    teardown_fails(rig, base, lambda: rig.ctl.delete_network("lan", force=True), fail_at, ops=2)
    finish_with_gc(rig, base)


@pytest.mark.parametrize("fail_at", range(2))
def test_part_of_a_failed_disconnect_all_redone_alone(rig: Rig, fail_at: int) -> None:
    # disconnect_all of a and b fails; a alone is then disconnected. Its port and
    # address stay taken until gc finishes the failed journal, which still holds a's
    # ops: given to another endpoint before that, gc would undo them.
    net = web(rig)
    other = rig.ctl.create_network("web2", subnet="10.92.0.0/24")
    c = rig.ctl.create_namespace(f"{rig.prefix}c").name
    base = rig.state()
    net.connect(rig.a, publish=["18080:80/tcp"], ip="10.91.0.7")
    net.connect(rig.b, publish=["18090:80"])
    teardown_fails(rig, base, net.disconnect_all, fail_at, ops=2)
    net.disconnect(rig.a)
    with pytest.raises(errors.PortInUse, match="gc"):
        other.connect(c, publish=["18080:80/tcp"])
    report = rig.ctl.gc()
    assert [r["errors"] for r in report["recovered"]] == [[]]
    ep = other.connect(c, publish=["18080:80/tcp"])
    assert rig.ctl.gc()["recovered"] == []
    rules = json.dumps(ruleset(rig.host))
    assert ep.ip in rules and "10.91.0.7" not in rules
    rig.consistent()


def test_a_failed_namespace_delete_retried_after_the_name_was_made_again(rig: Rig) -> None:
    # the delete fails at its last op and waits for gc; meanwhile someone deletes the
    # namespace by hand and makes another of that name: gc must not delete that one
    rig.faulty.fail_kinds = frozenset({"DeleteNamespace"})
    with pytest.raises(errors.TeardownError):
        rig.ctl.delete_namespace(rig.a)
    rig.faulty.fail_kinds = frozenset()
    subprocess.run(["ip", "netns", "del", rig.a], check=True)
    subprocess.run(["ip", "netns", "add", rig.a], check=True)
    report = rig.ctl.gc()
    assert [r["errors"] for r in report["recovered"]] == [[]]
    assert rig.a in rig.backend.namespaces()  # the new one, not hostnet's, is still there
    assert rig.ctl.store.read(lambda tx: (tx.journals(), tx.namespace(rig.a))) == ([], None)


def made_again_with_an_eth0(name: str) -> None:
    """``ip netns del NAME; ip netns add NAME``, and a link ``eth0`` of its own there."""
    for args in (
        ["netns", "del", name],
        ["netns", "add", name],
        ["-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
    ):
        subprocess.run(["ip", *args], check=True)


def links_of(name: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", name, "-o", "link"], check=True, capture_output=True, text=True
    ).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def gc_spares_the_new_eth0(rig: Rig, *, skipped: int) -> None:
    """gc skips the journal's ops in namespace a (made again since), and forgets the
    endpoint; the new namespace keeps its own links."""
    report = rig.ctl.gc()
    assert [(r["errors"], r["skipped"]) for r in report["recovered"]] == [([], skipped)]
    assert links_of(rig.a) == {"lo", "eth0", "eth1"}
    assert rig.ctl.store.read(lambda tx: (tx.journals(), tx.endpoints())) == ([], [])


def test_a_failed_macvlan_disconnect_retried_after_the_namespace_was_made_again(
    lan_rig: Rig,
) -> None:
    # the endpoint's link is inside the namespace: gc, retrying the failed disconnect,
    # must not delete the eth0 of the namespace made since under that name
    rig = lan_rig
    net = lan(rig)
    net.connect(rig.a)
    rig.faulty.fail_kinds = frozenset({"DelLink"})
    with pytest.raises(errors.TeardownError):
        net.disconnect(rig.a)
    rig.faulty.fail_kinds = frozenset()
    made_again_with_an_eth0(rig.a)
    gc_spares_the_new_eth0(rig, skipped=1)


KILLED_AT = r"""
import os, signal, sys
from hostnet.backends.netlink import NetlinkBackend
from hostnet.controller import Controller
host, state, ns, kind = sys.argv[1:5]

class Dies(NetlinkBackend):
    def apply(self, op):
        if type(op).__name__ == kind:
            os.kill(os.getpid(), signal.SIGKILL)
        super().apply(op)

network = Controller(host=host, state_dir=state, backend=Dies()).network(sys.argv[5])
network.connect(ns, publish=sys.argv[6:])
"""


def test_a_macvlan_connect_cut_short_then_the_namespace_made_again(lan_rig: Rig) -> None:
    # a process is killed inside connect, its macvlan link made in the namespace; the
    # namespace is then made again, with an eth0 of its own: gc rolls the connect back
    # without touching it
    rig = lan_rig
    lan(rig)
    state = str(rig.ctl.store.path.parent)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AT, rig.host, state, rig.a, "AddAddress", "lan"],
        check=False,
    )
    assert child.returncode == -signal.SIGKILL
    (journal,) = rig.ctl.store.read(lambda tx: tx.journals())
    assert journal["kind"] == "setup" and journal["done"] == 1
    made_again_with_an_eth0(rig.a)
    gc_spares_the_new_eth0(rig, skipped=2)


GC = r"""
import json, sys
from hostnet.controller import Controller
with Controller(host=sys.argv[1], state_dir=sys.argv[2], recover=False) as ctl:
    print(json.dumps(ctl.gc()))
"""


@pytest.mark.parametrize("gc_in", ["this one", "another one"])
def test_a_connect_cut_short_in_another_mount_namespace_is_rolled_back(
    rig: Rig, gc_in: str
) -> None:
    # a bind mount has another id in each mount namespace (`ip netns exec`, a service
    # with a private /tmp; the namespaces' inode numbers are reused, their root mounts'
    # unique ids are not): recovery from another one cannot compare them, and rolls
    # back by name, as before journals recorded where they acted
    net = web(rig)
    base = rig.state()
    state = str(rig.ctl.store.path.parent)
    argv = [sys.executable, "-c", KILLED_AT, rig.host, state, rig.a, "NftBatch", "web", "18080:80"]
    unshare = ["unshare", "-m", "--propagation", "unchanged"]
    child = subprocess.run([*unshare, *argv], check=False)
    assert child.returncode == -signal.SIGKILL
    (journal,) = rig.ctl.store.read(lambda tx: tx.journals())
    assert journal["places"]["@view"] != rig.backend.mount_view()
    if gc_in == "this one":
        report = rig.ctl.gc()
    else:
        out = subprocess.run(
            [*unshare, sys.executable, "-c", GC, rig.host, state],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        report = json.loads(out)
    assert [(r["errors"], r["skipped"]) for r in report["recovered"]] == [([], 0)]
    assert rig.state() == base | {"cursors": rig.state()["cursors"]}
    net.connect(rig.a, publish=["18080:80"], ip="10.91.0.2")  # nothing of it is left
    rig.consistent()


def test_a_failed_forced_delete_of_an_adopted_namespace_spares_the_next_one(rig: Rig) -> None:
    # hostnet did not make it, so its delete carries no mount of its own: gc takes the
    # journal's, and leaves alone the namespace made under that name since
    name = f"{rig.prefix}ad"
    subprocess.run(["ip", "netns", "add", name], check=True)
    rig.ctl.namespace(name)
    rig.faulty.fail_kinds = frozenset({"DeleteNamespace"})
    with pytest.raises(errors.TeardownError):
        rig.ctl.delete_namespace(name, force=True)
    rig.faulty.fail_kinds = frozenset()
    made_again_with_an_eth0(name)
    report = rig.ctl.gc()
    assert [r["errors"] for r in report["recovered"]] == [[]]
    assert links_of(name) == {"lo", "eth0", "eth1"}


def test_a_failed_network_delete_retried_after_the_bridge_name_was_taken(rig: Rig) -> None:
    # the delete removed the bridge and failed after it; an admin then makes a bridge
    # of that name: gc, retrying the delete, leaves that one alone (its MAC is not the
    # one hostnet gave its bridge)
    rig.ctl.create_network("web", subnet="10.91.0.0/24", bridge_name="lab0")
    rig.faulty.fail_kinds = frozenset({"SetSysctl"})
    with pytest.raises(errors.TeardownError):
        rig.ctl.delete_network("web")
    rig.faulty.fail_kinds = frozenset()
    subprocess.run(["ip", "-n", rig.host, "link", "add", "lab0", "type", "bridge"], check=True)
    report = rig.ctl.gc()
    assert [r["errors"] for r in report["recovered"]] == [[]]
    assert "lab0" in links_of(rig.host)
    subprocess.run(["ip", "-n", rig.host, "link", "del", "lab0"], check=True)


CREATE_KILLED = r"""
import os, signal, sys
from hostnet.backends.netlink import NetlinkBackend
from hostnet.controller import Controller

class Dies(NetlinkBackend):
    def namespace_id(self, ns):  # asked when the new namespace is recorded
        if ns == sys.argv[3]:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().namespace_id(ns)

Controller(host=sys.argv[1], state_dir=sys.argv[2], backend=Dies()).create_namespace(sys.argv[3])
"""


def test_a_namespace_create_cut_short_spares_one_made_again_under_its_name(rig: Rig) -> None:
    # killed after making the namespace, before recording it; someone then deletes it
    # and makes another of that name: gc's rollback must not delete that one
    state = str(rig.ctl.store.path.parent)
    name = f"{rig.prefix}cr"
    child = subprocess.run(
        [sys.executable, "-c", CREATE_KILLED, rig.host, state, name], check=False
    )
    assert child.returncode == -signal.SIGKILL
    (journal,) = rig.ctl.store.read(lambda tx: tx.journals())
    # what tells its namespace from another: the reservation's token, where no later
    # file can have it (with the file handle); else the mount, recorded too
    # (in two parts: the inode alone where an older hostnet's recovery reads it)
    places = journal["places"]
    assert places[f"@reserved:{name}"].isdigit()
    token = places[f"@reserved:{name}"] + "/" + places.get(f"@handle:{name}", "")
    assert rig.backend.reservation_is_unique(token) or name in places
    subprocess.run(["ip", "netns", "del", name], check=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    report = rig.ctl.gc()
    assert [r["errors"] for r in report["recovered"]] == [[]]
    assert name in rig.backend.namespaces()
    assert rig.ctl.store.read(lambda tx: (tx.journals(), tx.namespace(name))) == ([], None)
