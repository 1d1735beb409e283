"""Request models of `/contacts` and `/contact-groups`.

A contact's top-level keys other than the built-in fields are metadata, as in a campaign's inline
contacts; `country` is only a parsing hint for a phone written without `+`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from services.api.schemas import Name

#: Most ids, phones and emails one membership request may name.
MAX_MEMBERS_PER_REQUEST = 10_000


class OptOutIn(BaseModel):
    """Opt-out state per channel; a key left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")

    sms: StrictBool | None = None
    email: StrictBool | None = None
    voice: StrictBool | None = None


class ContactBody(BaseModel):
    """`POST /contacts` and `PATCH /contacts/{id}`; any other key goes into metadata."""

    model_config = ConfigDict(extra="allow")

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    timezone: str | None = None
    country: str | None = Field(default=None, description="Default region of a phone without '+', e.g. 'US'")
    metadata: dict[str, Any] | None = None
    opted_out: OptOutIn | None = None

    def extra_metadata(self) -> dict[str, Any]:
        """The metadata the request carries: `metadata` merged with the unknown top-level keys."""
        return {**(self.metadata or {}), **(self.model_extra or {})}


class GroupIn(BaseModel):
    """`POST /contact-groups` and `PATCH /contact-groups/{id}`."""

    model_config = ConfigDict(extra="forbid")

    name: Name


class MembersIn(BaseModel):
    """`POST`/`DELETE /contact-groups/{id}/members`: contacts by id, phone or email."""

    model_config = ConfigDict(extra="forbid")

    contact_ids: list[str] = Field(default_factory=list, max_length=MAX_MEMBERS_PER_REQUEST)
    phones: list[str] = Field(default_factory=list, max_length=MAX_MEMBERS_PER_REQUEST)
    emails: list[str] = Field(default_factory=list, max_length=MAX_MEMBERS_PER_REQUEST)
    country: str | None = Field(default=None, description="Default region of phones without '+'")
