"""A third-party client (Python `websockets`) drives a whole conversation.

Usage: third_party_client.py WS_BASE_URL AGENT_TOKEN
Exits non-zero (with a message) on the first thing that is not as documented.
"""

import asyncio
import json
import sys

import websockets


async def recv(ws, expected_type):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == expected_type:
            return frame
        if frame["type"] not in ("queued", "agent_joined", "typing", "read", "resumed"):
            raise AssertionError(f"expected {expected_type}, got {frame}")


async def main(base, token):
    agent = await websockets.connect(f"{base}/ws/agent?token={token}&client=web")
    welcome = await recv(agent, "welcome")
    assert welcome["role"] == "agent" and welcome["id"] == "py-agent", welcome

    visitor = await websockets.connect(f"{base}/ws/visitor?client=mobile")
    welcome = await recv(visitor, "welcome")
    assert welcome["role"] == "visitor" and welcome["token"], welcome
    visitor_id, visitor_token = welcome["id"], welcome["token"]

    await visitor.send(json.dumps({"type": "msg", "cid": "py-1", "body": "Hello from Python"}))
    ack = await recv(visitor, "ack")
    assert ack["cid"] == "py-1" and ack["seq"] == 1, ack
    conv = ack["conv"]

    assigned = await recv(agent, "assigned")
    assert assigned == {"type": "assigned", "conv": conv, "visitor": visitor_id}, assigned
    await agent.send(json.dumps({"type": "resume", "conv": conv, "last_seq": 0}))
    msg = await recv(agent, "msg")
    assert msg["body"] == "Hello from Python" and msg["from"] == visitor_id, msg

    await agent.send(json.dumps({"type": "msg", "cid": "a-1", "body": "Hi! ✓", "conv": conv}))
    assert (await recv(agent, "ack"))["seq"] == 2
    reply = await recv(visitor, "msg")
    assert reply["body"] == "Hi! ✓" and reply["from"] == "py-agent" and reply["seq"] == 2, reply

    # Reconnect with the visitor token and resume.
    await visitor.close()
    await agent.send(json.dumps({"type": "msg", "cid": "a-2", "body": "missed", "conv": conv}))
    await recv(agent, "ack")
    visitor = await websockets.connect(f"{base}/ws/visitor?client=mobile&token={visitor_token}")
    assert (await recv(visitor, "welcome"))["id"] == visitor_id
    await visitor.send(json.dumps({"type": "resume", "conv": conv, "last_seq": 2}))
    missed = await recv(visitor, "msg")
    assert missed["seq"] == 3 and missed["body"] == "missed", missed
    resumed = await recv(visitor, "resumed")
    assert resumed == {"type": "resumed", "conv": conv, "last_seq": 3, "replayed": 1, "complete": True}, resumed

    # Bad input gets an error frame, and the connection carries on.
    await visitor.send("not json")
    err = await recv(visitor, "error")
    assert err["code"] == "bad_json", err
    await visitor.send(json.dumps({"type": "msg", "cid": "py-2", "body": "still here"}))
    assert (await recv(visitor, "ack"))["seq"] == 4

    # The agent closes; the visitor is told.
    await agent.send(json.dumps({"type": "close", "conv": conv}))
    closed = await recv(visitor, "closed")
    assert closed == {"type": "closed", "conv": conv, "by": "py-agent", "reason": "agent"}, closed
    await visitor.close()
    await agent.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
