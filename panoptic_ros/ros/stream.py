"""Continuity of the input stream: what the node does when a camera misbehaves.

Every decoded frame is checked against the last one processed. The rules (documented in the
README's node section; each event is counted in ``/diagnostics`` as ``stream.<event>``):

* ``duplicate_stamp``: the same non-zero header stamp as the last processed frame (a driver or
  relay sending a frame twice): the frame is **dropped** (``dropped.duplicate_stamp``).
* ``stamp_backwards``: a stamp earlier than the last one (a looping bag, a camera clock reset):
  processed; the tracks end, ids keep increasing.
* ``gap``: more than ``max_gap_s`` between two stamps, or of wall time between two frames when
  the stamps are zero (a burst after a long silence; of a burst only the newest frames are
  processed, the rest counted ``superseded``): processed; the tracks end, objects have moved.
* ``frame_id_change``: another camera on the same topic: processed; the tracks end.
* ``resolution_change``: processed at the new size (outputs follow the input); the tracks end.
* ``encoding_change``: processed; nothing else changes.

Stamps of zero (drivers without a clock) are never duplicates or backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

RESETS = ('stamp_backwards', 'gap', 'frame_id_change', 'resolution_change')


@dataclass(frozen=True)
class Frame:
    """What continuity looks at: header stamp (ns), frame_id, ``(height, width)``, encoding and
    the node's monotonic reception time (s)."""

    stamp_ns: int
    frame_id: str
    size: tuple[int, int]
    encoding: str
    received_s: float


class StreamMonitor:
    """The last processed frame and the decision for the next one."""

    def __init__(self) -> None:
        self.last: Frame | None = None

    def reset(self) -> None:
        self.last = None

    def check(self, frame: Frame, max_gap_s: float) -> tuple[bool, list[str]]:
        """``(process, events)`` for ``frame``; a processed frame becomes the last one.
        ``max_gap_s``: a longer silence between frames is a ``gap``."""
        last = self.last
        if last is None:
            self.last = frame
            return True, []
        if frame.stamp_ns and frame.stamp_ns == last.stamp_ns:
            return False, ['duplicate_stamp']
        events = []
        if frame.stamp_ns and last.stamp_ns and frame.stamp_ns < last.stamp_ns:
            events.append('stamp_backwards')
        elif frame.stamp_ns and last.stamp_ns:
            if (frame.stamp_ns - last.stamp_ns) / 1e9 > max_gap_s:
                events.append('gap')
        elif frame.received_s - last.received_s > max_gap_s:
            events.append('gap')
        if frame.frame_id != last.frame_id:
            events.append('frame_id_change')
        if frame.size != last.size:
            events.append('resolution_change')
        if frame.encoding != last.encoding:
            events.append('encoding_change')
        self.last = frame
        return True, events
