"""A third-party client over TLS: Python's websockets with the standard ssl module,
trusting the test's CA file. Connects, writes one message, waits for its ack.

  python tls_client.py WSS_URL CA_FILE
Prints `ok` when it was acked.
"""
import asyncio
import json
import ssl
import sys

import websockets

URL, CA = sys.argv[1], sys.argv[2]


async def main():
    ctx = ssl.create_default_context(cafile=CA)
    async with websockets.connect(URL, ssl=ctx) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        await ws.send(json.dumps({"type": "msg", "cid": "py1", "body": "from python over TLS"}))
        while True:
            f = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if f["type"] == "ack":
                break
    print("ok")


asyncio.run(main())
