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
from hostnet.ops import CreateNamespace, DeleteNamespace
from hostnet.policy.security import SecurityPolicy
from hostnet.testing.world import unique_prefix

TRIALS = int(os.environ.get("HOSTNET_RECOVERY_TRIALS", "50"))

CHILD = r"""
import sys
from hostnet.controller import Controller
from hostnet.policy.security import SecurityPolicy
host, state, prefix, trial = sys.argv[1:]
ctl = Controller(host=host, state_dir=state, backend="netlink", recover=False,
                 policy=SecurityPolicy(allow_host_network=True))
print("ready", flush=True)
i = 0
while True:
    ns = ctl.create_namespace(f"{prefix}t{trial}n{i}")
    ctl.attach(ns, driver="none")
    ctl.attach(f"w{trial}n{i}", driver="host",
               ports=[f"127.0.0.1:{21000 + i % 500}/tcp", f"{22000 + i % 500}/udp"], hold=True)
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
    assert {p["owner"] for p in store.read(lambda tx: tx.ports())} <= owners
    host_links = {link.name for link in ctl.backend.observe(host).links}
    assert host_links == {"lo"}


@pytest.mark.slow
def test_sigkill_at_random_points_leaks_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("HOSTNET_RECOVERY_SEED", "1234")))
    prefix = unique_prefix("hr")
    host = f"{prefix}host"
    backend = NetlinkBackend()
    backend.apply(CreateNamespace(ns=host))
    state = tmp_path / "state"
    recovered_total = 0
    try:
        for trial in range(TRIALS):
            with subprocess.Popen(
                [sys.executable, "-c", CHILD, host, str(state), prefix, str(trial)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ) as child:
                try:
                    assert child.stdout is not None
                    line = child.stdout.readline()
                    assert line.strip() == "ready", child.stderr.read() if child.stderr else ""
                    time.sleep(rng.uniform(0.0, 0.06))
                finally:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
            ctl = Controller(host=host, state_dir=state, backend=backend,
                             policy=SecurityPolicy(allow_host_network=True))
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
            ctl.close()
        # the random kills did land in the middle of plans
        assert recovered_total > 0
    finally:
        for name in backend.namespaces():
            if name.startswith(prefix):
                backend.apply(DeleteNamespace(ns=name))
        backend.close()
    assert not [n for n in NetlinkBackend().namespaces() if n.startswith(prefix)]
