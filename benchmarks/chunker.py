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
Prints a markdown table.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
import time
from collections.abc import Callable, Iterator

from voicestream.chunker import END_CAPABLE, NEVER_END, SentenceChunker
from voicestream.chunker_cases import CASES
from voicestream.sources.demo import demo_answer

Splitter = Callable[[list[str]], Iterator[tuple[int, str]]]


def tokens(text: str, seed: int = 0) -> list[str]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        out.append(text[i : i + n])
        i += n
    return out


def ours(pieces: list[str]) -> Iterator[tuple[int, str]]:
    """``(index of the piece that released it, chunk)``."""
    chunker = SentenceChunker()
    for i, piece in enumerate(pieces):
        for chunk in chunker.feed(piece):
            yield i, chunk
    for chunk in chunker.flush():
        yield len(pieces), chunk


def stream2sentence(pieces: list[str]) -> Iterator[tuple[int, str]]:
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


def plain_sentence_end(text: str, offset: int) -> bool:
    """Whether the alnum ``offset`` boundary is after ! ? or a period after an ordinary word."""
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
    return token.isalpha() and len(token) > 1 and token not in NEVER_END | END_CAPABLE


def boundaries(chunks: list[str]) -> set[int]:
    out, seen = set(), 0
    for chunk in chunks[:-1]:
        seen += len(re.findall(r"[^\W_]", chunk))
        out.add(seen)
    return out


def false_splits(splitter: Splitter) -> tuple[int, list[str]]:
    count, where = 0, []
    for rule, text, expected in CASES:
        got = [c for _, c in splitter(tokens(text, 1))]
        for offset in sorted(boundaries(got) - boundaries(expected)):
            if 0 < offset < len(alnum_positions(text)) and not plain_sentence_end(text, offset):
                count += 1
                where.append(rule)
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
    print(f"{len(CASES)} tricky cases\n")
    print("| splitter | throughput KB/s | lookahead median | lookahead p90 | false splits | in |")
    print("|---|---:|---:|---:|---:|---|")
    for name, kbs, median, p90, count, where in rows:
        print(f"| {name} | {kbs:,.0f} | {median} | {p90} | {count} | {where} |")
    print(f"\nvoicestream is {ratio:,.0f}x faster than stream2sentence")


if __name__ == "__main__":
    main()
