"""The console in Chromium: what an operator does, end to end, with a screenshot of every page.

Screenshots are written to ``tests/artifacts/console/`` (see the README); open them to look.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

from service.simulator import SimulatorControl
from tests.conftest import Receiver, auth, screenshot, sign_in
from tests.test_end_to_end import ENTITY, invoice_de_data, invoice_de_task


async def register(page: Page, task_id: str, callback_url: str, **extra: Any) -> str:
    """Register a watch through the API (as client alpha); its id."""
    answer = await page.request.post(
        "/v1/watches",
        data={"task_id": task_id, "callback_url": callback_url, "entity_id": ENTITY, **extra},
        headers=auth(),
    )
    assert answer.status == 201, await answer.text()
    watch_id: str = (await answer.json())["id"]
    return watch_id


async def polling_watch(page: Page, simulator: SimulatorControl, receiver: Receiver) -> str:
    """Register a watch of a task that runs ten minutes: it polls all through a test; its id."""
    task = await simulator.create_task(entity_id=ENTITY, duration_s=600)
    return await register(page, task.id, receiver.url)


async def state_of(page: Page, watch_id: str) -> str:
    answer = await page.request.get(f"/v1/watches/{watch_id}", headers=auth())
    state: str = (await answer.json())["state"]
    return state


async def until_state(page: Page, watch_id: str, state: str) -> None:
    for _ in range(300):
        if await state_of(page, watch_id) == state:
            return
        await page.wait_for_timeout(50)
    raise AssertionError(f"{watch_id} never became {state}")


async def test_an_operator_finds_a_delivered_watch_by_task_id_and_redelivers_it(
    page: Page, worker: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await invoice_de_task(simulator)
    watch_id = await register(page, task.id, receiver.url, metadata={"erp_ref": "PO-4711"})
    await until_state(page, watch_id, "delivered")

    await sign_in(page)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await screenshot(page, "overview")

    await page.get_by_role("link", name="Find").click()
    await page.get_by_label("Watch id, Monite task id, event id or document number").fill(task.id)
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", name="1 watch")).to_be_visible()
    await screenshot(page, "find")

    await page.get_by_role("link", name=watch_id).click()
    await expect(page.locator("#attempts tbody tr")).to_have_count(1)
    await expect(page.locator("#line-items")).to_contain_text("Kopierpapier A4, 80 g")
    await screenshot(page, "watch")

    await page.get_by_role("link", name="Redeliver").click()
    await screenshot(page, "confirm-redeliver")
    await page.get_by_role("button", name=f"Redeliver {watch_id}").click()
    await expect(page.get_by_role("status")).to_have_text("Redelivery started.")
    for _ in range(100):  # the worker delivers; the operator reloads to see the attempt
        if await page.locator("#attempts tbody tr").count() == 2:
            break
        await page.wait_for_timeout(100)
        await page.reload()
    await expect(page.locator("#attempts tbody tr")).to_have_count(2)
    await expect(page.locator(".timeline")).to_contain_text("by operator:alice")
    assert len(await receiver.wait_for(2)) == 2


async def test_an_operator_cancels_a_polling_watch_and_signs_out(
    page: Page, simulator: SimulatorControl, receiver: Receiver
) -> None:
    watch_id = await polling_watch(page, simulator, receiver)
    await sign_in(page)
    await page.goto(f"/console/watches/{watch_id}")
    await page.get_by_role("link", name="Cancel").click()
    await page.get_by_role("button", name=f"Cancel {watch_id}").click()
    await expect(page.get_by_role("status")).to_have_text("The watch is cancelled.")
    assert await state_of(page, watch_id) == "cancelled"

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(f"/console/watches/{watch_id}")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_a_wrong_operator_key_is_refused(page: Page) -> None:
    await sign_in(page, "op_not-a-key")
    await expect(page.get_by_role("alert")).to_have_text("That is not an operator key.")
    await screenshot(page, "sign-in-refused")
    await page.goto("/console/receivers")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_a_form_without_its_csrf_token_is_refused(
    page: Page, simulator: SimulatorControl, receiver: Receiver
) -> None:
    watch_id = await polling_watch(page, simulator, receiver)
    await sign_in(page)
    await page.goto(f"/console/watches/{watch_id}/cancel")
    await page.locator('main input[name="csrf"]').evaluate("input => input.remove()")
    await page.get_by_role("button", name=f"Cancel {watch_id}").click()
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert await state_of(page, watch_id) == "polling"


async def test_xss_probes_in_metadata_and_document_fields_render_as_text(
    page: Page, worker: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    probe = "<img src=x onerror=alert(1)>"
    data = invoice_de_data()
    data["sender"]["name"] = probe
    data["line_items"][0]["name"] = "<script>alert(2)</script>"
    task = await invoice_de_task(simulator, data)
    watch_id = await register(page, task.id, receiver.url, metadata={"note": probe})
    await until_state(page, watch_id, "delivered")
    await sign_in(page)
    await page.goto(f"/console/watches/{watch_id}")
    await expect(page.locator("main img")).to_have_count(0)
    await expect(page.locator("main script")).to_have_count(0)
    await expect(page.locator("pre.code").first).to_contain_text(probe)  # the metadata
    await expect(page.get_by_role("region", name="Document")).to_contain_text(probe)  # seller
    await expect(page.locator("#line-items")).to_contain_text("<script>alert(2)</script>")
    await screenshot(page, "watch-xss-probe")


async def test_the_receivers_and_recover_pages_and_phone_widths(
    page: Page, worker: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, document_type="receipt")
    watch_id = await register(page, task.id, receiver.url)
    await until_state(page, watch_id, "delivered")
    await sign_in(page)
    await page.get_by_role("link", name="Receivers").click()
    await expect(page.locator("table.results")).to_contain_text(f"127.0.0.1:{receiver.port}")
    await screenshot(page, "receivers")
    await page.goto(f"/console/receivers/recover?host=127.0.0.1:{receiver.port}")
    await expect(page.get_by_label("Failed since (UTC)")).to_be_visible()
    await screenshot(page, "recover")
    await page.set_viewport_size({"width": 390, "height": 844})
    for path, name in (
        ("/console", "overview-phone"),
        (f"/console/watches/{watch_id}", "watch-phone"),
    ):
        await page.goto(path)
        await screenshot(page, name)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"


async def test_the_console_is_keyboard_reachable_with_landmarks(page: Page) -> None:
    await sign_in(page)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await expect(page.get_by_role("main")).to_have_count(1)
    await expect(page.get_by_role("navigation", name="Console pages")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Overview")).to_be_focused()
