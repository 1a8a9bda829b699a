"""Where webhooks may go: the URL's rules, public addresses only unless admitted, every resolved
address checked (a name pointing partly inward is refused), and the signature receivers verify."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

import pytest

from execution_service.callback_targets import AllowList, RefusedTarget, checked_addresses, is_public, parse
from execution_service.webhooks import signature, webhook_secret


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: [ipaddress.ip_address(a) for a in addresses]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0",
        "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::",
        "ff02::1", "192.0.2.1", "198.18.0.1",
        # IPv6 forms that carry an inward IPv4 address, and site-local.
        "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::", "2002:a00:1::", "::7f00:1",
        "::ffff:0:7f00:1", "fec0::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ],
)  # fmt: skip
def test_inward_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"]
)
def test_internet_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_a_public_https_target_is_checked_and_its_addresses_kept() -> None:
    target = parse("https://Hooks.Example.com:8443/in?x=1")
    assert (target.host, target.port, target.path) == ("hooks.example.com", 8443, "/in?x=1")
    assert checked_addresses(target, AllowList(), resolver("93.184.216.34")) == [ipaddress.ip_address("93.184.216.34")]


def test_a_name_resolving_partly_inward_is_refused() -> None:
    """DNS rebinding's ends: one public address is not enough when another points at loopback."""
    with pytest.raises(RefusedTarget, match=r"127\.0\.0\.1, which is not public"):
        checked_addresses(parse("https://rebind.example/"), AllowList(), resolver("93.184.216.34", "127.0.0.1"))


def test_the_allow_list_admits_by_block_or_by_host_and_port() -> None:
    allow = AllowList.parse(["10.0.0.0/8", "hooks.internal:8080", "127.0.0.1:9000"])
    assert checked_addresses(parse("https://10.2.3.4/"), allow, resolver("10.2.3.4"))
    assert checked_addresses(parse("http://hooks.internal:8080/"), allow, resolver("192.168.0.9"))
    assert checked_addresses(parse("http://127.0.0.1:9000/"), allow, resolver("127.0.0.1"))
    for refused in ("http://hooks.internal:8081/", "http://127.0.0.1:9001/", "https://192.168.0.9/"):
        with pytest.raises(RefusedTarget):
            checked_addresses(parse(refused), allow, resolver("192.168.0.9" if "hooks" in refused else "127.0.0.1"))


def test_http_needs_the_allow_list_even_to_a_public_address() -> None:
    with pytest.raises(RefusedTarget, match="must be https"):
        checked_addresses(parse("http://example.com/"), AllowList(), resolver("93.184.216.34"))


@pytest.mark.parametrize("entry", ["nonsense", "10.0.0.0/33", "host:0", "host:70000"])
def test_a_malformed_allow_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse([entry])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "must be https"),
        ("gopher://example.com", "must be https"),
        ("https://a:b@example.com/", "credentials"),
        ("https://", "no host"),
        ("https://example.com:99999/", "not a URL"),
    ],
)
def test_malformed_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(RefusedTarget, match=why):
        parse(url)


def test_the_signature_is_hmac_sha256_of_the_timestamp_and_body() -> None:
    body = b'{"execution_id":"x"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_each_key_signs_with_its_own_secret() -> None:
    master = "m" * 40
    assert webhook_secret(master, None) == master
    first, second = webhook_secret(master, "key-1"), webhook_secret(master, "key-2")
    assert len({master, first, second}) == 3 and first == webhook_secret(master, "key-1")
