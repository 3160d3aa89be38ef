"""The rows of API access control: tokens (without their hashes, as the API shows them) and
the access log's entries. Models only, so the API client reads them without the store."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class TokenInfo(BaseModel):
    """An API token as listed: never the token itself, nor its hash."""

    token_id: str
    role: str
    # `*`: every org, present and future.
    orgs: list[str]
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def problem(self, now: datetime) -> str | None:
        """Why the token is not valid at `now`, or None when it is."""
        if self.revoked_at is not None:
            return f"token {self.token_id} was revoked at {self.revoked_at.isoformat()}"
        if self.expires_at is not None and self.expires_at <= now:
            return f"token {self.token_id} expired at {self.expires_at.isoformat()}"
        return None


class IssuedToken(TokenInfo):
    """A token just created: the one answer that holds the token itself."""

    token: str


class AccessEntry(BaseModel):
    """One API request: which token, what it asked for, and how it was answered."""

    access_id: str
    at: datetime
    token_id: str
    role: str
    method: str
    # The route as declared (`/lineage/{subject_id:path}`), never the path: it can hold ids.
    endpoint: str
    # The orgs whose data the answer could hold: the one asked for, else the token's.
    orgs: list[str]
    subject_pseudonym: str | None
    status: int
    client: str
