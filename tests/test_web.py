"""The web page in a real browser: Debian's chromium, headless, driven by selenium
through chromium-driver, against the real server (its own process) with the
loopback Anthropic stand-in upstream and real espeak-ng."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from conftest import Cli
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from voicestream.testing import FakeAnthropic, Script, wait_for

TEXT = (
    "Streaming speech starts early. Each sentence is spoken as soon as it is ready. "
    "The page highlights the sentence you hear. It follows the audio clock, not the text. "
) * 6


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.fail("chromium and chromium-driver are not installed: run 'make test'")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=900,900",
        "--host-resolver-rules=MAP evil.test 127.0.0.1",  # the DNS-rebinding test's name
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(cli: Cli, fake_api: FakeAnthropic) -> Iterator[str]:
    process = cli.popen(
        "serve", "--source", "anthropic", "--port", "0",
        ANTHROPIC_API_KEY="sk-ant-test-browser-key", ANTHROPIC_BASE_URL=fake_api.base_url,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        assert " on http" in line, line + process.stderr.read().decode()
        yield line.split(" on ")[1].split("/ ")[0]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def played(driver: webdriver.Chrome) -> float:
    return float(driver.find_element(By.TAG_NAME, "body").get_attribute("data-played-s") or 0)


def heard(driver: webdriver.Chrome) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-heard-index") or -1)


def heard_word(driver: webdriver.Chrome) -> tuple[int, int]:
    """(chunk, word in it) being heard; (-1, -1) between words."""
    value = driver.find_element(By.TAG_NAME, "body").get_attribute("data-heard-word") or "-1"
    chunk, _, word = value.partition(".")
    return (int(chunk), int(word)) if word else (-1, -1)


def test_the_page_speaks_highlights_what_is_heard_and_stops(
    browser: webdriver.Chrome, server: str, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    # ~17 s to write: the model is still writing when Stop is pressed.
    fake_api.script = Script(text=TEXT, piece=3, delay_s=0.05)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    question = browser.find_element(By.ID, "question")
    question.send_keys("How does streaming speech work?", Keys.ENTER)  # by keyboard
    wait.until(lambda d: d.find_element(By.ID, "answer").text.startswith("Streaming speech"))
    wait.until(lambda d: played(d) > 0.5)  # Web Audio played the streamed WAV
    indices = []
    wait.until(lambda d: indices.append(heard(d)) or heard(d) >= 2)  # it follows the audio
    assert indices[0] <= 0 and sorted(set(indices)) == sorted(set(indices), key=indices.index)
    highlighted = browser.find_elements(By.CSS_SELECTOR, "#spoken .chunk.heard")
    assert len(highlighted) == 1 and highlighted[0].get_attribute("data-index") == str(
        heard(browser)
    )
    # Karaoke: the word being heard moves on word by word, one at a time, inside the
    # sentence being heard.
    words: list[tuple[int, int]] = []
    wait.until(lambda d: words.append(heard_word(d)) or len({w for w in words if w[0] >= 0}) >= 6)
    moving = [w for i, w in enumerate(words) if w[0] >= 0 and (i == 0 or w != words[i - 1])]
    assert moving == sorted(moving)  # forward only
    counts = (  # at one instant of the page: how many words are lit, and inside the sentence
        "return ['#spoken .word.now', '#spoken .chunk.heard .word.now']"
        ".map((s) => document.querySelectorAll(s).length)"
    )
    lit: list[list[int]] = []
    wait.until(lambda d: lit.append(d.execute_script(counts)) or lit[-1][0] > 0)
    assert all(now <= 1 and inside == now for now, inside in lit)
    browser.save_screenshot(str(tmp_path / "page.png"))
    browser.find_element(By.ID, "stop").click()
    wait.until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "stopped"
    )
    last_word = browser.find_elements(By.CSS_SELECTOR, "#spoken .word.now")
    silent_from = played(browser)
    time.sleep(0.5)
    assert played(browser) == silent_from  # silence: nothing more plays after Stop
    wait_for(lambda: fake_api.requests[-1].outcome == "closed by client", 10)
    history = browser.find_element(By.ID, "history").text
    assert "How does streaming speech work?" in history and "Streaming speech" in history
    assert len(history) < len(TEXT)  # what was heard, not the whole answer
    said = history.split("Assistant: ", 1)[1].strip()
    # Up to the word in progress, exactly: a whole word of the answer, the last one heard.
    assert TEXT.startswith(said) and not TEXT[len(said)].isalnum()
    if last_word:
        assert said.endswith(last_word[0].text)
    # The next question carries the conversation so far, as heard.
    asked = len(fake_api.requests)
    browser.find_element(By.ID, "question").send_keys("And then?", Keys.ENTER)
    wait_for(lambda: len(fake_api.requests) > asked, 10)
    messages = fake_api.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "How does streaming speech work?"
    assert messages[1]["content"].startswith("Streaming speech starts early.")
    assert len(messages[1]["content"]) < len(TEXT) and messages[2]["content"] == "And then?"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)  # stop by keyboard
    wait.until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "stopped"
    )


def test_the_page_asks_for_a_token_when_the_server_needs_one(
    browser: webdriver.Chrome, cli: Cli, fake_api: FakeAnthropic
) -> None:
    fake_api.script = Script(text="Short and sweet.", piece=3)
    process = cli.popen(
        "serve", "--source", "anthropic", "--port", "0",
        ANTHROPIC_API_KEY="sk-ant-test-browser-key", ANTHROPIC_BASE_URL=fake_api.base_url,
        VOICESTREAM_TOKEN="open-sesame-123",
    )  # fmt: skip
    try:
        assert process.stderr is not None
        url = process.stderr.readline().decode().split(" on ")[1].split("/ ")[0]
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30, poll_frequency=0.05)
        browser.find_element(By.ID, "question").send_keys("Hello?", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "token-row").is_displayed())
        assert "needs a token" in browser.find_element(By.ID, "status").text
        assert not fake_api.requests  # nothing was asked upstream without the token
        browser.find_element(By.ID, "token").send_keys("open-sesame-123")
        browser.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "answer").text == "Short and sweet.")
        wait.until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


ATTACKS = """
window.results = {};
window.attack = async (base) => {
  const r = window.results;
  const body = JSON.stringify({ prompt: "spend the victim's money" });
  const attempt = async (name, request) => {
    try {
      const response = await request();
      r[name] = response.type === "opaque" ? "opaque" : response.status;
      if (response.type !== "opaque") r[name + " read"] = await response.text();
    } catch (error) {
      r[name] = "blocked";
    }
  };
  const answers = base + "/v1/answers";
  await attempt("no-cors text/plain", () => fetch(answers, {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body }));
  await attempt("no-cors json", () => fetch(answers, {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "application/json" }, body }));
  await attempt("cors json", () => fetch(answers, {
    method: "POST", headers: { "Content-Type": "application/json" }, body }));
  await attempt("metrics", () => fetch(base + "/metrics"));
  await attempt("page", () => fetch(base + "/"));
  r.beacon = navigator.sendBeacon(answers, new Blob([body], { type: "text/plain" }));
  // A form posted into a hidden frame: the classic CSRF.
  const frame = document.createElement("iframe");
  frame.name = "sink";
  document.body.append(frame);
  const form = document.createElement("form");
  Object.assign(form, { action: answers, method: "POST", enctype: "text/plain", target: "sink" });
  const field = document.createElement("input");
  Object.assign(field, { name: '{"prompt": "x", "pad": "', value: '"}' });
  form.append(field);
  document.body.append(form);
  const loaded = new Promise((resolve) => { frame.onload = resolve; });
  form.submit();
  await Promise.race([loaded, new Promise((resolve) => setTimeout(resolve, 3000))]);
  r.done = true;
};
"""


class Attacker:
    """Another web site: a page on a loopback port of its own, with the attacks above."""

    def __init__(self, port: int = 0) -> None:
        page = f"<!doctype html><title>a page you visit</title><script>{ATTACKS}</script>"

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(page.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Page)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def started(
    cli: Cli, fake_api: FakeAnthropic, port: int = 0
) -> tuple[subprocess.Popen[bytes], str]:
    process = cli.popen(
        "serve", "--source", "anthropic", "--port", str(port),
        ANTHROPIC_API_KEY="sk-ant-test-browser-key", ANTHROPIC_BASE_URL=fake_api.base_url,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline().decode()
    assert " on http" in line, line + process.stderr.read().decode()
    return process, line.split(" on ")[1].split("/ ")[0]


def answers_started(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx2.get(f"{url}/metrics").text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return samples["voicestream_answers_total"]


def run_attacks(browser: webdriver.Chrome, base: str) -> dict[str, object]:
    browser.execute_script("window.attack(arguments[0])", base)
    WebDriverWait(browser, 30, poll_frequency=0.05).until(
        lambda d: d.execute_script("return window.results.done")
    )
    results: dict[str, object] = browser.execute_script("return window.results")
    return results


@pytest.mark.parametrize("site", ["127.0.0.1", "localhost"])
def test_another_site_cannot_start_or_read_answers(
    browser: webdriver.Chrome, cli: Cli, fake_api: FakeAnthropic, site: str
) -> None:
    """A page on another port of this machine (another origin, the same site)."""
    attacker = Attacker()
    process, url = started(cli, fake_api)
    try:
        browser.get(f"http://{site}:{attacker.port}/")
        results = run_attacks(browser, url)
        # Nothing could be read, and nothing was started, whatever the browser sent.
        assert results["cors json"] == results["metrics"] == results["page"] == "blocked"
        assert answers_started(url) == 0 and not fake_api.requests
    finally:
        attacker.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_dns_rebinding_cannot_reach_the_server(
    browser: webdriver.Chrome, cli: Cli, fake_api: FakeAnthropic
) -> None:
    """evil.test's page is loaded from evil.test; then the name points at 127.0.0.1
    and the same port is our server: the page's requests are same-origin now."""
    attacker = Attacker()
    port = attacker.port
    browser.execute_cdp_cmd("Network.enable", {})
    browser.get(f"http://evil.test:{port}/")  # mapped to 127.0.0.1 (--host-resolver-rules)
    attacker.close()
    process, url = started(cli, fake_api, port)  # now the server is at the same address
    try:
        results = run_attacks(browser, "")  # same origin: everything can be read
        assert results["cors json"] == results["metrics"] == results["page"] == 421
        assert "allowed_hosts" in str(results["metrics read"])
        assert answers_started(url) == 0 and not fake_api.requests
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
