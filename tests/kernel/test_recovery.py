"""Crash recovery for real: a child process is SIGKILLed at random points while it
creates, attaches, detaches and deletes (namespaces, endpoints, whole networks); the
next Controller must leave the kernel exactly matching the store, with nothing leaked."""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostnet.backends.netlink import NetlinkBackend
from hostnet.controller import Controller
from hostnet.drivers import bridge_firewall as fw
from hostnet.drivers.bridge import FORWARD4, veth_name
from hostnet.network import Network
from hostnet.ops import CreateNamespace, DeleteNamespace
from hostnet.policy.security import SecurityPolicy
from hostnet.testing.world import unique_prefix
from tests.kernel.netutil import fresh_ip_forward

TRIALS = int(os.environ.get("HOSTNET_RECOVERY_TRIALS", "50"))
# a trial of these does more kernel work (macvlan children, whole networks)
FEW_TRIALS = int(os.environ.get("HOSTNET_RECOVERY_FEW_TRIALS", "25"))

# how long a child runs at most: long enough for a few rounds of its loop
WINDOW = {"macvlan": 0.08, "networks": 0.2}
PARENT = "lan0"  # the macvlan parent in the test's host: a veth to the "lan" namespace

CHILD = r"""
import sys
from hostnet.controller import Controller
from hostnet.drivers.bridge import veth_name
from hostnet.policy.security import SecurityPolicy
host, state, prefix, trial, scenario = sys.argv[1:]
ctl = Controller(host=host, state_dir=state, backend="netlink", recover=False,
                 policy=SecurityPolicy(allow_host_network=True), forwarding=True)
print("ready", flush=True)
i = 0
while True:
    ns = ctl.create_namespace(f"{prefix}t{trial}n{i}")
    if scenario == "bridge":
        web = ctl.network("web")
        web.connect(ns, publish=[f"{23000 + i % 500}:80", "80/udp"])
        if i % 4 == 0:
            web.publish(ns, [f"{24000 + i % 500}:81"])
        if i % 2:
            web.disconnect(ns)
        if i % 3:
            ns.delete()
    elif scenario == "macvlan":
        lan = ctl.network("lan")
        static = {}
        if i % 4 == 1:
            static["ip"] = f"192.168.50.{10 + i % 100}"
        if i % 3 == 1:
            static["mac"] = f"02:42:c0:a8:{int(trial) % 256:02x}:{i % 256:02x}"
        lan.connect(ns, **static)
        if i % 2:
            lan.disconnect(ns)
        if i % 3:
            ns.delete()
    elif scenario == "networks":
        # bridges n0 n1, macvlans n2 n3, bridges n4 n5...: deleting the previous
        # network hands the bridges' shared setup on, or takes it away with the last
        if i % 4 < 2:
            net = ctl.create_network(f"n{i}", driver="bridge", subnet=f"10.100.{i % 250}.0/24")
        else:
            net = ctl.create_network(
                f"n{i}", driver="macvlan", parent="lan0", subnet=f"10.101.{i % 250}.0/24",
                ip_range=f"10.101.{i % 250}.0/25", host_shim=True)
        if i % 3 != 2:
            net.connect(ns, publish=[f"{25000 + i % 500}:80"] if i % 4 < 2 else [])
        if i % 5 != 4 and i > 0:
            ctl.delete_network(f"n{i - 1}", force=True)
        if i % 2:
            ns.delete()
    else:
        ctl.attach(ns, driver="none")
        ctl.attach(f"w{trial}n{i}", driver="host",
                   ports=[f"127.0.0.1:{21000 + i % 500}/tcp", f"{22000 + i % 500}/udp"],
                   hold=True)
        if i % 3:
            ctl.detach(f"w{trial}n{i}")
            ns.delete()
    i += 1
"""


def check_consistent(ctl: Controller, prefix: str, infra: dict[str, set[str]]) -> None:
    """The kernel (the host and every namespace of ``prefix``) holds exactly what the
    store says. ``infra``: the namespaces the test made itself, with their links."""
    host, store, backend = ctl.host_ns, ctl.store, ctl.backend
    assert host is not None
    assert store.read(lambda tx: tx.journals()) == []
    kernel = {n for n in backend.namespaces() if n.startswith(prefix) and n not in infra}
    records = store.read(lambda tx: tx.namespaces())
    assert all(r["state"] == "active" for r in records)
    assert kernel == {r["name"] for r in records}
    rows = store.read(lambda tx: tx.endpoints())
    assert all(e["state"] == "active" for e in rows)
    assert all(e["ns"] is None or e["ns"] in kernel for e in rows)
    owners = {e["id"] for e in rows}
    assert {p["owner"].split("/")[0] for p in store.read(lambda tx: tx.ports())} <= owners
    nets = store.read(lambda tx: tx.networks(ctl.host_key))
    assert all(n["state"] == "active" for n in nets)
    assert {e["network"] for e in rows} <= {n["id"] for n in nets}
    networks = {n.name: n for n in ctl.networks()}
    endpoints = ctl.endpoints()
    assert len(endpoints) == len(rows)
    bridged = [e for e in endpoints if networks[e.network].driver == "bridge"]
    # the host: each network's bridge or shim, complete; a veth per bridge endpoint
    host_snap = backend.observe(host)
    expected = {"lo", *infra[host]}
    for net in networks.values():
        if net.driver == "bridge":
            bridge = host_snap.link(net.data["bridge"])
            assert bridge is not None and bridge.kind == "bridge" and bridge.up
            gateways = {f"{c.gateway}/{c.network.prefixlen}" for c in net.spec.subnets}
            assert set(host_snap.addresses_of(bridge.name)) == gateways
            expected.add(bridge.name)
        elif net.driver == "macvlan" and "shim" in net.data:
            shim = host_snap.link(net.data["shim"])
            assert shim is not None and shim.kind == "macvlan" and shim.up
            assert shim.mode == "bridge" and shim.parent == net.data["parent"]
            ip = net.data["host_addresses"]["shim"].split("/")[0]
            assert host_snap.addresses_of(shim.name) == (f"{ip}/32",)
            routes = {r.dst for r in host_snap.routes if r.ifname == shim.name}
            ranges = [c.ip_range for c in net.spec.subnets if c.ip_range]
            # and a /32 for each endpoint address outside the ranges (a static one)
            outside = {
                f"{e.ip}/32"
                for e in endpoints
                if e.network == net.name
                and e.ip is not None
                and not any(ipaddress.ip_address(e.ip) in ipaddress.ip_network(r) for r in ranges)
            }
            assert routes == {*ranges, *outside}
            expected.add(shim.name)
    expected |= {veth_name(e.id) for e in bridged}
    assert {link.name for link in host_snap.links} == expected
    for name, links in infra.items():
        if name != host:
            assert backend.observe(name).link_names() == {"lo", *links}
            backend.release(name)
    # every namespace: exactly its recorded endpoints' links, with their addresses
    # (so no stray macvlan child of the parent anywhere, and no half-made veth)
    for name in kernel:
        snap = backend.observe(name)
        backend.release(name)
        # (a none endpoint has no link of its own)
        mine = {e.ifname: e for e in endpoints if e.ns == name and e.ifname is not None}
        assert snap.link_names() == {"lo", *mine}
        for ifname, e in mine.items():
            link = snap.link(ifname)
            driver = networks[e.network].driver
            assert link is not None and link.kind == ("veth" if driver == "bridge" else "macvlan")
            if driver == "macvlan":
                assert link.mac == e.mac
            assert set(snap.addresses_of(ifname)) == set(e.addresses)
    # IPAM: the endpoints' addresses and the shims', nothing of networks that are gone
    allocated = sorted(
        (pool.split("/")[0], ip, owner) for pool, ip, owner in store.dump()["addresses"]
    )
    wanted = [
        (networks[e.network].id, str(ipaddress.ip_interface(a).ip), e.id)
        for e in endpoints
        for a in e.addresses
    ]
    wanted += [
        (n.id, n.data["host_addresses"]["shim"].split("/")[0], n.id)
        for n in networks.values()
        if "shim" in n.data
    ]
    assert allocated == sorted(wanted)
    cursors = store.read(lambda tx: tx.c.execute("SELECT name FROM cursors").fetchall())
    pools = {name[3:].split("/")[0] for (name,) in cursors if name.startswith("ip:")}
    assert pools <= {n.id for n in networks.values()}
    # the firewall: hostnet's tables exactly while there are bridge networks, with the
    # elements and chains of those networks and the ports of their endpoints
    bridges = [n for n in networks.values() if n.driver == "bridge"]
    shared = {key for _, key, _, _ in store.dump()["shared"]}
    if not bridges:
        assert host_snap.nft_tables == ()
        assert shared == set()
    else:
        assert {"inet hostnet", "bridge hostnet"} <= set(host_snap.nft_tables)
        listing = backend.nft_list(host, "inet hostnet")
        assert listing is not None
        sets = listing["sets"]
        names = sorted(f'"{n.data["bridge"]}"' for n in bridges)
        for key in ("bridges", "masq", "egress", "ingress"):
            assert sets[key] == names, key
        subnets = [ipaddress.ip_network(c.subnet) for n in bridges for c in n.spec.subnets]
        for family in (4, 6):
            assert sorted(sets[f"nets{family}"]) == sorted(
                f'{{"prefix":{{"addr":"{s.network_address}","len":{s.prefixlen}}}}}'
                for s in subnets
                if s.version == family
            )
        chains = {c for c in listing["chains"] if c.startswith(("n-", "i-"))}
        assert chains == {c for n in bridges for c in fw.chain_names(n.id)}
        published = sorted(
            f'{{"concat":["{m.protocol}",{m.host_port}]}}' for e in bridged for m in e.ports
        )
        assert sorted(sets["any4_addr"]) == sorted(sets["any4_port"]) == published
        assert "nft:bridge" in shared
    owners = {owner for _, _, owner, _ in store.dump()["shared"]}
    assert owners <= {n.id for n in bridges}
    forwarding = backend.sysctl(host, FORWARD4)
    assert forwarding == ("1" if f"sysctl:{FORWARD4}" in shared else fresh_ip_forward())
    backend.release(host)


def pause(rng: random.Random, scenario: str) -> float:
    """How long the child runs before it is killed."""
    if scenario in ("none-and-host", "bridge"):
        return rng.uniform(0.0, 0.06)
    # Deleting a link takes tens of milliseconds (an RCU grace period), creating one a
    # millisecond or two: half the kills aim at the child's first creations, or
    # hardly any would land there.
    return rng.uniform(0.0, 0.008 if rng.random() < 0.5 else WINDOW[scenario])


def create_lan(ctl: Controller) -> Network:
    """The macvlan network "lan" on PARENT, with a host shim and an ip range."""
    return ctl.create_network(
        "lan",
        driver="macvlan",
        parent=PARENT,
        subnet="192.168.50.0/24",
        gateway="192.168.50.1",
        ip_range="192.168.50.128/25",
        host_shim=True,
    )


def make_lan(backend: NetlinkBackend, host: str, lan: str) -> None:
    """The host's macvlan parent: one end of a veth whose peer is in ``lan`` (this
    kernel has no dummy or vlan links), both up."""
    backend.apply(CreateNamespace(ns=lan))

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    ip("-n", host, "link", "add", PARENT, "type", "veth", "peer", "name", "eth0", "netns", lan)
    ip("-n", host, "addr", "add", "192.168.50.2/24", "dev", PARENT)
    ip("-n", lan, "addr", "add", "192.168.50.1/24", "dev", "eth0")
    ip("-n", host, "link", "set", PARENT, "up")
    ip("-n", lan, "link", "set", "eth0", "up")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["none-and-host", "bridge", "macvlan", "networks"])
def test_sigkill_at_random_points_leaks_nothing(tmp_path: Path, scenario: str) -> None:
    rng = random.Random(int(os.environ.get("HOSTNET_RECOVERY_SEED", "1234")))
    prefix = unique_prefix("hr")
    host = f"{prefix}host"
    backend = NetlinkBackend()
    state = tmp_path / "state"
    recovered_total = 0
    infra: dict[str, set[str]] = {host: set()}
    trials = TRIALS if scenario in ("none-and-host", "bridge") else FEW_TRIALS
    keep = {"none", "host", "web", "lan"}  # networks made once, before the trials
    try:
        backend.apply(CreateNamespace(ns=host))
        if scenario in ("macvlan", "networks"):
            make_lan(backend, host, f"{prefix}lan")
            infra = {host: {PARENT}, f"{prefix}lan": {"eth0"}}
        setup = Controller(host=host, state_dir=state, backend=backend, forwarding=True)
        if scenario == "bridge":
            setup.create_network("web", driver="bridge", subnet="10.77.0.0/16")
        elif scenario == "macvlan":
            create_lan(setup)
        setup.close()
        for trial in range(trials):
            with subprocess.Popen(
                [sys.executable, "-c", CHILD, host, str(state), prefix, str(trial), scenario],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as child:
                try:
                    assert child.stdout is not None
                    line = child.stdout.readline()
                    assert line.strip() == "ready", child.stderr.read() if child.stderr else ""
                    time.sleep(pause(rng, scenario))
                finally:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
            ctl = Controller(
                host=host,
                state_dir=state,
                backend=backend,
                policy=SecurityPolicy(allow_host_network=True),
                forwarding=True,
            )
            recovered_total += len(ctl.recovered)
            ctl.gc()
            check_consistent(ctl, prefix, infra)
            # clean up what the child finished, through hostnet, for the next trial
            for ep in ctl.endpoints():
                if ep.ns is None:
                    ctl.detach(ep.workload)
            for net in ctl.networks():
                if net.name not in keep:
                    ctl.delete_network(net.name, force=True)
            for record in ctl.store.read(lambda tx: tx.namespaces()):
                ctl.delete_namespace(record["name"])
            check_consistent(ctl, prefix, infra)
            assert ctl.ports() == []
            assert {r[2] for r in ctl.store.dump()["addresses"]} <= {n.id for n in ctl.networks()}
            ctl.close()
        # the random kills did land in the middle of plans
        assert recovered_total > 0
        if scenario in ("bridge", "macvlan"):
            final = Controller(host=host, state_dir=state, backend=backend)
            final.delete_network("web" if scenario == "bridge" else "lan")
            snap = final.backend.observe(host)
            assert snap.link_names() == {"lo", *infra[host]}
            assert snap.nft_tables == ()
            assert final.store.dump()["addresses"] == []
            final.close()
    finally:
        for name in backend.namespaces():
            if name.startswith(prefix):
                backend.apply(DeleteNamespace(ns=name))
        backend.close()
    assert not [n for n in NetlinkBackend().namespaces() if n.startswith(prefix)]


def _journal_a_dead_create(
    state: Path, host: str, name: str, pid: int, places: dict[str, str]
) -> None:
    """The records a create of namespace ``name`` leaves when its process (``pid``, dead)
    is killed before its closing transaction: the pending namespace and its journal."""
    import json

    import psutil

    from hostnet.ops import plan_to_json
    from hostnet.stores.local import LocalStore

    store = LocalStore(state)
    try:
        with store.transaction() as tx:
            tx.add_namespace(name, host, created=True, owner=f"ns:{name}")
            tx.journal_begin(
                id="died",
                kind="setup",
                owner=json.dumps([f"ns:{name}"]),
                pid=pid,
                started=psutil.boot_time(),
                plan=plan_to_json((CreateNamespace(ns=name),)),
                places=places,
            )
    finally:
        store.close()


def test_recovery_leaves_a_namespace_someone_made_after_the_create_died(tmp_path: Path) -> None:
    # killed after journaling a namespace's create, before it took the name; then
    # someone made a namespace of that name: recovery deleted theirs, by name

    from hostnet.executor import RESERVES

    prefix = unique_prefix("hz")
    host, name = f"{prefix}host", f"{prefix}x"
    backend = NetlinkBackend()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # (a pid no process has)
    try:
        backend.apply(CreateNamespace(ns=host))
        _journal_a_dead_create(tmp_path / "state", host, name, child.pid, {RESERVES: "1"})
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "theirs0", "type", "bridge"], check=True)
        ctl = Controller(host=host, state_dir=tmp_path / "state", backend=backend)
        assert [r.journal for r in ctl.recovered] == ["died"]
        assert "theirs0" in backend.observe(name).link_names()
        assert ctl.store.read(lambda tx: tx.namespaces()) == []
        ctl.close()
    finally:
        for ns in (name, host):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, check=False)
        backend.close()


@pytest.mark.parametrize("open_tree", [True, False])
def test_recovery_spares_a_namespace_made_since_on_the_freed_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_tree: bool
) -> None:
    # killed after making its namespace and before the closing transaction (the journal
    # has the reservation's token, no mount); someone deleted the namespace and made
    # one of that name, whose file got the freed inode number: the token tells theirs
    # from the dead create's by the file handle's generation, and recovery leaves it.
    # Also where the recovering process cannot read the handle under the mount
    # (open_tree refused: a user namespace, a seccomp filter): a review found it then
    # compared inode numbers alone, and deleted theirs.

    from hostnet.backends.netlink import nsenter
    from hostnet.executor import RESERVES, _token_places

    prefix = unique_prefix("hg")
    host, name = f"{prefix}host", f"{prefix}x"
    backend = NetlinkBackend()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # (a pid no process has)
    try:
        backend.apply(CreateNamespace(ns=host))
        token = backend.reserve_namespace(name)
        if not backend.reservation_is_unique(token):
            pytest.skip("/run/netns is on a filesystem without file handles")
        backend.apply(CreateNamespace(ns=name))
        places = {RESERVES: "1", **_token_places(name, token)}
        _journal_a_dead_create(tmp_path / "state", host, name, child.pid, places)
        inode = token.split("/")[0]
        for _ in range(20):  # (until the new file gets the old inode number)
            subprocess.run(["ip", "netns", "del", name], check=True)
            subprocess.run(["ip", "netns", "add", name], check=True)
            now = nsenter.entry_token(name)
            if now is not None and now.split("/")[0] == inode:
                break
        else:
            pytest.skip("the kernel gave the new file another inode number 20 times")
        subprocess.run(["ip", "-n", name, "link", "add", "theirs0", "type", "bridge"], check=True)
        if not open_tree:
            monkeypatch.setattr(nsenter, "_open_tree_ok", False)
            assert nsenter.entry_token(name) == inode  # (the inode alone, as it then is)
        ctl = Controller(host=host, state_dir=tmp_path / "state", backend=backend)
        assert [r.journal for r in ctl.recovered] == ["died"]
        assert backend.has_namespace(name)
        assert "theirs0" in backend.observe(name).link_names()
        assert ctl.store.read(lambda tx: tx.namespaces()) == []
        ctl.close()
    finally:
        for ns in (name, host):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, check=False)
        backend.close()


def test_a_recovery_killed_after_its_delete_spares_a_namespace_made_since(tmp_path: Path) -> None:
    # recovery deleted the namespace a dead create made on its reservation and was
    # killed before ending the journal; someone made a namespace of that name, whose
    # file got the freed inode, the token: the next recovery deleted theirs (a fuzz)
    import json

    from hostnet.executor import RESERVES, Executor
    from hostnet.ops import plan_to_json
    from hostnet.stores.local import LocalStore

    prefix = unique_prefix("hy")
    name = f"{prefix}x"
    backend = NetlinkBackend()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # (a pid no process has)
    store = LocalStore(tmp_path / "state")
    try:
        token = backend.reserve_namespace(name)
        backend.apply(CreateNamespace(ns=name))  # made; it died before recording the mount
        with store.transaction() as tx:
            tx.journal_begin(
                id="died",
                kind="setup",
                owner=json.dumps([f"ns:{name}"]),
                pid=child.pid,
                started=1.0,
                plan=plan_to_json((CreateNamespace(ns=name),)),
                places={RESERVES: "1", f"@reserved:{name}": token},
            )
        real = backend.apply

        def killed_after(op: object) -> None:
            real(op)  # type: ignore[arg-type]
            raise SystemExit("killed")  # (before the journal ends)

        backend.apply = killed_after  # type: ignore[method-assign]
        with pytest.raises(SystemExit):
            Executor(backend, store).recover()
        backend.apply = real  # type: ignore[method-assign]
        assert not backend.has_namespace(name)
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "theirs0", "type", "bridge"], check=True)
        # (the killed recovery claimed the journal for this process, alive: the claim of
        # a dead one, as if that recovery had run in a process of its own)
        with store.transaction() as tx:
            tx.c.execute("UPDATE journal SET pid = ?, failed = 0", (child.pid,))
        (report,) = Executor(backend, store).recover()
        assert report.errors == ()
        assert "theirs0" in backend.observe(name).link_names()
    finally:
        store.close()
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL, check=False)
        backend.close()
