#!/usr/bin/env python3
"""A TCP proxy whose upstream can be cut and restored, for measuring an outage at load.

    python3 scripts/cut-proxy.py LISTEN_PORT TARGET_PORT     # both on 127.0.0.1
    kill -USR1 <pid>   # cut: close every forwarded connection and refuse new ones
    kill -USR2 <pid>   # restore: accept and forward again

docs/PERFORMANCE.md ("The database away at 500 calls") puts it between the engine and
PostgreSQL. The tests use the testkit's TcpProxy instead (crates/testkit/src/tcp_proxy.rs).
"""
import asyncio
import signal
import sys

LISTEN, TARGET = int(sys.argv[1]), int(sys.argv[2])
writers = set()
server = None


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def forward(client_reader, client_writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", TARGET)
    except OSError:
        client_writer.close()
        return
    writers.update((client_writer, up_writer))
    await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))
    writers.difference_update((client_writer, up_writer))


async def listen():
    global server
    server = await asyncio.start_server(forward, "127.0.0.1", LISTEN, reuse_address=True)


def cut():
    global server
    print("cut", flush=True)
    if server is not None:
        server.close()
        server = None
    for writer in list(writers):
        writer.transport.abort()
    writers.clear()


def restore():
    print("restore", flush=True)
    asyncio.ensure_future(listen())


async def main():
    await listen()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, cut)
    loop.add_signal_handler(signal.SIGUSR2, restore)
    await asyncio.Event().wait()


asyncio.run(main())
