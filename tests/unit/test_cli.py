"""The ``hostnet`` command line on the fake backend: output, exit codes, errors.

The fake kernel lives in memory, so every ``main()`` call of a test shares one FakeKernel
through ``controller_factory``; the store is a real one under tmp_path.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hostnet.backends.fake import FakeKernel
from hostnet.cli.commands import COMMANDS, Command
from hostnet.cli.context import ControllerOptions, open_controller
from hostnet.cli.main import build_parser, main
from hostnet.cli.process import wait_child
from hostnet.cli.table import format_table
from hostnet.controller import Controller
from hostnet.ops import DeleteNamespace

NOTHING_TO_GC = {
    "recovered": [],
    "stale": [],
    "abandoned": [],
    "kept": {},
    "remade": [],
    "restored": [],
    "shims": [],
}


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<Result code={self.code} out={self.out!r} err={self.err!r}>"


class ProcessFake(FakeKernel):
    """A fake kernel whose processes are real ones, run in this namespace (enough to test
    how ``ns exec`` passes streams and exit codes through)."""

    def popen(self, ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(list(argv), **kwargs)


class Cli:
    def __init__(self, state: Path, capfd: pytest.CaptureFixture[str]) -> None:
        self.state = state
        self.capfd = capfd
        self.kernel = ProcessFake()
        self.opened: list[ControllerOptions] = []

    def factory(self, options: ControllerOptions) -> Controller:
        self.opened.append(options)
        return open_controller(options, backend=self.kernel)

    def __call__(self, *argv: str) -> Result:
        self.capfd.readouterr()
        code = main(
            ["--backend", "fake", "--state-dir", str(self.state), *argv],
            controller_factory=self.factory,
        )
        out, err = self.capfd.readouterr()
        return Result(code, out, err)


@pytest.fixture
def cli(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "state", capfd)


def table(out: str) -> list[list[str]]:
    """Split a table printed by the CLI into cells (columns are 3+ spaces apart)."""
    import re

    return [re.split(r" {3,}", line.strip()) for line in out.splitlines()]


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert "Traceback" not in result.err
    assert lines[-1].startswith("hostnet") and ": error: " in lines[-1], result
    for fragment in fragments:
        assert fragment in lines[-1]


# -- namespaces ----------------------------------------------------------------------------


def test_ns_create_ls_rm_roundtrip(cli: Cli) -> None:
    assert cli("ns", "ls").out.splitlines() == ["NAME   MANAGED   NETWORKS"]

    created = cli("ns", "create", "app1")
    assert (created.code, created.out, created.err) == (0, "app1\n", "")
    assert "app1" in cli.kernel.namespaces()

    listed = cli("ns", "ls")
    assert listed.code == 0
    assert table(listed.out) == [["NAME", "MANAGED", "NETWORKS"], ["app1", "yes"]]

    removed = cli("ns", "rm", "app1")
    assert (removed.code, removed.out) == (0, "app1\n")
    assert "app1" not in cli.kernel.namespaces()
    assert table(cli("ns", "ls").out) == [["NAME", "MANAGED", "NETWORKS"]]

    assert_one_line_error(cli("ns", "rm", "app1"), 1, "'app1' does not exist")


def test_ns_rm_refuses_a_namespace_hostnet_did_not_create_without_force(cli: Cli) -> None:
    from hostnet.ops import CreateNamespace

    cli.kernel.apply(CreateNamespace(ns="theirs"))
    assert table(cli("ns", "ls").out)[1] == ["theirs", "no"]
    assert_one_line_error(cli("ns", "rm", "theirs"), 1, "not created by hostnet")
    assert cli("ns", "rm", "--force", "theirs").code == 0
    assert "theirs" not in cli.kernel.namespaces()


def test_json_output_parses_wherever_the_option_is_given(cli: Cli) -> None:
    created = cli("--json", "ns", "create", "app1").json()
    assert created == {"name": "app1", "path": "/run/netns/app1", "managed": True}
    cli("ns", "create", "app2")
    cli("attach", "app2", "--driver", "none")

    for argv in (["--json", "ns", "ls"], ["ns", "--json", "ls"], ["ns", "ls", "--json"]):
        result = cli(*argv)
        assert result.code == 0
        data = result.json()
        assert [(d["name"], d["managed"], d["networks"]) for d in data] == [
            ("app1", True, []),
            ("app2", True, ["none"]),
        ]
    for argv in (["ports"], ["audit"]):
        assert isinstance(cli("--json", *argv).json(), list)
    assert cli("gc", "--json").json() == NOTHING_TO_GC
    assert cli("version", "--json").json()["version"]


def test_a_later_global_option_does_not_reset_an_earlier_one(cli: Cli) -> None:
    # `--json` before the command must survive the subcommand's parser (which also
    # knows --json) not being given it.
    assert cli("--json", "ns", "ls").json() == []
    # --allow-host-network given after the command words counts too.
    assert cli("attach", "web", "--driver", "host", "--allow-host-network").code == 0
    assert cli.opened[-1].policy.allow_host_network is True


@pytest.mark.parametrize("name", ["bad/name", "x" * 65, "..", "héllo", "a b", ".hidden"])
def test_invalid_names_exit_2_with_one_line(cli: Cli, name: str) -> None:
    result = cli("ns", "create", name)
    assert_one_line_error(result, 2, "invalid namespace name")
    assert len(result.err.splitlines()) == 1
    assert cli.kernel.namespaces() == ()


def test_an_option_looking_name_is_a_usage_error(cli: Cli) -> None:
    result = cli("ns", "create", "-x")
    assert result.code == 2
    assert "Traceback" not in result.err
    assert cli.kernel.namespaces() == ()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ns"],
        ["nope"],
        ["ns", "create"],
        ["attach", "app1"],
        ["attach", "app1", "--driver", "bridge"],
        ["--backend", "bogus", "ns", "ls"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2
    assert "usage:" in result.err
    assert "Traceback" not in result.err
    assert cli.opened == []  # nothing was opened for a command line that does not parse


def test_help_exits_0(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for command in ("ns", "inspect", "attach", "detach", "ports", "gc", "audit", "version"):
        assert command in result.out
    assert "exec" in cli("ns", "--help").out


def test_a_missing_host_namespace_is_an_error_not_a_traceback(cli: Cli) -> None:
    assert_one_line_error(cli("--host", "nohost", "ns", "ls"), 1, "'nohost' does not exist")
    assert_one_line_error(cli("--host", "no/host", "ns", "ls"), 2, "invalid namespace name")


def test_read_only_commands_open_without_recovery(cli: Cli) -> None:
    cli("ns", "create", "app1")
    assert cli.opened[-1].recover is True
    for argv in (["ns", "ls"], ["inspect", "app1"], ["ports"], ["audit"], ["gc"]):
        cli(*argv)
        assert cli.opened[-1].recover is False, argv


def test_without_root_the_default_backend_is_still_the_kernel(
    tmp_path: Path, capfd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake kernel dies with the command: `ns create` as a user reported success for a
    # namespace that never existed. The kernel's permission error is the answer instead.
    asked: list[str] = []

    def open_backend(kind: str = "auto") -> FakeKernel:
        asked.append(kind)
        return FakeKernel()

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("hostnet.controller.open_backend", open_backend)
    assert main(["--state-dir", str(tmp_path), "network", "ls", "-q"]) == 0
    assert main(["--backend", "fake", "--state-dir", str(tmp_path), "ns", "ls"]) == 0
    assert asked == ["netlink", "fake"]


def test_version_needs_no_controller(cli: Cli) -> None:
    result = cli("version")
    assert result.code == 0
    assert result.out.startswith("Version:")
    assert cli.opened == []


# -- ns exec -------------------------------------------------------------------------------


def test_ns_exec_passes_streams_and_exit_code_through(cli: Cli) -> None:
    cli("ns", "create", "app1")
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = cli("ns", "exec", "app1", "--", sys.executable, "-c", script)
    assert (result.code, result.out, result.err) == (3, "out\n", "err\n")
    # options after "--" belong to the command, not to hostnet
    result = cli("ns", "exec", "app1", "--", sys.executable, "-c", "print(1)", "--json")
    assert (result.code, result.out) == (0, "1\n")


def test_ns_exec_errors(cli: Cli) -> None:
    """hostnet's own errors exit 125, as `docker run`'s: a script tells them from the
    command's own codes (126 and 127 as a shell's)."""
    cli("ns", "create", "app1")
    assert_one_line_error(cli("ns", "exec", "app1"), 125, "needs a command")
    assert_one_line_error(cli("ns", "exec", "app1", "--"), 125, "needs a command")
    assert_one_line_error(cli("ns", "exec", "nope", "--", "true"), 125, "'nope' does not exist")
    assert_one_line_error(cli("ns", "exec", "a/b", "--", "true"), 125, "invalid namespace name")
    missing = cli("ns", "exec", "app1", "--", "/nonexistent/hostnet-test-binary")
    assert_one_line_error(missing, 127, "cannot run")


def test_ns_exec_does_not_adopt_the_namespace(cli: Cli) -> None:
    from hostnet.ops import CreateNamespace

    cli.kernel.apply(CreateNamespace(ns="theirs"))
    assert cli("ns", "exec", "theirs", "--", sys.executable, "-c", "pass").code == 0
    with open_controller(cli.opened[-1], backend=cli.kernel) as ctl:
        assert ctl.store.read(lambda tx: tx.namespace("theirs")) is None


def test_ns_exec_on_the_plain_fake_backend_is_unsupported(tmp_path: Path, capfd: Any) -> None:
    kernel = FakeKernel()
    argv = ["--backend", "fake", "--state-dir", str(tmp_path)]

    def factory(options: ControllerOptions) -> Controller:
        return open_controller(options, backend=kernel)

    assert main([*argv, "ns", "create", "app1"], controller_factory=factory) == 0
    code = main([*argv, "ns", "exec", "app1", "--", "true"], controller_factory=factory)
    assert code == 125
    assert "fake backend has no processes" in capfd.readouterr().err


def test_wait_child_returns_the_exit_code_or_128_plus_the_signal() -> None:
    assert wait_child(subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])) == 7
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.send_signal(signal.SIGKILL)
    assert wait_child(proc) == 128 + signal.SIGKILL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_wait_child_passes_on_a_sigint_sent_to_this_process_alone() -> None:
    # `kill -INT` of hostnet (not the terminal's Ctrl-C, which reaches the child by
    # itself) must reach the child, as SIGTERM does; it used to be ignored.
    import threading

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    timer = threading.Timer(0.5, signal.pthread_kill, (main_thread, signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # in case it comes early
    timer.start()
    try:
        assert wait_child(proc) == 128 + signal.SIGINT
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- attach, inspect, detach ---------------------------------------------------------------


def test_attach_none_then_inspect_shows_network_mode_none(cli: Cli) -> None:
    cli("ns", "create", "app1")
    attached = cli("attach", "app1", "--driver", "none")
    assert (attached.code, attached.out) == (0, "app1 attached to none\n")

    inspected = cli("inspect", "app1")
    assert inspected.code == 0
    (data,) = inspected.json()  # JSON even without --json; a list, like docker inspect
    assert data["Name"] == "app1"
    assert data["HostConfig"]["NetworkMode"] == "none"
    assert data["NetworkSettings"]["SandboxKey"] == "/run/netns/app1"
    assert list(data["NetworkSettings"]["Networks"]) == ["none"]
    assert inspected.out.startswith("[\n  {\n    ")  # pretty-printed
    assert cli("--json", "inspect", "app1").json() == [data]

    assert table(cli("ns", "ls").out)[1] == ["app1", "yes", "none"]

    detached = cli("detach", "app1")
    assert (detached.code, detached.out) == (0, "app1 detached from none\n")
    assert cli("inspect", "app1").json()[0]["HostConfig"]["NetworkMode"] == ""
    assert_one_line_error(cli("detach", "app1"), 1, "not connected")
    ghost = cli("inspect", "ghost")  # as `docker inspect`: [] printed, the error said
    assert (ghost.code, ghost.json()) == (1, [])
    assert "'ghost'" in ghost.err and "Traceback" not in ghost.err


def test_attach_json_is_the_endpoint(cli: Cli) -> None:
    cli("ns", "create", "app1")
    data = cli("--json", "attach", "app1", "--driver", "none").json()
    assert data["network"] == "none"
    assert data["workload"] == "app1"
    assert data["ns"] == "app1"
    assert len(data["id"]) == 64


def test_attach_none_with_ports_is_a_validation_error(cli: Cli) -> None:
    cli("ns", "create", "app1")
    assert_one_line_error(cli("attach", "app1", "--driver", "none", "--port", "80"), 2)
    assert cli("inspect", "app1").json()[0]["HostConfig"]["NetworkMode"] == ""


def test_host_attach_is_refused_without_the_opt_in(cli: Cli) -> None:
    refused = cli("attach", "web", "--driver", "host", "--port", "8080/tcp")
    assert_one_line_error(refused, 1, "refused by policy", "allow_host_network")
    assert cli("ports").out.splitlines() == ["HOST IP   PORT   PROTO   WORKLOAD"]

    admitted = cli("--allow-host-network", "attach", "web", "--driver", "host", "--port", "8080")
    assert admitted.code == 0, admitted
    assert admitted.out.splitlines() == ["web attached to host", "reserved 0.0.0.0:8080/tcp"]
    (data,) = cli("inspect", "web").json()
    assert data["HostConfig"]["NetworkMode"] == "host"
    assert data["NetworkSettings"]["SandboxKey"] == ""
    assert data["NetworkSettings"]["Ports"] == {"8080/tcp": None}
    # both decisions were recorded
    with open_controller(cli.opened[-1], backend=cli.kernel) as ctl:
        decisions = [(a["workload"], a["decision"]) for a in ctl.admissions()]
    assert decisions == [("web", "denied"), ("web", "admitted")]


def test_hold_warns_that_it_ends_with_the_command(cli: Cli) -> None:
    result = cli(
        "--allow-host-network", "attach", "web", "--driver", "host", "--port", "8080", "--hold"
    )
    assert result.code == 0
    assert result.err.startswith("hostnet: warning: --hold")


# -- reports -------------------------------------------------------------------------------


def test_ports_table(cli: Cli) -> None:
    host = ["--allow-host-network", "attach", "--driver", "host"]
    assert cli(*host, "web", "--port", "8080/tcp", "--port", "53/udp").code == 0
    assert cli(*host, "dns", "--port", "127.0.0.1:9000-9001/udp").code == 0

    result = cli("ports")
    assert result.code == 0
    assert result.out.splitlines()[0] == "HOST IP     PORT   PROTO   WORKLOAD"
    assert table(result.out)[1:] == [
        ["0.0.0.0", "53", "udp", "web"],
        ["0.0.0.0", "8080", "tcp", "web"],
        ["127.0.0.1", "9000", "udp", "dns"],
        ["127.0.0.1", "9001", "udp", "dns"],
    ]
    rows = cli("ports", "--json").json()
    assert [(r["host_ip"], r["port"], r["protocol"], r["workload"]) for r in rows] == [
        ("0.0.0.0", 53, "udp", "web"),
        ("0.0.0.0", 8080, "tcp", "web"),
        ("127.0.0.1", 9000, "udp", "dns"),
        ("127.0.0.1", 9001, "udp", "dns"),
    ]

    assert cli("detach", "web").code == 0
    assert [r[3] for r in table(cli("ports").out)[1:]] == ["dns", "dns"]


def test_audit_table(cli: Cli) -> None:
    clean = cli("audit")
    assert (clean.code, clean.out) == (0, "SEVERITY   KIND   SUBJECT   DETAIL\n")
    assert cli("audit", "--json").json() == []

    cli("--allow-host-network", "attach", "web", "--driver", "host")
    result = cli("audit")
    assert result.code == 0
    admitted = "host-network: policy allows host networking for every workload"
    assert table(result.out) == [
        ["SEVERITY", "KIND", "SUBJECT", "DETAIL"],
        ["high", "host-network", "web", "shares the host's network stack and ports"],
        ["info", "admission-admitted", "web", admitted],
    ]
    assert cli("--json", "audit").json() == [
        {
            "severity": "high",
            "kind": "host-network",
            "subject": "web",
            "detail": "shares the host's network stack and ports",
        },
        {"severity": "info", "kind": "admission-admitted", "subject": "web", "detail": admitted},
    ]


def test_gc_on_a_clean_store(cli: Cli) -> None:
    result = cli("gc")
    assert (result.code, result.out, result.err) == (0, "nothing to recover or forget\n", "")
    assert cli("--json", "gc").json() == NOTHING_TO_GC


def test_gc_forgets_a_namespace_deleted_behind_hostnets_back(cli: Cli) -> None:
    cli("ns", "create", "app1")
    cli("attach", "app1", "--driver", "none")
    cli.kernel.apply(DeleteNamespace(ns="app1"))

    assert table(cli("audit").out)[1][:3] == ["medium", "stale-record", "app1"]
    result = cli("gc")
    assert result.code == 0, result
    assert "forgot stale app1" in result.out.splitlines()
    assert table(cli("audit").out) == [["SEVERITY", "KIND", "SUBJECT", "DETAIL"]]
    assert cli("--json", "gc").json() == NOTHING_TO_GC


# -- structure -------------------------------------------------------------------------


def test_every_registered_command_parses() -> None:
    parser = build_parser()
    for command in COMMANDS:
        words = command.name.split()
        extra = {
            "ns create": ["x"],
            "ns rm": ["x"],
            "ns exec": ["x", "--", "true"],
            "inspect": ["x"],
            "attach": ["x", "--driver", "none"],
            "detach": ["x"],
            "network create": ["x"],
            "network inspect": ["x"],
            "network rm": ["x"],
            "connect": ["net", "x"],
            "disconnect": ["net", "x"],
            "network connect": ["net", "x"],
            "network disconnect": ["net", "x"],
            "port": ["x"],
            "run": ["--network", "net", "--", "true"],
        }.get(command.name, [])
        assert parser.parse_args([*words, *extra])._command is command
        for alias in command.aliases:  # (Docker's other names: `network list`...)
            assert parser.parse_args([*words[:-1], alias, *extra])._command is command


def test_clashing_commands_are_refused() -> None:
    def run(ctx: Any, args: Any) -> int:
        return 0

    for first, second in [("ns", "ns ls"), ("ns ls", "ns"), ("gc", "gc")]:
        commands = [Command(name=first, help="", run=run), Command(name=second, help="", run=run)]
        with pytest.raises(ValueError, match="clashes"):
            build_parser(commands)


def test_a_new_command_is_one_row() -> None:
    seen: list[str] = []

    def run(ctx: Any, args: Any) -> int:
        seen.append(args.name)
        return 5

    def arguments(parser: Any) -> None:
        parser.add_argument("name")

    command = Command(name="lab create", help="create a lab", run=run, arguments=arguments)
    args = build_parser([*COMMANDS, command]).parse_args(["lab", "create", "web"])
    assert args._command is command
    assert args._command.run(None, args) == 5
    assert seen == ["web"]


def test_module_runs_as_a_script_and_errors_are_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "hostnet.cli.main", "--backend", "fake",
         "--state-dir", str(tmp_path), "ns", "create", "bad/name"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "hostnet: error: invalid namespace name 'bad/name': must not contain '/'\n"
    )
    version = subprocess.run(
        [sys.executable, "-W", "error", "-m", "hostnet.cli", "version", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(version.stdout)["version"]


def test_format_table() -> None:
    text = format_table(["name", "x"], [["a", None], ["long-name", 10]])
    assert text.splitlines() == ["NAME        X", "a", "long-name   10"]
    assert format_table(["a", "b"], []) == "A   B"
    with pytest.raises(ValueError, match="2 headers"):
        format_table(["a", "b"], [["only one"]])


@pytest.mark.parametrize("module", ["hostnet", "hostnet.cli"])
def test_python_dash_m_runs_the_command(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hostnet")


def test_ctrl_c_while_the_command_line_is_imported_exits_130(monkeypatch, capsys) -> None:
    # the console script imports the command line inside main(): an early Ctrl-C is
    # answered as later ones are, without a traceback
    import types

    from hostnet.cli import entry

    class Interrupting(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "hostnet.cli.main", Interrupting("hostnet.cli.main"))
    assert entry.main() == 130
    assert "Traceback" not in capsys.readouterr().err


def test_audit_fails_on_a_finding_as_severe_as_asked(cli: Cli) -> None:
    assert cli("audit", "--fail-on", "info").code == 0  # nothing at all
    cli("--allow-host-network", "attach", "web", "--driver", "host")  # high, and info
    assert cli("audit").code == 0
    assert cli("audit", "--fail-on", "high").code == 1
    assert cli("audit", "--fail-on", "low").code == 1
    cli("detach", "web")  # the admission (info) stays on record
    assert cli("audit", "--fail-on", "low").code == 0
    assert cli("audit", "--fail-on", "info").code == 1
    assert cli("audit", "--fail-on", "severe").code == 2  # a usage error


def test_a_closed_stderr_does_not_turn_an_error_into_a_traceback() -> None:
    import io

    from hostnet.cli.context import Context

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(9, "Bad file descriptor")

    ctx = Context(ControllerOptions(), json_output=False, stderr=Closed())
    ctx.error("said to nobody")  # no OSError: the exit code still tells
    ctx.warn("said to nobody")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["run", "--bogus", "--network", "web", "--", "true"], 125),
        (["run"], 125),
        (["ns", "exec"], 125),
        (["ns", "exec", "--bogus", "x", "--", "true"], 125),
        (["network", "ls", "--bogus"], 2),
        (["network", "create"], 2),
    ],
)
def test_usage_errors_of_run_and_exec_exit_125_like_their_other_errors(
    argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `docker run`: 125 is hostnet's, whatever the error, so that a script tells it
    from the command's own exit codes; other commands keep argparse's 2."""
    assert main(["--backend", "fake", *argv]) == code
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err


def test_hostnet_dies_of_the_signal_that_killed_its_command_and_only_then() -> None:
    # what `run`/`ns exec` do at the very end (the console script and `python -m`)
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from hostnet.cli import process\n"
        "process._ended_by[:] = [int(sys.argv[1])]\n"
        "process.die_of_the_signal(int(sys.argv[2]))\n"
        "print('alive', flush=True)\n"
    )
    for killed, code, expected in (
        (signal.SIGTERM, 128 + signal.SIGTERM, -signal.SIGTERM),
        (signal.SIGINT, 128 + signal.SIGINT, -signal.SIGINT),  # (not KeyboardInterrupt)
        (signal.SIGQUIT, 128 + signal.SIGQUIT, -signal.SIGQUIT),  # (no core file)
        (signal.SIGTERM, 125, 0),  # hostnet's own error after all: it exits
    ):
        done = subprocess.run(
            [sys.executable, "-c", script, str(int(killed)), str(code)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == expected, done
        assert done.stdout == ("alive\n" if expected == 0 else ""), done
        assert "Traceback" not in done.stderr
