"""The relay of one process: answers in its memory (``serve``'s default)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import trio

from ..config import ServerConfig
from . import AnswerLog, AudioLog, Claim, Item


class MemoryRelay:
    """Answers kept in this process: no other process can read them, and they go
    with it. A finished answer is kept ``retention_s`` (the newest ``max_finished``)."""

    name = "memory"

    def __init__(self, server: ServerConfig) -> None:
        self.server = server
        self.logs: dict[str, AnswerLog] = {}
        self.running: set[str] = set()
        self.finished: OrderedDict[str, float] = OrderedDict()  # id: when, oldest first
        self._stops, self._stopped = trio.open_memory_channel[str](math.inf)

    def held(self) -> int:
        """Bytes of audio kept, all answers."""
        return sum(log.audio.held for log in self.logs.values())

    async def health(self) -> str | None:
        return None

    async def admit(self, answer_id: str, request: dict[str, Any], rate: int, limit: int) -> bool:
        self._forget()
        if len(self.running) >= limit:
            return False
        self.running.add(answer_id)
        log = AnswerLog(answer_id, AudioLog(rate, self.server.window_s))
        log.alone_since = trio.current_time()
        self.logs[answer_id] = log
        return True

    async def publish(self, answer_id: str, items: Sequence[Item]) -> None:
        self.logs[answer_id].add(items)

    async def renew(self, answer_id: str) -> bool:
        return True

    async def watched(self, answer_id: str, grace_s: float) -> bool:
        log = self.logs[answer_id]
        return log.attached > 0 or trio.current_time() - log.alone_since < grace_s

    async def finish(self, answer_id: str) -> None:
        self.running.discard(answer_id)
        self.finished[answer_id] = trio.current_time()
        self._forget()

    async def release(self, answer_id: str) -> None:
        self.running.discard(answer_id)  # no other process to take it

    async def stop(self, answer_id: str) -> str | None:
        log = await self.log(answer_id)
        if log is None:
            return None
        return "finished" if log.finished else "stopping"

    async def log(self, answer_id: str) -> AnswerLog | None:
        self._forget()
        return self.logs.get(answer_id)

    async def claim(self) -> Claim | None:
        return None

    def stops(self) -> trio.MemoryReceiveChannel[str]:
        return self._stopped

    def _forget(self) -> None:
        """Drop the answers finished longer than ``retention_s`` ago, and the oldest
        beyond ``max_finished``."""
        now = trio.current_time()
        while self.finished:
            oldest, at = next(iter(self.finished.items()))
            expired = now - at >= self.server.retention_s
            if not expired and len(self.finished) <= self.server.max_finished:
                break
            del self.finished[oldest]
            self.logs.pop(oldest, None)
