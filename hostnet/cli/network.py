"""Networks and the workloads on them: ``network create|ls|inspect|rm``, ``connect``,
``disconnect`` and ``run``, the way ``docker network ...`` and ``docker run --network``
spell them.

    hostnet network create web --subnet 10.90.0.0/24 -o mtu=1400
    hostnet ns create app1
    hostnet connect web app1 -p 8080:80
    hostnet run --network web -p 8081:80 -- python3 -m http.server 80
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from hostnet import errors
from hostnet.cli.context import Context
from hostnet.cli.process import (
    check_interrupted,
    command_argv,
    deferred_signals,
    start,
    wait_child,
)
from hostnet.cli.table import format_table
from hostnet.controller import rfc3339
from hostnet.drivers.base import recorded_driver
from hostnet.model import PortMapping
from hostnet.network import Endpoint
from hostnet.policy.ports import parse_publish

#: Namespaces ``run`` makes up a name for start with this.
RUN_PREFIX = "hostnet-run-"


def format_port(mapping: PortMapping) -> str:
    """A published port the way ``docker ps`` shows it.

    >>> format_port(PortMapping(protocol="tcp", host_ip="0.0.0.0", host_port=8080,
    ...                         container_port=80))
    '0.0.0.0:8080->80/tcp'
    """
    host = f"[{mapping.host_ip}]" if ":" in mapping.host_ip else mapping.host_ip
    return f"{host}:{mapping.host_port}->{mapping.container_port}/{mapping.protocol}"


def parse_pairs(
    values: Iterable[str], option: str, shape: str, *, labels: bool = False
) -> dict[str, str]:
    """``["a=1", "b=2"]`` as a dict; a ValidationError for an item without ``=`` or a
    key given twice with two values (which was meant is not ours to guess); the same
    value twice is fine. ``labels``: as Docker's ``--label``, a key alone has the empty
    value, and the last of two values wins."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not key or not (sep or labels):
            raise errors.InvalidOption(option, item, f"expected {shape}")
        if key in out and out[key] != value and not labels:
            raise errors.InvalidOption(option, item, f"{key!r} is given twice")
        out[key] = value
    return out


def _scope(driver: str) -> str:
    return recorded_driver(driver).scope  # (a stand-in if no longer installed)


# -- network create ------------------------------------------------------------------------


def args_network_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the network's name")
    parser.add_argument("-d", "--driver", default="bridge", help="the driver (default: bridge)")

    def repeatable(flag: str, dest: str, metavar: str, text: str) -> None:
        parser.add_argument(
            flag, dest=dest, action="append", default=[], metavar=metavar, help=text
        )

    repeatable("--subnet", "subnets", "CIDR", "a subnet; repeat for IPv4 and IPv6")
    repeatable("--gateway", "gateways", "IP", "the gateway of the subnet that contains it")
    repeatable("--ip-range", "ip_ranges", "CIDR", "hand out addresses of this range only")
    repeatable("--aux-address", "aux", "NAME=IP", "an address IPAM must never hand out")
    parser.add_argument(
        "--internal",
        action="store_true",
        help="no traffic beyond the network (bridge: nothing out of the host; macvlan: a "
        "parent link of its own instead of -o parent's)",
    )
    parser.add_argument("--ipv6", action="store_true", help="give the network an IPv6 subnet")
    parser.add_argument(
        "-o",
        "--opt",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a driver option: Docker's name (com.docker.network.bridge.name=br0) or a "
        "short one; bridge: bridge_name, mtu, icc, masquerade, host_ip, "
        "multicast_snooping; macvlan: parent (required), macvlan_mode (mode), host_shim "
        "(shim), mtu",
    )
    repeatable("--label", "labels", "KEY[=VALUE]", "a label kept with the network")
    parser.epilog = (
        "example: hostnet network create web --subnet 10.90.0.0/24 --gateway 10.90.0.1 "
        "-o mtu=1400 -o icc=false"
    )


def cmd_network_create(ctx: Context, args: argparse.Namespace) -> int:
    # Everything is parsed before the Controller is asked for anything.
    options = parse_pairs(args.options, "-o", "KEY=VALUE")
    aux = parse_pairs(args.aux, "--aux-address", "NAME=IP")
    labels = parse_pairs(args.labels, "--label", "KEY[=VALUE]", labels=True)
    ctl = ctx.controller
    network = ctl.create_network(
        args.name,
        args.driver,
        subnet=args.subnets,
        gateway=args.gateways,
        ip_range=args.ip_ranges,
        aux_addresses=aux or None,
        internal=args.internal,
        ipv6=args.ipv6,
        options=options,
        labels=labels or None,
    )
    # Like docker: the id alone, so that `NET=$(hostnet network create ...)` works.
    ctx.emit(ctl.inspect_network(network.name), network.id)
    return 0


# -- network ls, inspect, rm ---------------------------------------------------------------


def args_network_ls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print network ids only")
    parser.add_argument(
        "-f",
        "--filter",
        dest="filters",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="as Docker's: name= (part of the name), id= (part of the id), driver=, "
        "scope=, type=custom|builtin, label=KEY or label=KEY=VALUE; the same key again "
        "widens, another narrows",
    )
    parser.add_argument(
        "--format",
        metavar="TEMPLATE",
        help="each network by a template of Docker's placeholders: {{.ID}}, {{.Name}}, "
        "{{.Driver}}, {{.Scope}}, {{.IPv6}}, {{.Internal}}, {{.Labels}}, {{.CreatedAt}}, "
        "{{json .}}; 'table TEMPLATE' adds a header",
    )
    parser.add_argument("--no-trunc", action="store_true", help="full network ids")


#: ``network ls --filter`` keys, as Docker's
LS_FILTERS = ("driver", "id", "label", "name", "scope", "type")


def _ls_filters(given: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or key not in LS_FILTERS:
            raise errors.InvalidOption(
                "--filter", item, f"expected KEY=VALUE with KEY one of {', '.join(LS_FILTERS)}"
            )
        if key == "type" and value not in ("custom", "builtin"):
            raise errors.InvalidOption("--filter", item, "type is custom or builtin")
        out.setdefault(key, []).append(value)
    return out


def _ls_match(row: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's: each key must match (AND), any of its values (OR)."""

    def one(key: str, value: str) -> bool:
        if key == "name":
            return value in row["name"]
        if key == "id":
            return value in row["id"]
        if key == "label":
            label, sep, wanted = value.partition("=")
            return label in row["labels"] and (not sep or row["labels"][label] == wanted)
        if key == "type":
            return (row["name"] in ("host", "none")) == (value == "builtin")
        return bool(row[key] == value)  # driver, scope

    return all(any(one(key, v) for v in values) for key, values in filters.items())


#: ``network ls --format`` placeholders: Docker's names, and the row's key
LS_FIELDS = {
    "ID": "id",
    "Name": "name",
    "Driver": "driver",
    "Scope": "scope",
    "IPv6": "ipv6",
    "Internal": "internal",
    "Labels": "labels",
    "CreatedAt": "created",
}
_PLACEHOLDER = re.compile(r"{{\s*(json\s+\.|\.(\w+))\s*}}")


def _ls_format(template: str, rows: list[dict[str, Any]], full_ids: bool) -> str:
    """``rows`` by a template of Docker's placeholders (no other Go template syntax: a
    clear error, not a guess)."""
    table = template.startswith("table ")
    body = template[len("table ") :] if table else template
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    for match in re.finditer(r"{{.*?}}", body):
        placeholder = _PLACEHOLDER.fullmatch(match.group(0))
        if placeholder is None or (placeholder[2] and placeholder[2] not in LS_FIELDS):
            raise errors.InvalidOption(
                "--format",
                template,
                f"{match.group(0)} is not one of hostnet's placeholders: "
                + ", ".join(f"{{{{.{name}}}}}" for name in LS_FIELDS)
                + ", {{json .}} (no other Go template syntax)",
            )

    def shown(row: dict[str, Any], name: str) -> str:
        value = row[LS_FIELDS[name]]
        if name == "ID" and not full_ids:
            return str(value)[:12]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        return str(value)

    def render(row: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            field = match[2]
            if field is None:  # {{json .}}
                return json.dumps({k: shown(row, k) for k in LS_FIELDS}, separators=(",", ":"))
            return shown(row, field)

        return _PLACEHOLDER.sub(one, body)

    lines = [render(row) for row in rows]
    if table:
        header = _PLACEHOLDER.sub(
            lambda m: "NETWORK ID" if m[2] == "ID" else (m[2] or "JSON").upper(), body
        )
        lines.insert(0, header)
    return "\n".join(lines)


def cmd_network_ls(ctx: Context, args: argparse.Namespace) -> int:
    filters = _ls_filters(args.filters)
    networks = sorted(ctx.controller.networks(), key=lambda n: n.name)
    data: list[dict[str, Any]] = [
        {
            "id": n.id,
            "name": n.name,
            "driver": n.driver,
            "scope": _scope(n.driver),
            "subnets": [s.subnet for s in n.spec.subnets],
            "internal": n.spec.internal,
            "ipv6": n.spec.enable_ipv6,
            "labels": dict(n.spec.labels),
            "created": rfc3339(n.created_at),
        }
        for n in networks
    ]
    data = [d for d in data if _ls_match(d, filters)]
    width = None if args.no_trunc else 12
    if args.quiet:  # ids only, with --json too (a list of full ids)
        human = "\n".join(d["id"][:width] for d in data)
        ctx.emit([d["id"] for d in data], human)
        return 0
    if args.format is not None:
        text = _ls_format(args.format, data, full_ids=args.no_trunc)
        print(text, file=ctx.stdout)  # (what was asked for, --json or not)
        return 0
    human = format_table(
        ["network id", "name", "driver", "scope"],
        [[d["id"][:width], d["name"], d["driver"], d["scope"]] for d in data],
    )
    ctx.emit(data, human)
    return 0


def args_network_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="a network's name")


def args_network_inspect(parser: argparse.ArgumentParser) -> None:
    args_network_names(parser)


def cmd_network_inspect(ctx: Context, args: argparse.Namespace) -> int:
    # JSON either way, a list like `docker network inspect` prints, in the order asked.
    return inspect_each(ctx, args.names, ctx.controller.inspect_network)


def inspect_each(ctx: Context, names: Sequence[str], inspect: Callable[[str], Any]) -> int:
    """Print what ``inspect`` finds of ``names`` as a JSON list; each one not found is
    said on stderr and makes the exit code 1 (as `docker inspect`: the others are still
    printed)."""
    data: list[Any] = []
    code = 0
    for name in names:
        try:
            data.append(inspect(name))
        except errors.NotFoundError as exc:
            ctx.error(str(exc))
            code = 1
    print(json.dumps(data, indent=2), file=ctx.stdout)
    return code


def args_network_rm(parser: argparse.ArgumentParser) -> None:
    args_network_names(parser)
    parser.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="no error for a network that does not exist (as Docker's -f)",
    )
    parser.add_argument(
        "--disconnect",
        action="store_true",
        help="disconnect every workload first (else a network in use is not removed)",
    )


def cmd_network_rm(ctx: Context, args: argparse.Namespace) -> int:
    # Like `docker network rm A B`: each in turn, an error for one does not stop the
    # others; the exit code is the first failure's (2 for bad input, 1 otherwise).
    code, done = 0, []
    for name in args.names:
        try:
            ctx.controller.delete_network(name, force=args.disconnect)
        except errors.HostnetError as exc:
            if args.force and isinstance(exc, errors.NetworkNotFound):
                done.append({"name": name, "deleted": False})  # (as Docker: not said)
                continue
            ctx.error(str(exc))
            code = code or (2 if isinstance(exc, errors.ValidationError) else 1)
            continue
        done.append({"name": name, "deleted": True})
        if not ctx.json:
            print(name, file=ctx.stdout)
    if ctx.json and done:  # one name: its object, as before; several: a list
        print(json.dumps(done[0] if len(args.names) == 1 else done, indent=2), file=ctx.stdout)
    return code


# -- connect, disconnect -------------------------------------------------------------------


def args_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="SPEC",
        help="publish a port, Docker's syntax: [IP:][HOST_PORT:]PORT[/PROTO] (repeatable)",
    )


def args_connect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK", help="the network")
    parser.add_argument("namespace", metavar="NAMESPACE", help="the namespace to connect")
    args_publish(parser)
    parser.add_argument("--ip", help="a static IPv4 address from the network's subnet")
    parser.add_argument("--ip6", help="a static IPv6 address from the network's subnet")
    parser.add_argument("--mac", help="the interface's MAC address (default: random)")
    parser.epilog = "example: hostnet connect web app1 -p 8080:80 -p 127.0.0.1:5353:53/udp"


def describe_endpoint(ep: Endpoint) -> str:
    """The human rendering of an endpoint, one ``key value`` line per fact."""
    facts: list[tuple[str, str | None]] = [
        ("namespace", ep.ns or ep.workload),
        ("network", ep.network),
        ("interface", ep.ifname),
        *(("ipv6" if ":" in a else "ip", a) for a in ep.addresses),
        ("mac", ep.mac),
        ("ports", ", ".join(map(format_port, ep.ports)) or "none published"),
    ]
    return "\n".join(f"{key:<10} {value}" for key, value in facts if value)


def _no_host(network: Any, verb: str) -> None:
    """The host network takes no namespace (as Docker refuses to connect a container to
    it): its workloads are names, which ``attach``/``detach`` declare."""
    if network.driver == "host":
        how = (
            "declare one with `hostnet attach NAME --driver host`, or run a command there "
            "with `hostnet run --network host -- CMD`"
            if verb == "connected to"
            else "one is detached with `hostnet detach NAME`"
        )
        raise errors.InvalidOption(
            "network",
            network.name,
            f"a namespace cannot be {verb} the host network: a host-network workload has "
            f"no namespace of its own ({how})",
        )


def cmd_connect(ctx: Context, args: argparse.Namespace) -> int:
    network = ctx.controller.network(args.network)
    _no_host(network, "connected to")
    ep = network.connect(
        args.namespace, publish=args.publish, ip=args.ip, ip6=args.ip6, mac=args.mac
    )
    ctx.emit(attrs.asdict(ep), describe_endpoint(ep))
    return 0


def args_disconnect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK", help="the network")
    parser.add_argument("namespace", metavar="NAMESPACE", help="the namespace to disconnect")


def cmd_disconnect(ctx: Context, args: argparse.Namespace) -> int:
    network = ctx.controller.network(args.network)
    _no_host(network, "disconnected from")
    network.disconnect(args.namespace)
    ctx.emit(
        {"network": args.network, "namespace": args.namespace, "disconnected": True},
        f"{args.namespace} disconnected from {args.network}",
    )
    return 0


# -- run -----------------------------------------------------------------------------------


def args_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        dest="networks",
        action="append",
        required=True,
        metavar="NET",
        help="a network to join (repeatable: eth0 on the first, which the ports are "
        "published from, eth1 on the second...)",
    )
    args_publish(parser)
    parser.add_argument(
        "--name",
        help=f"the namespace's name (default: {RUN_PREFIX}<random>); it must not exist yet",
    )
    parser.add_argument("--ip", help="a static IPv4 address on the first network")
    parser.add_argument("--ip6", help="a static IPv6 address on the first network")
    parser.add_argument(
        "--mac-address", dest="mac", help="eth0's MAC address on the first network"
    )
    parser.add_argument(
        "--rm",
        action="store_true",
        help="accepted for Docker's sake: run always removes its namespace",
    )
    parser.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- CMD [ARG...]",
        help="the command to run inside the namespace (no shell is involved)",
    )
    parser.epilog = (
        "The namespace lives as long as the command: when it exits (or on Ctrl-C, "
        "SIGTERM or another signal, which reach the command) the namespace is "
        "disconnected and deleted, unless processes the command left behind still run "
        "there (then `hostnet gc` deletes it once they end). Exit code: the command's; "
        "126/127 if it cannot be run or found; 125 for hostnet's own errors; if signal N "
        "killed it, hostnet dies of N too, once it has cleaned up. "
        "example: hostnet run --network web -p 8080:80 -- python3 -m http.server 80"
    )


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    argv = command_argv(args.argv, "run", "--network NET [-p SPEC]... -- CMD [ARG...]")
    ctl = ctx.controller
    # Bad input fails before the namespace exists: the networks, then the port specs.
    networks = [ctl.network(name) for name in args.networks]
    alone = next((n for n in networks if n.driver in ("host", "none")), None)
    if alone is not None and len(networks) > 1:
        raise errors.InvalidOption(
            "--network",
            args.networks,
            f"{alone.name!r} ({alone.driver} networking) cannot be combined with other networks",
        )
    for spec in args.publish:
        parse_publish(spec)
    if alone is not None and args.publish:
        raise errors.InvalidOption(
            "--publish",
            args.publish,
            f"{alone.driver} networking publishes no ports"
            + (": the command binds the host's own" if alone.driver == "host" else ""),
        )
    given = {"--ip": args.ip, "--ip6": args.ip6, "--mac-address": args.mac}
    flag = next((flag for flag, value in given.items() if value is not None), None)
    if alone is not None and flag is not None:
        raise errors.InvalidOption(
            flag, given[flag], f"{alone.driver} networking gives no interface of its own"
        )
    name = args.name or f"{RUN_PREFIX}{secrets.token_hex(4)}"
    if alone is not None and alone.driver == "host":
        return _run_on_host(ctx, alone, name, argv)
    # temporary: should hostnet be killed outright, `hostnet gc` deletes the namespace
    # once the command has exited too
    try:
        ns = ctl.create_namespace(name, temporary=True)
    except errors.NamespaceExists as exc:
        raise errors.NamespaceExists(
            name, advice="run makes its namespace itself: choose another --name"
        ) from exc
    procs: list[Any] = []
    try:
        for i, network in enumerate(networks):
            if i == 0:  # (as `docker run`: the addresses and ports are the first's)
                network.connect(ns, publish=args.publish, ip=args.ip, ip6=args.ip6, mac=args.mac)
            else:
                network.connect(ns)
            check_interrupted()
        return _run_command(ctx, ns, argv, procs)
    finally:
        with deferred_signals():
            _end_children(procs)
            _remove_run_namespace(ctx, ns)


def _run_command(ctx: Context, workload: Any, argv: Sequence[str], procs: list[Any]) -> int:
    """Start ``argv`` in ``workload`` (its process goes to ``procs``, for the caller's
    clean-up) and wait for it: its exit code, or 126/127 if it could not start."""
    proc = start(ctx, workload, argv)
    if isinstance(proc, int):
        return proc
    procs.append(proc)
    return wait_child(proc)


def _end_children(procs: list[Any]) -> None:
    """Commands ``run`` started and an interrupt left unwaited for (before the wait
    began): they must not outlive their network. Our own children, ended by pid."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_on_host(ctx: Context, host: Any, name: str, argv: Sequence[str]) -> int:
    """``run --network host``: the command runs in the host's network namespace (the
    Controller's host), as ``docker run --network host`` does, as a host-network
    workload ``name`` for as long as it runs: admitted by the security policy
    (``--allow-host-network``), recorded, so ``audit`` lists it, then detached."""
    ctl = ctx.controller
    if ctl.backend.has_namespace(name):  # (its name would be taken for it)
        raise errors.NamespaceExists(
            name, advice="run names its host-network workload itself: choose another --name"
        )
    if ctl.endpoints(name):  # (someone else's: never detached by this run)
        raise errors.AlreadyConnected(name, host.name)
    procs: list[Any] = []
    made = False
    try:
        try:
            host.connect(name, temporary=True)  # (gc detaches it if we are killed)
        except BaseException as exc:
            # refused (an error): nothing made; an interrupt (Ctrl-C, SIGTERM): it may
            # have been made just before
            made = not isinstance(exc, Exception)
            raise
        made = True
        return _run_command(ctx, ctl.host_workload(name), argv, procs)
    finally:
        with deferred_signals():
            _end_children(procs)
            try:
                if made:
                    host.disconnect(name)
            except errors.EndpointNotFound:
                pass  # detached under us (`hostnet detach`), or interrupted before made
            except errors.HostnetError as exc:  # said, but the command's exit code stays
                ctx.error(f"detaching {name!r} from the host network failed: {exc}")


def _remove_run_namespace(ctx: Context, ns: Any) -> None:
    """Disconnect and delete the namespace of a finished ``run``; not while processes
    the command left behind (a daemon it started) still run there: deleting it would
    leave them cut off in a namespace nobody can name. It stays, temporary, and
    `hostnet gc` deletes it once they are gone. One already deleted (``ns rm``) is
    fine: the command's exit code is what matters."""
    try:
        left = ctx.controller.backend.processes(ns.name)
    except errors.NotFoundError:
        left = ()
    if left:
        shown = ", ".join(map(str, left[:5])) + (", ..." if len(left) > 5 else "")
        ctx.warn(
            f"the command left {len(left)} process(es) running in namespace {ns.name!r} "
            f"(pid {shown}); it stays, with its network(s), until they end: `hostnet gc` "
            "then deletes it"
        )
        return
    try:
        ns.delete()  # disconnects from the network, then deletes the namespace
    except errors.NamespaceNotFound:
        pass  # deleted under us (`hostnet ns rm`)
    except errors.HostnetError as exc:  # said, but the command's exit code stays
        ctx.error(f"removing namespace {ns.name!r} failed: {exc}; `hostnet gc` retries")


__all__ = [
    "RUN_PREFIX",
    "args_connect",
    "args_disconnect",
    "args_network_create",
    "args_network_inspect",
    "args_network_ls",
    "args_network_names",
    "args_network_rm",
    "args_run",
    "cmd_connect",
    "cmd_disconnect",
    "cmd_network_create",
    "cmd_network_inspect",
    "cmd_network_ls",
    "cmd_network_rm",
    "cmd_run",
    "describe_endpoint",
    "format_port",
    "inspect_each",
    "parse_pairs",
]
