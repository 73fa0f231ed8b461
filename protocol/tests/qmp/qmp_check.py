#!/usr/bin/env python3
"""Drive a QMP socket with QEMU's own client library (the `qemu.qmp` PyPI package).

Usage: qmp_check.py SOCKET_PATH

Connects (greeting and capabilities negotiation are qemu.qmp's), then runs, in order:
query-status, stop, query-status, cont, query-status, x-query-processes, quit; waits for the
STOP, RESUME and SHUTDOWN events those cause, then for the server to hang up (QEMU exits after
quit). Prints one JSON object on stdout:

    {"greeting": {...}, "status_before": {...}, "status_paused": {...}, "status_after_cont":
     {...}, "processes": [...], "quit": {...}, "events": [{"event": NAME, "data": {...}}, ...],
     "hung_up": true}

and exits 0; on any failure (connection, command error, missing event, timeout) prints the
reason on stderr and exits 1. It reports what it saw: the caller judges the values.
"""

import asyncio
import json
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError, Runstate

TIMEOUT = 10.0
EVENTS = ("STOP", "RESUME", "SHUTDOWN")


class CheckFailed(Exception):
    pass


async def expect_event(listener, name, seen):
    """Wait for event NAME; every event received on the way is recorded in SEEN."""
    while True:
        try:
            event = await asyncio.wait_for(listener.get(), TIMEOUT)
        except asyncio.TimeoutError:
            raise CheckFailed(f"no {name} event within {TIMEOUT} s (saw {seen})") from None
        seen.append({"event": event["event"], "data": event.get("data")})
        if event["event"] == name:
            return


async def wait_hangup(client):
    """Wait for the server to close the connection (QEMU exits after quit).

    Polls the runstate rather than awaiting `runstate_changed()`: that is an edge, and
    `asyncio.wait_for` starts its task one loop turn late, so a hang-up processed in between
    (RUNNING -> DISCONNECTING, where qemu.qmp then stays until `disconnect()`) would be missed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while client.runstate == Runstate.RUNNING:
        if loop.time() >= deadline:
            raise CheckFailed(f"server did not hang up within {TIMEOUT} s of quit")
        await asyncio.sleep(0.01)


async def execute(client, cmd, arguments=None):
    try:
        return await asyncio.wait_for(client.execute(cmd, arguments), TIMEOUT)
    except ExecuteError as err:
        raise CheckFailed(f"{cmd} failed: {err.error.class_}: {err.error.desc}") from err
    except asyncio.TimeoutError:
        raise CheckFailed(f"no reply to {cmd} within {TIMEOUT} s") from None


async def check(path):
    client = QMPClient("tessera-qmp-check")
    listener = EventListener(EVENTS)
    client.register_listener(listener)
    events = []
    result = {}
    try:
        await asyncio.wait_for(client.connect(path), TIMEOUT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"connecting to {path} timed out") from None
    except QMPError as err:
        raise CheckFailed(f"connecting to {path}: {err}") from err
    try:
        greeting = client.greeting
        result["greeting"] = greeting._asdict() if greeting is not None else None
        result["status_before"] = await execute(client, "query-status")
        await execute(client, "stop")
        await expect_event(listener, "STOP", events)
        result["status_paused"] = await execute(client, "query-status")
        await execute(client, "cont")
        await expect_event(listener, "RESUME", events)
        result["status_after_cont"] = await execute(client, "query-status")
        result["processes"] = await execute(client, "x-query-processes")
        result["quit"] = await execute(client, "quit")
        await expect_event(listener, "SHUTDOWN", events)
        await wait_hangup(client)
    finally:
        result["events"] = events
        hung_up = False
        try:
            # After quit the server hangs up: qemu.qmp reports that as EOFError here.
            await asyncio.wait_for(client.disconnect(), TIMEOUT)
        except EOFError:
            hung_up = True
        except asyncio.TimeoutError:
            raise CheckFailed("disconnect timed out") from None
        result["hung_up"] = hung_up
    return result


def main():
    if len(sys.argv) != 2:
        print("usage: qmp_check.py SOCKET_PATH", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(check(sys.argv[1]))
    except CheckFailed as err:
        print(f"qmp_check: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # anything qemu.qmp or asyncio raise: report, don't trace
        print(f"qmp_check: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
