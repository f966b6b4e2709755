"""The sentence chunker side by side with stream2sentence (the splitter in RealtimeTTS).

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/chunker.py

Both are fed the same text in LLM-sized tokens (random 1-6 characters, seeded):
- throughput: KB of text per second of CPU time (the best of three runs);
- release lookahead: for every chunk that ends a sentence, the non-space characters
  that had arrived after the sentence's end when it was released (median, p90), fed
  one character at a time (so that it measures the splitter, not the token size);
- false splits on the tricky-case table of voicestream/chunker_cases.py: a boundary inside
  a sentence that is neither in the expected chunks, nor after a clause mark, nor a
  plain sentence end (after ! ? or after a period that follows an ordinary word).
- a boundary corpus of our own (BOUNDARY_TEXTS texts of 2-4 sentences, fed in tokens):
  boundary recall (sentence ends where a chunk ends), recall on the hard ones (an
  abbreviation that ends a sentence, a sentence starting in lower case, short CJK
  sentences), false splits (a chunk end that is neither a sentence end, nor after a
  clause mark, nor at a pause: just before a word that opens a clause or a phrase and
  not after one that needs what follows; those are counted apart), and the first
  chunk: its words (median, p90) and the time from the first token to its release at
  60 tokens per second.
Prints markdown tables.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
import time
from collections.abc import Callable, Iterator

from voicestream.chunker import (
    CUT_BEFORE,
    END_CAPABLE,
    END_CAPABLE_BY_LANGUAGE,
    NEVER_END,
    NEVER_END_BY_LANGUAGE,
    NO_CUT_AFTER,
    SentenceChunker,
)
from voicestream.chunker_cases import BY_LANGUAGE, CASES
from voicestream.sources.demo import demo_answer

Splitter = Callable[..., Iterator[tuple[int, str]]]  # (pieces, language="")


def tokens(text: str, seed: int = 0) -> list[str]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i += n
    return out


def ours(pieces: list[str], language: str = "") -> Iterator[tuple[int, str]]:
    """``(index of the piece that released it, chunk)``; ``language``: the voice's."""
    chunker = SentenceChunker(language=language)
    for i, piece in enumerate(pieces):
        for chunk in chunker.feed(piece):
            yield i, chunk
    for chunk in chunker.flush():
        yield len(pieces), chunk


def stream2sentence(pieces: list[str], language: str = "") -> Iterator[tuple[int, str]]:
    from stream2sentence import SentenceSplitter

    splitter = SentenceSplitter()
    for i, piece in enumerate(pieces):
        splitter.add(piece)
        for sentence in splitter.stream():
            yield i, sentence
    for sentence in splitter.flush():
        yield len(pieces), sentence


SPLITTERS: dict[str, Splitter] = {"voicestream": ours, "stream2sentence": stream2sentence}


def alnum_positions(text: str) -> list[int]:
    return [m.start() for m in re.finditer(r"[^\W_]", text)]


def lookaheads(text: str, pieces: list[str], released: list[tuple[int, str]]) -> list[int]:
    """Non-space characters that arrived after each sentence end before its release."""
    positions = alnum_positions(text)
    fed = [0]
    for piece in pieces:
        fed.append(fed[-1] + len(piece))
    seen, out = 0, []
    for index, chunk in released:
        seen += len(re.findall(r"[^\W_]", chunk))
        if not seen or index == len(pieces) or not re.search(r"[.!?…]\W*$", chunk):
            continue  # not a sentence end, or released by the end of the stream
        end = positions[min(seen, len(positions)) - 1] + 1
        while end < len(text) and not text[end].isspace() and not text[end].isalnum():
            end += 1
        arrived = fed[index + 1]
        out.append(sum(1 for c in text[end:arrived] if not c.isspace()))
    return out


def plain_sentence_end(text: str, offset: int, language: str = "") -> bool:
    """Whether the alnum ``offset`` boundary is after ! ? or a period after an ordinary
    word (not an abbreviation of English, German, French or ``language``)."""
    positions = alnum_positions(text)
    end = positions[offset - 1] + 1
    tail = re.match(r"[^\w\s]*", text[end:]).group()  # type: ignore[union-attr]
    if (
        re.search(r"[!?。！？]", tail)
        or re.match(r"\s*[,;:—–]", text[end:])
        or re.search(r"[,;:]", tail)
    ):
        return True
    if not tail.startswith((".", "…")):
        return False
    token = re.findall(r"\S+$", text[:end])[0].lower()
    known = NEVER_END_BY_LANGUAGE.get(language, frozenset())
    known |= END_CAPABLE_BY_LANGUAGE.get(language, frozenset())
    return token.isalpha() and len(token) > 1 and token not in NEVER_END | END_CAPABLE | known


def boundaries(chunks: list[str]) -> set[int]:
    out, seen = set(), 0
    for chunk in chunks[:-1]:
        seen += len(re.findall(r"[^\W_]", chunk))
        out.add(seen)
    return out


def false_splits(splitter: Splitter) -> tuple[int, list[str]]:
    count, where = 0, []
    cases = [("", *case) for case in CASES] + BY_LANGUAGE
    for language, rule, text, expected in cases:
        got = [c for _, c in splitter(tokens(text, 1), language=language)]
        for offset in sorted(boundaries(got) - boundaries(expected)):
            if 0 < offset < len(alnum_positions(text)) and not plain_sentence_end(
                text, offset, language
            ):
                count += 1
                where.append(f"{language} {rule}".strip())
    return count, where


def alnum(text: str) -> str:
    return "".join(re.findall(r"[^\W_]", text))


def corpus() -> str:
    """~40 KB of answers: the demo and the tricky cases whose words are all spoken
    (no code blocks or links), so that released chunks can be lined up with the input."""
    parts = [demo_answer()]
    parts += [text for _, text, chunks in CASES if alnum(" ".join(chunks)) == alnum(text)]
    rng = random.Random(0)
    out = []
    while sum(map(len, out)) < 40_000:
        out.append(rng.choice(parts))
    return "\n\n".join(out)


ORDINARY = [
    "The library keeps its old maps in a cool room downstairs.",
    "Most visitors come in the morning, before the heat sets in.",
    "Our team measured the delay on three different machines.",
    "The results were close to what the model had predicted.",
    "A small change in the settings made the fan much quieter.",
    "She wrote the first draft in two weeks and rewrote it twice.",
    "The bridge was closed for repairs until the end of March.",
    "Nobody expected the old printer to work after the move.",
    "You can change the voice later in the settings file.",
    "The recipe needs three eggs, some flour and a pinch of salt.",
    "It took 45 minutes to download the update over the hotel network.",
    "The museum opens at ten and closes at six on weekdays.",
    "He kept the receipts in a shoebox under his desk.",
    "When the power came back, the servers restarted on their own.",
    "The answer depends on how much memory the machine has.",
    "Rain is expected across the north of the country tomorrow.",
    "The first version shipped with a bug in the login page.",
    "Every chapter ends with a short list of questions.",
    "The garden looks best in late spring, when the roses bloom.",
    "They moved the meeting to Thursday because of the holiday.",
    # long ones with no comma, where the first chunk may be cut by its length
    "The assistant has been running without trouble on the small server in the lab for a week now.",
    "We should write everything down carefully in the notes before anyone changes the "
    "configuration file.",
    "The new version of the app loads the whole library of songs from the server in less "
    "than a second.",
    "Most of the people who answered the survey said that they would like longer opening "
    "hours on Sundays.",
]
ABBREVIATION_ENDS = [  # the sentence ends with an abbreviation that can end one
    "We bought apples, pears, plums, etc.",
    "The contract went to Acme Inc.",
    "The shop belongs to Miller and Sons Ltd.",
    "The train arrives at six p.m.",
]
OPENERS = [  # a capitalized sentence opener after those
    "Everything comes from the farm down the road.",
    "They expect the results next week.",
    "It was the only offer on the table.",
    "The rest of the family arrived later.",
    "Could you send the forms again by Friday?",
]
LOWERCASE = [  # models sometimes start a sentence in lower case
    "it still has to be split for speech output.",
    "the next step is to restart the service.",
    "we tried it twice before it worked.",
]
CJK = ["你觉得怎么样？", "今天天气很好。", "我们明天去公园散步吧。", "这个问题很有意思！"]
BOUNDARY_TEXTS = 64


def boundary_corpus() -> list[list[tuple[str, bool]]]:
    """Texts as ``(sentence, the boundary after it is a hard one)``, seeded."""
    rng = random.Random(7)
    texts: list[list[tuple[str, bool]]] = []
    for n in range(BOUNDARY_TEXTS):
        kind = n % 4
        if kind == 3:
            sentences = rng.sample(CJK, rng.randint(2, 3))
            texts.append([(s, i < len(sentences) - 1) for i, s in enumerate(sentences)])
            continue
        text = [(rng.choice(ORDINARY), False)]
        if kind == 1:
            text += [(rng.choice(ABBREVIATION_ENDS), True), (rng.choice(OPENERS), False)]
        elif kind == 2:
            text[-1] = (text[-1][0], True)
            text.append((rng.choice(LOWERCASE), False))
        text += [(s, False) for s in rng.sample(ORDINARY, rng.randint(0, 2))]
        texts.append(text)
    return texts


def joined(text: list[tuple[str, bool]]) -> tuple[str, dict[int, bool]]:
    """The text, and its sentence boundaries (alnum offsets) -> hard."""
    cjk = text[0][0][0] >= "\u3000"
    out, ends, seen = [], {}, 0
    for sentence, hard in text[:-1]:
        out.append(sentence)
        seen += len(alnum_positions(sentence))
        ends[seen] = hard
    out.append(text[-1][0])
    return ("" if cjk else " ").join(out), ends


def after_clause_mark(text: str, offset: int) -> bool:
    end = alnum_positions(text)[offset - 1] + 1
    return re.match(r"[^\w\s]*\s*[,;:—–，、]", text[end:]) is not None


def at_a_pause(text: str, offset: int) -> bool:
    """A cut inside a sentence where a speaker could pause: just before a word that opens
    a clause or a phrase, not after one that needs what follows."""
    end = alnum_positions(text)[offset - 1] + 1
    before = re.findall(r"\w+$", text[:end])
    after = re.match(r"\W*(\w+)", text[end:])
    return bool(before and after) and (
        before[0].lower() not in NO_CUT_AFTER and after.group(1).lower() in CUT_BEFORE  # type: ignore[union-attr]
    )


def quality(splitter: Splitter) -> dict[str, float]:
    found = hard = hard_found = false = pauses = total = 0
    first_words, first_s = [], []
    for number, text in enumerate(boundary_corpus()):
        string, ends = joined(text)
        pieces = tokens(string, number)
        released = list(splitter(pieces))
        chunks = [c for _, c in released]
        cuts = boundaries(chunks)
        for offset, is_hard in ends.items():
            total += 1
            found += offset in cuts
            hard += is_hard
            hard_found += is_hard and offset in cuts
        inside = [c for c in cuts - set(ends) if not after_clause_mark(string, c)]
        pauses += sum(at_a_pause(string, c) for c in inside)
        false += sum(not at_a_pause(string, c) for c in inside)
        first_words.append(len(chunks[0].split()) if " " in string else len(chunks[0]))
        first_s.append((released[0][0] + 1) / 60)
    first_words.sort()
    first_s.sort()
    return {
        "recall": found / total,
        "hard": hard_found / hard,
        "false": false,
        "pauses": pauses,
        "words": statistics.median(first_words),
        "words_p90": first_words[int(len(first_words) * 0.9)],
        "first_s": statistics.median(first_s),
        "first_s_p90": first_s[int(len(first_s) * 0.9)],
    }


def cpu_seconds(splitter: Splitter, pieces: list[str]) -> float:
    start = time.process_time()
    for _ in splitter(pieces):
        pass
    return time.process_time() - start


def main() -> None:
    logging.disable(logging.WARNING)
    text = corpus()
    pieces = tokens(text)
    rows = []
    for name, splitter in SPLITTERS.items():
        seconds = min(cpu_seconds(splitter, pieces) for _ in range(3))
        # Lookahead is the splitter's own, so feed one character at a time for it.
        characters = list(text[:10_000])
        ahead = sorted(lookaheads(text, characters, list(splitter(characters))))
        count, where = false_splits(splitter)
        rows.append(
            (
                name,
                len(text.encode()) / 1024 / seconds,
                statistics.median(ahead),
                ahead[int(len(ahead) * 0.9)],
                count,
                ", ".join(sorted(set(where))),
            )
        )
    ratio = rows[0][1] / rows[1][1]
    print(f"{len(text) / 1024:.0f} KB in {len(pieces)} tokens of 1-6 characters;", end=" ")
    print(f"{len(CASES) + len(BY_LANGUAGE)} tricky cases\n")
    print("| splitter | throughput KB/s | lookahead median | lookahead p90 | false splits | in |")
    print("|---|---:|---:|---:|---:|---|")
    for name, kbs, median, p90, count, where in rows:
        print(f"| {name} | {kbs:,.0f} | {median} | {p90} | {count} | {where} |")
    print(f"\nvoicestream is {ratio:,.0f}x faster than stream2sentence")
    texts = boundary_corpus()
    hard = sum(h for text in texts for _, h in text)
    print(
        f"\nBoundary corpus: {len(texts)} texts, "
        f"{sum(len(t) - 1 for t in texts)} sentence boundaries ({hard} hard ones), in tokens\n"
    )
    print(
        "| splitter | boundary recall | hard-case recall | false splits | cuts at a pause "
        "| first chunk words (median, p90) | first token to first chunk at 60 tok/s "
        "(median, p90) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, splitter in SPLITTERS.items():
        q = quality(splitter)
        print(
            f"| {name} | {q['recall']:.0%} | {q['hard']:.0%} | {q['false']:.0f} | "
            f"{q['pauses']:.0f} | "
            f"{q['words']:.0f}, {q['words_p90']:.0f} | "
            f"{q['first_s']:.2f} s, {q['first_s_p90']:.2f} s |"
        )


if __name__ == "__main__":
    main()
