"""The web UI in a real browser (Debian's chromium and chromium-driver through Selenium): add a
running `arbor serve` to the catalog, probe it, start it as the target, chat, and see the streamed
answer with accepted draft tokens coloured and non-zero stats. Saves a screenshot
($ARBOR_UI_SCREENSHOT, default <tmp>/arbor-ui.png)."""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import ARBOR, KEY, TARGET

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def verification_server(server):
    port = free_port()
    log = open(os.path.join(server.work, "serve.log"), "w+")
    # Two target models: the default pair's target and a model of another vocabulary (loaded only
    # if a session asks for it).
    process = subprocess.Popen([ARBOR, "serve", "--model", TARGET, "--model", "smollm2-135m", "--host", "127.0.0.1", "--port", str(port),
                                "--threads", "1", "--name", "cloud-test"], stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 300
    for line in process.stdout:
        if "listening on" in line:
            break
        assert time.time() < deadline
    assert process.poll() is None, "arbor serve did not start"
    yield port
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromium-driver (Debian packages) are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,960", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_chat_in_the_browser_against_a_registered_server(server, verification_server, browser):
    wait = WebDriverWait(browser, 120)
    browser.get(server.base + "/")
    key = wait.until(EC.visibility_of_element_located((By.ID, "api-key")))
    key.send_keys(KEY)
    browser.execute_script("document.getElementById('api-key').dispatchEvent(new Event('change'))")
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), " on local"))

    # Register the running `arbor serve`; adding it probes it.
    browser.find_element(By.ID, "server-name").send_keys("cloud")
    browser.find_element(By.ID, "server-host").send_keys("127.0.0.1")
    port = browser.find_element(By.ID, "server-port")
    port.clear()
    port.send_keys(str(verification_server))
    browser.find_element(By.ID, "add-server").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#servers li[data-name=cloud] .probe"), "vocabulary matches"))
    probe = browser.find_element(By.CSS_SELECTOR, "#servers li[data-name=cloud] .probe").text
    assert TARGET in probe and "ms round trip" in probe and "smollm2-135m" in probe

    # Start it as the target: the draft model stays here, the target is the server's. Its model
    # list offers both; the one of another vocabulary cannot be chosen.
    Select(browser.find_element(By.ID, "target-select")).select_by_value("cloud")
    models = {o.get_attribute("value"): o for o in Select(browser.find_element(By.ID, "server-model")).options}
    assert set(models) == {"", TARGET, "smollm2-135m"}
    assert not models["smollm2-135m"].is_enabled() and models[TARGET].is_enabled()
    Select(browser.find_element(By.ID, "server-model")).select_by_value(TARGET)
    browser.find_element(By.ID, "start").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "on cloud-test@127.0.0.1"))

    Select(browser.find_element(By.ID, "drafter")).select_by_value("ngram")
    # Every round drafts (the adaptive policy, cold, may let a loopback server run ahead instead).
    browser.find_element(By.ID, "adaptive").click()
    browser.find_element(By.ID, "message").send_keys(
        "Repeat exactly, three times, one per line: the quick brown fox jumps over the lazy dog.")
    browser.find_element(By.ID, "send").click()
    stats = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".msg.assistant .stats")))
    answer = browser.find_element(By.CSS_SELECTOR, ".msg.assistant")
    path = os.environ.get("ARBOR_UI_SCREENSHOT", os.path.join(server.work, "arbor-ui.png"))
    browser.save_screenshot(path)
    assert "quick brown fox" in answer.text
    drafted = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant span.drafted")
    assert drafted, "no accepted draft tokens were coloured"
    colour = drafted[0].value_of_css_property("background-color")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")
    speed = float(re.search(r"([\d.]+) tok/s", stats.text).group(1))
    accepted = int(re.search(r"\((\d+)/(\d+)\)", stats.text).group(1))
    assert speed > 0 and accepted > 0, stats.text
    assert int(re.search(r"· (\d+) bytes", stats.text).group(1)) > 0  # a remote target: bytes crossed the link

    # A second message: the charts get a second point, the stats stay non-zero.
    browser.find_element(By.ID, "message").send_keys("Now once more, in capitals.")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant .stats")) == 2)
    assert not browser.find_elements(By.CSS_SELECTOR, ".msg.error")
    time.sleep(0.5)
    browser.save_screenshot(path)
    print("screenshot:", path)

    # Back to the local target for the other tests.
    assert server.raw("/ui/api/start", {"server": "local"})[0] == 202
    deadline = time.time() + 120
    while server.health()[0] != 200:
        assert time.time() < deadline
        time.sleep(0.2)


def test_an_unreachable_server_is_reported_clearly(server, browser):
    wait = WebDriverWait(browser, 60)
    browser.get(server.base + "/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), " on "))
    browser.find_element(By.ID, "server-name").send_keys("gone")
    browser.find_element(By.ID, "server-host").send_keys("127.0.0.1")
    port = browser.find_element(By.ID, "server-port")
    port.clear()
    port.send_keys(str(free_port()))
    browser.find_element(By.ID, "add-server").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#servers li[data-name=gone] .probe"), "unreachable"))
