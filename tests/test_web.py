"""The web page in a real browser: Debian's chromium, headless, driven by selenium
through chromium-driver, against the real server (its own process) with the
loopback Anthropic stand-in upstream and real espeak-ng."""

from __future__ import annotations

import json
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


def body(driver: webdriver.Chrome, name: str) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}") or ""


def played(driver: webdriver.Chrome) -> float:
    return float(body(driver, "played-s") or 0)


def heard(driver: webdriver.Chrome) -> int:
    return int(body(driver, "heard-index") or -1)


def heard_word(driver: webdriver.Chrome) -> tuple[int, int]:
    """(chunk, word in it) being heard; (-1, -1) between words."""
    chunk, _, word = (body(driver, "heard-word") or "-1").partition(".")
    return (int(chunk), int(word)) if word else (-1, -1)


def state_is(state: str) -> object:
    return lambda d: body(d, "state") == state


# At one instant of the page: the words marked heard are the words up to the one
# being heard (never one not played yet), and at most one word is lit, inside the
# sentence being heard.
HIGHLIGHT = """
const spans = [...document.querySelectorAll('#answer span.w')];
const heard = spans.map((s) => s.classList.contains('heard'));
const now = spans.findIndex((s) => s.classList.contains('now'));
const lastHeard = heard.lastIndexOf(true);
return {
  prefix: heard.every((h, i) => h === (i <= lastHeard)),
  lit: document.querySelectorAll('#answer .w.now').length,
  litInSentence: document.querySelectorAll('#answer .w.now.sentence').length,
  nowIsLastHeard: now < 0 || now === lastHeard,
  sentences: [...new Set([...document.querySelectorAll('#answer .w.sentence')]
    .map((s) => s.dataset.chunk))],
};
"""


def history_items(driver: webdriver.Chrome) -> list[str]:
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#history li")]


def test_the_page_speaks_highlights_what_is_heard_and_stops(
    browser: webdriver.Chrome, server: str, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    # ~17 s to write: the model is still writing when Stop is pressed.
    fake_api.script = Script(text=TEXT, piece=3, delay_s=0.05)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    assert "spoken aloud" in browser.find_element(By.ID, "empty").text
    wait.until(lambda d: "anthropic" in d.find_element(By.ID, "about").text)  # who answers
    question = browser.find_element(By.ID, "question")
    question.send_keys("How does streaming speech work?", Keys.ENTER)  # by keyboard
    wait.until(lambda d: d.find_element(By.ID, "answer").text.startswith("Streaming speech"))
    wait.until(lambda d: played(d) > 0.5)  # Web Audio played the streamed audio
    indices = []
    wait.until(lambda d: indices.append(heard(d)) or heard(d) >= 2)  # it follows the audio
    assert indices[0] <= 0 and sorted(set(indices)) == sorted(set(indices), key=indices.index)
    # Karaoke: the word being heard moves on word by word, inside the sentence heard;
    # what is marked heard is exactly the words up to it.
    words: list[tuple[int, int]] = []
    wait.until(lambda d: words.append(heard_word(d)) or len({w for w in words if w[0] >= 0}) >= 6)
    moving = [w for i, w in enumerate(words) if w[0] >= 0 and (i == 0 or w != words[i - 1])]
    assert moving == sorted(moving)  # forward only
    seen: list[dict[str, object]] = []
    wait.until(lambda d: seen.append(d.execute_script(HIGHLIGHT)) or len(seen) >= 20)
    for instant in seen:
        assert instant["prefix"] and instant["nowIsLastHeard"]
        assert instant["lit"] == instant["litInSentence"] <= 1
        assert len(instant["sentences"]) <= 1  # type: ignore[arg-type]
    browser.save_screenshot(str(tmp_path / "page.png"))
    # A draft typed while it speaks survives Stop.
    question.send_keys("a draft")
    browser.find_element(By.ID, "stop").click()
    wait.until(state_is("stopped"))
    silent_from = played(browser)
    time.sleep(0.5)
    assert played(browser) == silent_from  # silence: nothing more plays after Stop
    assert question.get_attribute("value") == "a draft"
    wait_for(lambda: fake_api.requests[-1].outcome == "closed by client", 10)
    you, assistant = history_items(browser)
    assert you == "You: How does streaming speech work?" and assistant.endswith("(cut off)")
    said = assistant.removeprefix("Assistant: ").removesuffix(" (cut off)").strip()
    # Up to the word in progress, exactly: a whole word of the answer, never more
    # than what played.
    assert TEXT.startswith(said) and not TEXT[len(said)].isalnum() and len(said) < len(TEXT)
    heard_spans = browser.find_elements(By.CSS_SELECTOR, "#answer .w.heard")
    assert said.endswith(heard_spans[-1].text)
    # The next question carries the conversation so far, as heard.
    asked = len(fake_api.requests)
    question.clear()
    question.send_keys("And then?", Keys.ENTER)
    wait_for(lambda: len(fake_api.requests) > asked, 10)
    messages = fake_api.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "How does streaming speech work?"
    assert messages[1]["content"] == said and messages[2]["content"] == "And then?"
    # Barge-in by typing: Enter with a new question while it speaks stops it and asks.
    wait.until(lambda d: played(d) > 0.5 and body(d, "state") == "speaking")
    first_id = body(browser, "answer-id")
    asked = len(fake_api.requests)
    question.send_keys("Something else.", Keys.ENTER)
    wait.until(lambda d: body(d, "answer-id") not in ("", first_id))
    wait_for(lambda: len(fake_api.requests) > asked, 10)
    wait_for(lambda: fake_api.requests[asked - 1].outcome == "closed by client", 10)
    interrupted = history_items(browser)[3]
    assert interrupted.endswith("(cut off)")
    second = interrupted.removeprefix("Assistant: ").removesuffix(" (cut off)").strip()
    messages = fake_api.requests[-1].body["messages"]
    assert messages[-2] == {"role": "assistant", "content": second}
    assert messages[-1]["content"] == "Something else."
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)  # stop by keyboard
    wait.until(state_is("stopped"))


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
        assert browser.find_element(By.ID, "question").get_attribute("value") == "Hello?"
        browser.find_element(By.ID, "token").send_keys("open-sesame-123")
        browser.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "answer").text == "Short and sweet.")
        wait.until(state_is("done"))
        assert browser.find_element(By.ID, "download-row").is_displayed()
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
  // A socket to /v1/talk: a browser sends its Origin, which the server refuses.
  r.websocket = await new Promise((resolve) => {
    const ws = new WebSocket(base.replace("http", "ws") + "/v1/talk");
    ws.onopen = () => { ws.send(JSON.stringify({ type: "ask", prompt: "x" })); resolve("open"); };
    ws.onerror = () => resolve("blocked");
  });
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
    cli: Cli, fake_api: FakeAnthropic, port: int = 0, **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    process = cli.popen(
        "serve", "--source", "anthropic", "--port", str(port),
        ANTHROPIC_API_KEY="sk-ant-test-browser-key", ANTHROPIC_BASE_URL=fake_api.base_url, **env,
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
        assert results["websocket"] == "blocked"
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
        results = run_attacks(browser, f"http://evil.test:{port}")  # same origin now
        assert results["cors json"] == results["metrics"] == results["page"] == 421
        assert results["websocket"] == "blocked"
        assert "allowed_hosts" in str(results["metrics read"])
        assert answers_started(url) == 0 and not fake_api.requests
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


MARKDOWN = (
    "## The plan\n\nFirst, **read** the *notes* and run `make test`.\n\n"
    "- one step\n- another step\n\n"
    "Then <script>window.pwned = true</script> and <b>bold?</b> are shown as text.\n"
)


def test_markdown_is_shown_formatted_and_html_from_the_model_as_text(
    browser: webdriver.Chrome, server: str, fake_api: FakeAnthropic
) -> None:
    fake_api.script = Script(text=MARKDOWN, piece=3, delay_s=0.01)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    browser.find_element(By.ID, "question").send_keys("Markdown, please.", Keys.ENTER)
    wait.until(state_is("done"))
    answer = browser.find_element(By.ID, "answer")
    assert answer.find_element(By.TAG_NAME, "h3").text == "The plan"
    assert answer.find_element(By.TAG_NAME, "strong").text == "read"
    assert answer.find_element(By.TAG_NAME, "em").text == "notes"
    assert answer.find_element(By.TAG_NAME, "code").text == "make test"
    assert [li.text for li in answer.find_elements(By.TAG_NAME, "li")] == [
        "one step", "another step",
    ]  # fmt: skip
    assert "<script>window.pwned = true</script> and <b>bold?</b>" in answer.text
    assert not answer.find_elements(By.TAG_NAME, "script")
    assert not answer.find_elements(By.TAG_NAME, "b")
    assert browser.execute_script("return window.pwned === undefined")
    assert "**" not in answer.text and "`" not in answer.text and "##" not in answer.text


def test_the_chosen_voice_and_speed_reach_the_engine(
    browser: webdriver.Chrome, server: str, fake_api: FakeAnthropic
) -> None:
    text = "A short answer, said by the voice you chose."
    fake_api.script = Script(text=text, piece=4)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 5)
    german = browser.execute_script(
        "const o = [...document.querySelectorAll('#voice option')]"
        ".find((o) => o.textContent.includes('German')); o.selected = true; return o.value;"
    )
    browser.execute_script("document.getElementById('rate').value = '300';")
    browser.find_element(By.ID, "question").send_keys("Say it.", Keys.ENTER)
    wait.until(state_is("done"))
    answer_id = body(browser, "answer-id")

    def chunk_seconds(answer: str) -> list[float]:
        with httpx2.stream("GET", f"{server}/v1/answers/{answer}/events", timeout=30) as r:
            data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        return [d["audio_s"] for d in data if "index" in d]  # the chunks'

    def asked(**fields: object) -> str:
        created = httpx2.post(f"{server}/v1/answers", json={"prompt": "Say it.", **fields})
        return str(created.json()["id"])

    page = sum(chunk_seconds(answer_id))
    # The same engine settings (espeak-ng's prosody carries a few ms from text to text).
    assert page == pytest.approx(sum(chunk_seconds(asked(voice=german, rate=300))), rel=0.03)
    assert page < 0.8 * sum(chunk_seconds(asked()))  # and not the default ones (180 wpm)


def test_a_lost_server_keeps_what_was_heard_and_the_page_reconnects(
    browser: webdriver.Chrome, cli: Cli, fake_api: FakeAnthropic
) -> None:
    fake_api.script = Script(text=TEXT, piece=3, delay_s=0.05)
    process, url = started(cli, fake_api)
    port = int(url.rsplit(":", 1)[1])
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 40, poll_frequency=0.05)
        browser.find_element(By.ID, "question").send_keys("Tell me.", Keys.ENTER)
        wait.until(lambda d: played(d) > 1.0)
        process.kill()  # the server dies mid-answer
        process.wait()
        wait.until(lambda d: "reconnecting" in d.find_element(By.ID, "status").text)
        process, url = started(cli, fake_api, port)  # and comes back on the same port
        # Its answer is gone with it: what was heard stays, marked cut off.
        wait.until(lambda d: len(history_items(d)) == 2)
        assistant = history_items(browser)[1]
        assert assistant.endswith("(cut off)")
        said = assistant.removeprefix("Assistant: ").removesuffix(" (cut off)").strip()
        assert said and TEXT.startswith(said) and len(said) < len(TEXT)
        # And the conversation goes on with the new server, carrying what was heard.
        fake_api.script = Script(text="Back again.", piece=3)
        browser.find_element(By.ID, "question").send_keys("Are you back?", Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "answer").text == "Back again.")
        assert fake_api.requests[-1].body["messages"][1] == {"role": "assistant", "content": said}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_after_a_server_error_the_conversation_keeps_what_was_heard_marked_cut_off(
    browser: webdriver.Chrome, cli: Cli, fake_api: FakeAnthropic
) -> None:
    # The model's stream fails mid-answer: the page says so, lets what was spoken play
    # out, and the conversation keeps exactly that (the spoken chunks), cut off.
    fake_api.script = Script(text=TEXT, piece=3, delay_s=0.01, error_after=36)
    process, url = started(cli, fake_api, VOICESTREAM_ANTHROPIC_MAX_RESUMES="0")
    try:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 40, poll_frequency=0.05)
        browser.find_element(By.ID, "question").send_keys("Tell me.", Keys.ENTER)
        wait.until(lambda d: len(history_items(d)) == 2)
        assert "API" in browser.find_element(By.ID, "status").text  # the error, said
        assert body(browser, "state") == "stopped"
        assistant = history_items(browser)[1]
        assert assistant.endswith("(cut off)")
        said = assistant.removeprefix("Assistant: ").removesuffix(" (cut off)").strip()
        answer = body(browser, "answer-id")
        with httpx2.stream("GET", f"{url}/v1/answers/{answer}/events", timeout=30) as r:
            data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        spoken = " ".join(d["text"] for d in data if "index" in d)
        assert said == spoken and TEXT.startswith(said) and len(said) < len(TEXT)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
