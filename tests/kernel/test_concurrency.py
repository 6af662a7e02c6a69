"""Several processes on one state directory and one host at the same moment: networks
created (and deleted) together share the host's firewall tables without one process
building on tables another has not made yet, or is removing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostnet.controller import Controller
from tests.kernel import together
from tests.kernel.netutil import fresh_ip_forward

FORWARD = "net/ipv4/ip_forward"
TRIALS = int(os.environ.get("HOSTNET_CONCURRENCY_TRIALS", "6"))

CHILD = r"""
import sys
from hostnet import errors
from hostnet.controller import Controller
host, state, action, name, subnet = sys.argv[1:]
ctl = Controller(host=host, state_dir=state, backend="netlink", recover=False)
print("ready", flush=True)
sys.stdin.readline()  # everyone starts at once
try:
    if action == "create":
        net = ctl.create_network(name, driver="bridge", subnet=subnet)
        print("ok", net.id, flush=True)
    else:
        ctl.delete_network(name)
        print("ok", flush=True)
except errors.HostnetError as exc:
    print("error", type(exc).__name__, exc, flush=True)
"""


def run_together(host: str, state: Path, jobs: list[tuple[str, str, str]]) -> list[str]:
    """One process per (action, network, subnet), released at once; what each printed."""
    return together.run_together(CHILD, [[host, str(state), *job] for job in jobs])


def owner_of_tables(ctl: Controller) -> str | None:
    rows = {row[1]: row[2] for row in ctl.store.dump()["shared"]}
    return rows.get("nft:bridge")


@pytest.mark.slow
def test_networks_created_and_deleted_at_the_same_time_share_the_tables(
    hostnet_host, tmp_path: Path
) -> None:
    ctl = hostnet_host.controller
    host = hostnet_host.host
    state = ctl.store.state_dir
    for trial in range(TRIALS):
        # two first networks at once: one makes the tables, the other waits for them
        run_together(
            host,
            state,
            [("create", "a", "10.81.0.0/24"), ("create", "b", "10.82.0.0/24")],
        )
        ids = {n.name: n.id for n in ctl.networks() if n.driver == "bridge"}
        assert set(ids) == {"a", "b"}, trial
        assert owner_of_tables(ctl) in ids.values()
        assert ctl.backend.nft_list(host, "inet hostnet") is not None
        assert ctl.backend.sysctl(host, FORWARD) == "1"
        # the owner of the tables goes while a third network comes: the newcomer must
        # not build on tables that are being removed (they are inherited, or remade)
        owner = next(name for name, id in ids.items() if id == owner_of_tables(ctl))
        other = "b" if owner == "a" else "a"
        run_together(
            host,
            state,
            [("delete", owner, "-"), ("delete", other, "-"), ("create", "c", "10.83.0.0/24")],
        )
        (c,) = [n for n in ctl.networks() if n.driver == "bridge"]
        assert c.name == "c" and owner_of_tables(ctl) == c.id, trial
        listing = ctl.backend.nft_list(host, "inet hostnet")
        assert listing is not None, f"trial {trial}: network c has no firewall tables"
        assert ctl.backend.sysctl(host, FORWARD) == "1", f"trial {trial}: forwarding off"
        # c works: an endpoint connects and its published port lands in the tables
        ns = ctl.create_namespace(hostnet_host.name("app"))
        c.connect(ns, publish=["8080:80"])
        listing = ctl.backend.nft_list(host, "inet hostnet")
        assert listing is not None
        assert '{"concat":["tcp",8080]}' in listing["sets"]["any4_addr"]
        c.disconnect(ns)
        ns.delete()
        c.delete()
        assert ctl.backend.nft_list(host, "inet hostnet") is None
        # restored with the last network (a new namespace's value is the root's)
        assert ctl.backend.sysctl(host, FORWARD) == fresh_ip_forward()
        assert ctl.backend.observe(host).link_names() == {"lo"}
        assert ctl.store.dump()["shared"] == [] and ctl.store.dump()["journal"] == []
