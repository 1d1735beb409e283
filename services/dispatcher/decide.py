"""PURE: what to do with a claimed delivery, given its row (campaign, contact, template)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.domain.sms import message_too_long
from shared.domain.templating import MissingVariable, TemplateError, campaign_text, contact_context, render
from shared.row import Row

Action = Literal["duplicate", "pause", "cancel", "skip", "fail", "send"]


@dataclass(frozen=True)
class Decision:
    """The action, the rendered text when sending, and the reason otherwise."""

    action: Action
    text: str | None = None
    reason: str | None = None
    #: Email only: the rendered subject and HTML part.
    subject: str | None = None
    html: str | None = None


def decide(row: Row) -> Decision:
    """Send only a queued delivery of a live campaign to a contact still opted in and reachable
    (`to_address`: its address now), fully rendered (and for an SMS, no longer than an SMS holds)."""
    if row["state"] != "queued":
        return Decision("duplicate", reason=f"delivery is {row['state']}")
    if row["campaign_status"] == "paused":
        return Decision("pause", reason="campaign paused")
    if row["campaign_status"] not in ("scheduled", "running"):
        return Decision("cancel", reason=f"campaign {row['campaign_status']}")
    if row[f"opted_out_{row['channel']}"]:
        return Decision("skip", reason=f"contact opted out of {row['channel']}")
    if not row["to_address"]:  # the address it was planned for was removed since (a change is followed)
        return Decision(
            "skip", reason=f"the contact has no {'email' if row['channel'] == 'email' else 'phone'} any more"
        )
    template = campaign_text(row["message_template"], row["voice"], row["agent_opening"])
    context = contact_context(row, row["agent_name"])
    try:
        text = render(template, context)
        subject = render(row["subject_template"], context) if row["subject_template"] else None
        html = render(row["html_template"], context, html=True) if row["html_template"] else None
    except MissingVariable as exc:
        return Decision("fail", reason=str(exc))
    except TemplateError as exc:
        return Decision("fail", reason=f"template error: {exc}")
    if not text.strip() and not html:
        return Decision("fail", reason="the rendered message is empty")
    too_long = message_too_long(text) if row["channel"] == "sms" else None
    if too_long:  # Twilio would refuse it (21617): failed here, never sent nor charged
        return Decision("fail", reason=too_long)
    return Decision("send", text=text, subject=subject, html=html)
