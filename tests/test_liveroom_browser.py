"""A real browser on the live-room dashboard: the service runs (recsys-serve's app under
uvicorn), a known day is replayed into it over HTTP, headless Chromium opens the room's page;
the numbers on the page equal the API's, the charts drew, a planted suggestion shows.

Needs Debian's ``chromium`` and ``chromium-driver`` (the README's test command installs them);
skips with the reason when they are missing. ``RECSYS_SCREENSHOT_DIR=docs`` also saves the
page's screenshot there (the README's picture).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from recsys.liveroom.replay import http_sender, replay, replay_frame
from recsys.simulation import SimConfig, simulate
from recsys.simulation.live_room import live_room_day

pytestmark = pytest.mark.browser
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "needs Debian's chromium and chromium-driver on PATH "
        "(apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tiny_world_dir):
    """recsys-serve's app on a free port, in a thread of this process."""
    import uvicorn

    from recsys.cli.serve import build_app

    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="serve", overrides=[f"world.path={tiny_world_dir}"])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(cfg), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start within 60 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def replayed(service, tmp_path_factory):
    """A busy tiny world's first day, replayed up to five minutes after a planted question
    burst ends, so its room is live and the suggestion is on the page."""
    world = tmp_path_factory.mktemp("busy")
    simulate(SimConfig.from_preset("tiny", n_users=1500, n_streamers=6, n_days=1, seed=3), world)
    day = live_room_day(world, 0)
    burst = day.incidents[day.incidents["kind"] == "burst"].sort_values("end_ts").iloc[0]
    frame = replay_frame(day)
    frame = frame[frame["ts"] <= burst["end_ts"] + 300]
    result = replay(frame, http_sender(service), speed=0)
    assert result.totals["accepted"] == len(frame)
    return service, int(burst["session_id"]), burst["intent"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1500",
        "--lang=zh-CN",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_shows_the_api_numbers_charts_and_the_planted_suggestion(
    replayed, browser, tmp_path
):
    from selenium.webdriver.support.ui import WebDriverWait

    url, room, intent = replayed
    api = _get(f"{url}/live/rooms/{room}")
    browser.get(f"{url}/live/rooms/{room}/page")
    WebDriverWait(browser, 30).until(
        lambda d: (
            d.find_element("tag name", "body").get_attribute("data-version") == str(api["version"])
        )
    )
    for window, numbers in api["windows"].items():
        for name in (
            "online",
            "entries_per_min",
            "mean_dwell_s",
            "comments",
            "likes",
            "follows",
            "clicks",
            "ctr_on_show",
            "carts",
            "coupon_claims",
            "orders_per_min",
            "gmv_per_min",
        ):
            cell = browser.find_element("id", f"w{window}-{name}")
            shown = cell.get_attribute("data-value")
            expected = numbers[name]
            assert (shown == "") if expected is None else float(shown) == pytest.approx(expected)
            assert cell.text and "NaN" not in cell.text
    assert "NaN" not in browser.find_element("tag name", "body").text
    drawn = browser.execute_script("""
        return ["chart-online", "chart-gmv", "chart-ctr", "chart-questions"].map((id) => {
          const canvas = document.getElementById(id);
          const chart = Chart.getChart(canvas);
          const context = canvas.getContext("2d");
          const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
          let ink = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) ink++;
          return [id, chart.data.datasets[0].data.length, canvas.width, ink];
        });""")
    for chart_id, points, width, ink in drawn:
        assert points > 0 and width > 0 and ink > 100, (chart_id, points, width, ink)
    suggestions = browser.find_elements("css selector", "#suggestion-list li[data-kind='burst']")
    assert suggestions, "the planted question burst's suggestion is not on the page"
    assert any("viewers ask" in s.text for s in suggestions)
    questions = browser.find_elements("css selector", "#question-list li")
    assert [int(q.get_attribute("data-askers")) for q in questions] == [
        q["askers"] for q in api["questions"]
    ]
    shot = tmp_path / "live_room.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("RECSYS_SCREENSHOT_DIR"):
        target = Path(os.environ["RECSYS_SCREENSHOT_DIR"]) / "live_room.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)


def test_the_rooms_page_lists_the_live_room(replayed, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    url, room, _ = replayed
    browser.get(f"{url}/live")
    WebDriverWait(browser, 15).until(
        lambda d: str(room) in [a.text for a in d.find_elements("css selector", "#room-table a")]
    )
