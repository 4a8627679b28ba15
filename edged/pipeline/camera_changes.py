"""What a reload changes about the cameras (pure): which to start, stop, restart, or only tell
the shared stages about. A camera's processes restart only when what they read changed (its
source or fps_limit); a new conf_threshold or tracking section reaches the shared stages without
restarting anything, and the other cameras are never touched."""

from __future__ import annotations

from dataclasses import dataclass

from edged.config import CameraConfig

# The sections a camera's processes read (capture: source and fps_limit); others are read by the
# shared stages from the camera list they are sent.
RESTART_FIELDS = ("source", "fps_limit")


@dataclass(frozen=True)
class CameraChanges:
    added: tuple[CameraConfig, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[CameraConfig, ...] = ()  # same id, its processes must restart
    updated: tuple[CameraConfig, ...] = ()  # same id, only the shared stages' view changes

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.restarted or self.updated)

    def summary(self) -> dict[str, list[str]]:
        """For the reload's reply and log: ids per kind of change (empty kinds left out)."""
        kinds = {
            "added": [c.id for c in self.added],
            "removed": list(self.removed),
            "restarted": [c.id for c in self.restarted],
            "updated": [c.id for c in self.updated],
        }
        return {kind: ids for kind, ids in kinds.items() if ids}


def camera_changes(running: list[CameraConfig], new: list[CameraConfig]) -> CameraChanges:
    old = {c.id: c for c in running}
    fresh = {c.id: c for c in new}
    restarted, updated = [], []
    for camera_id in old.keys() & fresh.keys():
        before, after = old[camera_id], fresh[camera_id]
        if before == after:
            continue
        if any(getattr(before, f) != getattr(after, f) for f in RESTART_FIELDS):
            restarted.append(after)
        else:
            updated.append(after)
    order = list(fresh)  # the new file's order
    return CameraChanges(
        added=tuple(fresh[i] for i in order if i not in old),
        removed=tuple(i for i in old if i not in fresh),
        restarted=tuple(sorted(restarted, key=lambda c: order.index(c.id))),
        updated=tuple(sorted(updated, key=lambda c: order.index(c.id))),
    )
