"""Where a webhook may go (README "Webhooks"): closing server-side request forgery.

A callback URL is https (http only to a destination LCE_CALLBACK_ALLOW admits) with a host and no
credentials. Every address its host resolves to must be public: loopback, private, shared, link-local
(the cloud metadata address among them), multicast, reserved and unspecified addresses are refused
unless LCE_CALLBACK_ALLOW admits them. The check is made at submission and again at each delivery
(a name may resolve elsewhere by then: DNS rebinding), and a delivery connects to the very address it
checked, never resolving the name a second time.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[Address]]

MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT_S = 2.0
# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, 8215), IPv4-compatible
# and SIIT's IPv4-translated addresses. The IPv4 address is what a packet to them reaches.
_IPV4_CARRIERS = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
)
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")  # deprecated, still routed inward by some networks


class RefusedTarget(ValueError):
    """The URL may not be called back; the message says why."""


class ResolverBusy(RuntimeError):
    """Too many lookups are already waiting on DNS: try again later (this says nothing of the URL)."""


class Lookups:
    """Name lookups on threads of their own, a bounded number at a time: a slow or hostile DNS server
    costs a caller its timeout, never a thread of theirs, and past `max_pending` waiting lookups a new
    one is refused at once rather than queued behind them."""

    def __init__(self, name: str, workers: int, max_pending: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(max_pending)

    def resolve(self, host: str, port: int) -> list[Address]:
        """The host's addresses (a literal is itself), looked up within RESOLVE_TIMEOUT_S."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        if not self._slots.acquire(blocking=False):
            raise ResolverBusy("too many callback hosts are being looked up; try again")
        lookup = self._pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        lookup.add_done_callback(lambda _: self._slots.release())  # a hung lookup keeps its slot
        try:
            found = lookup.result(timeout=RESOLVE_TIMEOUT_S)
        except FutureTimeout as exc:
            raise RefusedTarget(f"{host} did not resolve within {RESOLVE_TIMEOUT_S:g} s") from exc
        except OSError as exc:
            raise RefusedTarget(f"{host} does not resolve ({exc.strerror or exc})") from exc
        return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in found))


# Submissions and deliveries look up on pools of their own: a flood of one never starves the other.
SUBMISSION_LOOKUPS = Lookups("callback-dns-submit", workers=8, max_pending=32)
DELIVERY_LOOKUPS = Lookups("callback-dns-deliver", workers=8, max_pending=32)


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # lower case, IDNA-encoded; an IPv6 literal without brackets
    port: int
    path: str  # the path and query, as the request line sends them


@dataclass(frozen=True)
class AllowList:
    """LCE_CALLBACK_ALLOW: CIDR blocks (any port) and host:port entries, admitted whatever their address."""

    networks: tuple[Network, ...] = ()
    endpoints: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        networks, endpoints = [], set()
        for entry in entries:
            host, colon, port = entry.rpartition(":")
            if colon and port.isdigit() and host and "/" not in entry:
                if not 0 < int(port) < 65536:
                    raise ValueError(f"{entry!r}: the port must be 1..65535")
                endpoints.add((host.strip("[]").lower(), int(port)))
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is neither host:port nor a CIDR block") from exc
        return cls(tuple(networks), frozenset(endpoints))

    def admits(self, target: Target, address: Address) -> bool:
        if (target.host, target.port) in self.endpoints or (str(address), target.port) in self.endpoints:
            return True
        return any(address in network for network in self.networks)


def parse(url: str) -> Target:
    if len(url) > MAX_URL_CHARS:
        raise RefusedTarget(f"callback_url is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"callback_url is not a URL ({exc})") from exc
    if parts.scheme not in ("https", "http"):
        raise RefusedTarget("callback_url must be https (or http where LCE_CALLBACK_ALLOW admits it)")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("callback_url must not carry credentials")
    if not parts.hostname:
        raise RefusedTarget("callback_url has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise RefusedTarget("callback_url's host is not a valid name") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def is_public(address: Address) -> bool:
    """Reachable on the public internet only: an IPv6 address carrying an IPv4 one (mapped, 6to4, Teredo,
    NAT64, compatible, translated) is judged by that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _SITE_LOCAL:
            return False
        carried = _carried_ipv4(address)
        if carried is not None:
            return is_public(carried)
    return address.is_global and not address.is_multicast


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client it reaches
    if any(address in carrier for carrier in _IPV4_CARRIERS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def checked_addresses(
    target: Target, allow: AllowList, resolver: Resolver = SUBMISSION_LOOKUPS.resolve
) -> list[Address]:
    """The addresses a delivery may connect to: every one the host resolves to, each public or admitted.
    RefusedTarget when any is neither (a name must not point partly inward), or http is not admitted."""
    addresses = resolver(target.host, target.port)
    if not addresses:
        raise RefusedTarget(f"{target.host} resolves to no address")
    for address in addresses:
        admitted = allow.admits(target, address)
        if not admitted and not is_public(address):
            raise RefusedTarget(
                f"callback_url's host {target.host} resolves to {address}, which is not public "
                "(LCE_CALLBACK_ALLOW admits such destinations)"
            )
        if target.scheme == "http" and not admitted:
            raise RefusedTarget("callback_url must be https unless LCE_CALLBACK_ALLOW admits its destination")
    return addresses
