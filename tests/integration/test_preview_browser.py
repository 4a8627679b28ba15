"""/preview in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

The screenshot is kept as a test artifact (test-artifacts/preview-browser.png). The README's
screenshot is this test's, regenerated with::

    EDGED_SCREENSHOT=configs/preview-screenshot.png \\
        .venv/bin/pytest tests/integration/test_preview_browser.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.preview.wire import decode_frame
from tests.daemon import REPO_ROOT, VIDEO, Daemon, require

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=960,700",  # the viewport is smaller: the page fits, the shot is cropped
    "--hide-scrollbars",
)
ARTIFACTS = REPO_ROOT / "test-artifacts"


def chromium(tmp_path: Path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver "
                    "(apt install chromium chromium-driver; .ci/setup does)")  # fmt: skip
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")  # fresh profile
    # The MJPEG image never finishes loading: do not wait for the load event.
    options.page_load_strategy = "eager"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(tmp_path / "chromedriver.log"))  # fmt: skip
    return webdriver.Chrome(options=options, service=service)


def manifest_args(variant_dir: Path) -> list[str]:
    return ["--manifest", str(variant_dir / "yolov5n.yaml"), "--models-dir", str(variant_dir),
            "--variant", "fp32"]  # fmt: skip


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text.strip()


def number(value: str) -> float | None:
    return float(value) if re.fullmatch(r"\d+(\.\d+)?", value) else None


def wait_for_boxes(frames, timeout_s: float) -> bool:
    """Wait until two preview frames in a row show two confident detections each.

    Only for a better README screenshot: the browser is then very likely showing boxes.
    """
    import time

    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while time.monotonic() < deadline and in_a_row < 2:
        if frames.poll(500):
            header, _ = decode_frame(frames.recv_multipart())
            confident = sum(d["confidence"] >= 0.5 for d in header["detections"])
            in_a_row = in_a_row + 1 if confident >= 2 else 0
    return in_a_row >= 2


def crop_to_page(driver, png: bytes) -> bytes:
    """The screenshot without the empty viewport below the page."""
    height, ratio = driver.execute_script(
        "return [document.querySelector('main').getBoundingClientRect().bottom,"
        " window.devicePixelRatio]"
    )
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    ok, out = cv2.imencode(".png", shot[: int(height * ratio)], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return out.tobytes()


def test_preview_page_in_headless_chromium(tmp_path: Path, variant_dir: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    config = {"preview": {"enabled": True, "control": True, "publish_topic": True}}
    with Daemon(tmp_path, "--source", str(require(VIDEO)), "--loop", *manifest_args(variant_dir),
                config=config) as daemon:  # fmt: skip
        daemon.wait_ready()
        driver = chromium(tmp_path)
        try:
            driver.get(daemon.base_url + "/preview")
            wait = WebDriverWait(driver, 60, poll_frequency=0.2)
            wait.until(lambda d: d.execute_script(
                "const i = document.getElementById('live'); return i.complete && i.naturalWidth > 0"
            ))  # fmt: skip
            size = driver.execute_script(
                "const i = document.getElementById('live');"
                " return [i.naturalWidth, i.naturalHeight]"
            )
            assert size == [640, 360]
            wait.until(lambda d: text(d, "variant") == "fp32" and (number(text(d, "fps")) or 0) > 0)
            wait.until(lambda d: number(text(d, "lat-infer")) and number(text(d, "lat-end_to_end")))
            wait.until(lambda d: d.find_element(By.ID, "control").is_displayed())
            # Subscribed only now: frames queued since the start would be long off screen.
            wait_for_boxes(daemon.subscriber(b"frames.cam0"), 45)
            png = crop_to_page(driver, driver.get_screenshot_as_png())
            rect = driver.execute_script(
                "const r = document.getElementById('live').getBoundingClientRect();"
                "return [r.left, r.top, r.width, r.height, window.devicePixelRatio]"
            )
            fps_text, variant_text = text(driver, "fps"), text(driver, "variant")
            page_text = driver.find_element(By.TAG_NAME, "body").text

            # Swap from the page: the same control path as `edged ctl swap`.
            Select(driver.find_element(By.ID, "variant-select")).select_by_value("dynamic")
            driver.find_element(By.ID, "swap").click()
            WebDriverWait(driver, 180, poll_frequency=0.2).until(
                lambda d: "now serving dynamic" in text(d, "swap-result")
            )
            wait.until(lambda d: text(d, "variant") == "dynamic")
            assert daemon.ctl("status")["model"]["variant"] == "dynamic"
            # A refused swap is shown, and the page keeps working.
            Select(driver.find_element(By.ID, "variant-select")).select_by_value("truncated")
            driver.find_element(By.ID, "swap").click()
            wait.until(lambda d: text(d, "swap-result").startswith("refused:"))
            assert text(driver, "variant") == "dynamic"
            still_live = driver.execute_script(
                "return document.getElementById('live').naturalWidth"
            )
            console = driver.get_log("browser")
        finally:
            driver.quit()
        assert daemon.stop() == 0

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "preview-browser.png").write_bytes(png)
    if os.environ.get("EDGED_SCREENSHOT"):
        target = REPO_ROOT / os.environ["EDGED_SCREENSHOT"]
        shutil.copyfile(ARTIFACTS / "preview-browser.png", target)

    # The screenshot shows a picture where the image is, not a blank or broken image.
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    left, top, width, height, ratio = rect
    x0, y0 = int(left * ratio), int(top * ratio)
    live = shot[y0 : y0 + int(height * ratio), x0 : x0 + int(width * ratio)]
    assert live.shape[0] >= 300 and live.shape[1] >= 600, rect
    assert float(live.std()) > 15, "the image area is blank"
    assert len(np.unique(live.reshape(-1, 3), axis=0)) > 1000, "the image area is flat"
    assert fps_text and number(fps_text) and number(fps_text) > 0
    assert variant_text == "fp32"
    assert "variant" in page_text and "fps" in page_text and "end to end" in page_text
    assert still_live > 0
    errors = [e for e in console if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    refused = [e for e in errors if "preview/swap" in e["message"] and "409" in e["message"]]
    assert [e for e in errors if e not in refused] == [], json.dumps(errors, indent=1)
