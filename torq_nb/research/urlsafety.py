"""Refuse URLs that would make a research run reach into private networks (SSRF protection).

A search result or a redirect can point anywhere, including the notebook host's own services
(127.0.0.1), the office LAN, or a cloud provider's metadata endpoint that hands out credentials.
Such untrusted URLs must be http(s) with a valid host name, and every address their host resolves to must
be public. An IPv6 address that stands for an IPv4 one (IPv4-mapped, SIIT, NAT64, 6to4, Teredo, ...) is judged
by that IPv4 address, so no spelling of 169.254.169.254 gets through, even with private networks allowed.

The check runs on the resolved addresses, and `GuardedResolver` makes the connection use exactly
the addresses that were checked, so a DNS answer that changes between check and connect
(DNS rebinding) cannot slip a private address through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})

#: Instance-metadata endpoints of cloud providers (AWS, GCP, Azure, OpenStack, Oracle, Alibaba, ECS tasks).
CLOUD_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.169.123", "192.0.0.192", "100.100.100.200",
              "fd00:ec2::254", "fd00:ec2::23")
)

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: any RFC 6052 prefix length from /48 to /96
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

#: Where RFC 6052 puts the 32 bits of an IPv4 address for a NAT64 prefix of each length: (first bit, bits) runs
#: counted from the most significant bit, around the reserved "u" octet (bits 64-71). /96 comes first, the usual.
_RFC6052_RUNS = (((96, 32),), ((72, 32),), ((56, 8), (72, 24)), ((48, 16), (72, 16)))

ALLOW_HINT = "pass allow_private_networks=True (or set TORQ_NB_ALLOW_PRIVATE_NETWORKS=1) to allow private networks"


class UnsafeURLError(ValueError):
    """An untrusted URL was refused; the message says why and how to allow it."""


def _bits(ip: ipaddress.IPv6Address, runs: tuple[tuple[int, int], ...]) -> ipaddress.IPv4Address:
    value, out = int(ip), 0
    for first, count in runs:
        out = (out << count) | ((value >> (128 - first - count)) & ((1 << count) - 1))
    return ipaddress.IPv4Address(out)


def embedded_ipv4s(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address stands for: IPv4-mapped, SIIT-translated, IPv4-compatible, NAT64
    (well-known and local-use prefixes), 6to4 and Teredo (server and client). Empty for a plain IPv6 address.

    A local-use NAT64 address may carry its IPv4 address at any RFC 6052 position, so every position counts.
    """
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        server, client = ip.teredo
        return (client, server)
    if ip in _NAT64_LOCAL:
        return tuple(dict.fromkeys(_bits(ip, runs) for runs in _RFC6052_RUNS))
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_TRANSLATED or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return (_bits(ip, _RFC6052_RUNS[0]),)
    return ()


def address_problem(address: str | IPAddress, *, allow_private: bool = False) -> str | None:
    """Why `address` must not be contacted from an untrusted URL ("a loopback address", ...), or None if fine.

    Cloud-metadata endpoints hand out credentials, so they are refused even when private networks are allowed.
    This is the one place that judges an address: resolver answers and IP literals, of hits and redirects alike.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        # An IPv6 form of IPv4 addresses is judged by them: each must be fine. A local-use NAT64 address is not
        # globally reachable whatever it embeds, but what it embeds is named first (metadata stays metadata).
        inner = embedded_ipv4s(ip)
        local_nat64 = ip in _NAT64_LOCAL
        for embedded in inner:
            problem = address_problem(embedded, allow_private=allow_private or local_nat64)
            if problem:
                return f"{problem} ({embedded} embedded in IPv6)"
        if local_nat64 and not allow_private:
            return "a local-use NAT64 (64:ff9b:1::/48) address"
        if inner:
            return None
    if ip in CLOUD_METADATA_ADDRESSES:
        return "a link-local/cloud-metadata address" if ip.is_link_local else "a cloud-metadata address"
    if allow_private:
        return None
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip in _CGNAT, "a CGNAT (shared, 100.64.0.0/10) address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private-network address"),
        (not ip.is_global, "a non-public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def check_url(url: URL) -> None:
    """Judge a URL before anything is requested from it: hits, redirect targets and endpoints alike.

    Raises UnsafeURLError for anything but http(s) or a URL without a host, and ValueError for a host name
    that is not a valid domain name (IDNA: an empty label, one over 63 characters, broken punycode), which
    could not be looked up (and once raised UnicodeError out of the fetcher).
    """
    if url.scheme not in ALLOWED_SCHEMES:
        shown = url.scheme or "no scheme"
        raise UnsafeURLError(f"refused: only http and https URLs are fetched, not {shown} ({url})")
    host = url.raw_host
    if not host:
        raise UnsafeURLError(f"refused: {url} has no host")
    if literal_ip(host) is None:
        try:
            host.encode("idna")  # what the resolver does with it
            url.host  # noqa: B018 (yarl decodes punycode here; error messages use it)
        except UnicodeError as bad:
            reason = str(bad).rsplit("UnicodeError: ", 1)[-1].rstrip(")")
            raise ValueError(f"{host} is not a valid host name ({reason})") from None


def check_address(host: str, address: str, *, allow_private: bool = False) -> None:
    """Raise UnsafeURLError if `host`, resolved to `address`, may not be contacted (see address_problem)."""
    problem = address_problem(address, allow_private=allow_private)
    if problem is None:
        return
    subject = address if host == address else f"{host} resolves to {address}, which"
    hint = "cloud-metadata endpoints are refused even with allow_private_networks" if allow_private else ALLOW_HINT
    raise UnsafeURLError(f"refused: {subject} is {problem}; {hint}")


def literal_ip(host: str) -> IPAddress | None:
    """The address if `host` is an IP literal in canonical form, else None (a name to resolve)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass
class _Guard:
    """The checked DNS answers of one untrusted request, reused when aiohttp connects."""

    allow_private: bool
    pinned: dict[tuple[str, int], list[ResolveResult]] = field(default_factory=dict)


_GUARD: ContextVar[_Guard | None] = ContextVar("torq_nb_url_guard", default=None)


@contextmanager
def untrusted_request(*, allow_private: bool) -> Iterator[None]:
    """Within this block, `GuardedResolver` checks and pins every name it resolves."""
    token = _GUARD.set(_Guard(allow_private=allow_private))
    try:
        yield
    finally:
        _GUARD.reset(token)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses non-public answers inside `untrusted_request()`.

    The first answer for a host within the block is checked and pinned: later lookups (aiohttp's own,
    at connect time) get the same addresses, so the connection goes where the check looked.
    Outside the block (trusted endpoints) it resolves like aiohttp's default resolver.
    """

    def __init__(self, base: AbstractResolver | None = None) -> None:
        self._base = base if base is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        guard = _GUARD.get()
        if guard is None:
            return await self._base.resolve(host, port, family)
        key = (host, port)
        if key not in guard.pinned:
            answers = await self._base.resolve(host, port, family)
            for answer in answers:
                check_address(host, answer["host"], allow_private=guard.allow_private)
            guard.pinned[key] = answers
        return guard.pinned[key]

    async def close(self) -> None:
        await self._base.close()


async def vet_url(url: URL, resolver: AbstractResolver) -> None:
    """Check an untrusted URL before requesting it; call inside `untrusted_request()`.

    Raises UnsafeURLError with the reason (ValueError for an invalid host name, see check_url); resolution
    failures surface as OSError.
    """
    check_url(url)
    guard = _GUARD.get()
    if guard is None:
        raise RuntimeError("vet_url() must run inside untrusted_request()")
    host = url.raw_host
    assert host is not None
    ip = literal_ip(host)
    if ip is None:
        await resolver.resolve(host, url.port or 0, socket.AF_UNSPEC)
    else:
        check_address(host, str(ip), allow_private=guard.allow_private)
