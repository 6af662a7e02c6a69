"""``network create|ls|inspect|rm``, ``connect``, ``disconnect`` and ``run`` on the fake
backend: output, exit codes, and bad input that changes nothing.

Every ``main()`` call of a test shares one fake kernel (the ``controller_factory``
hook) with a namespace "host" that plays the Controller's host, as ``--host`` does on a
real machine. The fake kernel runs no processes, so ``run`` is tested with the
:class:`ProcessFake` of test_cli (real processes in this namespace), and the demo's
traffic only on the kernel tier.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hostnet.cli import demo
from hostnet.cli.main import build_parser
from hostnet.cli.network import RUN_PREFIX, format_port, parse_pairs
from hostnet.controller import Controller
from hostnet.errors import InvalidOption
from hostnet.model import PortMapping
from hostnet.ops import CreateNamespace
from tests.unit.test_cli import Cli, Result, assert_one_line_error, table

HOST = "host"


class HostCli(Cli):
    """The CLI with ``--host host`` on a fake kernel that has that namespace; the host
    is a sandbox, so bridge networks may turn on forwarding in it (``--allow-forwarding``,
    unless ``forwarding`` is set to False)."""

    def __init__(self, state: Path, capfd: pytest.CaptureFixture[str]) -> None:
        super().__init__(state, capfd)
        self.kernel.apply(CreateNamespace(ns=HOST))
        self.forwarding = True

    def __call__(self, *argv: str) -> Result:
        forwarding = ["--allow-forwarding"] if self.forwarding else []
        return super().__call__("--host", HOST, *forwarding, *argv)

    def controller(self) -> Controller:
        """A Controller on the same kernel and store, to look behind the CLI's back."""
        return Controller(backend=self.kernel, host=HOST, state_dir=self.state, recover=False)

    def world(self) -> dict[str, Any]:
        """Everything that could change: the kernel and hostnet's records."""
        with self.controller() as ctl:
            store = ctl.store.dump()
        store.pop("admissions", None)  # refusals are recorded on purpose
        return {"kernel": self.kernel.dump(), "store": store}


@pytest.fixture
def cli(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> HostCli:
    return HostCli(tmp_path / "state", capfd)


def host_links(cli: HostCli) -> set[str]:
    return cli.kernel.observe(HOST).link_names()


def created(cli: HostCli, *argv: str) -> str:
    result = cli("network", "create", *argv)
    assert result.code == 0, result
    return result.out.strip()


# -- network create, ls, inspect, rm -------------------------------------------------------


def test_create_prints_the_id_and_ls_lists_it(cli: HostCli) -> None:
    result = cli("network", "create", "web", "--subnet", "10.90.0.0/24")
    assert (result.code, result.err) == (0, "")
    network_id = result.out.strip()
    assert result.out == network_id + "\n"
    assert len(network_id) == 64 and int(network_id, 16) >= 0
    db_id = created(cli, "db")  # a subnet picked by IPAM

    listed = cli("network", "ls")
    assert listed.code == 0
    assert listed.out.splitlines()[0] == "NETWORK ID     NAME   DRIVER   SCOPE"
    rows = table(listed.out)[1:]
    assert [row[1:] for row in rows] == [  # sorted by name, like docker
        ["db", "bridge", "local"],
        ["host", "host", "local"],
        ["none", "none", "local"],
        ["web", "bridge", "local"],
    ]
    assert rows[0][0] == db_id[:12] and rows[3][0] == network_id[:12]

    quiet = cli("network", "ls", "-q").out.split()
    assert quiet == [row[0] for row in rows]
    data = cli("--json", "network", "ls").json()
    assert cli("--json", "network", "ls", "-q").json() == [d["id"] for d in data]
    assert {d["name"]: d["id"] for d in data}["web"] == network_id
    assert {d["name"]: d["subnets"] for d in data}["web"] == ["10.90.0.0/24"]
    assert f"br-{network_id[:12]}" in host_links(cli)


def test_create_maps_every_option_onto_the_controller(cli: HostCli) -> None:
    result = cli(
        "--json", "network", "create", "web",
        "--subnet", "10.90.0.0/24", "--gateway", "10.90.0.254", "--ip-range", "10.90.0.128/25",
        "--subnet", "fd00:90::/64",
        "--aux-address", "router=10.90.0.200", "--aux-address", "dns=fd00:90::53",
        "--internal", "--ipv6",
        "-o", "com.docker.network.bridge.name=brweb", "-o", "mtu=1400", "--opt", "icc=false",
        "-o", "multicast_snooping=true", "--label", "team=web",
    )  # fmt: skip
    assert result.code == 0, result
    info = result.json()  # --json: the network as `network inspect` shows it
    assert [info] == cli("network", "inspect", "web").json()
    assert info["Name"] == "web" and info["Driver"] == "bridge"
    assert info["Internal"] is True and info["EnableIPv6"] is True
    assert info["IPAM"]["Config"] == [
        {
            "Subnet": "10.90.0.0/24",
            "Gateway": "10.90.0.254",
            "IPRange": "10.90.0.128/25",
            "AuxiliaryAddresses": {"router": "10.90.0.200"},
        },
        {
            "Subnet": "fd00:90::/64",
            "Gateway": "fd00:90::1",
            "AuxiliaryAddresses": {"dns": "fd00:90::53"},
        },
    ]
    assert info["Options"] == {
        "com.docker.network.bridge.name": "brweb",
        "com.docker.network.driver.mtu": "1400",
        "com.docker.network.bridge.enable_icc": "false",
        "hostnet.bridge.multicast_snooping": "true",
    }
    assert info["Labels"] == {"team": "web"}
    bridge = cli.kernel.observe(HOST).link("brweb")
    assert bridge is not None and bridge.mtu == 1400 and bridge.mcast_snooping is True


def test_inspect_is_a_list_of_the_controllers_json(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    result = cli("network", "inspect", "web")
    assert result.code == 0
    assert result.out.startswith("[\n  {\n")  # JSON even without --json, pretty-printed
    with cli.controller() as ctl:
        # a list, as `docker network inspect` prints (it used to be the bare object)
        assert result.json() == [ctl.inspect_network("web")]
        both = [ctl.inspect_network("none"), ctl.inspect_network("web")]
    assert cli("network", "--json", "inspect", "web").json() == result.json()
    assert cli("network", "inspect", "none", "web").json() == both
    # as `docker network inspect`: what is found is printed, each missing one said
    missing = cli("network", "inspect", "nope")
    assert (missing.code, missing.json()) == (1, [])
    assert "'nope' does not exist" in missing.err
    both = cli("network", "inspect", "web", "nope")
    assert both.code == 1 and [n["Name"] for n in both.json()] == ["web"]
    assert "'nope' does not exist" in both.err and "Traceback" not in both.err


def test_rm_refuses_a_network_in_use_unless_told_to_disconnect(cli: HostCli) -> None:
    network_id = created(cli, "web", "--subnet", "10.90.0.0/24")
    bridge = f"br-{network_id[:12]}"
    cli("ns", "create", "app1")
    assert cli("connect", "web", "app1", "-p", "8080:80").code == 0

    assert_one_line_error(cli("network", "rm", "web"), 1, "still has endpoints app1")
    # -f is Docker's: no error for a network that does not exist, never "with its
    # endpoints" (a Docker user's `rm -f` would have taken them down)
    assert_one_line_error(cli("network", "rm", "-f", "web"), 1, "still has endpoints app1")
    assert bridge in host_links(cli)
    removed = cli("network", "rm", "--disconnect", "web")
    assert (removed.code, removed.out) == (0, "web\n")
    assert bridge not in host_links(cli)
    assert cli.kernel.observe("app1").link_names() == {"lo"}
    assert table(cli("ports").out)[1:] == []
    assert [row[1] for row in table(cli("network", "ls").out)[1:]] == ["host", "none"]

    assert_one_line_error(cli("network", "rm", "web"), 1, "'web' does not exist")
    assert cli("network", "rm", "-f", "web").code == 0  # (said of nothing, as Docker)
    gone = cli("network", "rm", "--force", "web", "nosuch")
    assert (gone.code, gone.out, gone.err) == (0, "", "")
    assert_one_line_error(cli("network", "rm", "none"), 1, "cannot be deleted")
    created(cli, "db")
    assert cli("--json", "network", "rm", "db").json() == {"name": "db", "deleted": True}


def test_rm_takes_several_names_and_goes_past_one_that_fails(cli: HostCli) -> None:
    for name in ("a", "b", "c"):
        created(cli, name)
    cli("ns", "create", "app1")
    assert cli("connect", "b", "app1").code == 0
    result = cli("network", "rm", "a", "b", "nope", "c")  # b in use, nope unknown
    assert (result.code, result.out) == (1, "a\nc\n")
    assert "still has endpoints app1" in result.err and "'nope' does not exist" in result.err
    assert [row[1] for row in table(cli("network", "ls").out)[1:]] == ["b", "host", "none"]
    created(cli, "d")
    both = cli("--json", "network", "rm", "--disconnect", "b", "d")
    assert both.json() == [{"name": "b", "deleted": True}, {"name": "d", "deleted": True}]


def test_labels_and_options_take_what_docker_takes(cli: HostCli) -> None:
    # a label without a value is the empty one and the last of two wins (Docker's
    # --label); an option given twice with the same value is fine, two values are not
    result = cli(
        "--json", "network", "create", "web", "--label", "team", "--label", "tier=1",
        "--label", "tier=2", "-o", "mtu=1400", "-o", "mtu=1400",
    )  # fmt: skip
    assert result.code == 0, result
    info = result.json()
    assert info["Labels"] == {"team": "", "tier": "2"}
    assert info["Options"]["com.docker.network.driver.mtu"] == "1400"


def test_network_connect_and_disconnect_are_docker_spellings(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app1")
    assert cli("network", "connect", "web", "app1", "-p", "8080:80").code == 0
    assert cli.kernel.observe("app1").link_names() == {"lo", "eth0"}
    assert cli("network", "disconnect", "web", "app1").code == 0
    assert cli.kernel.observe("app1").link_names() == {"lo"}
    assert [row[1] for row in table(cli("network", "list").out)[1:]] == ["host", "none", "web"]
    assert cli("network", "remove", "web").code == 0


def test_a_namespace_cannot_join_the_host_network(cli: HostCli) -> None:
    # as Docker refuses it; it used to "connect" a host-network workload of that name,
    # leaving the namespace alone and barred from other networks
    cli("ns", "create", "app1")
    before = cli.world()
    for verb in ("connect", "disconnect"):
        result = cli("--allow-host-network", verb, "host", "app1")
        assert_one_line_error(result, 2, "host-network workload has no namespace")
        assert ("hostnet attach" if verb == "connect" else "hostnet detach") in result.err
    assert cli.world() == before


def test_an_unknown_flag_is_said_with_the_commands_usage(cli: HostCli) -> None:
    result = cli("disconnect", "-f", "web", "app1")
    assert result.code == 2
    assert result.err.startswith("usage: hostnet disconnect ")
    assert "unrecognized arguments: -f" in result.err


# -- connect, disconnect -------------------------------------------------------------------


def test_connect_prints_the_endpoint_and_disconnect_undoes_it(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app1")
    result = cli(
        "connect", "web", "app1", "-p", "8080:80", "--publish", "127.0.0.1:5353:53/udp",
        "--ip", "10.90.0.10", "--mac", "02:00:00:00:00:0a",
    )  # fmt: skip
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "namespace  app1",
        "network    web",
        "interface  eth0",
        "ip         10.90.0.10/24",
        "mac        02:00:00:00:00:0a",
        "ports      0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp",
    ]
    assert "10.90.0.10/24" in cli.kernel.observe("app1").addresses_of("eth0")
    assert table(cli("ns", "ls").out)[1:] == [["app1", "yes", "web"], ["host (host)", "no"]]
    (inspected,) = cli("inspect", "app1").json()
    assert inspected["NetworkSettings"]["Networks"]["web"]["IPAddress"] == "10.90.0.10"
    assert inspected["NetworkSettings"]["Ports"]["80/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": "8080"}
    ]
    assert [r[:3] for r in table(cli("ports").out)[1:]] == [
        ["0.0.0.0", "8080", "tcp"],
        ["127.0.0.1", "5353", "udp"],
    ]

    disconnected = cli("disconnect", "web", "app1")
    assert (disconnected.code, disconnected.out) == (0, "app1 disconnected from web\n")
    assert cli.kernel.observe("app1").link_names() == {"lo"}
    assert table(cli("ports").out)[1:] == []
    assert_one_line_error(cli("disconnect", "web", "app1"), 1, "not connected")


def test_connect_json_and_an_ephemeral_port(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app1")
    data = cli("--json", "connect", "web", "app1", "-p", "80").json()
    assert (data["network"], data["workload"], data["ns"]) == ("web", "app1", "app1")
    assert data["addresses"] == ["10.90.0.2/24"]
    [port] = data["ports"]
    assert port["container_port"] == 80 and port["host_port"] >= 1024
    cli("ns", "create", "app2")
    assert "ports      none published" in cli("connect", "web", "app2").out.splitlines()


# -- bad input changes nothing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["-o", "mtu"], 2, "expected KEY=VALUE"),
        (["-o", "=1400"], 2, "expected KEY=VALUE"),
        (["-o", "mtu=1400", "-o", "mtu=1500"], 2, "given twice"),
        (["-o", "colour=blue"], 2, "unknown option for the bridge driver"),
        (
            ["-o", "com.docker.network.bridge.gateway_mode_ipv4=routed"],
            2,
            "Docker's bridge driver takes this option, hostnet's does not",
        ),
        (["-o", "mtu=huge"], 2, "MTU"),
        (["-o", "icc=maybe"], 2, "true or false"),
        (["-o", "bridge_name=" + "x" * 16], 2, "invalid interface name"),
        (["--subnet", "10.90.0.128/25"], 1, "overlaps 10.90.0.0/24 of network 'web'"),
        (["--subnet", "10.91.0.0/33"], 2, "not a subnet"),
        (["--subnet", "10.91.0.1/24"], 2, "not a subnet"),
        (["--subnet", "10.91.0.0/24", "--gateway", "10.92.0.1"], 2, "gateway is not a host"),
        (["--subnet", "10.91.0.0/24", "--gateway", "nope"], 2, "not an IP address"),
        (["--gateway", "10.91.0.1"], 2, "needs a subnet"),
        (["--subnet", "10.91.0.0/24", "--ip-range", "10.92.0.0/25"], 2, "not inside"),
        (["--subnet", "10.91.0.0/24", "--aux-address", "router"], 2, "expected NAME=IP"),
        (["--subnet", "10.91.0.0/24", "--aux-address", "r=10.99.0.1"], 2, "in no subnet"),
        (["--label", "=x"], 2, "expected KEY[=VALUE]"),
        (["--driver", "nosuch"], 1, "no network driver named 'nosuch'"),
        (["--driver", "host"], 1, "predefined"),
    ],
)
def test_bad_create_exits_with_one_line_and_creates_nothing(
    cli: HostCli, argv: list[str], code: int, fragment: str
) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    before = cli.world()
    result = cli("network", "create", "other", *argv)
    assert_one_line_error(result, code, fragment)
    assert len(result.err.splitlines()) == 1
    assert cli.world() == before


@pytest.mark.parametrize(
    ("name", "code", "fragment"),
    [("web", 1, "network 'web' already exists"), ("bad/name", 2, "invalid network name")],
)
def test_bad_network_names(cli: HostCli, name: str, code: int, fragment: str) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    before = cli.world()
    assert_one_line_error(cli("network", "create", name), code, fragment)
    assert cli.world() == before


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["web", "app1", "-p", "80:80:80:80"], 2, "invalid port specification"),
        (["web", "app1", "-p", "70000:80"], 2, "outside 1-65535"),
        (["web", "app1", "-p", "8080:80/xyz"], 2, "unknown protocol"),
        (["web", "app1", "-p", "nope:8080:80"], 2, "not an IP address"),
        (["web", "app1", "--ip", "nope"], 2, "not an IP address"),
        (["web", "app1", "--ip", "10.99.0.5"], 2, "10.99.0.5"),
        (["web", "app1", "--ip", "10.90.0.1"], 2, "gateway"),
        (["web", "app1", "--ip", "10.90.0.2"], 1, "10.90.0.2 on network 'web' is already in use"),
        (["web", "app1", "--ip6", "fd00::5"], 2, "no IPv6 subnet"),
        (["web", "app1", "--mac", "zz"], 2, "not a MAC address"),
        (["web", "app1", "--mac", "01:00:00:00:00:01"], 2, "multicast"),
        (["web", "app1", "-p", "8080:81"], 1, "reserved by hostnet workload 'app0'"),
        (["nope", "app1"], 1, "network 'nope' does not exist"),
        (["web", "ghost"], 1, "'ghost' does not exist"),
        (["web", "bad/name"], 2, "invalid namespace name"),
        (["web", HOST], 1, "host namespace"),
    ],
)
def test_bad_connect_exits_with_one_line_and_connects_nothing(
    cli: HostCli, argv: list[str], code: int, fragment: str
) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app0")
    cli("ns", "create", "app1")
    assert cli("connect", "web", "app0", "-p", "8080:80").code == 0
    before = cli.world()
    result = cli("connect", *argv)
    assert_one_line_error(result, code, fragment)
    assert cli.world() == before
    assert cli.kernel.observe("app1").link_names() == {"lo"}


@pytest.mark.parametrize(
    "argv",
    [
        ["network"],
        ["network", "create"],
        ["network", "create", "web", "--internal=yes"],
        ["network", "rm"],
        ["network", "inspect"],
        ["connect", "web"],
        ["disconnect", "web"],
        ["run", "--", "true"],  # --network is required
    ],
)
def test_usage_errors_exit_2_and_open_nothing(cli: HostCli, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == (125 if argv[0] == "run" else 2)  # (run: as `docker run`)
    assert "usage:" in result.err and "Traceback" not in result.err
    assert cli.opened == []


def test_read_only_network_commands_open_without_recovery(cli: HostCli) -> None:
    created(cli, "web")
    assert cli.opened[-1].recover is True
    for argv in (["network", "ls"], ["network", "inspect", "web"]):
        cli(*argv)
        assert cli.opened[-1].recover is False, argv


def test_help_lists_the_network_commands(cli: HostCli) -> None:
    top = cli("--help").out
    for command in ("network", "connect", "disconnect", "run", "demo"):
        assert command in top
    group = cli("network", "--help").out
    for command in ("create", "ls", "inspect", "rm"):
        assert command in group


def test_allow_forwarding_lets_bridge_networks_turn_it_on_and_restores_it(cli: HostCli) -> None:
    forward = "net/ipv4/ip_forward"
    assert cli.kernel.sysctl(HOST, forward) == "0"
    created(cli, "web")
    assert cli.opened[-1].forwarding is True
    assert cli.kernel.sysctl(HOST, forward) == "1"
    assert cli("network", "rm", "web").code == 0
    assert cli.kernel.sysctl(HOST, forward) == "0"  # restored with the last network
    cli.forwarding = False
    cli("network", "ls")
    assert cli.opened[-1].forwarding is None  # the Controller's default


# -- run -------------------------------------------------------------------------------


class Recording:
    """What the fake kernel looked like when ``run`` started its command."""

    def __init__(self, cli: HostCli) -> None:
        self.seen: list[tuple[str | None, set[str], list[str]]] = []
        original = cli.kernel.popen

        def popen(ns: str | None, argv: Any, **kwargs: Any) -> Any:
            snap = cli.kernel.observe(ns)
            self.seen.append((ns, snap.link_names(), list(snap.addresses_of("eth0"))))
            return original(ns, argv, **kwargs)

        cli.kernel.popen = popen  # type: ignore[method-assign]


def test_run_connects_runs_and_removes_the_namespace(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    recording = Recording(cli)
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(5)"
    before = set(cli.kernel.namespaces())
    result = cli("run", "--network", "web", "-p", "18080:80", "--", sys.executable, "-c", script)
    assert (result.code, result.out, result.err) == (5, "out\n", "err\n")
    [(ns, links, addresses)] = recording.seen
    assert ns is not None and ns.startswith(RUN_PREFIX)
    assert links == {"lo", "eth0"} and addresses == ["10.90.0.2/24"]
    # gone afterwards: the namespace, its endpoint and its port
    assert set(cli.kernel.namespaces()) == before
    assert table(cli("ports").out)[1:] == []
    assert cli("network", "inspect", "web").json()[0]["Containers"] == {}
    with cli.controller() as ctl:
        dump = ctl.store.dump()
    assert dump["endpoints"] == [] and dump["namespaces"] == []


def test_run_with_a_name_and_options_after_the_command(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    recording = Recording(cli)
    result = cli("run", "--network", "web", "--name", "job1", "--",
                 sys.executable, "-c", "print(1)", "--json")  # fmt: skip
    assert (result.code, result.out) == (0, "1\n")
    assert recording.seen[0][0] == "job1"
    assert "job1" not in cli.kernel.namespaces()


def test_run_takes_docker_run_address_flags(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    created(cli, "db", "--subnet", "10.91.0.0/24")
    seen: list[tuple[list[str], str | None]] = []
    original = cli.kernel.popen

    def popen(ns: str | None, argv: Any, **kwargs: Any) -> Any:
        link = next(x for x in cli.kernel.observe(ns).links if x.name == "eth0")
        seen.append((list(cli.kernel.observe(ns).addresses_of("eth0")), link.mac))
        return original(ns, argv, **kwargs)

    cli.kernel.popen = popen  # type: ignore[method-assign]
    result = cli(
        "run", "--rm", "--network", "web", "--network", "db", "--ip", "10.90.0.77",
        "--mac-address", "02:00:00:00:00:77", "--", sys.executable, "-c", "pass",
    )  # fmt: skip
    assert result.code == 0, result
    assert seen == [(["10.90.0.77/24"], "02:00:00:00:00:77")]  # (on the first network)


def test_run_joins_every_network_given(cli: HostCli) -> None:
    # `--network` twice used to keep the last one alone, without a word
    created(cli, "web", "--subnet", "10.90.0.0/24")
    created(cli, "db", "--subnet", "10.91.0.0/24")
    recording = Recording(cli)
    before = cli.world()
    result = cli("run", "--network", "web", "--network", "db", "-p", "18080:80", "--",
                 sys.executable, "-c", "pass")  # fmt: skip
    assert result.code == 0, result
    [(_, links, addresses)] = recording.seen
    assert links == {"lo", "eth0", "eth1"} and addresses == ["10.90.0.2/24"]
    assert cli.world() == before
    # a bad second network fails before anything is made
    result = cli("run", "--network", "web", "--network", "nope", "--", "true")
    assert_one_line_error(result, 125, "network 'nope' does not exist")
    assert cli.world() == before


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["--network", "web"], 125, "run needs a command"),
        (["--network", "web", "--"], 125, "run needs a command"),
        (["--network", "nope", "--", "true"], 125, "network 'nope' does not exist"),
        (["--network", "web", "-p", "80:80:80:80", "--", "true"], 125, "invalid port"),
        (["--network", "web", "-p", "8080:80", "--", "true"], 125, "reserved by hostnet"),
        (["--network", "web", "--name", "app0", "--", "true"], 125, "choose another --name"),
        (["--network", "web", "--name", "a/b", "--", "true"], 125, "invalid namespace name"),
        # host and none alone (as Docker), and without ports: refused before anything
        # is made (a namespace was made, connected and removed first)
        (["--network", "web", "--network", "none", "--", "true"], 125, "cannot be combined"),
        (["--network", "host", "--network", "web", "--", "true"], 125, "cannot be combined"),
        (["--network", "none", "-p", "80", "--", "true"], 125, "none networking publishes no"),
        (["--network", "host", "-p", "80", "--", "true"], 125, "binds the host's own"),
        (["--network", "host", "--", "true"], 125, "refused by policy"),
        (["--network", "host", "--ip", "10.90.0.9", "--", "true"], 125, "no interface"),
        (["--network", "web", "--ip", "10.99.0.9", "--", "true"], 125, "10.99.0.9"),
        (["--network", "web", "--mac-address", "nope", "--", "true"], 125, "nope"),
    ],
)
def test_bad_run_leaves_nothing_behind(
    cli: HostCli, argv: list[str], code: int, fragment: str
) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app0")
    cli("connect", "web", "app0", "-p", "8080:80")
    before = cli.world()
    assert_one_line_error(cli("run", *argv), code, fragment)
    assert cli.world() == before


def test_run_on_the_host_network_runs_in_the_host_namespace(cli: HostCli) -> None:
    # `docker run --network host`: the command in the host's own network namespace, as
    # a host-network workload (admitted by the policy, recorded) while it runs
    created(cli, "web", "--subnet", "10.90.0.0/24")
    recording = Recording(cli)
    before = cli.world()
    seen: list[list[str]] = []
    original = cli.kernel.popen

    def popen(ns: str | None, argv: Any, **kwargs: Any) -> Any:
        with cli.controller() as ctl:
            seen.append([e.network for e in ctl.endpoints("job1")])
        return original(ns, argv, **kwargs)

    cli.kernel.popen = popen  # type: ignore[method-assign]
    result = cli("--allow-host-network", "run", "--network", "host", "--name", "job1", "--",
                 sys.executable, "-c", "import sys; sys.exit(3)")  # fmt: skip
    assert result.code == 3, result
    assert [ns for ns, _, _ in recording.seen] == [HOST]
    assert seen == [["host"]]
    assert cli.world() == before  # detached afterwards


def test_run_a_missing_program_exits_127_and_cleans_up(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    before = cli.world()
    result = cli("run", "--network", "web", "--", "/nonexistent/hostnet-test-binary")
    assert_one_line_error(result, 127, "cannot run")
    assert cli.world() == before


# -- demo (its traffic is kernel-tier; here only what needs none) ------------------------


def test_demo_refuses_the_fake_backend(cli: HostCli) -> None:
    result = cli("demo")
    assert_one_line_error(result, 1, "needs the netlink backend")
    assert cli.opened == []


def test_demo_needs_root(cli: HostCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert_one_line_error(cli("demo"), 1, "needs root")


def test_demo_judges_answers_and_silence() -> None:
    answer, blocked = demo.checks_for("10.201.0.2")[0], demo.checks_for("10.201.0.2")[-1]
    assert not blocked.expect_answer and blocked.origin == "db"
    ok = {"kind": "answer", "status": 200, "text": "hello from web, you are 10.0.0.1"}
    timeout = {"kind": "timeout", "text": "no answer within 1 s"}
    assert demo.judge(answer, ok).status == "PASS"
    assert demo.judge(answer, timeout).status == "FAIL"
    assert demo.judge(answer, {**ok, "status": 500}).status == "FAIL"
    assert demo.judge(blocked, timeout).status == "PASS"
    assert demo.judge(blocked, {"kind": "ECONNREFUSED", "text": "refused"}).status == "PASS"
    assert demo.judge(blocked, ok).status == "FAIL"
    # no route at all says nothing about isolation
    assert demo.judge(blocked, {"kind": "ENETUNREACH", "text": "unreachable"}).status == "FAIL"
    assert json.loads(json.dumps(demo.judge(blocked, timeout).to_json()))["result"] == "PASS"


@pytest.mark.parametrize("keep_going", [False, True])
def test_demo_stops_at_the_first_failed_check_unless_keep_going(
    keep_going: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    run = demo.Demo(out=out, keep_going=keep_going, as_json=False)
    ok = {"kind": "answer", "status": 200, "text": "hello"}
    silent = {"kind": "timeout", "text": "no answer within 1 s"}
    replies = iter([ok, silent, ok, ok, ok, silent])
    monkeypatch.setattr(run, "ns_ip", lambda role: "10.201.0.2")
    monkeypatch.setattr(run, "request", lambda check: next(replies))
    run.check()
    statuses = [o.status for o in run.outcomes]
    if keep_going:
        assert statuses == ["PASS", "FAIL", "PASS", "PASS", "PASS", "PASS"]
    else:
        assert statuses == ["PASS", "FAIL", "SKIP", "SKIP", "SKIP", "SKIP"]
    lines = [line for line in out.getvalue().splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert [line.split()[0] for line in lines] == statuses
    run.summary()
    assert ("skipped (--keep-going runs them all)" in out.getvalue()) is not keep_going


# -- helpers ---------------------------------------------------------------------------


def test_parse_pairs() -> None:
    assert parse_pairs(["a=1", "b==2", "c="], "-o", "KEY=VALUE") == {"a": "1", "b": "=2", "c": ""}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(InvalidOption):
            parse_pairs(bad, "-o", "KEY=VALUE")


def test_format_port() -> None:
    v6 = PortMapping(protocol="udp", host_ip="::", host_port=53, container_port=5353)
    assert format_port(v6) == "[::]:53->5353/udp"


def test_the_new_commands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--network", "web", "-p", "80", "--", "cmd", "-p", "1"])
    assert (args.networks, args.publish) == (["web"], ["80"])
    assert args.argv[-3:] == ["cmd", "-p", "1"]
    args = parser.parse_args(["network", "create", "web", "-o", "a=1", "--opt", "b=2"])
    assert args.options == ["a=1", "b=2"] and args.driver == "bridge"
    assert parser.parse_args(["demo", "--keep-going"]).keep_going is True


def test_macvlan_networks_through_docker_style_options(cli: HostCli) -> None:
    cli.kernel.add_device(HOST, "eth1")
    network_id = created(
        cli,
        "lan",
        "--driver",
        "macvlan",
        "-o",
        "parent=eth1",
        "--subnet",
        "192.168.50.0/24",
        "--gateway",
        "192.168.50.1",
        "--ip-range",
        "192.168.50.128/25",
        "-o",
        "macvlan_mode=bridge",
        "-o",
        "host_shim=true",
    )
    [info] = cli("network", "inspect", "lan").json()
    assert info["Id"] == network_id and info["Driver"] == "macvlan"
    assert info["Options"]["parent"] == "eth1" and info["Options"]["macvlan_mode"] == "bridge"
    assert cli("ns", "create", "app").code == 0
    result = cli("--json", "connect", "lan", "app")
    assert result.code == 0, result
    assert result.json()["addresses"] == ["192.168.50.128/24"]
    link = cli.kernel.observe("app").link("eth0")
    assert link is not None and link.kind == "macvlan"
    bad = cli(
        "network",
        "create",
        "bad",
        "--driver",
        "macvlan",
        "-o",
        "parent=nope0",
        "--subnet",
        "10.9.0.0/24",
    )
    assert bad.code == 1 and "nope0" in bad.err


def test_network_ls_filters_and_formats_as_docker(cli: HostCli) -> None:
    web_id = created(cli, "web", "--subnet", "10.90.0.0/24", "--label", "team=a")
    created(cli, "webdb", "--subnet", "10.91.0.0/24", "--label", "team=b", "--internal")
    created(cli, "cache", "--subnet", "10.92.0.0/24")

    def names(*argv: str) -> list[str]:
        result = cli("network", "ls", *argv, "--format", "{{.Name}}")
        assert result.code == 0, result
        return result.out.split()

    assert names() == ["cache", "host", "none", "web", "webdb"]
    assert names("--filter", "name=web") == ["web", "webdb"]  # (part of the name)
    assert names("-f", "name=cache", "-f", "name=webdb") == ["cache", "webdb"]  # (OR)
    assert names("-f", "name=web", "-f", "label=team=b") == ["webdb"]  # (AND)
    assert names("-f", "label=team") == ["web", "webdb"]
    assert names("-f", "driver=bridge", "-f", "type=custom") == ["cache", "web", "webdb"]
    assert names("-f", "type=builtin") == ["host", "none"]
    assert names("-f", f"id={web_id[:6]}") == ["web"]
    table_out = cli("network", "ls", "-f", "name=webdb", "--format",
                    "table {{.ID}}\\t{{.Name}}\\t{{.Internal}}\\t{{.Labels}}").out  # fmt: skip
    header, row = table_out.splitlines()
    assert header.split("\t") == ["NETWORK ID", "NAME", "INTERNAL", "LABELS"]
    assert row.split("\t")[1:] == ["webdb", "true", "team=b"] and len(row.split("\t")[0]) == 12
    [line] = cli("network", "ls", "-f", "name=cache", "--format", "{{json .}}").out.splitlines()
    assert json.loads(line)["Name"] == "cache" and json.loads(line)["Driver"] == "bridge"
    full = cli("network", "ls", "-q", "--no-trunc", "-f", "name=web", "-f", "label=team=a")
    assert full.out.split() == [web_id]
    for bad, fragment in [
        (["-f", "colour=red"], "KEY one of driver"),
        (["-f", "type=mine"], "custom or builtin"),
        (["--format", "{{.Nope}}"], "not one of hostnet's placeholders"),
        (["--format", "{{range .}}x{{end}}"], "no other Go template syntax"),
    ]:
        assert_one_line_error(cli("network", "ls", *bad), 2, fragment)


def test_port_lists_published_ports_as_docker_port(cli: HostCli) -> None:
    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app1")
    assert cli("connect", "web", "app1", "-p", "8080:80", "-p", "127.0.0.1:5353:53/udp").code == 0
    result = cli("port", "app1")
    assert (result.code, result.out) == (0, "53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n")
    assert cli("port", "app1", "80").out == "0.0.0.0:8080\n"
    assert cli("port", "app1", "53/UDP").out == "127.0.0.1:5353\n"
    assert_one_line_error(cli("port", "app1", "81"), 1, "no public port '81/tcp'")
    rows = cli("--json", "port", "app1").json()
    assert {"port": "80/tcp", "host_ip": "0.0.0.0", "host_port": "8080"} in rows


def test_run_on_the_host_network_leaves_no_workload_behind(
    cli: HostCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a review) Ctrl-C just after the workload was recorded left it for good; a --name
    # that is a namespace's or another workload's was taken
    from hostnet.network import Network

    created(cli, "web", "--subnet", "10.90.0.0/24")
    cli("ns", "create", "app1")
    cli("--allow-host-network", "attach", "svc", "--driver", "host")
    before = cli.world()
    real = Network.connect

    def interrupted(self: Network, *args: Any, **kwargs: Any) -> Any:
        real(self, *args, **kwargs)
        raise KeyboardInterrupt  # (after it was made)

    monkeypatch.setattr(Network, "connect", interrupted)
    result = cli(
        "--allow-host-network", "run", "--network", "host", "--name", "job1", "--", "true"
    )
    assert result.code == 130
    monkeypatch.setattr(Network, "connect", real)
    assert cli.world() == before
    for name, fragment in [("app1", "choose another --name"), ("svc", "already connected")]:
        result = cli("--allow-host-network", "run", "--network", "host", "--name", name,
                     "--", "true")  # fmt: skip
        assert_one_line_error(result, 125, fragment)
        assert cli.world() == before  # (svc still attached)
    detach = cli("disconnect", "host", "svc")
    assert_one_line_error(detach, 2, "hostnet detach NAME")


def test_network_rm_f_of_a_missing_network_prints_json_for_it(cli: HostCli) -> None:
    assert cli("--json", "network", "rm", "-f", "nope").json() == {
        "name": "nope",
        "deleted": False,
    }
