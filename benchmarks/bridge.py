#!/usr/bin/env python3
"""Bridge endpoints: hostnet against a raw netlink floor, `ip`/`nft`, the CNI plugins and
netavark, measured in the same run.

    sudo python3 benchmarks/bridge.py -n 200,1000
    sudo python3 benchmarks/bridge.py --quick          # N=50

One endpoint is a fresh namespace (created before timing, lo up) connected to a bridge
network (a /16) with one published TCP port, ``-p PORT:80`` with a port of its own. Every
method leaves the same thing behind (checked on the warm-up endpoints and on a sample of
the measured ones): a veth in the bridge of its host namespace whose peer is eth0 in the
target namespace, up, with an address of the subnet and a default route via the gateway,
and a DNAT for the port in the host namespace's firewall. hostnet gives the two veth
ends of an IPv4-only network no IPv6 link-local address (IFLA_INET6_ADDR_GEN_MODE none),
and so do the floor and ip (checked too); CNI and netavark keep theirs (recorded).

- floor:    the netlink requests hostnet sends, from one process with no policy, store or
            observation (baselines/kernel.py): create the veth (down) with its peer in
            the target namespace (mtu, MAC, master, link group), the peer up without
            link-local, the host end's hairpin and no link-local, the host end up,
            address, default route; then ONE libnftables transaction adding the port to
            the maps of hostnet's tables (made beforehand with bridge_firewall.base_setup
            and network_setup). Its socket in the target namespace is opened by switching
            the calling thread there and back, which hostnet may not do.
- floor-rules: the floor, plus the least DESIGN.md's rules ask beside the kernel work
            (baselines/rules.py): the target's socket from a short-lived thread, the
            target observed (a link and a route dump), the plan journaled in SQLite
            before acting (with the address and the pending endpoint), progress per op,
            the result recorded after. Not a target: it tells the rules' price from
            hostnet's own.
- hostnet:  Controller(host=<throwaway namespace>, state_dir=<tempdir>), create_network(
            "bench", driver="bridge", subnet=<a /16>) once, then Network.connect(ns,
            publish=["PORT:80"]) per endpoint: validation, policy, port and address
            allocation (SQLite), observation, journaled apply.
- ip:       `ip -n HOST link add ... type veth peer ... netns NS`, `ip -n NS link set
            eth0 addrgenmode none up`, `ip -n HOST link set ... addrgenmode none type
            bridge_slave hairpin on`, `ip -n HOST link set ... up`, `ip -n NS addr add`,
            `ip -n NS route add default`, and one `nft` process (in the host namespace)
            adding both map elements in one transaction: 7 processes.
- cni:      the reference plugins (containernetworking-plugins), exec'd per the CNI spec:
            bridge (+ host-local IPAM, state in a temp dir) then portmap with the
            bridge's result as prevResult; DEL in reverse order.
- netavark: `netavark --config <tmp> setup <netns path>` with podman's network options on
            stdin (a static address: podman, not netavark, does IPAM); teardown likewise.
            netavark deletes its bridge with its last endpoint, so one warm-up endpoint
            stays connected throughout (for netavark only).

cni and netavark are installed with apt-get when missing (skipped, with the reason, if
that fails). They and `nft` run inside the method's own throwaway host namespace, never
in the machine's: started through `nsenter --net=...` (checked before use), and the
machine's nftables ruleset, iptables rules and links are compared before and after.

Per N, with all N endpoints of every method alive together:
- setup:    in rounds of --batch endpoints per method, the method order rotating every
            round, each method connects its next batch (every connect timed on its own);
- teardown: on a sample of --sample endpoints spread over the N, each method disconnects
            them one by one (interleaved the same way); then hostnet, the floor and ip
            reconnect the sample (not timed) and remove all N at once (hostnet:
            Network.disconnect_all(); floor: one RTM_DELLINK of the link group and one
            nftables transaction; ip: `ip link del group` and one `nft -f -`), while CNI
            and netavark, which have no such operation, tear the rest down one by one.

Every namespace is named hnbb<pid>-..., and all of them are removed in a ``finally``
block, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from baselines import kernel, tools
from baselines import rules as rules_floor
from baselines.kernel import (
    IFLA_LINK,
    NLM_F_CREATE,
    NLM_F_ECHO,
    NLM_F_EXCL,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    Switch,
    Wire,
    ns_path,
    random_mac,
)
from common import (
    Target,
    Timer,
    cleanup_signals,
    drift,
    ignore_signals,
    ip_netns_names,
    list_namespaces,
    machine_info,
    paired_ratio,
    ratio_table,
    rotation,
    summarize,
    sweep_namespaces,
    unique_prefix,
    versus,
    write_results,
)

GROUP = 0x48000001  # the link group of the floor's and ip's endpoints
MTU = 1500
CONTAINER_PORT = 80
FIRST_HOST_PORT = 20000
SUBNETS = {
    "floor": "10.202.0.0/16",
    "floor-rules": "10.206.0.0/16",
    "hostnet": "10.201.0.0/16",
    "ip": "10.203.0.0/16",
    "cni": "10.204.0.0/16",
    "netavark": "10.205.0.0/16",
}
ALL_METHODS = tuple(SUBNETS)

SETUP_VS_FLOOR = 1.3
FASTER_THAN = {"netavark": 7.0, "cni": 10.0}
GROWTH_LIMIT = 1.15
GROWTH_AT = 1000
BULK_LIMIT_MS = 1000.0
BULK_AT = 1000


@dataclass(slots=True)
class Ep:
    """One endpoint of one method: its namespace and port, and what the method chose."""

    serial: int
    ns: str
    port: int
    veth: str
    ip: str | None = None
    state: Any = None  # what the method needs to tear it down (CNI result, options)


class Addresses:
    """Sequential addresses of a subnet from .2 on (.1 is the gateway), for the methods
    whose caller does IPAM (floor, ip, netavark: podman allocates for netavark)."""

    def __init__(self, subnet: str) -> None:
        self.net = ipaddress.ip_network(subnet)
        self.gateway = str(self.net.network_address + 1)
        self.broadcast = str(self.net.broadcast_address)
        self._next = int(self.net.network_address) + 2

    def take(self) -> str:
        ip = str(ipaddress.ip_address(self._next))
        self._next += 1
        return ip


# -- the five methods ------------------------------------------------------------------


class Method:
    key: ClassVar[str]
    label: ClassVar[str]
    bulk: ClassVar[bool] = False  # can remove all its endpoints in one operation
    keeper: ClassVar[bool] = False  # needs one endpoint kept to keep its bridge
    hairpin: ClassVar[bool] = True
    # the endpoint's two veth ends have no IPv6 link-local address (as hostnet's on an
    # IPv4-only network); None: not required, only recorded (CNI, netavark)
    no_linklocal: ClassVar[bool | None] = True

    def __init__(self, host: str) -> None:
        self.host = host
        self.subnet = SUBNETS[self.key]
        self.addresses = Addresses(self.subnet)
        self.bridge = f"br-{self.key}"
        self.version: str | None = None

    def connect(self, ep: Ep) -> None:
        raise NotImplementedError

    def disconnect(self, ep: Ep) -> None:
        raise NotImplementedError

    def disconnect_all(self, eps: Sequence[Ep]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Floor(Method):
    key = "floor"
    label = "raw netlink + libnftables (floor)"
    bulk = True

    def __init__(self, host: str) -> None:
        super().__init__(host)
        from hostnet.backends.netlink.nft import NftContext

        net = ipaddress.ip_network(self.subnet)
        self.bridge_index = kernel.build_bridge_host(
            host,
            bridge=self.bridge,
            gateway=self.addresses.gateway,
            prefixlen=net.prefixlen,
            subnet=self.subnet,
            network_id="f" * 64,
        )
        fd = kernel.open_ns(host)
        try:
            self.wire = Wire(kernel.in_thread(fd, kernel.route_socket))
            self.nft = kernel.in_thread(fd, NftContext)
        finally:
            os.close(fd)
        self.switch = Switch()
        self.prefixlen = net.prefixlen
        self.no_ll, self.hairpin = kernel.no_linklocal(), kernel.hairpin()

    def _target_socket(self, fd: int) -> Any:
        with self.switch.inside(fd):
            return kernel.route_socket()

    # what the rules floor adds (FloorRules); nothing here
    def _begin(self, ep: Ep, ip: str, target: Any) -> None:
        pass

    def _progress(self, done: int) -> None:
        pass

    def _end(self, ep: Ep) -> None:
        pass

    def connect(self, ep: Ep) -> None:
        ip = self.addresses.take()
        fd = kernel.open_ns(ep.ns)
        try:
            target = Wire(self._target_socket(fd))
            try:
                self._begin(ep, ip, target.sock)
                echo = self.wire.request(
                    kernel.veth_msg(
                        name=ep.veth,
                        peer="eth0",
                        peer_ns_fd=fd,
                        peer_mac=random_mac(),
                        mtu=MTU,
                        master=self.bridge_index,
                        group=GROUP,
                        up=False,
                    ),
                    RTM_NEWLINK,
                    NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
                )
                peer = kernel.link_attr_u32(echo or b"", IFLA_LINK)
                if echo is None or peer is None:
                    raise RuntimeError("the kernel did not echo the new veth")
                index = struct.unpack_from("=i", echo, 20)[0]
                # hostnet's order: the peer up first (no carrier yet), then the host
                # end's settings, then the host end up; no IPv6 link-local on either
                target.request(kernel.setlink_msg(peer, [self.no_ll], up=True), RTM_NEWLINK)
                self.wire.request(
                    kernel.setlink_msg(index, [self.hairpin, self.no_ll]), RTM_NEWLINK
                )
                self.wire.request(kernel.setlink_msg(index, [], up=True), RTM_NEWLINK)
                self._progress(1)
                target.request(
                    kernel.addr_msg(peer, ip, self.prefixlen, self.addresses.broadcast),
                    RTM_NEWADDR,
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                self._progress(2)
                target.request(
                    kernel.default_route_msg(peer, self.addresses.gateway),
                    RTM_NEWROUTE,
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                self._progress(3)
                self.nft.run(kernel.port_batch("add", [(ep.port, ip, CONTAINER_PORT)]))
                self._end(ep)
            finally:
                target.close()
        finally:
            os.close(fd)
        ep.ip = ip

    def disconnect(self, ep: Ep) -> None:
        self.wire.request(kernel.dellink_msg(name=ep.veth), RTM_DELLINK)
        assert ep.ip is not None
        self.nft.run(kernel.port_batch("delete", [(ep.port, ep.ip, CONTAINER_PORT)]))

    def disconnect_all(self, eps: Sequence[Ep]) -> None:
        self.wire.request(kernel.dellink_msg(group=GROUP), RTM_DELLINK)
        entries = [(ep.port, ep.ip or "", CONTAINER_PORT) for ep in eps]
        self.nft.run(kernel.port_batch("delete", entries))

    def close(self) -> None:
        self.wire.close()
        self.nft.close()
        self.switch.close()


class FloorRules(Floor):
    """The floor plus the least that DESIGN.md's rules ask beside the kernel work
    (baselines/rules.py): the target's socket from a short-lived thread, the target
    observed, the plan journaled before acting, progress per op, the result recorded.
    Not a target of the issue: it tells the price of the rules from hostnet's own."""

    key = "floor-rules"
    label = "floor + thread + journal (rules)"

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.state_dir = tempfile.mkdtemp(prefix="hnbb-rules-")
        self.journal = rules_floor.Journal(self.state_dir)
        self.job = ""

    def _target_socket(self, fd: int) -> Any:
        from hostnet.backends.netlink.channel import open_route_socket
        from hostnet.backends.netlink.nsenter import run_in

        return run_in(fd, open_route_socket)

    def _plan(self, ep: Ep, ip: str) -> list[dict[str, object]]:
        return [
            {"op": "AddLink", "ns": self.host, "kind": "veth", "name": ep.veth, "peer_ns": ep.ns},
            {"op": "AddAddress", "ns": ep.ns, "ifname": "eth0", "address": ip},
            {"op": "AddRoute", "ns": ep.ns, "dst": "0.0.0.0/0", "gateway": self.addresses.gateway},
            {"op": "NftBatch", "ns": self.host, "add": [[ep.port, ip, CONTAINER_PORT]]},
        ]

    def _begin(self, ep: Ep, ip: str, target: Any) -> None:
        rules_floor.observe(target)
        self.job = self.journal.begin(ep.ns, ip, self._plan(ep, ip))

    def _progress(self, done: int) -> None:
        self.journal.progress(self.job, done)

    def _end(self, ep: Ep) -> None:
        self.journal.finish(self.job, ep.ns)

    def disconnect(self, ep: Ep) -> None:
        plan = [{"op": "DelLink", "ns": self.host, "ifname": ep.veth}]
        job = self.journal.begin_teardown(ep.ns, plan)
        super().disconnect(ep)
        self.journal.forget(job, ep.ns)

    def disconnect_all(self, eps: Sequence[Ep]) -> None:
        job = self.journal.begin_teardown("all", [{"op": "DelLinkGroup", "group": GROUP}])
        super().disconnect_all(eps)
        self.journal.forget_all(job)

    def close(self) -> None:
        super().close()
        self.journal.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class Hostnet(Method):
    key = "hostnet"
    label = "hostnet Network API"
    bulk = True

    def __init__(self, host: str) -> None:
        super().__init__(host)
        import hostnet

        self.state_dir = tempfile.mkdtemp(prefix="hnbb-state-")
        self.version = hostnet.__version__
        with Timer() as t:
            # forwarding=True: endpoints can reach out, as with CNI and netavark, which
            # turn it on too (a sysctl at network creation, not per endpoint)
            self.ctl = hostnet.Controller(
                host=host, state_dir=self.state_dir, backend="netlink", forwarding=True
            )
            self.net = self.ctl.create_network("bench", driver="bridge", subnet=self.subnet)
        self.open_ms = t.ms
        self.bridge = self.net.data["bridge"]

    def connect(self, ep: Ep) -> None:
        endpoint = self.net.connect(ep.ns, publish=[f"{ep.port}:{CONTAINER_PORT}"])
        ep.ip = endpoint.ip

    def disconnect(self, ep: Ep) -> None:
        self.net.disconnect(ep.ns)

    def disconnect_all(self, eps: Sequence[Ep]) -> None:
        count = self.net.disconnect_all()
        if count != len(eps):
            raise RuntimeError(f"disconnect_all removed {count} endpoints, not {len(eps)}")

    def close(self) -> None:
        self.ctl.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class IpNft(Method):
    key = "ip"
    label = "ip + nft subprocesses"
    bulk = True

    def __init__(self, host: str) -> None:
        super().__init__(host)
        ip, nft = shutil.which("ip"), shutil.which("nft")
        if ip is None or nft is None:
            raise tools.ToolError("`ip` (iproute2) and `nft` (nftables) are needed")
        self.ip, self.nft = ip, nft
        self.version = (
            f"{tools.tool_version([ip, '-V'])}; {tools.tool_version([nft, '--version'])}"
        )
        net = ipaddress.ip_network(self.subnet)
        kernel.build_bridge_host(
            host,
            bridge=self.bridge,
            gateway=self.addresses.gateway,
            prefixlen=net.prefixlen,
            subnet=self.subnet,
            network_id="e" * 64,
        )
        self.prefixlen = net.prefixlen
        self.exec = tools.HostExec(host)
        self.exec.verify()

    def _ip(self, *argv: str) -> None:
        done = subprocess.run(
            [self.ip, *argv], stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise tools.ToolError(f"ip {' '.join(argv)}: {done.stderr.decode().strip()}")

    @staticmethod
    def _elements(verb: str, eps: Sequence[tuple[int, str]]) -> str:
        lines = []
        for port, ip in eps:
            lines.append(f"{verb} element inet hostnet any4_addr {{ tcp . {port} : {ip} }}")
            lines.append(
                f"{verb} element inet hostnet any4_port {{ tcp . {port} : {CONTAINER_PORT} }}"
            )
        return "\n".join(lines) + "\n"

    def connect(self, ep: Ep) -> None:
        ip = self.addresses.take()
        self._ip(
            "-n", self.host, "link", "add", ep.veth, "mtu", str(MTU), "group", str(GROUP),
            "master", self.bridge, "type", "veth", "peer", "name", "eth0",
            "mtu", str(MTU), "address", random_mac(), "netns", ep.ns,
        )  # fmt: skip
        # hostnet's order, so that neither end gets an IPv6 link-local address
        self._ip("-n", ep.ns, "link", "set", "eth0", "addrgenmode", "none", "up")
        self._ip(
            "-n", self.host, "link", "set", ep.veth, "addrgenmode", "none",
            "type", "bridge_slave", "hairpin", "on",
        )  # fmt: skip
        self._ip("-n", self.host, "link", "set", ep.veth, "up")
        self._ip("-n", ep.ns, "addr", "add", f"{ip}/{self.prefixlen}", "brd", "+", "dev", "eth0")
        self._ip(
            "-n", ep.ns, "route", "add", "default", "via", self.addresses.gateway,
            "dev", "eth0", "proto", "static",
        )  # fmt: skip
        # One nft process, one transaction: "a; b" is one batch.
        self.exec.run([self.nft, self._elements("add", [(ep.port, ip)]).replace("\n", "; ")])
        ep.ip = ip

    def disconnect(self, ep: Ep) -> None:
        assert ep.ip is not None
        self._ip("-n", self.host, "link", "del", ep.veth)
        self.exec.run([self.nft, self._elements("delete", [(ep.port, ep.ip)]).replace("\n", "; ")])

    def disconnect_all(self, eps: Sequence[Ep]) -> None:
        self._ip("-n", self.host, "link", "del", "group", str(GROUP))
        script = self._elements("delete", [(ep.port, ep.ip or "") for ep in eps])
        self.exec.run([self.nft, "-f", "-"], stdin=script.encode())


class Cni(Method):
    key = "cni"
    label = "CNI bridge + host-local + portmap"
    hairpin = True
    no_linklocal = None

    def __init__(self, host: str) -> None:
        super().__init__(host)
        directory = tools.cni_dir()
        if directory is None:
            raise tools.ToolError("the CNI plugins bridge, host-local and portmap are missing")
        self.cni_path = directory
        self.bridge_bin = os.path.join(directory, "bridge")
        self.portmap_bin = os.path.join(directory, "portmap")
        self.version = tools.package_version("containernetworking-plugins")
        self.tmp = tempfile.mkdtemp(prefix="hnbb-cni-")
        self.bridge = "cni-bench0"
        self.config = tools.cni_bridge_config(
            bridge=self.bridge, subnet=self.subnet, data_dir=os.path.join(self.tmp, "ipam")
        )
        self.exec = tools.HostExec(host)
        self.exec.verify()

    def _env(self, command: str, ep: Ep) -> dict[str, str]:
        return tools.cni_env(
            command,
            container_id=f"hnbb{os.getpid():x}c{ep.serial:08d}",
            netns=ns_path(ep.ns),
            cni_path=self.cni_path,
        )

    def connect(self, ep: Ep) -> None:
        env = self._env("ADD", ep)
        out = self.exec.run([self.bridge_bin], stdin=json.dumps(self.config).encode(), env=env)
        prev = json.loads(out)
        portmap = tools.cni_portmap_config(ep.port, CONTAINER_PORT, prev)
        result = json.loads(
            self.exec.run([self.portmap_bin], stdin=json.dumps(portmap).encode(), env=env)
        )
        ep.ip = result["ips"][0]["address"].split("/")[0]
        ep.state = result

    def disconnect(self, ep: Ep) -> None:
        # DEL in reverse order, each with the chain's last ADD result (CNI spec 1.0).
        env = self._env("DEL", ep)
        portmap = tools.cni_portmap_config(ep.port, CONTAINER_PORT, ep.state)
        self.exec.run([self.portmap_bin], stdin=json.dumps(portmap).encode(), env=env)
        config = {**self.config, "prevResult": ep.state}
        self.exec.run([self.bridge_bin], stdin=json.dumps(config).encode(), env=env)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class Netavark(Method):
    key = "netavark"
    label = "netavark setup/teardown"
    keeper = True
    hairpin = False  # netavark's bridge driver leaves hairpin off
    no_linklocal = None

    def __init__(self, host: str) -> None:
        super().__init__(host)
        binary = tools.netavark_path()
        if binary is None:
            raise tools.ToolError("netavark is not installed")
        self.binary = binary
        self.version = tools.tool_version([binary, "--version"])
        self.config_dir = tempfile.mkdtemp(prefix="hnbb-netavark-")
        self.bridge = "nv-bench0"
        self.exec = tools.HostExec(host)
        self.exec.verify()

    def connect(self, ep: Ep) -> None:
        ip = self.addresses.take()
        options = tools.netavark_options(
            container_id=f"{os.getpid():x}{ep.serial:056x}"[-64:].rjust(64, "0"),
            name=f"hnbb-{ep.serial}",
            ip=ip,
            host_port=ep.port,
            container_port=CONTAINER_PORT,
            bridge=self.bridge,
            subnet=self.subnet,
            gateway=self.addresses.gateway,
            network_id="b" * 64,
        )
        stdin = json.dumps(options).encode()
        self.exec.run(
            [self.binary, "--config", self.config_dir, "setup", ns_path(ep.ns)], stdin=stdin
        )
        ep.ip = ip
        ep.state = stdin

    def disconnect(self, ep: Ep) -> None:
        argv = [self.binary, "--config", self.config_dir, "teardown", ns_path(ep.ns)]
        self.exec.run(argv, stdin=ep.state)

    def close(self) -> None:
        shutil.rmtree(self.config_dir, ignore_errors=True)


CLASSES: dict[str, type[Method]] = {
    "floor": Floor,
    "floor-rules": FloorRules,
    "hostnet": Hostnet,
    "ip": IpNft,
    "cni": Cni,
    "netavark": Netavark,
}
CODES = {"floor": "f", "floor-rules": "r", "hostnet": "h", "ip": "i", "cni": "c", "netavark": "v"}


# -- checking what a method left behind (never timed) ----------------------------------


def _ip_json(*argv: str) -> Any:
    out = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=False)
    return json.loads(out.stdout or "[]")


def _host_ruleset(method: Method) -> str:
    return tools.HostExec(method.host).run(["nft", "list", "ruleset"]).decode()


def verify(method: Method, ep: Ep) -> dict[str, Any]:
    """What ``method`` left behind for ``ep``; raises RuntimeError when it is not a
    bridge endpoint with a published port (see the module docstring)."""
    problems = []
    links = _ip_json("-n", ep.ns, "addr", "show", "dev", "eth0")
    if not links:
        raise RuntimeError(f"{method.label}: no eth0 in {ep.ns}")
    eth0 = links[0]
    if "UP" not in eth0.get("flags", []):
        problems.append("eth0 is not up")
    addresses = [a["local"] for a in eth0.get("addr_info", []) if a.get("family") == "inet"]
    subnet = ipaddress.ip_network(method.subnet)
    if not any(ipaddress.ip_address(a) in subnet for a in addresses) or ep.ip not in addresses:
        problems.append(f"eth0 has {addresses}, expected {ep.ip} in {subnet}")
    routes = _ip_json("-n", ep.ns, "route", "show", "default")
    if not any(r.get("gateway") == method.addresses.gateway for r in routes):
        problems.append(f"no default route via {method.addresses.gateway}: {routes}")
    host_links = _ip_json("-n", method.host, "-d", "link", "show")
    port = next((lk for lk in host_links if lk.get("ifindex") == eth0.get("link_index")), None)
    hairpin = False
    if port is None or port.get("master") != method.bridge:
        problems.append(f"the host end of eth0 is not a port of {method.bridge}")
    else:
        slave = port.get("linkinfo", {}).get("info_slave_data", {})
        hairpin = bool(slave.get("hairpin"))
        if method.hairpin and not hairpin:
            problems.append("hairpin is off")
    linklocal = [_linklocal(eth0)]
    if port is not None:
        host_end = _ip_json("-n", method.host, "addr", "show", "dev", port["ifname"])
        linklocal.append(_linklocal(host_end[0]) if host_end else [])
    has_linklocal = any(linklocal)
    if method.no_linklocal and has_linklocal:
        problems.append(f"IPv6 link-local addresses (eth0, host end): {linklocal}")
    bridge = next((lk for lk in host_links if lk.get("ifname") == method.bridge), {})
    snooping = bridge.get("linkinfo", {}).get("info_data", {}).get("mcast_snooping")
    ruleset = _host_ruleset(method)
    if not re.search(rf"\b{ep.port}\b", ruleset) or (ep.ip and ep.ip not in ruleset):
        problems.append(f"no DNAT of port {ep.port} to {ep.ip} in the host's ruleset")
    if problems:
        raise RuntimeError(f"{method.label}, endpoint {ep.ns}: " + "; ".join(problems))
    return {
        "hairpin": hairpin,
        "host_veth": port.get("ifname") if port else None,
        "ipv6_linklocal": has_linklocal,
        "mcast_snooping": snooping,  # hostnet, floor, ip: 0; CNI, netavark: the kernel's 1
    }


def _linklocal(link: dict[str, Any]) -> list[str]:
    """The IPv6 link-local addresses of one link of ``ip -j addr show``."""
    return [
        a["local"]
        for a in link.get("addr_info", [])
        if a.get("family") == "inet6" and a.get("scope") == "link"
    ]


def verify_gone(method: Method, ep: Ep) -> None:
    problems = []
    if _ip_json("-n", ep.ns, "link", "show", "dev", "eth0"):
        problems.append(f"eth0 still exists in {ep.ns}")
    if re.search(rf"\b{ep.port}\b", _host_ruleset(method)):
        problems.append(f"port {ep.port} is still in the host's ruleset")
    if problems:
        raise RuntimeError(f"{method.label} after disconnect: " + "; ".join(problems))


# -- measuring -------------------------------------------------------------------------


@dataclass
class Samples:
    """Every timing of one method at one N, in the order taken (ms)."""

    setup: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)  # the sample, N alive
    teardown_rest: list[float] = field(default_factory=list)  # one by one, afterwards
    bulk_ms: float | None = None
    failed: str | None = None


class Size:
    """One N: a world per method (its own throwaway host namespace), N endpoints each."""

    def __init__(self, n: int, keys: Sequence[str], args: argparse.Namespace, prefix: str):
        self.n = n
        self.args = args
        self.prefix = f"{prefix}{n}-"
        self.keys = list(keys)
        self.methods: dict[str, Method] = {}
        self.eps: dict[str, list[Ep]] = {}
        self.warm: dict[str, list[Ep]] = {}
        self.keepers: dict[str, Ep] = {}
        self.samples: dict[str, Samples] = {k: Samples() for k in keys}
        self.skipped: dict[str, str] = {}
        self.facts: dict[str, Any] = {}
        self.started = time.monotonic()

    def log(self, text: str) -> None:
        print(f"  [{time.monotonic() - self.started:7.1f} s] {text}", flush=True)

    def fail(self, key: str, exc: BaseException) -> None:
        self.samples[key].failed = f"{type(exc).__name__}: {exc}"
        print(f"  {key} FAILED, dropped from this N: {exc}", file=sys.stderr, flush=True)

    def active(self) -> list[str]:
        return [k for k in self.keys if k in self.methods and not self.samples[k].failed]

    # -- building the worlds (not timed)

    def build(self) -> None:
        serial = 0
        for key in self.keys:
            code = CODES[key]
            host = f"{self.prefix}{code}-host"
            kernel.make_namespace(host)
            try:
                self.methods[key] = CLASSES[key](host)
            except (tools.ToolError, OSError, RuntimeError) as exc:
                self.skipped[key] = str(exc)
                print(f"  {key} skipped: {exc}", file=sys.stderr)
                continue
            made = []
            for i in range(self.args.warmup + self.n):
                serial += 1
                name = f"{self.prefix}{code}{i}"
                kernel.make_namespace(name)
                made.append(
                    Ep(serial=serial, ns=name, port=FIRST_HOST_PORT + i, veth=f"hb{code}{i}")
                )
            self.warm[key], self.eps[key] = made[: self.args.warmup], made[self.args.warmup :]
        self.log(
            f"{len(list_namespaces(self.prefix))} namespaces ready for {', '.join(self.methods)}"
        )

    def warm_up(self) -> None:
        """Exercise every method and check what it leaves behind, and what it removes."""
        for key in self.active():
            method = self.methods[key]
            try:
                for ep in self.warm[key]:
                    method.connect(ep)
                    self.facts.setdefault(key, verify(method, ep))
                keep = self.warm[key][0] if method.keeper else None
                for ep in self.warm[key]:
                    if ep is keep:
                        continue
                    method.disconnect(ep)
                    verify_gone(method, ep)
                if keep is not None:
                    self.keepers[key] = keep
            except Exception as exc:
                self.fail(key, exc)
        self.log("warm-up done: every method made and removed a checked endpoint")

    def spawn_cost(self, count: int = 20) -> dict[str, float] | None:
        """Starting one program in a host namespace as the tools are started here:
        `nsenter --net=... -- /bin/true` (what each of their processes costs at least)."""
        key = next((k for k in ("ip", "cni", "netavark") if k in self.active()), None)
        if key is None:
            return None
        runner = tools.HostExec(self.methods[key].host)
        times = []
        for _ in range(count):
            with Timer() as t:
                runner.run(["/bin/true"])
            times.append(t.ms)
        return summarize(times)

    # -- the timed phases

    def _rounds(
        self,
        what: str,
        keys: Sequence[str],
        work: dict[str, list[Ep]],
        op: Callable[[Method, Ep], None],
        out: Callable[[Samples], list[float]],
    ) -> None:
        batch = self.args.batch
        total = max((len(work[k]) for k in keys), default=0)
        rounds = math.ceil(total / batch)
        for r in range(rounds):
            gc.collect()  # outside the timings, so no method pays for another's garbage
            for key in rotation(list(keys), r):
                if self.samples[key].failed:
                    continue
                method = self.methods[key]
                try:
                    for ep in work[key][r * batch : (r + 1) * batch]:
                        with Timer() as t:
                            op(method, ep)
                        out(self.samples[key]).append(t.ms)
                except Exception as exc:
                    self.fail(key, exc)
            if (r + 1) % max(1, rounds // 5) == 0 or r + 1 == rounds:
                self.log(f"{what}: round {r + 1}/{rounds}")

    def setup(self) -> None:
        keys = self.active()
        self._rounds("setup", keys, self.eps, lambda m, ep: m.connect(ep), lambda s: s.setup)
        for key in self.active():  # a few measured endpoints, checked (not timed)
            picks = {0, self.n // 2, self.n - 1}
            try:
                for i in sorted(picks):
                    verify(self.methods[key], self.eps[key][i])
            except Exception as exc:
                self.fail(key, exc)

    def sample_indices(self) -> list[int]:
        k = min(self.args.sample, self.n)
        if k <= 1:
            return [0]
        return sorted({round(j * (self.n - 1) / (k - 1)) for j in range(k)})

    def teardown(self) -> None:
        picks = self.sample_indices()
        sample = {k: [self.eps[k][i] for i in picks] for k in self.keys if k in self.eps}
        self._rounds(
            "teardown sample",
            self.active(),
            sample,
            lambda m, ep: m.disconnect(ep),
            lambda s: s.teardown,
        )
        bulk = [k for k in self.active() if self.methods[k].bulk]
        for key in bulk:  # back to N endpoints (not timed)
            try:
                for ep in sample[key]:
                    self.methods[key].connect(ep)
            except Exception as exc:
                self.fail(key, exc)
        for key in rotation(bulk, self.n):
            if self.samples[key].failed:
                continue
            gc.collect()
            try:
                with Timer() as t:
                    self.methods[key].disconnect_all(self.eps[key])
                self.samples[key].bulk_ms = t.ms
            except Exception as exc:
                self.fail(key, exc)
        self.log("bulk teardown: " + ", ".join(f"{k} {self.samples[k].bulk_ms}" for k in bulk))
        chosen = set(picks)
        rest = {
            k: [ep for i, ep in enumerate(self.eps[k]) if i not in chosen]
            for k in self.active()
            if not self.methods[k].bulk
        }
        self._rounds(
            "teardown one by one",
            list(rest),
            rest,
            lambda m, ep: m.disconnect(ep),
            lambda s: s.teardown_rest,
        )

    def close(self) -> None:
        """Remove keepers, close every method, remove every namespace of this N."""
        for key, ep in self.keepers.items():
            try:
                self.methods[key].disconnect(ep)
            except Exception as exc:
                print(f"  removing {key}'s keeper endpoint: {exc}", file=sys.stderr)
        for key, method in self.methods.items():
            try:
                method.close()
            except Exception as exc:
                print(f"  closing {key}: {exc}", file=sys.stderr)
        self.methods.clear()
        failed = sweep_namespaces(self.prefix)
        if failed:
            print(f"  could not remove {failed}", file=sys.stderr)


# -- reporting -------------------------------------------------------------------------

METRICS = ("setup", "teardown")
BULK_HOW = {
    "floor": "one RTM_DELLINK of the link group + one nft transaction",
    "floor-rules": "the floor's, journaled",
    "hostnet": "Network.disconnect_all()",
    "ip": "`ip link del group` + one `nft -f -`",
}


def analyse(size: Size) -> dict[str, Any]:
    """Per method: summaries, ratios to the floor (overall and paired by round), growth,
    the cost of removing all N, and the raw samples."""
    out: dict[str, Any] = {}
    floor = size.samples.get("floor", Samples())
    for key, s in size.samples.items():
        if key in size.skipped:
            continue
        method_label = CLASSES[key].label
        data: dict[str, Any] = {
            "label": method_label,
            "failed": s.failed,
            "setup": summarize(s.setup),
            "teardown": summarize(s.teardown),
            "growth_first_vs_last_10pct": {"setup": drift(s.setup)},
            "samples_ms": {
                "setup": s.setup,
                "teardown": s.teardown,
                "teardown_rest": s.teardown_rest,
            },
        }
        if s.bulk_ms is not None:
            data["teardown_all"] = {"how": BULK_HOW[key], "ms": s.bulk_ms, "n": size.n}
        elif s.teardown_rest or s.teardown:
            done = len(s.teardown) + len(s.teardown_rest)
            data["teardown_all"] = {
                "how": "one by one",
                "ms": sum(s.teardown) + sum(s.teardown_rest),
                "n": done,
            }
        base = {m: summarize(getattr(floor, m))["median"] for m in METRICS}
        data["ratio_to_floor"] = {
            m: data[m]["median"] / base[m] if base[m] else math.nan for m in METRICS
        }
        data["ratio_to_floor_paired_by_round"] = {
            m: paired_ratio(getattr(s, m), getattr(floor, m), size.args.batch) for m in METRICS
        }
        # what a method adds to the floor's kernel work, in ms: a target stated as an
        # absolute overhead reads it here (docs/performance.md, "Why 1.3x")
        data["overhead_over_floor_ms"] = {
            m: data[m]["median"] - base[m] if base[m] else math.nan for m in METRICS
        }
        out[key] = data
    rules = size.samples.get("floor-rules")
    if "hostnet" in out and "floor-rules" in out and rules is not None:
        # how far hostnet is from the least that DESIGN.md's rules allow (informational)
        mine = size.samples["hostnet"]
        out["hostnet"]["versus_floor_rules"] = {
            m: versus(getattr(mine, m), getattr(rules, m), size.args.batch) for m in METRICS
        }
    return out


def size_targets(n: int, stats: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    hn = stats.get("hostnet")
    if hn is None or not hn["setup"]["n"]:
        return found
    mine = hn["setup"]["median"]
    floor = stats.get("floor")
    if floor is not None and floor["setup"]["n"]:
        ratio = mine / floor["setup"]["median"]
        found.append(
            Target(
                name=f"[N={n}] hostnet setup <= {SETUP_VS_FLOOR}x floor (medians)",
                passed=ratio <= SETUP_VS_FLOOR,
                detail=f"{mine:.2f} vs {floor['setup']['median']:.2f} ms = {ratio:.2f}x "
                f"(paired by round {hn['ratio_to_floor_paired_by_round']['setup']:.2f}x; "
                f"{hn['overhead_over_floor_ms']['setup']:+.2f} ms over the floor's median)",
            )
        )
    for other, factor in FASTER_THAN.items():
        theirs = stats.get(other)
        if theirs is None or not theirs["setup"]["n"]:
            continue
        speedup = theirs["setup"]["median"] / mine
        found.append(
            Target(
                name=f"[N={n}] hostnet setup >= {factor:.0f}x faster than {other} (medians)",
                passed=speedup >= factor,
                detail=f"{theirs['setup']['median']:.1f} vs {mine:.2f} ms = {speedup:.1f}x",
            )
        )
    if n >= GROWTH_AT:
        growth = hn["growth_first_vs_last_10pct"]["setup"]
        found.append(
            Target(
                name=f"[N={n}] hostnet setup, last 10% / first 10% <= {GROWTH_LIMIT}",
                passed=growth["ratio"] <= GROWTH_LIMIT,
                detail=f"{growth['first']:.2f} -> {growth['last']:.2f} ms = "
                f"{growth['ratio']:.2f}x",
            )
        )
    bulk = hn.get("teardown_all")
    if n >= BULK_AT and bulk is not None and bulk["how"] == BULK_HOW["hostnet"]:
        found.append(
            Target(
                name=f"[N={n}] hostnet disconnect_all of {n} <= {BULK_LIMIT_MS / 1000:.0f} s",
                passed=bulk["ms"] <= BULK_LIMIT_MS,
                detail=f"{bulk['ms']:.0f} ms ({bulk['ms'] / n:.3f} ms per endpoint)",
            )
        )
    return found


def print_size(size: Size, stats: dict[str, Any], markdown: bool) -> None:
    shown = {k: v for k, v in stats.items() if v["setup"]["n"] and v["teardown"]["n"]}
    labels = {key: data["label"] for key, data in shown.items()}
    if "floor" in shown:
        print(ratio_table(shown, baseline="floor", metrics=METRICS, labels=labels))
        if markdown:
            print()
            print(
                ratio_table(shown, baseline="floor", metrics=METRICS, labels=labels, markdown=True)
            )
    for data in stats.values():
        if data["failed"]:
            print(f"  {data['label']}: FAILED ({data['failed']})")
    print(
        "\nratio to the floor by round (median of per-round ratios), and in brackets the"
        " median minus the floor's median:"
    )
    for data in shown.values():
        paired, extra = data["ratio_to_floor_paired_by_round"], data["overhead_over_floor_ms"]
        print(
            f"  {data['label']:<36} setup {paired['setup']:.2f}x ({extra['setup']:+.2f} ms)"
            f"   teardown {paired['teardown']:.2f}x ({extra['teardown']:+.2f} ms)"
        )
    rules = stats.get("hostnet", {}).get("versus_floor_rules")
    if rules is not None:
        c = rules["setup"]
        print(
            "\nhostnet against the rules floor (thread, observation, journal; not a target):"
            f" setup {c['ratio']:.2f}x (paired {c['paired']:.2f}x, {c['overhead']:+.2f} ms)"
        )
    print("\nsetup growth, median of the first 10% -> the last 10% of the endpoints:")
    for data in stats.values():
        g = data["growth_first_vs_last_10pct"]["setup"]
        if data["setup"]["n"]:
            print(
                f"  {data['label']:<36} {g['first']:8.2f} -> {g['last']:8.2f} ms "
                f"({g['ratio']:.2f}x)"
            )
    if "hostnet" in shown:
        mine = shown["hostnet"]["setup"]["median"]
        print("\nhostnet setup is faster than (median / hostnet median):")
        for key, data in shown.items():
            if key != "hostnet":
                print(f"  {data['label']:<36} {data['setup']['median'] / mine:6.2f}x")
    print(f"\nteardown of all {size.n} endpoints:")
    for data in stats.values():
        bulk = data.get("teardown_all")
        if bulk:
            per = bulk["ms"] / max(1, bulk["n"])
            print(
                f"  {data['label']:<36} {bulk['ms']:9.1f} ms  ({per:.3f} ms per endpoint; "
                f"{bulk['how']})"
            )
    spawn = size.facts.get("spawn")
    if spawn:
        print(
            f"\nstarting one program in a host namespace (nsenter + /bin/true): "
            f"median {spawn['median']:.2f} ms, p95 {spawn['p95']:.2f} ms"
        )
    no_hairpin = [
        k for k, f in size.facts.items() if isinstance(f, dict) and f.get("hairpin") is False
    ]
    if no_hairpin:
        print(f"hairpin left off by: {', '.join(no_hairpin)} (their default)")
    with_linklocal = [
        k for k, f in size.facts.items() if isinstance(f, dict) and f.get("ipv6_linklocal")
    ]
    if with_linklocal:
        print(f"IPv6 link-local addresses on the veth ends of: {', '.join(with_linklocal)}")
    snooping = [
        k for k, f in size.facts.items() if isinstance(f, dict) and f.get("mcast_snooping")
    ]
    if snooping:
        print(f"multicast snooping on the bridge of: {', '.join(snooping)} (their default)")


def _sizes(values: Sequence[str]) -> list[int]:
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                n = int(part)
                if n < 10:
                    raise argparse.ArgumentTypeError("N must be at least 10")
                out.append(n)
    return out


def _methods(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = set(chosen) - set(ALL_METHODS)
    if unknown:
        raise argparse.ArgumentTypeError(f"methods are {', '.join(ALL_METHODS)}")
    # the floor is every ratio's baseline; the order is fixed
    return [m for m in ALL_METHODS if m in chosen or m == "floor"]


def run_sizes(
    sizes: Sequence[int], keys: Sequence[str], args: argparse.Namespace, prefix: str
) -> tuple[dict[int, dict[str, Any]], dict[str, str], list[str]]:
    """Every N in turn, whatever happens removing every namespace named ``prefix*``.
    Returns per N the analysed results, the methods skipped (and why) and the names
    `ip netns list` still shows afterwards (none, unless the cleanup failed)."""
    results: dict[int, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    current: Size | None = None
    baseline_netns = kernel.net_namespace_objects()
    try:
        with cleanup_signals():
            for n in sizes:
                print(
                    f"\n== N={n}: {', '.join(keys)}; batch {args.batch}, "
                    f"teardown sample {min(args.sample, n)} ==",
                    flush=True,
                )
                current = Size(n, keys, args, prefix)
                current.build()
                skipped.update(current.skipped)
                current.warm_up()
                current.facts["spawn"] = current.spawn_cost()
                current.setup()
                current.teardown()
                hn = current.methods.get("hostnet")
                open_ms = hn.open_ms if isinstance(hn, Hostnet) else None
                versions = {k: m.version for k, m in current.methods.items()}
                current.close()
                waited = kernel.wait_for_cleanup(baseline_netns)
                current.log(f"namespaces removed; waited {waited:.1f} s for the kernel")
                stats = analyse(current)
                results[n] = {
                    "n": n,
                    "stats": stats,
                    "facts": current.facts,
                    "versions": versions,
                    "hostnet_controller_and_network_ms": open_ms,
                    "waited_for_netns_cleanup_s": round(waited, 1),
                    "size": current,
                }
                current = None
    finally:
        with ignore_signals():
            if current is not None:
                current.close()
            for thread in threading.enumerate():
                if thread is not threading.current_thread():
                    thread.join(timeout=5)
            sweep_namespaces(prefix)
            leftovers = [n for n in ip_netns_names() if n.startswith(prefix)]
            if leftovers:
                print(f"LEFT BEHIND: {leftovers}", file=sys.stderr)
            else:
                print(f"\ncleanup: `ip netns list` shows no {prefix}* namespace")
    return results, skipped, leftovers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "-n", action="append", default=[], help="endpoints per method (repeatable, or 200,1000)"
    )
    parser.add_argument("--quick", action="store_true", help="N=50, 3 warm-up endpoints")
    parser.add_argument("--batch", type=int, default=10, help="endpoints per turn (10)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed, per method (5)")
    parser.add_argument("--sample", type=int, default=50, help="disconnects timed one by one")
    parser.add_argument("--methods", type=_methods, default=list(ALL_METHODS))
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument("--out", type=Path, help="result file (results/bridge.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bridge.py needs root (namespaces, links, nftables)", file=sys.stderr)
        return 2
    try:
        sizes = _sizes(args.n) or ([50] if args.quick else [200, 1000])
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if args.quick:
        args.warmup = min(args.warmup, 3)
    if args.warmup < 1 or args.batch < 1 or args.sample < 1:
        parser.error("--warmup, --batch and --sample must be at least 1")

    machine = machine_info()
    print(
        f"{machine['date']}  kernel {machine['kernel']}  python {machine['python']}  "
        f"pyroute2 {machine['pyroute2']}  {machine['cpus']} CPUs  load {machine['loadavg']}"
        f"  python loop {machine['probes']['python_loop_ms']} ms, thread {machine['probes']['thread_us']} us"
    )
    keys = list(args.methods)
    install_error = None
    if {"cni", "netavark"} & set(keys) and not args.no_install:
        install_error = tools.install_debian_packages()
        if install_error:
            print(f"CNI/netavark unavailable: {install_error}", file=sys.stderr)
    root_before = tools.root_state()
    kernel.prepare_run_dir()
    prefix = unique_prefix("b")
    started = time.monotonic()
    results, skipped, leftovers = run_sizes(sizes, keys, args, prefix)
    elapsed = time.monotonic() - started
    root = tools.compare_root(root_before, tools.root_state())

    found: list[Target] = []
    for n, result in results.items():
        print(f"\n== N={n}: all {n} endpoints of every method alive together ==")
        print_size(result["size"], result["stats"], args.markdown)
        found += size_targets(n, result["stats"])
    for key, reason in skipped.items():
        print(f"skipped {key}: {reason}")
    print(
        "\nthe machine's own namespace: nftables ruleset "
        f"{'CHANGED' if root['nft_ruleset'] else 'unchanged'}, iptables "
        f"{'CHANGED' if root['iptables'] else 'unchanged'}, ip6tables "
        f"{'CHANGED' if root['ip6tables'] else 'unchanged'}, links "
        + (
            "unchanged"
            if not (root["links_added"] or root["links_removed"])
            else f"CHANGED (+{root['links_added']} -{root['links_removed']})"
        )
    )
    print()
    for target in found:
        print(target)

    if not args.no_write and results:
        name = "bridge-quick" if args.quick and not args.n else "bridge"
        path = write_results(
            name,
            {
                "units": "ms",
                "params": {
                    "sizes": sizes,
                    "batch": args.batch,
                    "warmup": args.warmup,
                    "sample": args.sample,
                    "methods": keys,
                    "prefix": prefix,
                    "subnets": {k: SUBNETS[k] for k in keys},
                    "elapsed_s": round(elapsed, 1),
                    "install_error": install_error,
                },
                "versions": {
                    "cni_plugins": tools.package_version("containernetworking-plugins"),
                    "netavark": tools.tool_version(
                        [tools.netavark_path() or "netavark", "--version"]
                    ),
                    "iproute2": tools.tool_version(["ip", "-V"]),
                    "nftables": tools.tool_version(["nft", "--version"]),
                    "iptables": tools.tool_version(["iptables", "-V"]),
                },
                "sizes": {
                    str(n): {k: v for k, v in r.items() if k != "size"} for n, r in results.items()
                },
                "skipped": skipped,
                "root_namespace": root,
                "targets": [t.to_json() for t in found],
                "leftover_namespaces": leftovers,
            },
            path=args.out,
            machine=machine,
        )
        print(f"\nwrote {path}")
    return 1 if leftovers or not root["unchanged"] else 0


if __name__ == "__main__":
    sys.exit(main())
