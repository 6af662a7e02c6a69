"""Crash recovery for real: a child process is SIGKILLed at random points while it
creates, attaches, detaches and deletes; the next Controller must leave the kernel
exactly matching the store, with nothing leaked."""

from __future__ import annotations

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
from hostnet.drivers.bridge import veth_name
from hostnet.ops import CreateNamespace, DeleteNamespace
from hostnet.policy.security import SecurityPolicy
from hostnet.testing.world import unique_prefix

TRIALS = int(os.environ.get("HOSTNET_RECOVERY_TRIALS", "50"))

CHILD = r"""
import sys
from hostnet.controller import Controller
from hostnet.drivers.bridge import veth_name
from hostnet.policy.security import SecurityPolicy
host, state, prefix, trial, scenario = sys.argv[1:]
ctl = Controller(host=host, state_dir=state, backend="netlink", recover=False,
                 policy=SecurityPolicy(allow_host_network=True))
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


def check_consistent(ctl: Controller, prefix: str, host: str) -> None:
    store = ctl.store
    assert store.read(lambda tx: tx.journals()) == []
    kernel = {n for n in ctl.backend.namespaces() if n.startswith(prefix) and n != host}
    records = store.read(lambda tx: tx.namespaces())
    assert all(r["state"] == "active" for r in records)
    assert kernel == {r["name"] for r in records}
    endpoints = store.read(lambda tx: tx.endpoints())
    assert all(e["state"] == "active" for e in endpoints)
    assert all(e["ns"] is None or e["ns"] in kernel for e in endpoints)
    owners = {e["id"] for e in endpoints}
    assert {p["owner"].split("/")[0] for p in store.read(lambda tx: tx.ports())} <= owners
    host_snap = ctl.backend.observe(host)
    bridge_eps = [e for e in ctl.endpoints() if e.network == "web"]
    expected = {"lo"}
    for net in ctl.networks():
        if net.driver == "bridge":
            expected.add(net.data["bridge"])
    expected |= {veth_name(e.id) for e in bridge_eps}
    assert {link.name for link in host_snap.links} == expected
    allocated = sorted(r[1] for r in store.dump()["addresses"])
    assert allocated == sorted(a.split("/")[0] for e in bridge_eps for a in e.addresses)
    for e in bridge_eps:
        assert e.ns is not None
        assert set(ctl.backend.observe(e.ns).addresses_of("eth0")) == set(e.addresses)
    if bridge_eps or any(n.driver == "bridge" for n in ctl.networks()):
        listing = ctl.backend.nft_list(host, "inet hostnet")
        assert listing is not None
        published = sorted(
            f'{{"concat":["{m.protocol}",{m.host_port}]}}' for e in bridge_eps for m in e.ports
        )
        assert sorted(listing["sets"]["any4_addr"]) == published


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["none-and-host", "bridge"])
def test_sigkill_at_random_points_leaks_nothing(tmp_path: Path, scenario: str) -> None:
    rng = random.Random(int(os.environ.get("HOSTNET_RECOVERY_SEED", "1234")))
    prefix = unique_prefix("hr")
    host = f"{prefix}host"
    backend = NetlinkBackend()
    backend.apply(CreateNamespace(ns=host))
    state = tmp_path / "state"
    recovered_total = 0
    if scenario == "bridge":
        setup = Controller(host=host, state_dir=state, backend=backend, forwarding=True)
        setup.create_network("web", driver="bridge", subnet="10.77.0.0/16")
        setup.close()
    try:
        for trial in range(TRIALS):
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
                    time.sleep(rng.uniform(0.0, 0.06))
                finally:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
            ctl = Controller(
                host=host,
                state_dir=state,
                backend=backend,
                policy=SecurityPolicy(allow_host_network=True),
            )
            recovered_total += len(ctl.recovered)
            ctl.gc()
            check_consistent(ctl, prefix, host)
            # clean up what the child finished, through hostnet, for the next trial
            for ep in ctl.endpoints():
                if ep.ns is None:
                    ctl.detach(ep.workload)
            for record in ctl.store.read(lambda tx: tx.namespaces()):
                ctl.delete_namespace(record["name"])
            check_consistent(ctl, prefix, host)
            assert ctl.ports() == []
            assert ctl.store.dump()["addresses"] == []
            ctl.close()
        # the random kills did land in the middle of plans
        assert recovered_total > 0
        if scenario == "bridge":
            final = Controller(host=host, state_dir=state, backend=backend)
            final.delete_network("web")
            assert final.backend.observe(host).link_names() == {"lo"}
            assert final.backend.observe(host).nft_tables == ()
            final.close()
    finally:
        for name in backend.namespaces():
            if name.startswith(prefix):
                backend.apply(DeleteNamespace(ns=name))
        backend.close()
    assert not [n for n in NetlinkBackend().namespaces() if n.startswith(prefix)]
