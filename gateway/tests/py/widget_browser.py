"""The visitor widget in headless Chromium (Debian's, driven by Playwright) against a real
gateway: a visitor opens the demo page, writes; an agent (a plain WebSocket client) takes
the conversation and answers; the visitor sees the answer and the unread badge; the gateway
is killed and started again (the test prints `restart` and waits for `go`) and both sides
carry on with nothing lost or doubled; the visitor rates the closed conversation.
Screenshots go to the directory given.

  python widget_browser.py HOST:PORT AGENT_TOKEN SCREENSHOT_DIR
Prints `ok` when every step held; anything else is a failure with its reason.
"""
import asyncio
import json
import os
import sys

import websockets
from playwright.async_api import async_playwright

GW, TOKEN, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
TIMEOUT_MS = 10_000


async def frame_of(ws, kind):
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_MS / 1000))
        if f["type"] == kind:
            return f


async def main():
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox"],
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"http://{GW}/")
        # Keyboard: the launcher is a labelled button.
        launch = page.get_by_role("button", name="Chat with us")
        await launch.click()
        await page.get_by_label("Write a message").fill("hello from the widget")
        await page.keyboard.press("Enter")
        mine = page.locator("[data-sb=msg][data-from], [data-sb=msg][data-cid]").first
        await mine.locator("[data-sb=state]", has_text="sent").wait_for(timeout=TIMEOUT_MS)

        async with websockets.connect(f"ws://{GW}/ws/agent?token={TOKEN}") as agent:
            conv = (await frame_of(agent, "assigned"))["conv"]
            await agent.send(json.dumps({"type": "resume", "conv": conv, "last_seq": 0}))
            first = await frame_of(agent, "msg")
            assert first["body"] == "hello from the widget", first
            # Read receipts: the visitor sees the agent has read it.
            await agent.send(json.dumps({"type": "read", "conv": conv, "seq": first["seq"]}))
            await mine.locator("[data-sb=state]", has_text="read").wait_for(timeout=TIMEOUT_MS)
            # An answer while the panel is closed: the launcher counts it.
            await page.get_by_role("button", name="Close chat").click()
            await agent.send(json.dumps({"type": "msg", "conv": conv, "cid": "a1",
                                         "body": "Hi! How can I help?"}))
            badge = page.locator("[data-sb=badge]")
            await badge.filter(has_text="1").wait_for(timeout=TIMEOUT_MS)
            await launch.click()
            await page.get_by_text("Hi! How can I help?").wait_for(timeout=TIMEOUT_MS)
            assert await badge.is_hidden(), "the badge clears when the panel opens"
            # The gateway is killed and started again mid-conversation: both sides carry
            # on, nothing lost or doubled.
            print("restart", flush=True)
            assert sys.stdin.readline().strip() == "go"
        async with websockets.connect(f"ws://{GW}/ws/agent?token={TOKEN}") as agent:
            again = await frame_of(agent, "assigned")
            assert again["conv"] == conv, again
            await page.get_by_label("Write a message").fill("still there?")
            await page.keyboard.press("Enter")
            await agent.send(json.dumps({"type": "resume", "conv": conv, "last_seq": 2}))
            later = await frame_of(agent, "msg")
            # After a crash seqs go on above the lease the dead gateway held (skipping seqs
            # it may have shown), never below.
            assert later["body"] == "still there?" and later["seq"] > 2, later
            await agent.send(json.dumps({"type": "msg", "conv": conv, "cid": "a2",
                                         "body": "Yes, still here."}))
            await page.get_by_text("Yes, still here.").wait_for(timeout=TIMEOUT_MS)
            bodies = await page.locator("[data-sb=msg] .sbw-body").all_inner_texts()
            assert bodies == ["hello from the widget", "Hi! How can I help?", "still there?",
                              "Yes, still here."], bodies
            # A new page (a reload, another page of the site): the same visitor, the whole
            # conversation once.
            await page.reload()
            await launch.click()
            await page.get_by_text("Yes, still here.").wait_for(timeout=TIMEOUT_MS)
            bodies = await page.locator("[data-sb=msg] .sbw-body").all_inner_texts()
            assert bodies == ["hello from the widget", "Hi! How can I help?", "still there?",
                              "Yes, still here."], bodies
            # Typing shows.
            await agent.send(json.dumps({"type": "typing", "conv": conv}))
            await page.locator("[data-sb=status]", has_text="ann is typing").wait_for(timeout=TIMEOUT_MS)
            await page.screenshot(path=os.path.join(SHOTS, "widget-desktop.png"))
            # Closed: the visitor rates it.
            await agent.send(json.dumps({"type": "close", "conv": conv}))
            await page.locator("[data-sb=rate] button[data-score='5']").click(timeout=TIMEOUT_MS)
            await page.get_by_text("Thank you!").wait_for(timeout=TIMEOUT_MS)
        await page.set_viewport_size({"width": 390, "height": 780})
        await page.screenshot(path=os.path.join(SHOTS, "widget-mobile.png"))
        await browser.close()
        assert not errors, errors
    print("ok")


asyncio.run(main())
