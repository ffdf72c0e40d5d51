"""Which addresses and servers ICE may use.

A room server must work on a machine with nothing else running: no STUN server is used
unless one is configured, and only the interface addresses we are told about are offered
as host candidates. aioice picks host addresses itself and leaves 127.0.0.1 out on
purpose, so a server bound to loopback would advertise the machine's external interface
instead of the one it listens on; ``use_host_addresses`` replaces aioice's address lookup
for this process (``aiortc_compat.replace_host_addresses``).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import RoomfuseError

SCHEMES = ("stun", "stuns", "turn", "turns")


class IceConfigError(RoomfuseError, ValueError):
    """A bad --ice-host or --ice-server value; the message names it."""


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as given on the command line."""

    url: str  # e.g. "stun:stun.example.org:3478" or "turn:turn.example.org?transport=tcp"
    username: str | None = None
    credential: str | None = None

    def to_rtc(self):
        from aiortc import RTCIceServer

        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)

    def to_json(self) -> dict:
        """The RTCIceServer dictionary a browser takes."""
        out = {"urls": self.url}
        if self.username is not None:
            out["username"] = self.username
            out["credential"] = self.credential or ""
        return out


def parse_ice_server(text: str) -> IceServer:
    """``stun:HOST[:PORT]`` or ``turn[s]:[USER:PASS@]HOST[:PORT][?transport=udp|tcp]``."""
    from .aiortc_compat import parse_stun_turn_uri

    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in SCHEMES:
        raise IceConfigError(f"--ice-server {text!r}: must start with one of {', '.join(s + ':' for s in SCHEMES)}")
    username = credential = None
    if "@" in rest:
        creds, _, rest = rest.rpartition("@")
        if scheme.startswith("stun"):
            raise IceConfigError(f"--ice-server {text!r}: STUN servers take no credentials")
        username, _, credential = creds.partition(":")
        if not username or not credential:
            raise IceConfigError(f"--ice-server {text!r}: credentials must be USER:PASS@")
    elif scheme.startswith("turn"):
        raise IceConfigError(f"--ice-server {text!r}: TURN servers need USER:PASS@ before the host")
    url = f"{scheme}:{rest}"
    try:
        parse_stun_turn_uri(url)
    except ValueError as e:
        raise IceConfigError(f"--ice-server {text!r}: {e}") from None
    return IceServer(url=url, username=username, credential=credential)


def machine_addresses() -> list[str]:
    """Every IPv4/IPv6 address assigned to an interface of this machine (loopback too)."""
    import ifaddr

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if addr not in out:
                out.append(addr)
    return out


def host_addresses(bind_host: str, ice_hosts: Sequence[str] = ()) -> list[str]:
    """The addresses to offer as ICE host candidates.

    Given explicitly, each must be an address of this machine. Otherwise they follow the
    HTTP bind address: a server bound to one address (loopback by default) is reached on
    that address; one bound to a wildcard offers every address the machine has.
    """
    have = machine_addresses()
    if ice_hosts:
        out = []
        for text in ice_hosts:
            try:
                addr = str(ipaddress.ip_address(text))
            except ValueError:
                raise IceConfigError(f"--ice-host {text!r}: not an IP address") from None
            if addr not in have:
                raise IceConfigError(f"--ice-host {addr}: not an address of this machine "
                                     f"(it has {', '.join(have)})")
            if addr not in out:
                out.append(addr)
        return out
    if bind_host in ("", "0.0.0.0", "::"):
        # Link-local IPv6 needs a scope id that ICE candidates cannot carry.
        return [a for a in have if not a.startswith("fe80")]
    try:
        addr = str(ipaddress.ip_address(bind_host))
    except ValueError:
        raise IceConfigError(f"--host {bind_host!r}: give an IP address (or pass --ice-host) so "
                             "ICE knows which interface to offer") from None
    if addr not in have:
        raise IceConfigError(f"--host {addr}: not an address of this machine (it has {', '.join(have)})")
    return [addr]


def use_host_addresses(addresses: Iterable[str]):
    """Make every ICE agent in this process gather exactly ``addresses``.

    Returns a function that restores aioice's own lookup.
    """
    from .aiortc_compat import replace_host_addresses

    chosen = list(addresses)
    if not chosen:
        raise IceConfigError("no ICE host address to offer")

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    return replace_host_addresses(get_host_addresses)


def rtc_configuration(servers: Sequence[IceServer] = ()):
    """An explicit configuration: without one aiortc adds a public STUN server."""
    from aiortc import RTCConfiguration

    return RTCConfiguration(iceServers=[s.to_rtc() for s in servers])
