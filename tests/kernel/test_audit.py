"""`audit` on the real kernel: hostnet's own objects that went missing, endpoints whose
namespace went, temporary namespaces of dead processes, a host that restarted."""

from __future__ import annotations

import signal
import subprocess
import sys

from hostnet.controller import Controller
from hostnet.testing import Sandbox


def kinds(ctl: Controller) -> list[tuple[str, str]]:
    return [(f["kind"], f["subject"]) for f in ctl.audit() if f["severity"] != "info"]


def host_ip(box: Sandbox, *args: str) -> None:
    subprocess.run(["ip", "-n", box.host, *args], check=True)


def test_a_flushed_firewall_and_links_deleted_by_hand_are_reported(hostnet_host) -> None:
    box: Sandbox = hostnet_host
    ctl = box.controller
    web = ctl.create_network("web", subnet="10.91.0.0/24", icc=False)
    app = ctl.create_namespace(box.name("app"))
    ep = web.connect(app, publish=["127.0.0.1:8080:80"])
    assert [k for k, _ in kinds(ctl) if k.startswith("missing")] == []
    subprocess.run(["ip", "netns", "exec", box.host, "nft", "flush", "ruleset"], check=True)
    found = [s for k, s in kinds(ctl) if k == "missing-firewall"]
    assert found == ["inet hostnet", "bridge hostnet"]
    host_ip(box, "link", "del", f"veth{ep.id[:7]}")
    bridge = web.data["bridge"]
    host_ip(box, "link", "del", bridge)
    missing = [(f["subject"], f["detail"]) for f in ctl.audit() if f["kind"] == "missing-link"]
    assert [s for s, _ in missing] == ["web", app.name]
    assert bridge in missing[0][1]


def test_the_namespace_of_an_endpoint_gone_is_reported(hostnet_host) -> None:
    box: Sandbox = hostnet_host
    ctl = box.controller
    web = ctl.create_network("web", subnet="10.91.0.0/24")
    name = box.name("byhand")
    subprocess.run(["ip", "netns", "add", name], check=True)
    web.connect(name)  # by name: hostnet keeps no record of the namespace itself
    subprocess.run(["ip", "netns", "del", name], check=True)
    assert ("stale-endpoint", name) in kinds(ctl)
    assert ctl.gc()["stale"] == [name]
    assert ("stale-endpoint", name) not in kinds(ctl)


CHILD = r"""
import os, signal, sys
from hostnet.controller import Controller
ctl = Controller(host=sys.argv[1], state_dir=sys.argv[2])
ctl.create_namespace(sys.argv[3], temporary=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_temporary_namespace_of_a_dead_process_is_reported(hostnet_host) -> None:
    box: Sandbox = hostnet_host
    name = box.name("tmp")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, box.host, str(box.state_dir), name], check=False
    )
    assert child.returncode == -signal.SIGKILL
    assert ("abandoned", name) in kinds(box.controller)
    assert box.controller.gc()["abandoned"] == [name]
    assert ("abandoned", name) not in kinds(box.controller)


def test_a_host_made_again_is_reported_and_gc_makes_only_real_networks(hostnet_host) -> None:
    box: Sandbox = hostnet_host
    ctl = box.controller
    ctl.create_network("web", subnet="10.91.0.0/24")
    ctl.close()
    # the host namespace deleted and made again (what a reboot does to the root one)
    subprocess.run(["ip", "netns", "del", box.host], check=True)
    subprocess.run(["ip", "netns", "add", box.host], check=True)
    box.controller = fresh = Controller(
        host=box.host, state_dir=box.state_dir, backend=box.backend, recover=False
    )
    assert ("host-restarted", box.host) in kinds(fresh)
    # everything is missing, and gc makes it again: no advice to delete networks
    assert [k for k, _ in kinds(fresh) if k.startswith("missing")] == []
    assert fresh.gc()["remade"] == ["web"]  # not the built-in none and host
    assert ("host-restarted", box.host) not in kinds(fresh)


def test_gc_puts_a_flushed_firewall_back_as_it_was(hostnet_host) -> None:
    from tests.kernel.netutil import ping, request, server
    from tests.kernel.test_rollback import ruleset

    box: Sandbox = hostnet_host
    ctl = box.controller
    web = ctl.create_network("web", subnet="10.91.0.0/24", icc=False)
    db = ctl.create_network("db", subnet="10.92.0.0/24")
    a, b, c = (ctl.create_namespace(box.name(n)) for n in "abc")
    ea = web.connect(a, publish=["8080:80"])
    eb = web.connect(b)
    ec = db.connect(c, publish=["127.0.0.1:8081:81/udp"])
    web.publish(a, ["8082:82"])
    db.disconnect(c)
    db.connect(c)
    before = ruleset(box.host)
    assert not ping(a, eb.ip) and not ping(c, ea.ip)  # icc off; another network
    subprocess.run(["ip", "netns", "exec", box.host, "nft", "flush", "ruleset"], check=True)
    assert ping(a, eb.ip)  # isolation is gone with the tables
    report = ctl.gc()
    assert report["restored"] == ["inet hostnet", "bridge hostnet"]
    assert ruleset(box.host) == before
    assert not ping(a, eb.ip) and not ping(c, ea.ip)
    with server(a, 80):
        assert request(ctl.namespace(box.host), "10.91.0.1", 8080)
    assert [k for k, _ in kinds(ctl) if k.startswith("missing")] == []
    assert ctl.gc()["restored"] == []
    del ec


def test_gc_rebuilds_a_firewall_flushed_in_part(hostnet_host) -> None:
    # `nft flush table` keeps the chains and drops every rule: isolation is gone
    from tests.kernel.netutil import ping
    from tests.kernel.test_rollback import ruleset

    box: Sandbox = hostnet_host
    ctl = box.controller
    web = ctl.create_network("web", subnet="10.91.0.0/24")
    db = ctl.create_network("db", subnet="10.92.0.0/24")
    a, c = ctl.create_namespace(box.name("a")), ctl.create_namespace(box.name("c"))
    web.connect(a, publish=["8080:80"])
    ec = db.connect(c)
    before = ruleset(box.host)

    def nft(*args: str) -> None:
        subprocess.run(["ip", "netns", "exec", box.host, "nft", *args], check=True)

    nft("flush", "table", "inet", "hostnet")
    assert ping(a, ec.ip)  # the other network is reachable now
    assert [s for k, s in kinds(ctl) if k == "missing-firewall"] == ["inet hostnet"]
    assert ctl.gc()["restored"] == ["inet hostnet", "bridge hostnet"]
    assert ruleset(box.host) == before
    assert not ping(a, ec.ip)
    assert [k for k, _ in kinds(ctl) if k.startswith("missing")] == []
