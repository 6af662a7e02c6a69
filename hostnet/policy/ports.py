"""Host ports: parsing Docker's port syntax and allocating host ports like Docker.

Semantics (Docker's, written down in docs/decisions.md):

- A reservation is (host, protocol, host IP, port). The wildcard addresses 0.0.0.0 and
  :: clash with every address of their family; a socket the kernel shows bound on ``::``
  clashes with IPv4 too unless it is IPv6-only (IPV6_V6ONLY): Linux sockets on ``::``
  are dual-stack by default.
- An omitted host port is ephemeral: picked from net.ipv4.ip_local_port_range of the
  host namespace, minus net.ipv4.ip_local_reserved_ports, with a per-(host, protocol)
  cursor that moves forward so a just-released port is not handed out again at once.
- A host range with a single container port ("8000-8010:80") means "any one port of the
  range"; equal-length ranges map one to one.
- Every port is checked against hostnet's reservations (in the store, across processes)
  and against sockets bound in the host namespace by anyone; the error names the
  workload or the process (pid and name) that holds it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from attrs import frozen

from hostnet import errors
from hostnet.model import WILDCARD4, BoundSocket, Reservation, clashes
from hostnet.stores.local import Tx

PROTOCOLS = ("tcp", "udp", "sctp")


def _port(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise errors.InvalidPort(spec, f"{text!r} is not a port number")
    value = int(text)
    if not 1 <= value <= 65535:
        raise errors.InvalidPort(spec, f"port {value} is outside 1-65535")
    return value


def _range(text: str, spec: str) -> tuple[int, int]:
    low_text, dash, high_text = text.partition("-")
    low = _port(low_text, spec)
    high = _port(high_text, spec) if dash else low
    if high < low:
        raise errors.InvalidPort(spec, f"range {text} is reversed")
    return low, high


def _protocol(text: str, spec: str) -> str:
    proto = text.lower() if text else "tcp"
    if proto not in PROTOCOLS:
        raise errors.InvalidPort(spec, f"unknown protocol {text!r}; use tcp, udp or sctp")
    return proto


def _host_ip(text: str, spec: str) -> str:
    # (brackets are taken off by _split_ip, in pairs: one left here is a typo, which
    # ip_address refuses, not a character to drop and keep in PortBindings)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise errors.InvalidPort(spec, f"{text!r} is not an IP address") from None
    if address.version == 6 and address.scope_id is not None:
        # nftables drops the zone ("fe80::1%eth0" matches fe80::1 on every interface),
        # and the reservation would not clash with the same address without it
        raise errors.InvalidPort(spec, f"{text!r}: a host address takes no zone (%...)")
    if address.version == 6 and address.ipv4_mapped is not None:
        # the IPv4 address it is (as Go, and so Docker, reads it); kept as IPv6 it
        # would neither match IPv4 traffic nor clash with IPv4 reservations
        return str(address.ipv4_mapped)
    return str(address)


@frozen(kw_only=True)
class PortRequest:
    """Host ports wanted on ``host_ip``: ``start``..``end``; or, with ``start`` None,
    ``ephemeral`` ephemeral ports (each the next free one, not necessarily in a row);
    ``pick_one`` asks for any one port of ``start``..``end``."""

    protocol: str = "tcp"
    host_ip: str = WILDCARD4
    start: int | None = None
    end: int | None = None
    pick_one: bool = False
    ephemeral: int = 1

    @property
    def count(self) -> int:
        if self.start is None:
            return self.ephemeral
        if self.pick_one:
            return 1
        assert self.end is not None
        return self.end - self.start + 1


@frozen(kw_only=True)
class PublishSpec:
    """A parsed ``-p`` argument before host ports are allocated."""

    host: PortRequest
    container_start: int
    container_end: int
    #: the host address as written, without brackets ("" when the spec names none)
    asked_ip: str = ""
    #: the host port as written when it asks for any free one: "" (none) or "0"
    asked_port: str = ""

    @property
    def protocol(self) -> str:
        return self.host.protocol

    def bindings(self) -> list[tuple[str, str, str]]:
        """The spec as Docker's ``HostConfig.PortBindings`` shows it: (container port
        and protocol, host address as written or "", host port as written or "").

        >>> parse_publish("127.0.0.1::53/udp").bindings()
        [('53/udp', '127.0.0.1', '')]
        >>> parse_publish("8000-8010:80").bindings()
        [('80/tcp', '', '8000-8010')]
        """
        request, proto = self.host, self.protocol
        if request.pick_one:
            port = f"{request.start}-{request.end}"
            return [(f"{self.container_start}/{proto}", self.asked_ip, port)]
        out = []
        for offset in range(self.container_end - self.container_start + 1):
            port = self.asked_port if request.start is None else str(request.start + offset)
            out.append((f"{self.container_start + offset}/{proto}", self.asked_ip, port))
        return out


def _split_ip(
    body: str, spec: str, max_parts: int, *, as_docker: bool = False
) -> tuple[str, str, list[str]]:
    """Split an optional leading host IP ("1.2.3.4:" or "[::1]:") off ``body``: the
    address as typed ("" for none), the address, and the rest. ``as_docker``: also as
    Docker's ``-p`` takes them, an empty address (none) and an IPv6 one without
    brackets, every ':' beyond the ports' being the address's."""
    if body.startswith("["):
        close = body.find("]")
        if close < 0 or body[close + 1 : close + 2] != ":":
            raise errors.InvalidPort(spec, "an IPv6 host address must look like [::1]:PORT")
        typed = body[1:close]
        return typed, _host_ip(typed, spec), body[close + 2 :].split(":")
    parts = body.split(":")
    if len(parts) < max_parts:
        return "", "", parts
    typed = ":".join(parts[: len(parts) - max_parts + 1])
    if len(parts) > max_parts and (not as_docker or typed.count(":") < 2):  # (not IPv6)
        raise errors.InvalidPort(spec, "too many ':'")
    if not typed and not as_docker:
        raise errors.InvalidPort(spec, "'' is not an IP address")
    return typed, _host_ip(typed, spec) if typed else "", parts[len(parts) - max_parts + 1 :]


def parse_host_port(spec: str) -> PortRequest:
    """Parse a port a host-network workload declares: ``[IP:]PORT[-END][/PROTO]``.

    >>> r = parse_host_port("127.0.0.1:8080/udp")
    >>> (r.protocol, r.host_ip, r.start, r.end)
    ('udp', '127.0.0.1', 8080, 8080)
    """
    if not isinstance(spec, str) or not spec:
        raise errors.InvalidPort(spec, "expected a string like '8080/tcp'")
    body, _, proto = spec.partition("/")
    protocol = _protocol(proto, spec)
    _, given, parts = _split_ip(body, spec, 2)
    host_ip = given or WILDCARD4
    if len(parts) != 1:
        raise errors.InvalidPort(spec, "expected [IP:]PORT[-END][/PROTO]")
    start, end = _range(parts[0], spec)
    return PortRequest(protocol=protocol, host_ip=host_ip, start=start, end=end)


def parse_publish(spec: str, default_ip: str = WILDCARD4) -> PublishSpec:
    """Parse Docker's ``-p`` syntax: ``[IP:][HOST[-END]:]CONTAINER[-END][/PROTO]``;
    ``default_ip`` is the host address when the spec names none.

    >>> parse_publish("127.0.0.1:8080:80/tcp").host.start
    8080
    >>> parse_publish("80").host.start is None   # ephemeral host port
    True
    """
    if not isinstance(spec, str) or not spec:
        raise errors.InvalidPort(spec, "expected a string like '8080:80/tcp'")
    body, _, proto = spec.partition("/")
    protocol = _protocol(proto, spec)
    # (the address as typed, without brackets, is what Docker's HostConfig shows)
    asked_ip, given, parts = _split_ip(body, spec, 3, as_docker=True)
    host_ip = given or default_ip
    if given and len(parts) == 1:
        # "[::]:80" (as Docker, which refuses it): no host port where one must be;
        # taken as an ephemeral one, a typo would publish on a port nobody asked for
        raise errors.InvalidPort(
            spec, "an address needs a host port: [IP]:HOST:CONTAINER, or [IP]::CONTAINER for any"
        )
    if len(parts) == 1:
        host_text, container_text = "", parts[0]
    elif len(parts) == 2:
        host_text, container_text = parts
    else:
        raise errors.InvalidPort(spec, "expected [IP:][HOST:]CONTAINER[/PROTO]")
    c_start, c_end = _range(container_text, spec)
    n_cont = c_end - c_start + 1
    if host_text == "0" and n_cont == 1:
        host_text = ""  # host port 0: any free one, as Docker takes it (and shows "0")
        asked_port = "0"
    else:
        asked_port = ""
    if not host_text:  # ephemeral: one host port per container port
        request = PortRequest(protocol=protocol, host_ip=host_ip, ephemeral=n_cont)
        return PublishSpec(
            host=request,
            container_start=c_start,
            container_end=c_end,
            asked_ip=asked_ip,
            asked_port=asked_port,
        )
    h_start, h_end = _range(host_text, spec)
    n_host = h_end - h_start + 1
    if n_cont == 1 and n_host > 1:
        request = PortRequest(
            protocol=protocol, host_ip=host_ip, start=h_start, end=h_end, pick_one=True
        )
    elif n_host != n_cont:
        raise errors.InvalidPort(
            spec, f"host range has {n_host} ports but container range has {n_cont}"
        )
    else:
        request = PortRequest(protocol=protocol, host_ip=host_ip, start=h_start, end=h_end)
    return PublishSpec(
        host=request, container_start=c_start, container_end=c_end, asked_ip=asked_ip
    )


def parse_reserved(text: str) -> set[int]:
    """Parse net.ipv4.ip_local_reserved_ports ("8000-8010,9000")."""
    out: set[int] = set()
    for raw in text.replace("\n", ",").split(","):
        part = raw.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


class PortAllocator:
    """Host port bookkeeping for one host namespace, kept in the store.

    Construct it with what it needs from the host (the ephemeral range, the reserved
    ports and a function returning the sockets bound there) so the policy stays pure and
    the host is always the Controller's host namespace.
    """

    def __init__(
        self,
        *,
        host: str,
        ephemeral: tuple[int, int],
        reserved: Iterable[int] = (),
        bound: Sequence[BoundSocket] = (),
    ) -> None:
        low, high = ephemeral
        if not 1 <= low <= high <= 65535:
            raise errors.InvalidOption("ip_local_port_range", ephemeral, "not a port range")
        self.host = host
        self._owner: str | None = None  # whose reserve() call is running
        self.ephemeral = (low, high)
        self.reserved = frozenset(reserved)
        self.bound = tuple(bound)

    def _check(self, tx: Tx, protocol: str, host_ip: str, port: int) -> None:
        holders = tx.port_holders(self.host, protocol, port)
        for held_ip, owner, workload in holders:
            if clashes(held_ip, host_ip):
                if owner == self._owner:  # an earlier port of this very call
                    raise errors.InvalidPort(
                        f"{host_ip}:{port}/{protocol}",
                        f"two of this call's port specifications publish host port {port}/"
                        f"{protocol} (on {host_ip}); give each its own host port",
                    )
                endpoint = owner.partition("/")[0]
                raise errors.PortInUse(
                    port=port,
                    protocol=protocol,
                    host_ip=host_ip,
                    holder=workload,
                    held_for_gc=endpoint in tx.journal_owners(failed=True),
                    held_on=held_ip,
                )
        # A socket on an address hostnet has reserved is hostnet's own hold (bound
        # IPv6-only) or its workload's: the reservation above already answered for it,
        # except for what a workload's dual-stack socket on "::" takes beyond it (the
        # IPv4 port: a reservation on "::" is IPv6 only).
        reserved_ips = {held_ip for held_ip, _owner, _workload in holders}
        for sock in self.bound:
            if sock.address in reserved_ips and clashes(sock.address, host_ip):
                continue
            if sock.blocks(protocol, host_ip, port):
                raise sock.in_the_way(protocol, host_ip, port)

    def _free(self, tx: Tx, protocol: str, host_ip: str, port: int) -> bool:
        try:
            self._check(tx, protocol, host_ip, port)
        except (errors.PortInUse, errors.InvalidPort):  # (taken by this call already)
            return False
        return True

    def reserve(
        self, tx: Tx, requests: Sequence[PortRequest], *, owner: str, workload: str
    ) -> list[list[Reservation]]:
        """Reserve every request or none (the caller's transaction rolls back on error).
        Returns, per request, the reserved ports in order."""
        out: list[list[Reservation]] = []
        self._owner = owner
        for request in requests:
            ports = self._pick(tx, request)
            got = []
            for port in ports:
                tx.reserve_port(
                    self.host, request.protocol, request.host_ip, port, owner, workload
                )
                got.append(
                    Reservation(protocol=request.protocol, host_ip=request.host_ip, port=port)
                )
            out.append(got)
        return out

    def _pick(self, tx: Tx, request: PortRequest) -> list[int]:
        if request.start is not None and not request.pick_one:
            assert request.end is not None
            ports = list(range(request.start, request.end + 1))
            for port in ports:
                self._check(tx, request.protocol, request.host_ip, port)
            return ports
        if request.start is not None:  # any one of a range
            assert request.end is not None
            for port in range(request.start, request.end + 1):
                if self._free(tx, request.protocol, request.host_ip, port):
                    return [port]
            raise errors.ExhaustedError(
                f"no free {request.protocol} port in {request.start}-{request.end} on "
                f"{request.host_ip}"
            )
        return self._ephemeral(tx, request, request.ephemeral)

    def _ephemeral(self, tx: Tx, request: PortRequest, want: int) -> list[int]:
        low, high = self.ephemeral
        cursor_name = f"port:{self.host}:{request.protocol}"
        cursor = tx.next_cursor(cursor_name, low)
        if not low <= cursor <= high:
            cursor = low
        span = high - low + 1
        got: list[int] = []
        # each port on its own, from the cursor on, as Docker gives a container range
        # without host ports one ephemeral port each: they need not be consecutive
        for offset in range(span):
            port = low + (cursor - low + offset) % span
            if port not in self.reserved and self._free(
                tx, request.protocol, request.host_ip, port
            ):
                got.append(port)
                if len(got) == want:
                    nxt = port + 1
                    tx.set_cursor(cursor_name, nxt if nxt <= high else low)
                    return got
        raise errors.ExhaustedError(
            f"no free ephemeral {request.protocol} port on {request.host_ip} in {low}-{high} "
            "(net.ipv4.ip_local_port_range minus ip_local_reserved_ports and ports in use)"
        )
