"""Episode control from buttons: actions ("toggle", "start", "stop", "discard", "success", ...) ->
`robot_stack_msgs/EpisodeEvent` codes, with the recording state followed from every event seen on
the topic (so a pedal's toggle knows an episode the AR page started).

Actions: `start`, `stop`, `toggle` (start when idle, else stop), `discard`, `success`, `failure`,
`reset`. With `auto_reset`, STOP and DISCARD are followed by RESET (the sim starts the next
episode). `deadman` and `gripper` are not episode actions; the nodes handle them themselves.
"""

from __future__ import annotations

from typing import Any

from robot_stack import convert, messages
from robot_stack.clock import Time

EPISODE_EVENT = "robot_stack_msgs/msg/EpisodeEvent"
START, STOP, DISCARD, SUCCESS, FAILURE, RESET = range(6)
EVENT_NAMES = {START: "START", STOP: "STOP", DISCARD: "DISCARD", SUCCESS: "SUCCESS", FAILURE: "FAILURE",
               RESET: "RESET"}
EPISODE_ACTIONS = ("start", "stop", "toggle", "discard", "success", "failure", "reset")
NODE_ACTIONS = ("deadman", "gripper")          # held button: dead-man; gripper: toggles open/closed
ACTIONS = EPISODE_ACTIONS + NODE_ACTIONS


class EpisodeControl:
    def __init__(self, auto_reset: bool = True):
        self.auto_reset = auto_reset
        self.recording = False
        self.last_event: int | None = None

    def on_action(self, action: str) -> list[int]:
        """The events to publish for a button `action` (none for a non-episode action)."""
        if action == "toggle":
            action = "stop" if self.recording else "start"
        if action == "start":
            return [] if self.recording else [START]
        if action in ("stop", "discard"):
            if not self.recording:
                return [RESET] if action == "discard" and self.auto_reset else []
            return [STOP if action == "stop" else DISCARD] + ([RESET] if self.auto_reset else [])
        return {"success": [SUCCESS], "failure": [FAILURE], "reset": [RESET]}.get(action, [])

    def observe(self, event: int) -> None:
        """An event from any source (this node's own included)."""
        self.last_event = event
        if event == START:
            self.recording = True
        elif event in (STOP, DISCARD):
            self.recording = False

    @property
    def state(self) -> str:
        return "recording" if self.recording else "idle"


def event_msg(event: int, source: str, stamp: Time | None = None, note: str = "") -> Any:
    return messages.make(EPISODE_EVENT, header=convert.header(stamp), event=event, source=source, note=note)
