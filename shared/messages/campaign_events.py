"""Events about campaigns (producer: api; RunCompleted: scheduler)."""

from __future__ import annotations

from typing import Literal

from shared.messages.envelope import Message


class CampaignCreated(Message):
    """A campaign was saved as a draft."""

    type: Literal["campaign.created"] = "campaign.created"
    version: Literal[1] = 1
    campaign_id: str
    channel: str


class CampaignLaunched(Message):
    """A campaign was launched: the scheduler plans its first run."""

    type: Literal["campaign.launched"] = "campaign.launched"
    version: Literal[1] = 1
    campaign_id: str
    channel: str


class CampaignPaused(Message):
    """A campaign was paused: nothing more is released until it resumes."""

    type: Literal["campaign.paused"] = "campaign.paused"
    version: Literal[1] = 1
    campaign_id: str


class CampaignResumed(Message):
    """A paused campaign was resumed."""

    type: Literal["campaign.resumed"] = "campaign.resumed"
    version: Literal[1] = 1
    campaign_id: str


class CampaignCancelled(Message):
    """A campaign was cancelled: every pending delivery ends."""

    type: Literal["campaign.cancelled"] = "campaign.cancelled"
    version: Literal[1] = 1
    campaign_id: str


class RunCompleted(Message):
    """Every delivery of one run of a campaign reached a final state."""

    type: Literal["run.completed"] = "run.completed"
    version: Literal[1] = 1
    campaign_id: str
    run_id: str
