"""The agent console and the visitor widget, both in headless Chromium (Debian's, driven
by Playwright) against a real gateway and bridge: a visitor writes through the widget while
nobody is online and leaves a name and an e-mail in the offline form; the agent logs in to
the console and gets it, with that contact; answers; the gateway is restarted and both
sides carry on; the agent uses a canned reply, notes and tags it, and transfers it to bob (another console), who answers; the agent, a supervisor,
watches bob's conversation live and whispers to him; bob closes it and the visitor is asked
for a rating. Then the supervisor goes away: a long conversation goes to bob, whose console
shows its newest page and pages back to the first message.

  python console_browser.py GATEWAY_ADDR BRIDGE_ADDR AGENT PASSWORD SCREENSHOT_DIR
Prints `ok` when every step held.
"""
import asyncio
import json
import os
import sys

import websockets
from playwright.async_api import async_playwright

GW, API, AGENT, PASSWORD, SHOTS = sys.argv[1:6]
# The agent supervises here, so the console also shows its team.
T = 10_000


async def main():
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox"],
        )
        errors = []
        # Nobody is online: the visitor's first message gets the offline form.
        visitor = await browser.new_page(viewport={"width": 1280, "height": 720})
        visitor.on("pageerror", lambda e: errors.append(f"widget: {e}"))
        await visitor.goto(f"http://{GW}/")
        await visitor.get_by_role("button", name="Chat with us").click()
        await visitor.get_by_label("Write a message").fill("Where is my parcel?")
        await visitor.keyboard.press("Enter")
        await visitor.get_by_label("E-mail").fill("li@example.com")
        await visitor.get_by_label("Name", exact=True).fill("Li Lei")
        await visitor.screenshot(path=os.path.join(SHOTS, "widget-offline.png"))
        await visitor.locator("[data-sb=offline]").get_by_role("button", name="Send").click()
        await visitor.get_by_text("We will write to li@example.com").wait_for(timeout=T)

        console = await browser.new_page(viewport={"width": 1280, "height": 720})
        console.on("pageerror", lambda e: errors.append(f"console: {e}"))
        await console.goto(f"http://{API}/console/")
        await console.get_by_label("Agent", exact=True).fill(AGENT)
        await console.get_by_label("Password", exact=True).fill("wrong password")
        await console.get_by_label("Gateway", exact=True).fill(f"ws://{GW}")
        await console.get_by_role("button", name="Log in").click()
        await console.get_by_role("alert").filter(has_text="wrong password").wait_for(timeout=T)
        await console.get_by_label("Password", exact=True).fill(PASSWORD)
        await console.get_by_role("button", name="Log in").click()
        await console.locator("#link", has_text="online").wait_for(timeout=T)

        # The console gets the message left, with where the visitor is and its contact.
        await console.locator("#log .body", has_text="Where is my parcel?").wait_for(timeout=T)
        await console.locator("#context", has_text=f"page: http://{GW}/").wait_for(timeout=T)
        await console.locator("#context", has_text="email: li@example.com").wait_for(timeout=T)
        await console.locator("#context", has_text="name: Li Lei").wait_for(timeout=T)
        await console.get_by_label("Reply", exact=True).fill("Let me look it up.")
        await console.keyboard.press("Enter")
        await visitor.get_by_text("Let me look it up.").wait_for(timeout=T)
        # The gateway (and its bridge) is killed and started again mid-conversation: the
        # widget and the console reconnect and carry on, nothing lost or doubled.
        print("restart", flush=True)
        assert sys.stdin.readline().strip() == "go"
        await visitor.get_by_label("Write a message").fill("Still there?")
        await visitor.keyboard.press("Enter")
        await console.locator("#log .body", has_text="Still there?").wait_for(timeout=T)
        await console.get_by_label("Reply", exact=True).fill("Yes, still here.")
        await console.keyboard.press("Enter")
        await visitor.get_by_text("Yes, still here.").wait_for(timeout=T)
        both = ["Where is my parcel?", "Let me look it up.", "Still there?", "Yes, still here."]
        assert await console.locator("#log .body").all_inner_texts() == both
        assert await visitor.locator("[data-sb=msg] .sbw-body").all_inner_texts() == both
        # A canned reply, by its shortcut.
        await console.get_by_label("Reply", exact=True).fill("/shipped")
        await console.keyboard.press("Enter")
        await console.wait_for_function(
            "() => document.getElementById('text').value.startsWith('Your parcel left')", timeout=T)
        await console.keyboard.press("Enter")
        await visitor.get_by_text("Your parcel left our warehouse today").wait_for(timeout=T)
        # An internal note and tags, kept by the API; the visitor sees neither.
        await console.get_by_label("Internal note").fill("asked twice already")
        await console.get_by_label("Tags").fill("shipping, urgent")
        await console.get_by_role("button", name="Save").click()
        await console.locator("#notes li", has_text="asked twice already").wait_for(timeout=T)
        # The admin sees its agents with their load.
        await console.locator("#agents li", has_text="1 open").wait_for(timeout=T)
        await console.screenshot(path=os.path.join(SHOTS, "console.png"))
        assert await visitor.get_by_text("asked twice already").count() == 0
        # Handed to bob through the console, with a note: his console gets it (with the
        # whole transcript and the note), the visitor is told.
        bob = await browser.new_page(viewport={"width": 1280, "height": 720})
        bob.on("pageerror", lambda e: errors.append(f"bob: {e}"))
        await bob.goto(f"http://{API}/console/")
        await bob.get_by_label("Agent", exact=True).fill("bob")
        await bob.get_by_label("Password", exact=True).fill("bob passphrase")
        await bob.get_by_label("Gateway", exact=True).fill(f"ws://{GW}")
        await bob.get_by_role("button", name="Log in").click()
        await bob.locator("#link", has_text="online").wait_for(timeout=T)
        await console.get_by_label("Transfer to agent or team").fill("bob")
        await console.get_by_label("Note for the next agent").fill("parcel 1042")
        await console.get_by_role("button", name="Transfer").click()
        await bob.locator("#chat-title", has_text="transferred by ann: parcel 1042").wait_for(timeout=T)
        await bob.locator("#log .body", has_text="Where is my parcel?").wait_for(timeout=T)
        await visitor.get_by_text("bob joined the conversation").wait_for(timeout=T)
        await console.locator("#convs li").first.wait_for(state="detached", timeout=T)
        await bob.get_by_label("Reply", exact=True).fill("Bob here: it arrives tomorrow.")
        await bob.keyboard.press("Enter")
        await visitor.get_by_text("Bob here: it arrives tomorrow.").wait_for(timeout=T)
        # The supervisor watches it live (transcript first) and whispers to bob; the
        # visitor never sees the whisper.
        await console.get_by_role("button", name="Watch").first.click(timeout=T)
        await console.locator("#chat-title", has_text="watching bob").wait_for(timeout=T)
        await console.locator("#log .body", has_text="Bob here: it arrives tomorrow.").wait_for(timeout=T)
        await console.get_by_label("Whisper", exact=True).fill("offer free shipping")
        await console.keyboard.press("Enter")
        await bob.locator(".n.whisper", has_text="Whisper from ann: offer free shipping").wait_for(timeout=T)
        await bob.get_by_label("Reply", exact=True).fill("Next time shipping is on us.")
        await bob.keyboard.press("Enter")
        await console.locator("#log .body", has_text="Next time shipping is on us.").wait_for(timeout=T)
        await console.screenshot(path=os.path.join(SHOTS, "console-supervisor.png"))
        assert await visitor.get_by_text("offer free shipping").count() == 0
        # Closed from bob's console: the visitor is asked for a rating.
        await bob.get_by_role("button", name="Close", exact=True).click()
        await visitor.locator("[data-sb=rate]").wait_for(timeout=T)
        await bob.locator(".n", has_text="Closed by").wait_for(timeout=T)

        # The supervisor goes away: she has nothing open, yet the next conversation is bob's.
        await console.get_by_role("button", name="Go away").click()
        await console.get_by_role("button", name="Go online").wait_for(timeout=T)
        async with websockets.connect(f"ws://{GW}/ws/visitor") as raw:
            me = json.loads(await raw.recv())["id"]
            for i in range(1, 41):
                await raw.send(json.dumps({"type": "msg", "cid": f"l{i}", "body": f"line {i}"}))
            acks = 0
            while acks < 40:
                f = json.loads(await asyncio.wait_for(raw.recv(), T / 1000))
                acks += f["type"] == "ack"
            # Bob's console, opened again (a reload, another device), shows its newest page,
            # and pages back to the first line.
            await bob.reload()
            await bob.locator(f"#convs button[data-conv]", has_text=me).click(timeout=T)
            await bob.locator("#log .body", has_text="line 40").wait_for(timeout=T)
            assert await bob.locator("#log .body").count() == 30
            await bob.get_by_role("button", name="Earlier messages").click()
            await bob.locator("#log .body").get_by_text("line 1", exact=True).wait_for(timeout=T)
            bodies = await bob.locator("#log .body").all_inner_texts()
            assert bodies == [f"line {i}" for i in range(1, 41)], bodies
            assert await bob.get_by_role("button", name="Earlier messages").is_hidden()
            assert await console.locator("#convs button", has_text=me).count() == 0
        await console.get_by_role("button", name="Go online").click()
        await console.get_by_role("button", name="Go away").wait_for(timeout=T)
        await bob.set_viewport_size({"width": 390, "height": 780})
        await bob.screenshot(path=os.path.join(SHOTS, "console-mobile.png"))
        await browser.close()
        assert not errors, errors
    print("ok")


asyncio.run(main())
