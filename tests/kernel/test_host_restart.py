"""A host that restarts (here: its namespace deleted and made again, as a reboot leaves
the machine's): its networks are made again from the store, with traffic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hostnet import errors
from hostnet.controller import Controller
from tests.kernel.netutil import request, server


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def test_networks_come_back_after_their_host_restarts(hostnet_host) -> None:
    ctl = hostnet_host.controller
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    app = ctl.create_namespace(hostnet_host.name("app"))
    web.connect(app, publish=["18080:80"])
    state = ctl.store.state_dir
    ctl.close()
    host = hostnet_host.host
    hostnet_host.backend.release(host)  # a socket of ours would keep the old one alive
    ip("netns", "del", host)
    ip("netns", "add", host)
    ip("-n", host, "link", "set", "lo", "up")
    # the restarted host's admin turns forwarding on at boot
    ip("netns", "exec", host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    with pytest.warns(errors.HostnetWarning, match=r"forgot those of 1 workload\(s\)"):
        ctl = hostnet_host.controller = Controller(
            state_dir=state, host=host, backend=hostnet_host.backend
        )
    bridge = f"br-{web.id[:12]}"
    out = subprocess.run(
        ["ip", "-n", host, "-br", "addr", "show", "dev", bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "10.91.0.1/24" in out
    assert ctl.endpoints() == [] and ctl.ports() == []  # they died with the old host
    ep = ctl.network("web").connect(app, publish=["18080:80"])
    hostns = ctl.namespace(host, adopt=False)
    with server(app, 80, tag="again"):
        assert request(hostns, "127.0.0.1", 18080) == f"again {ep.gateways[0]}"
    ctl.network("web").delete(force=True)
    links = subprocess.run(
        ["ip", "-n", host, "-br", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert [line.split()[0] for line in links.splitlines()] == ["lo"]
    assert hostnet_host.backend.sysctl(host, "net/ipv4/ip_forward") == "1"  # as it was
    assert ctl.store.dump()["shared"] == []


def test_the_default_host_opened_from_another_namespace_is_refused(hostnet_host, tmp_path) -> None:
    # `ip netns exec X hostnet ...` on the state directory of the machine's namespace: not
    # a restart of that host (which would forget its endpoints), a mistake
    state = tmp_path / "root-state"
    Controller(state_dir=state, backend=hostnet_host.backend).close()  # records, changes nothing
    other = hostnet_host.name("other")
    ip("netns", "add", other)
    code = f"from hostnet import Controller; Controller(state_dir={str(state)!r})"
    result = subprocess.run(
        ["ip", "netns", "exec", other, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "belongs to the network namespace hostnet first ran in" in result.stderr
    Controller(state_dir=state, backend=hostnet_host.backend).close()  # still fine here


def test_a_controller_left_open_catches_up_with_its_restarted_host(hostnet_host) -> None:
    ctl = hostnet_host.controller
    web = ctl.create_network("web", driver="bridge", subnet="10.91.0.0/24")
    host = hostnet_host.host
    ip("netns", "del", host)  # while the Controller stays open
    ip("netns", "add", host)
    ip("-n", host, "link", "set", "lo", "up")
    app = ctl.create_namespace(hostnet_host.name("app"))
    ep = ctl.network("web").connect(app, publish=["18080:80"])  # no NftBatch/LinkNotFound
    hostns = ctl.namespace(host, adopt=False)
    with server(app, 80, tag="caught-up"):
        assert request(hostns, "127.0.0.1", 18080) == f"caught-up {ep.gateways[0]}"
    assert ctl.gc()["remade"] == []  # done already, by the connect
    web.delete(force=True)
