"""A ProgressBar that redraws only when told.

Textual's ProgressBar updates itself once a second for its ETA; with the ETA
hidden that timer only adds a frame out of step with the work it shows, and on
two cores a frame is time taken from that work (training, data preparation,
evaluation; measured on the monitor: 2.2 frames a second instead of 1.2).
"""

from __future__ import annotations

from textual import events
from textual.widgets import ProgressBar


class StillProgressBar(ProgressBar):
    # Textual passes the Mount event to a handler that takes it (ProgressBar's takes none):
    # it is needed to prevent the base class's handler
    def on_mount(self, event: events.Mount) -> None:  # type: ignore[override]
        if not self.show_eta:
            event.prevent_default()     # skip ProgressBar's once-a-second update timer
            self.update()
