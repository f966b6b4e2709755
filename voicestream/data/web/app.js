// voicestream's page: ask, read the answer as it is written, hear it as it is
// synthesized (fetch + ReadableStream into Web Audio), see the sentence and the word
// being heard (each chunk event says where its words start in the audio).
// Plain JavaScript, no build step, nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const page = document.body;
const RETRIES = 20;  // reconnections after a dropped stream, per answer
const MIN_BLOCK_S = 0.1;  // audio is scheduled in pieces of at least this much

let audio = null;  // the AudioContext, made on the first question (a user gesture)
let current = null;  // the answer being asked, heard or stopped
const history = [];  // [{role, content}], sent with the next question

function headers(extra = {}) {
  const token = $("token").value.trim() || sessionStorage.getItem("voicestream-token");
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function status(text) {
  $("status").textContent = text;
}

function setState(state) {
  page.dataset.state = state;
  $("send").disabled = state === "asking" || state === "speaking";
  $("stop").disabled = !(state === "asking" || state === "speaking");
}

// -- one answer ---------------------------------------------------------------

class Answer {
  constructor(question, created) {
    this.question = question;
    this.id = created.id;
    this.eventsUrl = created.events;
    this.audioUrl = created.audio;
    this.lastEventId = 0;
    this.text = "";
    this.chunks = [];  // {index, text, audio_start_s, audio_s, words: [{..., span}], span}
    this.ended = false;  // done or error arrived
    this.stopped = false;
    this.abort = new AbortController();
    // Audio: what was received, and where each piece plays on the context's clock.
    this.rate = 0;
    this.samples = 0;  // received, in samples
    this.pending = new Uint8Array(0);
    this.nextTime = 0;
    this.segments = [];  // {when, duration, source}
  }

  playedSeconds() {
    if (!audio) return 0;
    let played = 0;
    for (const s of this.segments) {
      played += Math.min(s.duration, Math.max(0, audio.currentTime - s.when));
    }
    return played;
  }

  // Server-sent events over fetch (headers, resuming with Last-Event-ID).
  async readEvents() {
    for (let attempt = 0; attempt <= RETRIES && !this.ended && !this.stopped; attempt++) {
      try {
        const response = await fetch(this.eventsUrl, {
          headers: headers({ "Last-Event-ID": String(this.lastEventId) }),
          signal: this.abort.signal,
        });
        if (!response.ok) throw new Error(await message(response));
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            this.event(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (this.stopped) return;
        status(`Connection lost (${error.message}); resuming…`);
      }
      if (!this.ended && !this.stopped) await sleep(500);
    }
  }

  event(block) {
    let id = 0, name = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("id: ")) id = Number(line.slice(4));
      else if (line.startsWith("event: ")) name = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (!id) return;  // a heartbeat
    this.lastEventId = id;
    const body = JSON.parse(data);
    if (name === "text") {
      this.text += body.text;
      $("answer").textContent = this.text;
    } else if (name === "chunk") {
      const span = document.createElement("span");
      span.className = "chunk";
      span.dataset.index = body.index;
      const words = [];
      let at = 0;
      for (const w of body.words || []) {
        span.append(body.text.slice(at, w.offset));
        const word = document.createElement("span");
        word.className = "word";
        word.textContent = body.text.slice(w.offset, w.offset + w.length);
        span.append(word);
        words.push({ ...w, span: word });
        at = w.offset + w.length;
      }
      span.append(body.text.slice(at) + " ");
      $("spoken").append(span);
      this.chunks.push({ ...body, words, span });
    } else if (name === "notice") {
      status(body.message);
    } else if (name === "done" || name === "error") {
      this.ended = true;
      this.outcome = name === "done" ? body.stop_reason : "error";
      if (name === "error") status(body.message);
    }
  }

  // The WAV as it is synthesized, resuming from the seconds received.
  async readAudio() {
    for (let attempt = 0; attempt <= RETRIES && !this.stopped; attempt++) {
      const from = this.rate ? this.samples / this.rate : 0;
      try {
        const response = await fetch(`${this.audioUrl}?from_s=${from}`, {
          headers: headers(),
          signal: this.abort.signal,
        });
        if (!response.ok) throw new Error(await message(response));
        const reader = response.body.getReader();
        let header = new Uint8Array(0);
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          let bytes = value;
          if (header.length < 44) {  // each response starts with its own header
            const need = 44 - header.length;
            header = concat(header, bytes.subarray(0, need));
            bytes = bytes.subarray(need);
            if (header.length === 44) {
              this.rate = new DataView(header.buffer).getUint32(24, true);
            }
          }
          this.receive(bytes, false);
        }
        this.receive(new Uint8Array(0), true);
        return;  // the server ends the body when the answer's audio is complete
      } catch (error) {
        if (this.stopped) return;
      }
      await sleep(500);
    }
  }

  receive(bytes, flush) {
    this.pending = concat(this.pending, bytes);
    const count = Math.floor(this.pending.length / 2);
    if (!count || (!flush && count < MIN_BLOCK_S * this.rate) || this.stopped) return;
    const view = new DataView(this.pending.buffer, this.pending.byteOffset, count * 2);
    const buffer = audio.createBuffer(1, count, this.rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < count; i++) channel[i] = view.getInt16(2 * i, true) / 32768;
    this.pending = this.pending.slice(count * 2);
    this.samples += count;
    const source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(audio.destination);
    const when = Math.max(this.nextTime, audio.currentTime + 0.05);
    source.start(when);
    this.nextTime = when + buffer.duration;
    this.segments.push({ when, duration: buffer.duration, source });
  }

  silence() {
    for (const s of this.segments) {
      try { s.source.stop(); } catch (_) { /* not started yet */ }
      // What was not heard is not heard: the clock of what played stops here.
      s.duration = Math.min(s.duration, Math.max(0, audio.currentTime - s.when));
    }
  }

  // What was heard: the chunks played to their end, then the one in progress up to
  // the end of its word in progress.
  heardText() {
    const played = this.playedSeconds();
    const said = [];
    for (const c of this.chunks) {
      if (c.audio_start_s + c.audio_s <= played) {
        said.push(c.text);
        continue;
      }
      const begun = c.words.filter((w) => w.audio_start_s < played);
      if (begun.length) {
        const last = begun[begun.length - 1];
        said.push(c.text.slice(0, last.offset + last.length));
      }
      break;
    }
    return said.join(" ");
  }
}

// -- the page -----------------------------------------------------------------

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || page.dataset.state === "asking" || page.dataset.state === "speaking") return;
  audio = audio || new AudioContext();
  await audio.resume();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("voicestream-token", token);
  setState("asking");
  status("Asking…");
  $("answer").textContent = "";
  $("spoken").textContent = "";
  let response;
  try {
    response = await fetch("/v1/answers", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ prompt: question, history }),
    });
  } catch (error) {
    status(`The server did not answer (${error.message}).`);
    setState("idle");
    return;
  }
  if (response.status === 401) {
    $("token-row").hidden = false;
    $("token").focus();
    status("This server needs a token: enter it and ask again.");
    setState("idle");
    return;
  }
  if (!response.ok) {
    status(await message(response));
    setState("idle");
    return;
  }
  const answer = (current = new Answer(question, await response.json()));
  setState("speaking");
  status("");
  await Promise.all([answer.readEvents(), answer.readAudio()]);
  // Wait for the audio to finish playing, unless stopped.
  while (!answer.stopped && audio.currentTime < answer.nextTime) await sleep(100);
  finish(answer);
}

function finish(answer) {
  if (answer.done) return;
  answer.done = true;
  const said = answer.stopped ? answer.heardText() : answer.text.trim();
  if (said) {
    history.push({ role: "user", content: answer.question }, { role: "assistant", content: said });
    for (const [who, text] of [["You", answer.question], ["Assistant", said]]) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "who";
      name.textContent = `${who}: `;
      item.append(name, text);
      $("history").append(item);
    }
  }
  if (answer.stopped) status("Stopped.");
  else if (answer.outcome !== "error") status("");
  page.dataset.state = answer.stopped ? "stopped" : "done";
  setState(page.dataset.state);
  $("question").value = "";
  $("question").focus();
}

async function stop() {
  const answer = current;
  if (!answer || answer.stopped) return;
  answer.stopped = true;
  answer.silence();  // silence now; the server is told next
  answer.abort.abort();
  showHeard();  // what was heard, final before the page says "stopped"
  finish(answer);
  try {
    await fetch(`/v1/answers/${answer.id}`, { method: "DELETE", headers: headers() });
  } catch (_) { /* the answer ends on its own when nobody is attached */ }
}

// What is heard, 20 times a second (and at once on Stop): the seconds played, the
// sentence, and the word in it.
function showHeard() {
  const answer = current;
  if (!answer) return;
  const played = answer.playedSeconds();
  page.dataset.playedS = played.toFixed(3);
  let heard = -1;
  let word = null;
  let now = "-1";
  for (const c of answer.chunks) {
    if (c.audio_start_s <= played && played < c.audio_start_s + c.audio_s) {
      heard = c.index;
      word = c.words.filter((w) => w.audio_start_s <= played).pop() || null;
      if (word) now = `${c.index}.${c.words.indexOf(word)}`;
    }
  }
  if (now !== page.dataset.heardWord) {
    page.dataset.heardWord = now;
    for (const w of $("spoken").querySelectorAll(".word.now")) w.classList.remove("now");
    if (word) word.span.classList.add("now");
  }
  if (String(heard) !== page.dataset.heardIndex) {
    page.dataset.heardIndex = String(heard);
    for (const c of answer.chunks) {
      c.span.classList.toggle("heard", c.index === heard);
      if (c.index === heard) c.span.setAttribute("aria-current", "true");
      else c.span.removeAttribute("aria-current");
    }
  }
}
setInterval(showHeard, 50);

async function message(response) {
  try {
    return (await response.json()).error || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

function concat(a, b) {
  if (!a.length) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

$("ask").addEventListener("submit", ask);
$("stop").addEventListener("click", stop);
$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") stop();
});
setState("idle");
$("question").focus();
