// voicestream's page: a conversation over one WebSocket (/v1/talk). The answer is
// shown as it is written (markdown, rendered safely as it streams), heard through Web
// Audio as it is synthesized, and the part already heard is set apart, the sentence
// and the word being heard highlighted (each chunk event says where its words start
// in the audio). Plain JavaScript, no build step, nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const page = document.body;
const RECONNECTS = 20;  // tries after a lost socket, a second apart
const MIN_BLOCK_S = 0.1;  // audio is scheduled in pieces of at least this much

let audio = null;  // the AudioContext, made on the first question (a user gesture)
let socket = null;
let current = null;  // the answer being heard
let awaiting = null;  // {question}: asked, its "answer" frame not here yet
let ignoring = false;  // frames of an answer this page has finished with, until the next
const history = [];  // [{role, content}], sent with the next question: what was heard

function token() {
  return $("token").value.trim() || sessionStorage.getItem("voicestream-token") || "";
}

function headers() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

function status(text) {
  $("status").textContent = text;
}

function setState(state) {
  page.dataset.state = state;
  const busy = state === "asking" || state === "speaking";
  $("stop").disabled = !busy;
}

// -- markdown, as it streams ------------------------------------------------------
// Blocks (headings, list items, quotes, fenced code, paragraphs) and inline code,
// bold and italics; everything else is text. Never HTML from the model: every
// character reaches the page through textContent. An emphasis still open at the end
// of what has arrived is shown as it will be, so nothing jumps when it closes.

function render(text, words, final) {
  const root = document.createDocumentFragment();
  let list = null;  // the <ul>/<ol> being filled
  let paragraph = null;
  let code = null;  // {pre, start}
  let offset = 0;
  for (const line of text.split("\n")) {
    const start = offset;
    offset += line.length + 1;
    if (code) {
      if (/^\s{0,3}(```|~~~)/.test(line)) { code = null; continue; }
      code.pre.append(line + "\n");
      continue;
    }
    if (/^\s{0,3}(```|~~~)/.test(line)) {
      const pre = document.createElement("pre");
      code = { pre };
      root.append(pre);
      list = paragraph = null;
      continue;
    }
    if (!line.trim()) { list = paragraph = null; continue; }
    let match;
    if ((match = /^\s{0,3}(#{1,6})\s+/.exec(line))) {
      const heading = document.createElement("h3");
      inline(heading, line, start, match[0].length, words, final);
      root.append(heading);
      list = paragraph = null;
    } else if ((match = /^\s*([-*+•]|\d{1,3}[.)])\s+/.exec(line))) {
      const ordered = /\d/.test(match[1]);
      if (!list || list.ordered !== ordered) {
        list = document.createElement(ordered ? "ol" : "ul");
        list.ordered = ordered;
        root.append(list);
      }
      const item = document.createElement("li");
      inline(item, line, start, match[0].length, words, final);
      list.append(item);
      paragraph = null;
    } else if ((match = /^\s*>\s?/.exec(line))) {
      const quote = document.createElement("blockquote");
      inline(quote, line, start, match[0].length, words, final);
      root.append(quote);
      list = paragraph = null;
    } else {
      if (!paragraph) {
        paragraph = document.createElement("p");
        root.append(paragraph);
        list = null;
      } else {
        paragraph.append(document.createElement("br"));
      }
      inline(paragraph, line, start, 0, words, final);
    }
  }
  return root;
}

const INLINE = /(`+)([^`]+?)\1|\*\*(?=\S)([^*]+?)\*\*|__(?=\S)([^_]+?)__|\*(?=\S)([^*]+?)\*|(?<!\w)_(?=\S)([^_]+?)_(?!\w)/g;

function inline(parent, line, lineStart, from, words, final) {
  let at = from;
  INLINE.lastIndex = from;
  let match;
  while ((match = INLINE.exec(line))) {
    plain(parent, line.slice(at, match.index), lineStart + at, words);
    const [whole, ticks] = match;
    const inner = match[2] ?? match[3] ?? match[4] ?? match[5] ?? match[6];
    const tag = ticks ? "code" : match[3] || match[4] ? "strong" : "em";
    const element = document.createElement(tag);
    const innerStart = match.index + whole.indexOf(inner, ticks ? ticks.length : 1);
    plain(element, inner, lineStart + innerStart, words);
    parent.append(element);
    at = match.index + whole.length;
  }
  let rest = line.slice(at);
  // Still streaming, an emphasis that is open at the end: shown as it will be.
  const open = !final && /^(.*?)(\*\*|\*|__|`)(?=\S)([^*_`]*)$/.exec(rest);
  if (open) {
    plain(parent, open[1], lineStart + at, words);
    const tag = open[2] === "`" ? "code" : open[2].length === 2 ? "strong" : "em";
    const element = document.createElement(tag);
    plain(element, open[3], lineStart + at + open[1].length + open[2].length, words);
    parent.append(element);
    return;
  }
  plain(parent, rest, lineStart + at, words);
}

// Text at ``start`` in the answer, with each word that was spoken in a span of its own.
function plain(parent, text, start, words) {
  let at = 0;
  for (const w of words) {
    if (w.end <= start + at || w.start >= start + text.length) continue;
    const from = Math.max(w.start - start, at);
    const to = Math.min(w.end - start, text.length);
    if (from > at) parent.append(text.slice(at, from));
    const span = document.createElement("span");
    span.className = "w";
    span.dataset.chunk = w.chunk;
    span.dataset.word = w.word;
    span.textContent = text.slice(from, to);
    parent.append(span);
    at = to;
  }
  if (at < text.length) parent.append(text.slice(at));
}

// -- one answer ---------------------------------------------------------------

class Answer {
  constructor(question, frame) {
    this.question = question;
    this.id = frame.id;
    this.rate = frame.sample_rate;
    this.lastEventId = 0;
    this.text = "";
    this.chunks = [];  // the chunk events, with words: [{..., start, end}] in this.text
    this.words = [];  // every aligned word: {start, end, chunk, word, audio_start_s}
    this.cursor = 0;  // where the next spoken word is looked for in this.text
    this.ended = false;  // done or error arrived
    this.outcome = "";
    this.finished = false;  // in the conversation
    this.samples = 0;  // received
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

  event(frame) {
    if (frame.id <= this.lastEventId) return;
    this.lastEventId = frame.id;
    if (frame.type === "text") {
      this.text += frame.text;
      this.show();
    } else if (frame.type === "chunk") {
      this.align(frame);
      this.show();
    } else if (frame.type === "notice") {
      status(frame.message);
    } else if (frame.type === "done" || frame.type === "error") {
      this.ended = true;
      this.outcome = frame.type === "done" ? frame.stop_reason : "error";
      if (frame.type === "error") status(frame.message);
      this.show();
      playedOut(this);
    }
  }

  // Find the chunk's words in the written text, in order (markup aside, they are
  // the same words); a word not found near where the last one was is left out.
  align(chunk) {
    const words = [];
    for (const [i, w] of (chunk.words || []).entries()) {
      const word = chunk.text.slice(w.offset, w.offset + w.length);
      const at = this.text.indexOf(word, this.cursor);
      if (at < 0 || at - this.cursor > 200) continue;
      this.cursor = at + word.length;
      const aligned = { start: at, end: at + word.length, chunk: chunk.index, word: i,
        audio_start_s: w.audio_start_s };
      words.push(aligned);
      this.words.push(aligned);
    }
    this.chunks.push({ ...chunk, aligned: words });
  }

  show() {
    if (current !== this) return;
    $("answer").replaceChildren(render(this.text, this.words, this.ended));
    page.dataset.heardWord = "";  // the spans are new: mark them again
    showHeard();
  }

  receive(bytes, flush) {
    this.pending = concat(this.pending, bytes);
    const count = Math.floor(this.pending.length / 2);
    if (!count || (!flush && count < MIN_BLOCK_S * this.rate)) return;
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
      const begun = (c.words || []).filter((w) => w.audio_start_s < played);
      if (begun.length) {
        const last = begun[begun.length - 1];
        said.push(c.text.slice(0, last.offset + last.length));
      }
      break;
    }
    return said.join(" ");
  }
}

// -- the socket ---------------------------------------------------------------

function connect() {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/v1/talk`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (token()) ws.send(JSON.stringify({ type: "auth", token: token() }));
      socket = ws;
      page.dataset.socket = "open";
      resolve(ws);
    };
    ws.onerror = () => reject(new Error("the server cannot be reached"));
    ws.onmessage = (message) => receive(message.data);
    ws.onclose = () => {
      if (socket === ws) {
        socket = null;
        page.dataset.socket = "closed";
        lost();
      }
    };
  });
}

async function send(frame) {
  if (!socket) await connect();
  socket.send(JSON.stringify(frame));
}

function receive(data) {
  if (data instanceof ArrayBuffer) {
    if (current && !ignoring) current.receive(new Uint8Array(data), false);
    return;
  }
  const frame = JSON.parse(data);
  if (frame.type === "heartbeat") return;
  if (frame.type === "answer") {
    ignoring = false;
    if (current && current.id === frame.id) return;  // resumed
    const asked = awaiting || { question: "" };
    awaiting = null;
    current = new Answer(asked.question, frame);
    page.dataset.answerId = current.id;
    $("current").hidden = false;
    $("download-row").hidden = true;
    setState("speaking");
    status("");
    current.show();
    return;
  }
  if (!("id" in frame)) {  // the server could not take a frame
    if (frame.status === 401) {
      $("token-row").hidden = false;
      $("token").focus();
      status("This server needs a token: enter it and ask again.");
    } else {
      status(frame.message);
    }
    if (awaiting) {  // the question was not taken: it goes back to be sent again
      if (!$("question").value.trim()) $("question").value = awaiting.question;
      awaiting = null;
      setState("idle");
    } else if (current && !current.finished && resuming) {
      resuming = false;
      finish(current, true);  // its answer is gone (the server restarted): cut off
    }
    return;
  }
  if (current && !ignoring) current.event(frame);
}

let resuming = false;

async function lost() {
  const answer = current;
  if (!answer || answer.finished || answer.ended) return;
  resuming = true;
  for (let attempt = 1; attempt <= RECONNECTS && current === answer && !answer.finished; attempt++) {
    status(`Connection lost; reconnecting (${attempt})…`);
    await sleep(1000);
    try {
      await connect();
      answer.receive(new Uint8Array(0), true);
      await send({ type: "resume", answer: answer.id, last_event_id: answer.lastEventId,
        from_s: (answer.samples + answer.pending.length / 2 + 0.5) / answer.rate });
      answer.pending = new Uint8Array(0);
      status("");
      return;
    } catch (_) { /* try again */ }
  }
  if (current === answer && !answer.finished) {
    status("The connection was lost.");
    finish(answer, true);
  }
}

// -- the conversation -------------------------------------------------------------

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  audio = audio || new AudioContext();
  await audio.resume();
  if ($("token").value.trim()) sessionStorage.setItem("voicestream-token", token());
  if (current && !current.finished) {  // barge-in: what was heard stays, cut off
    current.silence();
    finish(current, true);
    ignoring = true;  // the server sends its end first, then the new answer
  }
  awaiting = { question };
  $("question").value = "";  // sent; a draft typed from now on is kept
  setState("asking");
  status("Asking…");
  const frame = { type: "ask", prompt: question, history };
  if ($("voice").value) frame.voice = $("voice").value;
  if ($("rate").value) frame.rate = Number($("rate").value);
  try {
    await send(frame);
  } catch (error) {
    status(`The server did not answer (${error.message}).`);
    $("question").value = question;
    awaiting = null;
    setState("idle");
  }
}

// When an answer has ended, the conversation records it once its audio has played.
async function playedOut(answer) {
  while (!answer.finished && audio.currentTime < answer.nextTime) await sleep(100);
  if (!answer.finished) finish(answer, answer.outcome !== "end_turn" && answer.outcome !== "max_tokens");
}

function finish(answer, cut) {
  if (answer.finished) return;
  answer.finished = true;
  showHeard();
  const said = answer.heardText();
  history.push({ role: "user", content: answer.question },
    { role: "assistant", content: said || "…" });
  $("conversation").hidden = false;
  $("empty").hidden = true;
  for (const [who, text] of [["You", answer.question], ["Assistant", said]]) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = `${who}: `;
    item.append(name, text);
    if (who === "Assistant" && cut) {
      const mark = document.createElement("span");
      mark.className = "cut";
      mark.textContent = " (cut off)";
      item.append(mark);
    }
    $("history").append(item);
  }
  if (answer.outcome && answer.outcome !== "error" && answer.outcome !== "stopped") offerDownload(answer);
  if (current === answer) setState(cut ? "stopped" : "done");
}

function stop() {
  const answer = current;
  if (!answer || answer.finished) return;
  answer.silence();  // silence now; the server is told next
  finish(answer, true);
  ignoring = true;
  status("Stopped.");
  if (socket) socket.send(JSON.stringify({ type: "stop" }));
}

function offerDownload(answer) {
  const link = $("download");
  link.onclick = async (event) => {
    event.preventDefault();
    const response = await fetch(`/v1/answers/${answer.id}/audio`, { headers: headers() });
    if (!response.ok) { status("The audio is no longer kept."); return; }
    const url = URL.createObjectURL(await response.blob());
    const save = document.createElement("a");
    save.href = url;
    save.download = "answer.wav";
    save.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  $("download-row").hidden = false;
}

// What is heard, 20 times a second: the seconds played, the sentence and the word.
function showHeard() {
  const answer = current;
  if (!answer) return;
  const played = answer.playedSeconds();
  page.dataset.playedS = played.toFixed(3);
  let sentence = -1;
  let word = -1;
  for (const c of answer.chunks) {
    if (c.audio_start_s <= played && played < c.audio_start_s + c.audio_s) {
      sentence = c.index;
      word = (c.words || []).filter((w) => w.audio_start_s <= played).length - 1;
    }
  }
  const now = word >= 0 ? `${sentence}.${word}` : "-1";
  if (now === page.dataset.heardWord && String(sentence) === page.dataset.heardIndex) return;
  page.dataset.heardWord = now;
  page.dataset.heardIndex = String(sentence);
  for (const span of $("answer").querySelectorAll("span.w")) {
    const w = answer.words.find((x) => x.chunk === Number(span.dataset.chunk)
      && x.word === Number(span.dataset.word));
    span.classList.toggle("heard", Boolean(w) && w.audio_start_s <= played);
    span.classList.toggle("sentence", Number(span.dataset.chunk) === sentence);
    span.classList.toggle("now", now === `${span.dataset.chunk}.${span.dataset.word}`);
  }
}
setInterval(showHeard, 50);

// -- voices, and what this server is ----------------------------------------------

async function loadVoices() {
  try {
    const response = await fetch("/v1/voices", { headers: headers() });
    if (!response.ok) return;
    const listing = await response.json();
    const select = $("voice");
    select.replaceChildren();
    for (const v of listing.voices) {
      const option = document.createElement("option");
      option.value = v.name === listing.default ? "" : v.name;
      option.textContent = v.description ? `${v.name} (${v.description})` : v.name;
      option.selected = v.name === listing.default;
      select.append(option);
    }
    const health = await (await fetch("/healthz")).json();
    $("about").textContent = `Answers come from ${health.source || "the server's model"}, `
      + `spoken by ${listing.engine}.`;
  } catch (_) { /* the page still works with the server's voice */ }
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
$("token").addEventListener("change", () => {
  sessionStorage.setItem("voicestream-token", token());
  if (socket) socket.close();
  loadVoices();
});
setState("idle");
loadVoices();
$("question").focus();
