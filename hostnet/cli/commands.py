"""The subcommands: one function each, registered in ``COMMANDS``.

A command is thin: it reads its arguments, calls the Controller, and hands
:meth:`Context.emit` the data (printed as JSON with ``--json``) together with its human
rendering. It returns the exit code; errors are hostnet errors, which ``main`` prints.

To add a command, write ``def cmd_x(ctx, args) -> int`` (and a function adding its
arguments, if it has any) and add a :class:`Command` row to ``COMMANDS``; a name with a
space (``"network create"``) makes a group (``network``) with a subcommand.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from typing import Any

import attrs
from attrs import frozen

import hostnet
from hostnet import errors
from hostnet.cli import network as net
from hostnet.cli.context import Context
from hostnet.cli.demo import args_demo, cmd_demo
from hostnet.cli.process import command_argv, start, wait_child
from hostnet.cli.table import format_table
from hostnet.controller import Controller
from hostnet.names import check_namespace_name
from hostnet.namespace import Namespace

Run = Callable[[Context, argparse.Namespace], int]
AddArguments = Callable[[argparse.ArgumentParser], None]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


@frozen(kw_only=True)
class Command:
    """One row of the command table."""

    name: str  # words: "ns create" is the subcommand create of the group ns
    help: str
    run: Run
    arguments: AddArguments = _no_arguments
    # False for commands that only look (and for gc, which recovers by itself): opening
    # the Controller then does not finish or roll back other processes' work.
    recover: bool = True
    # The exit code of hostnet's own errors, for commands that exit with their child's
    # code otherwise (125, as `docker run`: a script tells them from the command's).
    own_errors: int | None = None
    # other names of the same command (Docker's: `network list` for `network ls`)
    aliases: tuple[str, ...] = ()


# -- ns ------------------------------------------------------------------------------------


def _args_ns_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="namespace name (as `ip netns` shows it)")


def cmd_ns_create(ctx: Context, args: argparse.Namespace) -> int:
    ns = ctx.controller.create_namespace(args.name)
    ctx.emit({"name": ns.name, "path": ns.path, "managed": ns.managed}, ns.name)
    return 0


def cmd_ns_ls(ctx: Context, args: argparse.Namespace) -> int:
    ctl = ctx.controller
    networks: dict[str, list[str]] = {}
    for ep in ctl.endpoints():
        if ep.ns is not None:
            networks.setdefault(ep.ns, []).append(ep.network)
    data: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    for ns in ctl.namespaces():
        nets = sorted(networks.get(ns.name, []))
        is_host = ns.name == ctl.host_ns
        data.append(
            {
                "name": ns.name,
                "managed": ns.managed,
                "host": is_host,
                "path": ns.path,
                "networks": nets,
            }
        )
        label = f"{ns.name} (host)" if is_host else ns.name
        rows.append([label, "yes" if ns.managed else "no", ",".join(nets)])
    table = format_table(["name", "managed", "networks"], rows)
    ctx.emit(data, table)
    return 0


def _args_ns_rm(parser: argparse.ArgumentParser) -> None:
    _args_ns_name(parser)
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="also delete a namespace hostnet did not create",
    )


def cmd_ns_rm(ctx: Context, args: argparse.Namespace) -> int:
    ctx.controller.delete_namespace(args.name, force=args.force)
    ctx.emit({"name": args.name, "deleted": True}, args.name)
    return 0


def _args_ns_exec(parser: argparse.ArgumentParser) -> None:
    _args_ns_name(parser)
    parser.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- CMD [ARG...]",
        help="the command to run inside the namespace (no shell is involved)",
    )
    parser.epilog = (
        "Signals sent to hostnet reach the command; exit code: the command's, 126/127 if "
        "it cannot be run or found, 125 for hostnet's own errors. "
        "example: hostnet ns exec app1 -- ip -o link"
    )


def _find_namespace(ctl: Controller, name: str) -> Namespace:
    """An existing namespace, without adopting it: running a command in a namespace
    must not make hostnet record it (Controller.namespace(name) would)."""
    check_namespace_name(name)
    for ns in ctl.namespaces():
        if ns.name == name:
            return ns
    raise errors.NamespaceNotFound(name)


def cmd_ns_exec(ctx: Context, args: argparse.Namespace) -> int:
    argv = command_argv(args.argv, "ns exec", "NAME -- CMD [ARG...]")
    ns = _find_namespace(ctx.controller, args.name)
    proc = start(ctx, ns, argv)
    if isinstance(proc, int):
        return proc
    # The child needs nothing more from us; drop our sockets and the store while it runs.
    ctx.close()
    return wait_child(proc)


# -- workloads -------------------------------------------------------------------------


def _args_workload(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", metavar="NAME", help="a namespace, or the name of a host-network workload"
    )


def _args_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        metavar="NAME",
        nargs="+",
        help="namespaces, or names of host-network workloads",
    )


def cmd_inspect(ctx: Context, args: argparse.Namespace) -> int:
    # Docker-shaped JSON either way (there is no better human rendering of a tree): a
    # list, in the order asked, as `docker inspect` prints
    return net.inspect_each(ctx, args.names, ctx.controller.inspect)


def _args_attach(parser: argparse.ArgumentParser) -> None:
    _args_workload(parser)
    parser.add_argument(
        "--driver",
        required=True,
        choices=("none", "host"),
        help="the predefined network to attach to",
    )
    parser.add_argument(
        "--port",
        dest="ports",
        action="append",
        default=[],
        metavar="SPEC",
        help="host driver: a host port the workload binds, [IP:]PORT[-END][/PROTO] (repeatable)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="host driver: bind the declared ports for as long as this command runs "
        "(which is not long: the library's hold=True is for long-lived callers)",
    )


def cmd_attach(ctx: Context, args: argparse.Namespace) -> int:
    ep = ctx.controller.attach(args.name, driver=args.driver, ports=args.ports, hold=args.hold)
    if args.hold:
        ctx.warn(
            "--hold binds the ports only while this command runs: they are free again when "
            "it exits (the reservation stays in hostnet's store)"
        )
    lines = [f"{ep.workload} attached to {ep.network}"]
    lines += [f"reserved {r.host_ip}:{r.port}/{r.protocol}" for r in ep.reserved]
    ctx.emit(attrs.asdict(ep), "\n".join(lines))
    return 0


def cmd_detach(ctx: Context, args: argparse.Namespace) -> int:
    ctl = ctx.controller
    networks = [ep.network for ep in ctl.endpoints(args.name)]
    ctl.detach(args.name)
    ctx.emit(
        {"workload": args.name, "networks": networks},
        "\n".join(f"{args.name} detached from {net}" for net in networks),
    )
    return 0


# -- reports -------------------------------------------------------------------------------


def cmd_ports(ctx: Context, args: argparse.Namespace) -> int:
    rows = sorted(ctx.controller.ports(), key=lambda r: (r["host_ip"], r["port"], r["protocol"]))
    table = format_table(
        ["host ip", "port", "proto", "workload"],
        [[r["host_ip"], r["port"], r["protocol"], r["workload"]] for r in rows],
    )
    ctx.emit(rows, table)
    return 0


def _args_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="a namespace (or host-network workload)")
    parser.add_argument(
        "port", nargs="?", metavar="PORT[/PROTO]", help="only this port (default proto tcp)"
    )


def cmd_port(ctx: Context, args: argparse.Namespace) -> int:
    """``docker port``: a workload's published ports, ``80/tcp -> 0.0.0.0:8080``."""
    ports: dict[str, Any] = ctx.controller.inspect(args.name)["NetworkSettings"]["Ports"]
    rows = [
        {"port": key, "host_ip": b["HostIp"], "host_port": b["HostPort"]}
        for key, bindings in sorted(ports.items(), key=lambda kv: _port_key(kv[0]))
        for b in bindings or ()
    ]
    if args.port is not None:
        number, _, proto = args.port.partition("/")
        wanted = f"{number}/{(proto or 'tcp').lower()}"
        rows = [r for r in rows if r["port"] == wanted]
        if not rows:
            raise errors.NotFoundError(f"no public port {wanted!r} published for {args.name!r}")
        human = "\n".join(_host_port(r) for r in rows)
    else:
        human = "\n".join(f"{r['port']} -> {_host_port(r)}" for r in rows)
    ctx.emit(rows, human)
    return 0


def _port_key(key: str) -> tuple[int, str]:
    number, _, proto = key.partition("/")
    return (int(number) if number.isdigit() else 0, proto)


def _host_port(row: dict[str, Any]) -> str:
    ip = row["host_ip"]
    return f"[{ip}]:{row['host_port']}" if ":" in ip else f"{ip}:{row['host_port']}"


SEVERITIES = ("high", "medium", "low", "info")


def _args_audit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        default=None,
        metavar="SEVERITY",
        help="exit 1 if a finding is this severe or more (high, medium, low, info); "
        "for scripts and CI",
    )


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    findings = ctx.controller.audit()
    table = format_table(
        ["severity", "kind", "subject", "detail"],
        [[f["severity"], f["kind"], f["subject"], f["detail"]] for f in findings],
    )
    ctx.emit(findings, table)
    if args.fail_on is None:
        return 0
    worst = SEVERITIES[: SEVERITIES.index(args.fail_on) + 1]
    return 1 if any(f["severity"] in worst for f in findings) else 0


def cmd_gc(ctx: Context, args: argparse.Namespace) -> int:
    report = ctx.controller.gc()
    lines = []
    for r in report["recovered"]:
        done = "rolled back" if r["kind"] == "setup" else "finished"
        line = f"{done} {r['kind']} journal {r['journal'][:12]} ({r['ops']} ops)"
        if r.get("names"):
            line += f" of {', '.join(r['names'])}"
        if r.get("skipped"):
            line += f", skipped {r['skipped']} in namespaces made again since"
        if r["errors"]:
            line += f" with {len(r['errors'])} error(s): " + "; ".join(map(str, r["errors"]))
        lines.append(line)
    lines += [f"forgot stale {name}" for name in report["stale"]]
    lines += [
        f"rebuilt firewall table {table} (it was gone, flushed, or made by an older hostnet)"
        for table in report.get("restored", ())
    ]
    lines += [
        f"made the host shim of network {name} again (it was gone, down, or lost its address "
        "or a route)"
        for name in report.get("shims", ())
    ]
    lines += [f"made network {name} again (its host restarted)" for name in report["remade"]]
    lines += [f"deleted abandoned namespace {name}" for name in report["abandoned"]]
    lines += [
        f"kept abandoned namespace {name}: processes {' '.join(map(str, pids))} still run there"
        for name, pids in report["kept"].items()
    ]
    ctx.emit(report, "\n".join(lines) or "nothing to recover or forget")
    # Recovery that left errors behind leaves kernel objects behind: say so in the code.
    return 1 if any(r["errors"] for r in report["recovered"]) else 0


def cmd_version(ctx: Context, args: argparse.Namespace) -> int:
    data = {
        "version": hostnet.__version__,
        "python": platform.python_version(),
        "kernel": os.uname().release,
    }
    human = "\n".join(f"{key.capitalize() + ':':<10}{value}" for key, value in data.items())
    ctx.emit(data, human)
    return 0


GROUPS: dict[str, str] = {
    "ns": "manage network namespaces",
    "network": "manage networks",
}

COMMANDS: tuple[Command, ...] = (
    Command(name="ns create", help="create a network namespace", run=cmd_ns_create,
            arguments=_args_ns_name),
    Command(name="ns ls", help="list network namespaces", run=cmd_ns_ls, recover=False),
    Command(name="ns rm", help="disconnect and delete a namespace", run=cmd_ns_rm,
            arguments=_args_ns_rm),
    Command(name="ns exec", help="run a command inside a namespace", run=cmd_ns_exec,
            arguments=_args_ns_exec, own_errors=125),
    Command(name="network create", help="create a network; prints its id",
            run=net.cmd_network_create, arguments=net.args_network_create),
    Command(name="network ls", help="list networks", run=net.cmd_network_ls,
            arguments=net.args_network_ls, recover=False, aliases=("list",)),
    Command(name="network inspect", help="show networks and their endpoints (JSON)",
            run=net.cmd_network_inspect, arguments=net.args_network_inspect, recover=False),
    Command(name="network rm", help="delete a network", run=net.cmd_network_rm,
            arguments=net.args_network_rm, aliases=("remove",)),
    # (Docker's spelling; the top-level `connect` and `disconnect` are the same)
    Command(name="network connect", help="connect a namespace to a network (= connect)",
            run=net.cmd_connect, arguments=net.args_connect),
    Command(name="network disconnect", help="disconnect a namespace from a network "
            "(= disconnect)", run=net.cmd_disconnect, arguments=net.args_disconnect),
    Command(name="connect", help="connect a namespace to a network, publishing ports",
            run=net.cmd_connect, arguments=net.args_connect),
    Command(name="disconnect", help="disconnect a namespace from a network",
            run=net.cmd_disconnect, arguments=net.args_disconnect),
    Command(name="run", help="run a command in a new namespace on a network, then remove it",
            run=net.cmd_run, arguments=net.args_run, own_errors=125),
    Command(name="inspect", help="show workloads' networking (JSON list)", run=cmd_inspect,
            arguments=_args_inspect, recover=False),
    Command(name="attach", help="attach a workload to the none or host network",
            run=cmd_attach, arguments=_args_attach),
    Command(name="detach", help="detach a workload from every network", run=cmd_detach,
            arguments=_args_workload),
    Command(name="ports", help="list reserved host ports", run=cmd_ports, recover=False),
    Command(name="port", help="a workload's published ports, as `docker port`",
            run=cmd_port, arguments=_args_port, recover=False),
    Command(name="gc", help="finish or roll back interrupted work, forget stale records",
            run=cmd_gc, recover=False),
    Command(name="audit", help="list the risks in the current state", run=cmd_audit,
            arguments=_args_audit, recover=False),
    Command(name="demo", help="build two networks in throwaway namespaces, test them with "
            "real traffic, remove them", run=cmd_demo, arguments=args_demo, recover=False),
    Command(name="version", help="show version information", run=cmd_version),
)  # fmt: skip

__all__ = ["COMMANDS", "GROUPS", "Command"]
