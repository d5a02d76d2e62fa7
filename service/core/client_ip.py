"""The client's IP address: the socket peer, or X-Forwarded-For behind trusted proxies only.

uvicorn is run with proxy_headers=False (see service/__main__.py), so the ASGI `client` is
always the TCP peer and this module alone decides whether a forwarded address is believed.
"""

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_CLIENT = "unknown"
# X-Forwarded-For entries looked at, at most: a client can't make the service walk a huge list.
MAX_FORWARDED_HOPS = 32


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Comma-separated IPs or CIDRs as networks; ValueError names an unusable entry."""
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
    return tuple(networks)


def parse_address(value: str) -> IPAddress | None:
    """An IP from a peer or X-Forwarded-For entry (ports and IPv4-mapped IPv6 undone)."""
    text = value.strip()
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def resolve_client_ip(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]
) -> str:
    """The client address: walk X-Forwarded-For from the right past trusted proxies.

    Only when the peer itself is a trusted proxy is the header read at all; then each entry
    from the right is a hop that the next proxy saw, and the first one that is not a trusted
    proxy is the client. An unparsable entry stops the walk at the last good address (nobody
    trusted vouched for anything left of it).
    """
    address = parse_address(peer) if peer else None
    if address is None:
        return UNKNOWN_CLIENT
    if not _trusted(address, proxies):
        return str(address)
    entries = [entry for header in forwarded_for for entry in header.split(",")]
    for entry in reversed(entries[-MAX_FORWARDED_HOPS:]):
        hop = parse_address(entry)
        if hop is None:
            break
        address = hop
        if not _trusted(address, proxies):
            break
    return str(address)
