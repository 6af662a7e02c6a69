"""``hostnet demo``: two bridge networks, three workloads and real traffic, built in
throwaway namespaces and removed again, in a few seconds.

The machine's own network is never touched. The demo makes a namespace that plays the
host (the Controller's ``host``) and one that plays the rest of the network ("outside"),
joined by a veth, and keeps its state in a temporary directory::

    outside (eth0 10.250.0.2) ==veth== (uplink0 10.250.0.1) host
                                                    |-- bridge frontend 10.201.0.0/24
                                                    |     |-- web     publishes 8080:80
                                                    |     `-- client
                                                    `-- bridge backend  10.202.0.0/24
                                                          `-- db

Then it makes HTTP requests from inside the namespaces and prints, per check, PASS or
FAIL. Everything it made is removed in a ``finally`` that also runs on Ctrl-C and
SIGTERM (see :mod:`hostnet.cli.process`); what it could not remove is reported and
makes the exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from attrs import frozen

from hostnet import errors
from hostnet.backends import open_backend
from hostnet.backends.base import Backend
from hostnet.cli.context import Context
from hostnet.cli.process import Interrupted, check_interrupted, deferred_signals
from hostnet.cli.table import format_table
from hostnet.controller import Controller
from hostnet.namespace import Namespace
from hostnet.network import Network
from hostnet.ops import AddAddress, AddLink, CreateNamespace, DeleteNamespace

#: Every namespace of a run is called ``<this>-<6 hex digits>-<role>``.
PREFIX = "hostnet-demo"
UPLINK_HOST = "10.250.0.1"
UPLINK_OUTSIDE = "10.250.0.2"
UPLINK_PREFIXLEN = 24
SUBNETS = {"frontend": "10.201.0.0/24", "backend": "10.202.0.0/24"}
PLACEMENT = {"web": "frontend", "client": "frontend", "db": "backend"}
WEB_PORT = 80
PUBLISHED_PORT = 8080
OUTSIDE_PORT = 8000
ANSWER_TIMEOUT = 3.0  # seconds a reachable server gets to answer
BLOCKED_TIMEOUT = 1.0  # seconds without an answer that count as "blocked"
START_TIMEOUT = 10.0  # seconds a server gets to start listening

# A tiny HTTP server that tells the client which address it came from, so every answer
# also shows what NAT did. socketserver, not http.server.HTTPServer: the latter looks up
# the host's name in DNS when it binds, which hangs in a namespace without a resolver.
SERVER = r"""
import http.server, socketserver, sys
name, port = sys.argv[1], int(sys.argv[2])
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {name}, you are {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
server = Server(("0.0.0.0", port), Hello)
print("listening", flush=True)
server.serve_forever()
"""

# One HTTP request; prints one JSON line: {"kind": "answer"|"timeout"|<errno name>, ...}.
CLIENT = r"""
import errno, http.client, json, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.request("GET", "/")
    reply = conn.getresponse()
    text = reply.read().decode().strip()
    result = {"kind": "answer", "status": reply.status, "text": text}
except TimeoutError:
    result = {"kind": "timeout", "text": f"no answer within {timeout:g} s"}
except OSError as exc:
    kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    result = {"kind": kind, "text": exc.strerror or str(exc)}
print(json.dumps(result))
"""


class DemoFailed(errors.HostnetError):
    """The demo could not build its world (not a failed check: those are results)."""


def args_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every check even after one failed (default: stop at the first failure)",
    )
    parser.epilog = (
        "Needs root. Builds everything in throwaway namespaces named hostnet-demo-*, never "
        "on this machine's own network, and removes it all when done (also on Ctrl-C). "
        "Exit code 0 when every check passed, 1 otherwise."
    )


@frozen(kw_only=True)
class Check:
    """One request from a namespace (``origin``, a role) to ``host``:``port``."""

    origin: str
    host: str
    port: int
    what: str
    expect_answer: bool  # False: the request must get no answer

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


@frozen(kw_only=True)
class Outcome:
    check: Check
    status: str  # PASS, FAIL or SKIP
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.check.origin,
            "to": self.check.target,
            "what": self.check.what,
            "expect": "answer" if self.check.expect_answer else "blocked",
            "result": self.status,
            "detail": self.detail,
        }


def checks_for(web_ip: str) -> tuple[Check, ...]:
    """What the demo shows, in the order a reader wants to see it."""
    published = PUBLISHED_PORT
    return (
        Check(origin="host", host=UPLINK_HOST, port=published, expect_answer=True,
              what="published, host address"),
        Check(origin="host", host="127.0.0.1", port=published, expect_answer=True,
              what="published, localhost"),
        Check(origin="outside", host=UPLINK_HOST, port=published, expect_answer=True,
              what="published, other machine"),
        Check(origin="client", host=web_ip, port=WEB_PORT, expect_answer=True,
              what="same network, direct"),
        Check(origin="db", host=UPLINK_OUTSIDE, port=OUTSIDE_PORT, expect_answer=True,
              what="outbound (masquerade)"),
        Check(origin="db", host=web_ip, port=WEB_PORT, expect_answer=False,
              what="other network: isolated"),
    )  # fmt: skip


def judge(check: Check, result: dict[str, Any]) -> Outcome:
    """PASS or FAIL for what the client printed."""
    kind, text = result.get("kind"), str(result.get("text", ""))
    if check.expect_answer:
        if kind == "answer" and result.get("status") == 200:
            return Outcome(check=check, status="PASS", detail=text)
        return Outcome(check=check, status="FAIL", detail=f"expected an answer, got: {text}")
    if kind == "answer":
        return Outcome(check=check, status="FAIL", detail=f"expected no answer, got: {text}")
    if kind == "ENETUNREACH":  # no route at all proves nothing about isolation
        return Outcome(check=check, status="FAIL", detail=f"{check.origin} has no route: {text}")
    return Outcome(check=check, status="PASS", detail=f"blocked ({text})")


class Demo:
    """One run: build, check, and (always) clean up; ``run`` returns the exit code."""

    def __init__(self, *, out: TextIO, keep_going: bool, as_json: bool) -> None:
        self.out = out
        self.keep_going = keep_going
        self.as_json = as_json
        self.prefix = f"{PREFIX}-{secrets.token_hex(3)}"
        self.backend: Backend | None = None
        self.ctl: Controller | None = None
        self.state: str | None = None
        self.made: list[str] = []  # namespaces made directly (host, outside)
        self.ns: dict[str, Namespace] = {}  # role -> namespace
        self.networks: dict[str, Network] = {}
        self.servers: list[subprocess.Popen[str]] = []
        self.outcomes: list[Outcome] = []
        self.report: dict[str, Any] = {"prefix": self.prefix}

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def say(self, text: str = "") -> None:
        if not self.as_json:
            print(text, file=self.out, flush=True)

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        error: BaseException | None = None
        try:
            self.intro()
            self.build()
            self.show_built()
            self.check()
        except BaseException as exc:
            error = exc
            raise
        finally:
            # A signal now is acted on after the cleanup and the report.
            with deferred_signals():
                if isinstance(error, KeyboardInterrupt | Interrupted):
                    self.say("\nInterrupted: removing what was built...")
                problems = self.cleanup()
                self.report["cleanup_errors"] = [str(p) for p in problems]
                failed = [o for o in self.outcomes if o.status != "PASS"]
                self.report["passed"] = error is None and not failed and not problems
                if error is None:
                    self.summary()
                self.say_cleanup(problems, time.monotonic() - started)
                if error is None and self.as_json:
                    print(json.dumps(self.report, indent=2), file=self.out)
        return 0 if self.report["passed"] else 1

    # -- build -------------------------------------------------------------------------

    def intro(self) -> None:
        self.say(
            f"""hostnet demo: Docker-style bridge networks, built straight from netlink and
nftables (no Docker, no daemon), then tested with real HTTP requests.

Nothing here touches this machine's network. Everything lives in throwaway network
namespaces named {self.prefix}-*:
  host      stands in for a machine; hostnet's Controller builds the networks in it
  outside   stands in for the rest of the network, joined to the host by a veth:
            host uplink0 {UPLINK_HOST}/{UPLINK_PREFIXLEN} <---> outside eth0 \
{UPLINK_OUTSIDE}/{UPLINK_PREFIXLEN}
"""
        )

    def build(self) -> None:
        backend = self.backend = open_backend("netlink")
        host, outside = self.name("host"), self.name("outside")
        for ns in (host, outside):
            backend.apply(CreateNamespace(ns=ns))
            self.made.append(ns)
        # The uplink: created through hostnet's backend ops, like everything else.
        backend.apply(
            AddLink(ns=host, name="uplink0", kind="veth", peer="eth0", peer_ns=outside,
                    up=True, peer_up=True)
        )  # fmt: skip
        for ns, dev, address in (
            (host, "uplink0", UPLINK_HOST),
            (outside, "eth0", UPLINK_OUTSIDE),
        ):
            backend.apply(AddAddress(ns=ns, ifname=dev, address=f"{address}/{UPLINK_PREFIXLEN}"))
        self.state = tempfile.mkdtemp(prefix=f"{self.prefix}-state-")
        # The host is a sandbox of our own: bridge networks may turn on forwarding in it
        # (for outbound traffic and for ports published to "outside").
        ctl = self.ctl = Controller(
            state_dir=self.state, host=host, backend=backend, forwarding=True
        )
        self.ns["host"] = ctl.namespace(host, adopt=False)
        self.ns["outside"] = ctl.namespace(outside, adopt=False)

        for net, subnet in SUBNETS.items():
            check_interrupted()
            self.networks[net] = ctl.create_network(net, driver="bridge", subnet=subnet)
        for role, net in PLACEMENT.items():
            check_interrupted()
            self.ns[role] = ctl.create_namespace(self.name(role))
            publish = [f"{PUBLISHED_PORT}:{WEB_PORT}"] if role == "web" else []
            self.networks[net].connect(self.ns[role], publish=publish)

        self.serve("web", WEB_PORT)
        self.serve("outside", OUTSIDE_PORT)
        check_interrupted()

    def serve(self, role: str, port: int) -> None:
        """Start the HTTP server in ``role``'s namespace and wait until it listens."""
        # A signal between the fork and the append would leave a server nobody stops.
        with deferred_signals(reraise=False):
            proc = self.ns[role].popen(
                [sys.executable, "-c", SERVER, role, str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # Ctrl-C in the terminal is ours to handle, not its
            )
            self.servers.append(proc)
        check_interrupted()
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline().strip() if ready else ""
        if line != "listening":
            stop(proc, keep_stderr=True)
            assert proc.stderr is not None
            lines = proc.stderr.read().strip().splitlines() or ["it printed nothing"]
            proc.stderr.close()
            raise DemoFailed(
                f"the HTTP server in {role!r} did not start within {START_TIMEOUT:g} s: "
                f"{lines[-1]}"
            )

    def show_built(self) -> None:
        assert self.ctl is not None
        ctl = self.ctl
        nets, rows = [], []
        for name, network in self.networks.items():
            info = ctl.inspect_network(name)
            config = info["IPAM"]["Config"]
            bridge = network.data.get("bridge", "")
            nets.append({**info, "Bridge": bridge})
            rows.append([
                name,
                info["Driver"],
                ", ".join(c["Subnet"] for c in config),
                ", ".join(c.get("Gateway", "") for c in config),
                bridge,
            ])  # fmt: skip
        net_table = format_table(["network", "driver", "subnet", "gateway", "bridge"], rows)
        spaces, rows = [], []
        for role in PLACEMENT:
            info = ctl.inspect(self.ns[role])
            spaces.append({"Role": role, **info})
            settings = info["NetworkSettings"]
            for net, ep in settings["Networks"].items():
                ports = [
                    f"{b['HostIp']}:{b['HostPort']}->{key}"
                    for key, bindings in settings["Ports"].items()
                    for b in bindings or ()
                ]
                rows.append([
                    role,
                    net,
                    f"{ep['IPAddress']}/{ep['IPPrefixLen']}",
                    ep["MacAddress"],
                    ", ".join(ports) or "-",
                ])  # fmt: skip
        ns_table = format_table(["namespace", "network", "ip", "mac", "published"], rows)
        self.report["networks"] = nets
        self.report["namespaces"] = spaces
        self.say(
            f"""What hostnet built in "host" (as `hostnet network inspect` and `inspect` see it):

{net_table}

{ns_table}

"web" and "outside" each run a small HTTP server that answers "hello from <name>, you
are <address>", so each answer also shows the address the request arrived from.
"""
        )

    # -- check -------------------------------------------------------------------------

    def check(self) -> None:
        web_ip = self.ns_ip("web")
        checks = checks_for(web_ip)
        self.say(
            f"""Checks: real HTTP requests, each made from inside a namespace. What to look for:
- from outside, web sees the client's own address: published ports keep the source;
- db reaches outside as the host ({UPLINK_HOST}): outbound traffic is masqueraded;
- db gets no answer from web: separate networks are isolated from each other.
"""
        )
        failed = False
        for check in checks:
            check_interrupted()  # each check starts processes: see check_interrupted
            if failed and not self.keep_going:
                self.outcomes.append(Outcome(check=check, status="SKIP", detail="not run"))
                continue
            outcome = judge(check, self.request(check))
            self.outcomes.append(outcome)
            failed = failed or outcome.status != "PASS"
        self.report["checks"] = [o.to_json() for o in self.outcomes]
        self.say(
            format_table(
                ["result", "from", "to", "check", "answer"],
                [
                    [o.status, o.check.origin, o.check.target, o.check.what, o.detail]
                    for o in self.outcomes
                ],
            )
        )

    def ns_ip(self, role: str) -> str:
        assert self.ctl is not None
        ep = next(e for e in self.ctl.endpoints(self.ns[role].name))
        assert ep.ip is not None
        return ep.ip

    def request(self, check: Check) -> dict[str, Any]:
        timeout = ANSWER_TIMEOUT if check.expect_answer else BLOCKED_TIMEOUT
        argv = [sys.executable, "-c", CLIENT, check.host, str(check.port), str(timeout)]
        with deferred_signals(reraise=False):  # the client must reach the try below
            proc = self.ns[check.origin].popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        try:
            check_interrupted()
            out, err = proc.communicate(timeout=timeout + 20)
        finally:
            stop(proc)
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            tail = (err.strip().splitlines() or ["no output"])[-1]
            result = {"kind": "error", "text": f"the client failed: {tail}"}
        return result

    # -- clean up ----------------------------------------------------------------------

    def cleanup(self) -> list[BaseException]:
        """Remove everything, in reverse order of building; keep going past errors."""
        problems: list[BaseException] = []

        def attempt(step: Callable[..., object], *args: object) -> None:
            try:
                step(*args)
            except errors.NotFoundError:
                pass  # never made, or already gone
            except Exception as exc:  # every step must run: collect, report at the end
                problems.append(exc)

        for proc in self.servers:  # our own children, ended by their pid
            attempt(stop, proc)
        if self.ctl is not None:
            for role, net in PLACEMENT.items():
                if role in self.ns and net in self.networks:
                    attempt(self.networks[net].disconnect, self.ns[role])
                    attempt(self.ns[role].delete)
            for network in reversed(self.networks.values()):
                attempt(network.delete)
            attempt(self.ctl.close)
        if self.backend is not None:
            backend = self.backend
            for name in reversed(self.made):
                attempt(backend.apply, DeleteNamespace(ns=name))
            # Whatever else carries this run's prefix (made before an error) goes too.
            for name in backend.namespaces():
                if name.startswith(f"{self.prefix}-"):
                    attempt(backend.apply, DeleteNamespace(ns=name))
            attempt(backend.close)
        if self.state is not None:
            attempt(shutil.rmtree, self.state)
        return problems

    def summary(self) -> None:
        failed = sum(o.status == "FAIL" for o in self.outcomes)
        skipped = sum(o.status == "SKIP" for o in self.outcomes)
        total = len(self.outcomes)
        if failed:
            verdict = f"{failed} of {total} checks FAILED"
            verdict += f", {skipped} skipped (--keep-going runs them all)." if skipped else "."
        else:
            verdict = f"All {total} checks passed."
        self.say(f"\n{verdict}")

    def say_cleanup(self, problems: Sequence[BaseException], seconds: float) -> None:
        if problems:
            self.say(
                f"Cleanup left something behind ({len(problems)} problem(s)); look for "
                f"`ip netns list | grep {self.prefix}`:"
            )
            for problem in problems:
                self.say(f"  {problem}")
        else:
            self.say(
                "Cleaned up: servers stopped; endpoints, networks, namespaces and temporary "
                f"state removed.\nThe whole demo took {seconds:.1f} s."
            )


def stop(proc: subprocess.Popen[str], *, keep_stderr: bool = False) -> None:
    """End a child we started, by its pid, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, None if keep_stderr else proc.stderr):
        if stream is not None:
            stream.close()


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        ctx.error(
            "the demo builds namespaces, veths and nftables tables in the kernel and needs "
            "root (it never touches this machine's own network): sudo hostnet demo"
        )
        return 1
    if ctx.options.backend == "fake":
        ctx.error("the demo sends real traffic and needs the netlink backend, not fake")
        return 1
    given = {"--host": ctx.options.host, "--state-dir": ctx.options.state_dir}
    ignored = [flag for flag, value in given.items() if value]
    if ignored:
        ctx.warn(f"the demo makes its own host namespace and state; ignoring {', '.join(ignored)}")
    return Demo(out=ctx.stdout, keep_going=args.keep_going, as_json=ctx.json).run()


__all__ = ["PREFIX", "Check", "Demo", "Outcome", "args_demo", "checks_for", "cmd_demo", "judge"]
