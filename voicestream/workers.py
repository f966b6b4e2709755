"""``serve --workers N``: N server processes on one port.

The parent binds the port once and starts N ``voicestream serve`` processes that
all accept on that one socket (``VOICESTREAM_LISTEN_FD``); the kernel hands each
connection to one of them. Each has its own engines, and they share answers
through the relay, which is why more than one needs ``--relay``. A worker that
dies is started again (its answers are taken over by the others meanwhile); a
signal to the parent is passed to every worker, and the parent exits once they
have.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TextIO

import trio

from . import stopping
from .config import ServerConfig
from .errors import UsageError
from .server import LISTEN_FD, cannot_listen

RESTART_S = 1.0  # between a worker's death and its new start


def listen(server: ServerConfig) -> socket.socket:
    """The socket every worker accepts on; a :class:`UsageError` if it cannot be had."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((server.host, server.port))
    except OSError as e:
        sock.close()
        raise cannot_listen(e, server) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def supervise(server: ServerConfig, argv: Sequence[str], name: str, stderr: TextIO) -> int:
    """Run ``server.workers`` copies of ``voicestream <argv>`` on one socket until a
    signal; the exit code: 0 (SIGTERM), 130 (Ctrl-C), or 2 when a worker could
    not start at all (its own line says why)."""
    sock = listen(server)
    port = sock.getsockname()[1]
    env = os.environ | {LISTEN_FD: str(sock.fileno())}
    command = [sys.executable, "-m", "voicestream", *argv]
    processes: dict[int, trio.Process] = {}
    received: list[int] = []
    failed: list[int] = []

    async def worker(index: int, cancel: trio.CancelScope) -> None:
        while not received:
            process = await trio.lowlevel.open_process(
                command, env=env, pass_fds=(sock.fileno(),), start_new_session=True
            )
            processes[index] = process
            code = await process.wait()
            if received:
                return
            if code == 2:  # bad usage: starting it again would fail again
                failed.append(code)
                cancel.cancel()
                return
            print(
                f"voicestream: worker {index + 1} ended (exit code {code}); starting it again",
                file=stderr,
                flush=True,
            )
            await trio.sleep(RESTART_S)

    async def signals(cancel: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as incoming:
            async for signum in incoming:
                received.append(signum)
                for process in processes.values():
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                return

    with sock:
        print(
            f"voicestream: serving {name} answers on http://{server.host}:{port}/ with "
            f"{server.workers} worker processes (Ctrl-C or SIGTERM stops)",
            file=stderr,
            flush=True,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(signals, nursery.cancel_scope)
                async with trio.open_nursery() as workers:
                    for index in range(server.workers):
                        workers.start_soon(worker, index, workers.cancel_scope)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for process in processes.values():  # a worker never outlives the parent
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                for process in processes.values():
                    with trio.move_on_after(10):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
    if failed:
        raise UsageError("a worker could not start (its line above says why)")
    if received and received[0] == signal.SIGINT:
        return stopping.exit_code(signal.SIGINT)
    return 0
