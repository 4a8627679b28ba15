"""``cameras:``: several sources in one config, and the single ``source:`` of before as one."""

from __future__ import annotations

import pytest

from edged.config import (
    MAX_CAMERAS,
    ConfigError,
    EdgedConfig,
    apply_overrides,
    parse_config,
)


def _errors(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return dict(info.value.errors)


def test_a_single_source_config_is_one_camera_named_by_camera_id():
    config = parse_config({"camera_id": "door", "source": {"uri": "x.mp4", "loop": True}})
    (camera,) = config.camera_list()
    assert camera.id == "door"
    assert camera.source.uri == "x.mp4" and camera.source.loop
    assert camera.conf_threshold is None and camera.fps_limit is None
    assert config.tracking_for(camera) is config.tracking


def test_cameras_are_listed_in_order_with_their_own_settings():
    config = parse_config({"cameras": [
        {"id": "front", "source": {"uri": "rtsp://10.0.0.2/s"}, "conf_threshold": 0.5},
        {"id": "back", "source": {"uri": "/dev/video0"}, "fps_limit": 5,
         "tracking": {"zones": [{"name": "drive", "polygon": [[0, 0], [1, 0], [1, 1]]}]}},
    ]})  # fmt: skip
    front, back = config.camera_list()
    assert (front.id, front.source.uri, front.conf_threshold) == ("front", "rtsp://10.0.0.2/s", 0.5)
    assert (back.id, back.fps_limit) == ("back", 5)
    assert config.tracking_for(front) is config.tracking  # the top-level section
    assert [z.name for z in config.tracking_for(back).zones] == ["drive"]


def test_a_duplicate_camera_id_names_the_field():
    errors = _errors({"cameras": [{"id": "a"}, {"id": "b"}, {"id": "a"}]})
    assert "used twice" in errors["cameras"]


@pytest.mark.parametrize("bad", ["", "has space", "dot.ted", "x" * 33, "slash/es"])
def test_a_malformed_camera_id_names_the_field(bad: str):
    errors = _errors({"cameras": [{"id": "ok"}, {"id": bad}]})
    assert "cameras.1.id" in errors, errors


def test_a_camera_without_id_names_the_field():
    assert "cameras.0.id" in _errors({"cameras": [{"source": {"uri": "synthetic:"}}]})


def test_cameras_and_a_single_source_together_are_refused():
    errors = _errors({"source": {"uri": "x.mp4"}, "cameras": [{"id": "a"}]})
    assert "replaces source" in errors["(root)"]


def test_the_number_of_cameras_is_bounded():
    assert "cameras" in _errors({"cameras": []})
    too_many = [{"id": f"c{i}"} for i in range(MAX_CAMERAS + 1)]
    assert "cameras" in _errors({"cameras": too_many})


def test_bad_values_inside_a_camera_name_their_path():
    errors = _errors({"cameras": [{"id": "a", "conf_threshold": 2, "source": {"fps": 0}}]})
    assert "cameras.0.conf_threshold" in errors
    assert "cameras.0.source.fps" in errors


def test_pixel_zones_are_checked_against_each_cameras_size():
    zone = {"name": "z", "units": "pixels", "polygon": [[0, 0], [1000, 0], [1000, 10]]}
    errors = _errors({"cameras": [
        {"id": "big", "source": {"width": 1920, "height": 1080}},
        {"id": "small", "source": {"width": 640, "height": 480},
         "tracking": {"zones": [zone]}},
    ]})  # fmt: skip
    ((path, reason),) = errors.items()
    assert path.startswith("cameras.1.tracking.zones") and "'small'" in reason


def test_source_flags_set_the_only_cameras_source():
    config = parse_config({"cameras": [{"id": "a", "source": {"uri": "synthetic:"}}]})
    changed = apply_overrides(
        config,
        {
            "source.uri": "y.mp4",
            "source.loop": True,
            "camera_id": "b",
            "postprocess.conf_threshold": 0.4,
        },
    )
    (camera,) = changed.camera_list()
    assert (camera.id, camera.source.uri, camera.source.loop) == ("b", "y.mp4", True)
    assert changed.postprocess.conf_threshold == 0.4


def test_source_flags_are_refused_with_several_cameras():
    config = parse_config({"cameras": [{"id": "a"}, {"id": "b"}]})
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, {"source.uri": "y.mp4"})
    assert "2 cameras" in dict(info.value.errors)["source.uri"]


def test_a_camera_can_be_overridden_by_index():
    config = parse_config({"cameras": [{"id": "a"}, {"id": "b"}]})
    changed = apply_overrides(config, {"cameras.1.source.uri": "z.mp4"})
    assert [c.source.uri for c in changed.camera_list()] == ["synthetic:", "z.mp4"]


def test_the_default_config_is_one_synthetic_camera():
    (camera,) = EdgedConfig().camera_list()
    assert (camera.id, camera.source.uri) == ("cam0", "synthetic:")


def test_an_unknown_field_inside_a_camera_lists_what_a_camera_has():
    errors = _errors({"cameras": [{"id": "a", "trackin": {}}]})
    assert "did you mean 'tracking'?" in errors["cameras.0.trackin"]


def test_lossless_and_live_cameras_cannot_share_a_daemon():
    from edged.pipeline.supervisor import pipeline_mode

    config = parse_config({"cameras": [
        {"id": "a", "source": {"uri": "a.mp4", "mode": "lossless"}},
        {"id": "b", "source": {"uri": "rtsp://cam/s"}},
    ]})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        pipeline_mode(config)
    ((path, reason),) = info.value.errors
    assert path == "cameras.1.source.mode" and "cannot share" in reason
    stream = parse_config(
        {"cameras": [{"id": "a", "source": {"uri": "rtsp://c/s", "mode": "lossless"}}]}
    )
    with pytest.raises(ConfigError) as info:
        pipeline_mode(stream)
    assert info.value.errors[0][0] == "cameras.0.source.mode"
    both = parse_config({"cameras": [{"id": c, "source": {"uri": f"{c}.mp4", "mode": "lossless"}}
                                     for c in "ab"]})  # fmt: skip
    assert pipeline_mode(both) == (True, "lossless")
