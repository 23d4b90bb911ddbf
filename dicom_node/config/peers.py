"""Who the node talks to: the peers it accepts, the destinations it sends to, and the TLS of
both (PS3.15 B.1)."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path


def check_ae_title(value: str) -> str | None:
    if (
        not 0 < len(value) <= 16
        or "\\" in value
        or not value.isprintable()
        or value.strip() != value
    ):
        return f"{value!r} is not a valid AE title (1-16 printable characters, no backslash)"
    return None


@dataclass(frozen=True)
class PeerRule:
    """One allowed peer: calling AE title and/or host (address or CIDR network)."""

    ae_title: str | None = None
    host: str | None = None

    def check(self) -> str | None:
        if self.ae_title is None and self.host is None:
            return "an accept_from entry needs ae_title, host or both"
        if self.ae_title is not None and (err := check_ae_title(self.ae_title)):
            return err
        if self.host is not None:
            try:
                ipaddress.ip_network(self.host, strict=False)
            except ValueError:
                return f"host {self.host!r} is not an IP address or network"
        return None

    def allows(self, ae_title: str, address: str) -> bool:
        if self.ae_title is not None and ae_title.strip() != self.ae_title:
            return False
        return self.allows_host(address)

    def allows_host(self, address: str) -> bool:
        if self.host is None:
            return True
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.host, strict=False)
        except ValueError:
            return False


@dataclass(frozen=True)
class TlsSettings:
    enabled: bool = False
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None  # when set, peers must present a certificate signed by it

    def check(self) -> str | None:
        if self.enabled:
            for name in ("cert", "key"):
                path = getattr(self, name)
                if path is None or not path.is_file():
                    return f"tls.enabled needs tls.{name} pointing at a file (got {path})"
        return None


@dataclass(frozen=True)
class DestinationTls:
    """DICOM TLS (PS3.15 B.1) to a destination: its certificate is verified against `ca` (the
    system's CAs when null) and its host name; `cert` and `key`: ours, when it asks."""

    enabled: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def check(self) -> str | None:
        if (self.cert is None) != (self.key is None):
            return "tls.cert and tls.key go together"
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if self.enabled and path is not None and not path.is_file():
                return f"tls.{name}: {path} is not a file"
        return None

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca) if self.ca else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass(frozen=True)
class Destination:
    name: str
    ae_title: str
    host: str
    port: int
    tls: DestinationTls = field(default_factory=DestinationTls)

    def check(self) -> str | None:
        if not 0 < self.port < 65536:
            return f"port {self.port} outside 1..65535"
        return check_ae_title(self.ae_title)
