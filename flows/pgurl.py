"""libpq URLs: their parts, rebuilt, and described to a person without the password."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlparse


@dataclass(frozen=True)
class PgParams:
    """libpq connection parts, as SQLMesh's Postgres gateway wants them."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        db = database or self.database
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{db}?host={self.host}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{db}"

    def url_without_password(self) -> str:
        """The URL for a command line: a password there is readable by every user (`ps`)."""
        return PgParams(self.host, self.port, self.user, "", self.database).url()

    def describe(self) -> str:
        """Where it points, for messages: host, port and database, never the password."""
        return f"host {self.host}, port {self.port}, database {self.database}"


def parse_url(url: str) -> PgParams:
    parts = urlparse(url)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", ["localhost"])[0]
    port = parts.port or int(query.get("port", ["5432"])[0])
    return PgParams(
        host=unquote(host),
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        database=(parts.path or "/").lstrip("/") or "postgres",
    )


def folder_name(params: PgParams) -> str:
    """A folder name for a server's database, readable and safe on any filesystem:
    `db.internal-5432-warehouse` (a socket path's slashes become underscores)."""
    name = f"{params.host}-{params.port}-{params.database}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._") or "server"
