"""Campaign lifecycle: draft → scheduled → running → completed, with paused, cancelled, failed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled", "failed"]
Action = Literal["launch", "pause", "resume", "cancel"]

#: States no action leaves.
TERMINAL: frozenset[str] = frozenset({"completed", "cancelled", "failed"})


class InvalidTransition(ValueError):
    """The action does not fit the campaign's state; the message says why."""


@dataclass(frozen=True)
class Transition:
    """The state an action leads to, and for a pause, the state a resume returns to."""

    status: Status
    resume_to: Status | None = None


def transition(status: str, action: Action, resume_to: str | None = None) -> Transition:
    """The campaign's next state after `action`, or InvalidTransition saying why not."""
    if status in TERMINAL:
        raise InvalidTransition(f"campaign is {status}; it can no longer {action}")
    if action == "launch":
        if status != "draft":
            raise InvalidTransition(f"only a draft campaign can be launched; this one is {status}")
        return Transition("scheduled")
    if action == "pause":
        if status not in ("scheduled", "running"):
            raise InvalidTransition(f"only a scheduled or running campaign can be paused; this one is {status}")
        return Transition("paused", resume_to=status)  # type: ignore[arg-type]
    if action == "resume":
        if status != "paused":
            raise InvalidTransition(f"only a paused campaign can be resumed; this one is {status}")
        return Transition("running" if resume_to == "running" else "scheduled")
    if action == "cancel":
        return Transition("cancelled")
    raise InvalidTransition(f"unknown action {action!r}")


def check_editable(status: str, edit: Literal["change", "delete"]) -> None:
    """Only a draft is changed or deleted: InvalidTransition saying why otherwise."""
    if status != "draft":
        instead = " (cancel it instead)" if edit == "delete" and status not in TERMINAL else ""
        raise InvalidTransition(f"only a draft campaign can be {edit}d; this one is {status}{instead}")
