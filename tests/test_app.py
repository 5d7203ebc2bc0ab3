"""The web page (launch/app.py) driven in headless Chromium: pick a reference and a driving video,
animate with the shipped toy model, and the result video appears and can be downloaded.

Needs the `app` extra (gradio), selenium, and Debian's `chromium` and `chromium-driver` (no browser
is downloaded); skipped with the reason when one is missing. `.ci/run` installs them. With
DREAMACTOR_APP_SCREENSHOT=FILE the test also saves a screenshot of the finished page there.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from dreamactor_jax.toy.shipped import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
EXAMPLE = SHIPPED / "examples" / "case0"

missing = [what for what, ok in (
    ("gradio (pip install -e '.[app]')", importlib.util.find_spec("gradio") is not None),
    ("selenium (pip install -e '.[test]')", importlib.util.find_spec("selenium") is not None),
    ("chromium (apt-get install chromium)", os.access(CHROMIUM, os.X_OK)),
    ("chromedriver (apt-get install chromium-driver)", os.access(DRIVER, os.X_OK)),
    ("the shipped toy model and its examples", (EXAMPLE / "pose.mp4").is_file()),
) if not ok]
pytestmark = pytest.mark.skipif(bool(missing), reason="web page test needs " + ", ".join(missing))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def page_url():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch" / "app.py"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail(f"launch/app.py exited: {proc.stdout.read()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("launch/app.py did not answer within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1500",
              f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-test-')}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _wait(fn, seconds: float, what: str):
    end = time.time() + seconds
    while time.time() < end:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def test_page_animates_a_toy_character_and_shows_the_result(page_url):
    from selenium.webdriver.common.by import By

    d = _browser()
    try:
        d.get(page_url)
        _wait(lambda: d.find_elements(By.CSS_SELECTOR, "#animate"), 30, "the page")
        d.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(str(EXAMPLE / "ref.png"))
        d.find_element(By.CSS_SELECTOR, "#driving input[type=file]").send_keys(str(EXAMPLE / "pose.mp4"))
        # gradio 6 shows a file's name as stem and suffix on two lines ("pose\n.mp4")
        _wait(lambda: "pose.mp4" in "".join(d.find_element(By.CSS_SELECTOR, "#driving").text.split()), 30,
              "the driving upload")
        steps = d.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
        steps.clear()
        steps.send_keys(os.environ.get("DREAMACTOR_APP_STEPS", "3"))
        time.sleep(0.5)
        assert not d.find_elements(By.CSS_SELECTOR, "#result video[src]")  # nothing before the click
        d.find_element(By.CSS_SELECTOR, "#animate").click()
        video = _wait(lambda: [v for v in d.find_elements(By.CSS_SELECTOR, "#result video")
                               if v.get_attribute("src")], 240, "the result video")[0]
        assert d.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value").startswith("done")
        data = urllib.request.urlopen(video.get_attribute("src"), timeout=30).read()
        assert data[4:8] == b"ftyp" and len(data) > 1000  # an mp4, served to the page
        link = _wait(lambda: [a for a in d.find_elements(By.CSS_SELECTOR, "#download a") if a.get_attribute("href")],
                     30, "the download link")[0]
        assert urllib.request.urlopen(link.get_attribute("href"), timeout=30).read()[4:8] == b"ftyp"
        shot = os.environ.get("DREAMACTOR_APP_SCREENSHOT")
        if shot:  # the docs' screenshot: show the last frame of the result
            d.execute_script("const v = arguments[0]; v.pause(); v.currentTime = v.duration * 0.99;", video)
            time.sleep(1)
            d.save_screenshot(shot)
    finally:
        d.quit()
