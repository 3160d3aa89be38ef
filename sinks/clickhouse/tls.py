"""TLS for a ClickHouse server: an https:// store DSN is encrypted and its certificate checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TlsMisconfigured(ValueError):
    """TLS options that cannot apply to the store's DSN."""


def tls_options(
    server_dsn: str, verify: bool = True, ca_cert: Path | None = None
) -> dict[str, Any]:
    """clickhouse-connect's options for `server_dsn`: `secure`, `verify` and `ca_cert` for
    https://, none for http:// and chDB (which a CA certificate cannot apply to)."""
    scheme = urlsplit(server_dsn).scheme
    if scheme != "https":
        if ca_cert is not None:
            raise TlsMisconfigured(
                f"a ClickHouse CA certificate ({ca_cert}) is set, but the store DSN is "
                f"{scheme}://, not https://"
            )
        return {}
    options: dict[str, Any] = {"secure": True, "verify": verify}
    if ca_cert is not None:
        if not ca_cert.is_file():
            raise TlsMisconfigured(f"the ClickHouse CA certificate {ca_cert} is not a file")
        options["ca_cert"] = str(ca_cert)
    return options
