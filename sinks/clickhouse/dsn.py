"""A store's address (DSN): which engine, where, which database, and how to print it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sinks.clickhouse.schema import DEFAULT_DATABASE, check_database_name


class StoreError(RuntimeError):
    """The store could not be opened."""


def split_database(dsn: str) -> tuple[str, str]:
    """The DSN without its database, and that database (`privtrail` when the DSN names none).

    The database goes in the path for a server (`http://host:8123/audit`) and in a `database`
    parameter for an on-disk chDB (`chdb:///var/lib/privtrail?database=audit`), whose path is
    the data directory.
    """
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    path = parts.path
    if parts.scheme == "chdb" and not parts.netloc:
        database = query.pop("database", "")
    elif parts.scheme in ("chdb", "http", "https"):
        database = path.strip("/").split("/")[0] or query.pop("database", "")
        path = ""
    else:
        raise StoreError(
            f"unsupported store DSN scheme {parts.scheme!r} in {redact(dsn)}: "
            "use chdb:///path/to/dir or http(s)://host:8123/database"
        )
    # Built by hand: urlunsplit would drop the empty authority of chdb:///path.
    server = f"{parts.scheme}://{parts.netloc}{path}"
    if query:
        server += f"?{urlencode(query)}"
    return server, check_database_name(database or DEFAULT_DATABASE)


def redact(dsn: str) -> str:
    """The DSN with its password hidden, for error messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
