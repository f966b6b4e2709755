"""The relay in Redis (or Valkey) Streams: any ``serve`` process on the same Redis
serves any answer, resumes it, stops it, and takes it over if its owner dies.

Keys (``voicestream:`` before each), all expiring ``retention_s`` after their
last write, so nothing outlives an answer by more than that:

- ``answers``: a sorted set of the running answers, scored by when their owner's
  lease ends; admission counts it, and an answer whose lease has ended is taken
  over by the first process to see it (:meth:`RedisRelay.claim`);
- ``finished``: the finished answers, the newest ``max_finished`` of them;
- ``a:ID``: the answer's request, owner, state;
- ``a:ID:e``: its events, each with the id ``N-0`` where ``N`` is its SSE id, so
  ``Last-Event-ID: N`` is ``XREAD ... N-0`` on any process;
- ``a:ID:a``: its audio, one entry a chunk, keyed ``S-1`` by its first sample,
  trimmed (``XTRIM MINID``) to the newest chunk and ``window_s`` seconds before it;
- ``a:ID:seen``: set, with a ``grace_s`` expiry, while a client anywhere listens;
- ``p:PROCESS:stop``: stops asked of a process's answers (``DELETE`` elsewhere).

Every write of an owner goes through one script that first checks that the
caller still owns the answer: a process that lost its lease (paused, cut off)
cannot write after its successor. Each process reads an answer once
(:meth:`RedisRelay.log`), however many of its clients listen.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio

from ..config import ServerConfig
from ..errors import UsageError
from . import AnswerLog, AudioLog, Claim, Fenced, Item, RelayDown

PREFIX = "voicestream:"
COMMAND_TIMEOUT_S = 5.0  # a command Redis does not answer in this time: Redis is lost
BLOCK_MS = 5000  # a reader's blocking read
LINGER_S = 10.0  # a followed answer no client in this process has read for this long
EVENTS_MAXLEN = 100_000

_NOW = (  # milliseconds, by Redis's clock (every process agrees on it)
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
)

ADMIT = (
    _NOW
    + """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], 'owner', ARGV[4], 'request', ARGV[5], 'rate', ARGV[6],
           'state', 'running', 'started', now)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""
)

PUBLISH = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return redis.error_reply('FENCED another process owns this answer now')
end
local window = tonumber(ARGV[2])
for i = 4, #ARGV, 4 do
  if ARGV[i] == 'e' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', 'EVENTS_MAXLEN', ARGV[i + 1] .. '-0',
               'n', ARGV[i + 2], 'd', ARGV[i + 3])
  else
    redis.call('XADD', KEYS[3], ARGV[i + 1] .. '-1', 'p', ARGV[i + 3])
    local first = tonumber(ARGV[i + 1])
    if first > window then
      redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d-0', first - window))
    end
  end
end
for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ARGV[3]) end
return 1
""".replace("'EVENTS_MAXLEN'", f"'{EVENTS_MAXLEN}'")

RENEW = (
    _NOW
    + """
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
for k = 1, 4 do redis.call('PEXPIRE', KEYS[k], ARGV[4]) end
return 1
"""
)

FINISH = (
    _NOW
    + """
if redis.call('HGET', KEYS[3], 'owner') ~= ARGV[2] then return 0 end
local retention = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'state', 'finished')
redis.call('ZADD', KEYS[2], now, ARGV[1])
for k = 2, 6 do redis.call('PEXPIRE', KEYS[k], retention) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - retention)
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[4]) do
  local old = redis.call('ZPOPMIN', KEYS[2])[1]
  local base = ARGV[5] .. 'a:' .. old
  redis.call('DEL', base, base .. ':e', base .. ':a', base .. ':seen')
end
return 1
"""
)

RELEASE = """
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'owner', '')
redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[1])
return 1
"""

STOP = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
if state == 'finished' then return 'finished' end
redis.call('HSET', KEYS[1], 'stop', '1')
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= '' then
  local control = ARGV[2] .. 'p:' .. owner .. ':stop'
  redis.call('XADD', control, 'MAXLEN', '~', 1000, '*', 'id', ARGV[1])
  redis.call('PEXPIRE', control, ARGV[3])
end
return 'stopping'
"""

CLAIM = (
    _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #ids == 0 then return nil end
local id = ids[1]
local meta = ARGV[3] .. 'a:' .. id
if redis.call('EXISTS', meta) == 0 or redis.call('HGET', meta, 'state') ~= 'running' then
  redis.call('ZREM', KEYS[1], id)
  return nil
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
if redis.call('HGET', meta, 'owner') == ARGV[1] then
  return nil  -- its owner is the caller, late to renew: alive, and it keeps it
end
redis.call('HSET', meta, 'owner', ARGV[1])
redis.call('HINCRBY', meta, 'takeovers', 1)
return {id, redis.call('HGET', meta, 'request'), redis.call('HGET', meta, 'stop') or ''}
"""
)


def check_url(url: str) -> None:
    """Refuse a relay address that is not ``redis://HOST:PORT/DB`` (or rediss://)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
        db = parts.path.strip("/")
    except ValueError:
        db = "?"
    if (
        parts.scheme not in ("redis", "rediss")
        or not parts.hostname
        or not (db == "" or db.isdigit())
    ):
        raise UsageError(
            f"--relay {url!r} is not a Redis address: use redis://HOST:PORT/DB "
            "(e.g. redis://127.0.0.1:6379/0)"
        )


def where(url: str) -> str:
    """The address without its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


class RedisRelay:
    """Answers in Redis Streams; use it through :func:`open_redis`."""

    name = "redis"

    def __init__(self, client: Any, url: str, server: ServerConfig) -> None:
        self.client = client
        self.url = url
        self.server = server
        self.me = secrets.token_hex(8)  # this process, as an owner
        self.lease_ms = int(server.lease_s * 1000)
        self.ttl_ms = max(1000, int(server.retention_s * 1000))
        self.logs: dict[str, AnswerLog] = {}
        self.rates: dict[str, int] = {}  # of the answers this process owns
        self.block_ms = int(min(BLOCK_MS, max(100, server.grace_s * 500)))  # touch in time
        self.down: str | None = None
        self.nursery: trio.Nursery | None = None
        self._stops, self._stopped = trio.open_memory_channel[str](math.inf)
        self._scripts = {
            name: client.register_script(code)
            for name, code in [
                ("admit", ADMIT), ("publish", PUBLISH), ("renew", RENEW), ("finish", FINISH),
                ("release", RELEASE), ("stop", STOP), ("claim", CLAIM),
            ]
        }  # fmt: skip

    def key(self, *parts: str) -> str:
        return PREFIX + ":".join(parts)

    def held(self) -> int:
        return 0  # in Redis: each answer's window, counted by admission instead

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        async with self._command():
            return await self._scripts[name](keys=keys, args=args)

    @asynccontextmanager
    async def _command(self, waits_s: float = 0.0) -> AsyncIterator[None]:
        """One command: :class:`RelayDown` when Redis cannot be reached or does not
        answer in time; the relay is marked down until a command succeeds again."""
        import coredis.exceptions as failures

        try:
            with trio.fail_after(COMMAND_TIMEOUT_S + waits_s):
                yield
        except (failures.ConnectionError, trio.TooSlowError, OSError) as e:
            self.down = f"Redis at {where(self.url)} cannot be reached ({type(e).__name__})"
            raise RelayDown(self.down) from e
        except failures.ResponseError as e:
            if str(e).startswith("FENCED"):
                raise Fenced(str(e)) from None
            raise
        self.down = None

    async def health(self) -> str | None:
        try:
            async with self._command():
                await self.client.ping()
        except RelayDown as e:
            return str(e)
        return None

    async def admit(self, answer_id: str, request: dict[str, Any], rate: int, limit: int) -> bool:
        keys = [self.key("answers"), self.key("a", answer_id)]
        args = [answer_id, limit, self.lease_ms, self.me, json.dumps(request), rate, self.ttl_ms]
        admitted = bool(await self._call("admit", keys, args))
        if admitted:
            self.rates[answer_id] = rate
        return admitted

    async def publish(self, answer_id: str, items: Sequence[Item]) -> None:
        base = self.key("a", answer_id)
        rate = self.rates.get(answer_id) or await self._rate(answer_id)
        args: list[Any] = [self.me, int(self.server.window_s * rate), self.ttl_ms]
        for item in items:
            if item.audio:
                args += ["a", item.id, "", item.pcm]
            else:
                args += ["e", item.id, item.name, item.data]
        await self._call("publish", [base, f"{base}:e", f"{base}:a"], args)

    async def _rate(self, answer_id: str) -> int:
        async with self._command():
            rate = await self.client.hget(self.key("a", answer_id), "rate")
        self.rates[answer_id] = int(rate or 22050)
        return self.rates[answer_id]

    async def renew(self, answer_id: str) -> bool:
        base = self.key("a", answer_id)
        keys = [self.key("answers"), base, f"{base}:e", f"{base}:a"]
        return bool(
            await self._call("renew", keys, [answer_id, self.me, self.lease_ms, self.ttl_ms])
        )

    async def touch(self, answer_id: str, grace_s: float) -> None:
        """A client in this process listens to the answer (for the owner's grace time)."""
        async with self._command():
            px = max(1, min(int(grace_s * 1000), self.ttl_ms))  # never past retention_s
            await self.client.set(self.key("a", answer_id, "seen"), b"1", px=px)

    async def watched(self, answer_id: str, grace_s: float) -> bool:
        log = self.logs.get(answer_id)
        if log is not None and log.attached:
            return True
        async with self._command():
            return bool(await self.client.exists([self.key("a", answer_id, "seen")]))

    async def finish(self, answer_id: str) -> None:
        base = self.key("a", answer_id)
        keys = [self.key("answers"), self.key("finished"), base, f"{base}:e", f"{base}:a"]
        keys.append(f"{base}:seen")
        args = [answer_id, self.me, self.ttl_ms, self.server.max_finished, PREFIX]
        self.rates.pop(answer_id, None)
        await self._call("finish", keys, args)

    async def release(self, answer_id: str) -> None:
        self.rates.pop(answer_id, None)
        await self._call(
            "release", [self.key("answers"), self.key("a", answer_id)], [answer_id, self.me]
        )

    async def stop(self, answer_id: str) -> str | None:
        keys = [self.key("a", answer_id)]
        state = await self._call("stop", keys, [answer_id, PREFIX, self.ttl_ms])
        return None if state is None else state.decode()

    async def claim(self) -> Claim | None:
        claimed = await self._call("claim", [self.key("answers")], [self.me, self.lease_ms, PREFIX])
        if not claimed:
            return None
        answer_id, request, stop = (part.decode() for part in claimed)
        base = self.key("a", answer_id)
        async with self._command():
            entries = await self.client.xrange(f"{base}:e", "-", "+")
            last_audio = await self.client.xrevrange(f"{base}:a", "+", "-", count=1)
        events = [_event(entry) for entry in entries]
        audio_end = 0
        for entry in last_audio:
            audio_end = _first_sample(entry) + len(entry.field_values[b"p"]) // 2
        return Claim(answer_id, json.loads(request), events, audio_end, stop == "1")

    def stops(self) -> trio.MemoryReceiveChannel[str]:
        return self._stopped

    async def log(self, answer_id: str) -> AnswerLog | None:
        """The answer as this process reads it: loaded once (its events, the audio
        kept) and followed by one reader, however many clients listen here."""
        log = self.logs.get(answer_id)
        if log is not None:
            return log
        base = self.key("a", answer_id)
        async with self._command():
            rate = await self.client.hget(base, "rate")
            if rate is None:
                return None
            entries = await self.client.xrange(f"{base}:e", "-", "+")
            audio = await self.client.xrange(f"{base}:a", "-", "+")
        if answer_id in self.logs:  # another request loaded it meanwhile
            return self.logs[answer_id]
        log = AnswerLog(answer_id, AudioLog(int(rate), self.server.window_s))
        log.alone_since = trio.current_time()
        log.add([_audio(entry) for entry in audio] + [Item(*_event(e)) for e in entries])
        self.logs[answer_id] = log
        assert self.nursery is not None
        self.nursery.start_soon(self._follow, log)
        return log

    async def _follow(self, log: AnswerLog) -> None:
        """Read the answer's new entries into ``log`` until it ends, or until no client
        here has read it for ``LINGER_S``."""
        base = self.key("a", log.id)
        last_event = f"{log.last_id}-0"
        last_audio = f"{log.audio.end // 2 - 1}-1" if log.audio.end else "0-0"
        try:
            while not log.finished:
                if not log.attached and trio.current_time() - log.alone_since > LINGER_S:
                    return
                if log.attached:
                    await self.touch(log.id, self.server.grace_s)
                streams = {f"{base}:e": last_event, f"{base}:a": last_audio}
                async with self._command(self.block_ms / 1000):
                    read = await self.client.xread(streams, block=self.block_ms)
                items: list[Item] = []
                for stream, entries in (read or {}).items():
                    for entry in entries:
                        if stream.endswith(b":a"):
                            items.append(_audio(entry))
                            last_audio = entry.identifier.decode()
                        else:
                            items.append(Item(*_event(entry)))
                            last_event = entry.identifier.decode()
                items.sort(key=lambda i: not i.audio)  # the audio before the last event
                log.add(items)
        except RelayDown as e:
            log.end_here("error", {"message": f"{e}; ask again in a moment"})
        finally:
            if self.logs.get(log.id) is log:
                del self.logs[log.id]

    async def _control(self) -> None:
        """Pass on the stops other processes asked of this one's answers."""
        control = self.key("p", self.me, "stop")
        last = "0-0"
        while True:
            try:
                async with self._command(BLOCK_MS / 1000):
                    read = await self.client.xread({control: last}, block=BLOCK_MS)
            except RelayDown:
                await trio.sleep(1)
                continue
            for entry in (read or {}).get(control.encode(), ()):
                last = entry.identifier.decode()
                self._stops.send_nowait(entry.field_values[b"id"].decode())


def _first_sample(entry: Any) -> int:
    return int(entry.identifier.split(b"-")[0])


def _audio(entry: Any) -> Item:
    return Item(_first_sample(entry), pcm=entry.field_values[b"p"])


def _event(entry: Any) -> tuple[int, str, str]:
    fields = entry.field_values
    return _first_sample(entry), fields[b"n"].decode(), fields[b"d"].decode()


@asynccontextmanager
async def open_redis(url: str, server: ServerConfig) -> AsyncIterator[RedisRelay]:
    """Connect (a :class:`UsageError` if Redis cannot be reached: nothing is served
    without it), and run the process's own readers while the relay is in use."""
    import coredis

    check_url(url)
    client = coredis.Redis.from_url(url, decode_responses=False, connect_timeout=3)
    async with client:
        relay = RedisRelay(client, url, server)
        if (why := await relay.health()) is not None:
            raise UsageError(f"{why}: start it, or check --relay")
        async with trio.open_nursery() as nursery:
            relay.nursery = nursery
            nursery.start_soon(relay._control)
            yield relay
            nursery.cancel_scope.cancel()
