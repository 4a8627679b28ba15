"""What a reload changes about the cameras: only the changed cameras restart, and only when
what their own processes read changed."""

from __future__ import annotations

from edged.config import CameraConfig, EdgedConfig, SourceConfig
from edged.pipeline.camera_changes import camera_changes


def cam(camera_id: str, uri: str = "a.mp4", **fields: object) -> CameraConfig:
    return CameraConfig(id=camera_id, source=SourceConfig(uri=uri), **fields)


def test_added_removed_restarted_and_updated() -> None:
    running = [cam("a"), cam("b"), cam("c"), cam("d")]
    new = [cam("a"), cam("c", "other.mp4"), cam("d", conf_threshold=0.6), cam("e")]
    changes = camera_changes(running, new)
    assert changes.summary() == {"added": ["e"], "removed": ["b"], "restarted": ["c"],
                                 "updated": ["d"]}  # fmt: skip
    assert camera_changes(running, list(running)).summary() == {} and not camera_changes(
        running, list(running))  # fmt: skip


def test_fps_limit_restarts_its_camera_and_a_single_source_is_camera_camera_id() -> None:
    assert camera_changes([cam("a")], [cam("a", fps_limit=5)]).summary() == {"restarted": ["a"]}
    single = EdgedConfig.model_validate({"source": {"uri": "a.mp4"}, "camera_id": "a"})
    several = EdgedConfig.model_validate({"cameras": [{"id": "a", "source": {"uri": "a.mp4"}},
                                                      {"id": "b"}]})  # fmt: skip
    assert camera_changes(single.camera_list(), several.camera_list()).summary() == {
        "added": ["b"]}  # fmt: skip
