"""The agent console and the visitor widget, both in headless Chromium (Debian's, driven
by Playwright) against a real gateway and bridge: the agent logs in to the console; a
visitor writes through the widget; the agent takes the conversation, answers, uses a
canned reply, notes and tags it, and transfers it to bob (another console), who answers
and closes it; the visitor sees every answer and is asked for a rating.

  python console_browser.py GATEWAY_ADDR BRIDGE_ADDR AGENT PASSWORD SCREENSHOT_DIR
Prints `ok` when every step held.
"""
import asyncio
import os
import sys

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

        visitor = await browser.new_page(viewport={"width": 1280, "height": 720})
        visitor.on("pageerror", lambda e: errors.append(f"widget: {e}"))
        await visitor.goto(f"http://{GW}/")
        await visitor.get_by_role("button", name="Chat with us").click()
        await visitor.get_by_label("Write a message").fill("Where is my parcel?")
        await visitor.keyboard.press("Enter")

        # The console gets it, with where the visitor is.
        await console.locator("#log .body", has_text="Where is my parcel?").wait_for(timeout=T)
        await console.locator("#context", has_text=f"page: http://{GW}/").wait_for(timeout=T)
        await console.get_by_label("Reply", exact=True).fill("Let me look it up.")
        await console.keyboard.press("Enter")
        await visitor.get_by_text("Let me look it up.").wait_for(timeout=T)
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
        console = bob
        # Closed from the console: the visitor is asked for a rating.
        await console.get_by_role("button", name="Close", exact=True).click()
        await visitor.locator("[data-sb=rate]").wait_for(timeout=T)
        await console.locator(".n", has_text="Closed by").wait_for(timeout=T)
        await browser.close()
        assert not errors, errors
    print("ok")


asyncio.run(main())
