"""URL safety: which addresses an untrusted URL may reach, and that the connection goes where the check looked."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from web_faults import FaultServer
from yarl import URL

from torq_nb.research.urlsafety import (
    GuardedResolver,
    UnsafeURLError,
    address_problem,
    check_address,
    check_url,
    untrusted_request,
    vet_url,
)

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "cloud-metadata"),
    ("169.254.170.2", "cloud-metadata"),
    ("fd00:ec2::254", "cloud-metadata"),
    ("100.100.100.200", "cloud-metadata"),
    ("192.0.0.192", "cloud-metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.7", "private"),  # TEST-NET-1, documentation only
    ("198.18.0.1", "private"),  # benchmarking range
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:169.254.169.254", "cloud-metadata"),
    ("::ffff:10.0.0.1", "private"),
    ("::127.0.0.1", "loopback"),  # deprecated IPv4-compatible
    ("64:ff9b::a9fe:a9fe", "cloud-metadata"),  # NAT64 of 169.254.169.254
    ("64:ff9b::7f00:1", "loopback"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("::ffff:0:7f00:1", "loopback"),  # SIIT (IPv4-translated) of 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
    ("64:ff9b:1::808:808", "local-use NAT64"),  # RFC 8215: not globally reachable
]

PUBLIC = ["93.184.216.34", "1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.1", "2606:4700:4700::1111",
          "::ffff:93.184.216.34", "64:ff9b::808:808", "2002:5db8:d822::"]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_named_for_what_they_are(address: str, kind: str) -> None:
    problem = address_problem(address)
    assert problem is not None and kind in problem


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/",
                                 "javascript:alert(1)", "data:text/html,hi", "/relative/path", "http:///nohost"])
def test_only_http_and_https_urls_with_a_host_pass(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="refused"):
        check_url(URL(url))


@pytest.mark.parametrize(
    ("host", "reason"),
    [("xn--.test", "label empty or too long"), ("a" * 64 + ".test", "label empty or too long"),
     ("a..b.test", "label empty or too long"), ("xn--zz.test", "punicode")],
)
def test_hosts_that_fail_idna_are_invalid_not_unicode_errors(host: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"{host} is not a valid host name \(.*{reason}") as raised:
        check_url(URL(f"http://{host}/"))
    assert not isinstance(raised.value, (UnicodeError, UnsafeURLError))


@pytest.mark.parametrize("url", ["http://example.com/", "https://example.com:8443/a?b=c", "http://xn--bcher-kva.example/",
                                 "http://example.com./", "http://[::1]/", "http://" + "a" * 63 + ".test/"])
def test_web_urls_pass_the_scheme_check(url: str) -> None:
    check_url(URL(url))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1 embedded in IPv6"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local/cloud-metadata address"),
        ("http://[fd00:ec2::254]/", "cloud-metadata"),
        ("http://localhost/", "localhost resolves to"),
        ("http://0x7f.1/", "0x7f.1 resolves to 127.0.0.1"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1"),
        ("http://0177.0.0.1/", "resolves to 127.0.0.1"),
        ("http://127.1/", "resolves to 127.0.0.1"),
    ],
)
async def test_vet_url_refuses_loopback_and_metadata_in_every_spelling(url: str, shown: str) -> None:
    """Literal forms are checked with ipaddress; other spellings go through the system resolver (no DNS traffic:
    these resolve locally)."""
    resolver = GuardedResolver()
    with untrusted_request(allow_private=False), pytest.raises(UnsafeURLError) as refused:
        await vet_url(URL(url), resolver)
    assert shown in str(refused.value)
    assert "allow_private_networks=True" in str(refused.value)


async def test_allow_private_lets_loopback_through() -> None:
    with untrusted_request(allow_private=True):
        await vet_url(URL("http://127.0.0.1/"), GuardedResolver())
        await vet_url(URL("http://localhost/"), GuardedResolver())


class ScriptedDNS(AbstractResolver):
    """A stand-in DNS server whose answers change from one lookup to the next (DNS rebinding)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)]

    async def close(self) -> None:
        return None


async def test_connect_time_lookup_is_checked_too() -> None:
    """Even a request that skipped vet_url cannot connect to a private answer: the resolver itself refuses."""
    async with FaultServer() as server:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(ScriptedDNS("127.0.0.1")), use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            with untrusted_request(allow_private=False), pytest.raises(UnsafeURLError, match="rebind.test resolves to 127.0.0.1"):
                await session.get(f"http://rebind.test:{server.port}/ok")
        assert server.hits["/ok"] == 0


async def test_connection_uses_the_checked_addresses() -> None:
    """The check's answer is pinned: a second, different DNS answer (127.0.0.2, where nothing listens) is never used."""
    async with FaultServer() as server:
        dns = ScriptedDNS("127.0.0.1", "127.0.0.2")
        resolver = GuardedResolver(dns)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)) as session:
            url = URL(f"http://rebind.test:{server.port}/ok")
            with untrusted_request(allow_private=True):
                await vet_url(url, resolver)
                async with session.get(url) as response:
                    assert response.status == 200
        assert dns.lookups == 1
        assert server.hits["/ok"] == 1


async def test_trusted_requests_resolve_without_checks() -> None:
    """Outside untrusted_request() (a user-configured endpoint) loopback answers are fine."""
    async with FaultServer() as server:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(ScriptedDNS("127.0.0.1")), use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector) as session, session.get(
            f"http://searx.local:{server.port}/ok"
        ) as response:
            assert response.status == 200


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200"])
def test_cloud_metadata_is_refused_even_when_private_networks_are_allowed(address):
    assert address_problem(address, allow_private=True) is not None
    with pytest.raises(UnsafeURLError, match="even with allow_private_networks"):
        check_address(address, address, allow_private=True)


#: 169.254.169.254 in every IPv6 spelling that embeds an IPv4 address.
METADATA_IN_IPV6 = [
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:a9fe:a9fe",
    "::ffff:0:a9fe:a9fe",  # SIIT, IPv4-translated
    "::169.254.169.254",  # IPv4-compatible (deprecated)
    "64:ff9b::a9fe:a9fe",  # NAT64, the well-known prefix
    "64:ff9b:1::a9fe:a9fe",  # NAT64, local-use prefix (RFC 8215) used as a /96
    "64:ff9b:1:a9fe:a9:fe00::",  # ... as a /48 (RFC 6052 puts the address around the u octet)
    "64:ff9b:1:a9:fe:a9fe::",  # ... as a /56
    "64:ff9b:1:0:a9:fea9:fe00:0",  # ... as a /64
    "2002:a9fe:a9fe::",  # 6to4
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo (client address stored inverted)
    "2001:0:a9fe:a9fe:8000:63bf:bec9:1c87",  # Teredo whose server is the metadata address
]


@pytest.mark.parametrize("address", METADATA_IN_IPV6)
def test_ipv6_spellings_of_the_metadata_address_are_refused_even_with_private_networks_allowed(address: str) -> None:
    for allow_private in (True, False):
        problem = address_problem(address, allow_private=allow_private)
        assert problem is not None and "cloud-metadata" in problem and "169.254.169.254 embedded in IPv6" in problem
    with pytest.raises(UnsafeURLError, match="even with allow_private_networks"):
        check_address(address, address, allow_private=True)


@pytest.mark.parametrize("address", ["64:ff9b:1::808:808", "::ffff:0:a00:1", "2002:a00:1::", "64:ff9b::7f00:1"])
def test_embedded_private_addresses_follow_allow_private_networks(address: str) -> None:
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1", "192.168.0.7"])
def test_allowing_private_networks_admits_private_addresses(address):
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize("answer", ["64:ff9b:1::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "2002:a9fe:a9fe::"])
async def test_a_dns_answer_in_an_ipv6_spelling_of_the_metadata_address_is_refused(answer: str) -> None:
    """DNS64 and hostile DNS hand out such answers for ordinary names: the resolver judges them the same way."""
    resolver = GuardedResolver(ScriptedDNS(answer))
    with untrusted_request(allow_private=True), pytest.raises(UnsafeURLError) as refused:
        await vet_url(URL("http://metadata.test/latest/meta-data/"), resolver)
    assert f"metadata.test resolves to {answer}, which is a link-local/cloud-metadata address" in str(refused.value)
    assert "169.254.169.254 embedded in IPv6" in str(refused.value)
