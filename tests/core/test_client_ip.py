import re

import pytest
from pydantic import ValidationError

from service.config import Settings
from service.core.client_ip import parse_networks, resolve_client_ip
from tests.conftest import TEST_SECRET_KEY

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1, 2001:db8:ffff::/48")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        pytest.param("203.0.113.9", [], "203.0.113.9", id="direct"),
        pytest.param("203.0.113.9", ["198.51.100.1"], "203.0.113.9", id="untrusted-peer"),
        pytest.param("10.0.0.2", [], "10.0.0.2", id="proxy-without-header"),
        pytest.param("10.0.0.2", ["198.51.100.1"], "198.51.100.1", id="one-proxy"),
        pytest.param(
            "10.0.0.2", ["198.51.100.1, 192.0.2.1"], "198.51.100.1", id="two-trusted-hops"
        ),
        pytest.param(
            "10.0.0.2",
            ["6.6.6.6, 198.51.100.1, 10.9.9.9"],
            "198.51.100.1",
            id="spoofed-left-entries-ignored",
        ),
        pytest.param("10.0.0.2", ["6.6.6.6", "198.51.100.1"], "198.51.100.1", id="several-headers"),
        pytest.param("10.0.0.2", ["10.0.0.3, 10.0.0.4"], "10.0.0.3", id="all-trusted"),
        pytest.param("10.0.0.2", ["garbage, 10.0.0.4"], "10.0.0.4", id="garbage-stops-walk"),
        pytest.param("10.0.0.2", ["198.51.100.1:4711"], "198.51.100.1", id="ipv4-with-port"),
        pytest.param(
            "10.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7", id="bracketed-ipv6-with-port"
        ),
        pytest.param("2001:db8:ffff::1", ["2001:DB8::7"], "2001:db8::7", id="ipv6-proxy"),
        pytest.param("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1", id="v4-mapped-peer"),
        pytest.param(None, ["198.51.100.1"], "unknown", id="no-peer"),
    ],
)
def test_resolve_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert resolve_client_ip(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert resolve_client_ip("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_a_huge_forwarded_for_is_walked_only_so_far() -> None:
    header = ", ".join(["10.0.0.9"] * 10_000)
    assert resolve_client_ip("10.0.0.2", [header], PROXIES) == "10.0.0.9"


def test_trusted_proxies_setting_is_parsed() -> None:
    settings = Settings(
        _env_file=None,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]  # validated into SecretStr
        trusted_proxies=" 127.0.0.1 ,10.0.0.0/8,, ",
    )
    assert [str(n) for n in settings.trusted_proxy_networks()] == ["127.0.0.1/32", "10.0.0.0/8"]


def test_invalid_trusted_proxies_are_refused_at_startup() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("not an IP address or CIDR: 'example.com'")
    ):
        Settings(
            _env_file=None,
            secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]  # validated into SecretStr
            trusted_proxies="10.0.0.1, example.com",
        )
