"""The operators' console over HTTP: sign-in, CSRF, search, the watch page, actions, receivers.

The browser tests (``test_console_browser.py``) walk the same pages in Chromium; these check each
rule on its own, against the real app, Redis, workers and the Monite simulator.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient

from service.simulator import SimulatorControl
from tests.conftest import OPERATOR_KEY, Receiver, auth, confirm, csrf_of
from tests.test_end_to_end import ENTITY, invoice_de_data, invoice_de_task, register, settled

Client = AsyncTestClient[Any]


async def test_the_console_is_off_without_operator_keys(api: Client) -> None:
    assert (await api.get("/console", follow_redirects=False)).status_code == 404
    assert (await api.get("/console/login")).status_code == 404


async def test_the_console_sends_a_visitor_to_the_sign_in_form(console_api: Client) -> None:
    answer = await console_api.get("/console/watches", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


async def test_signing_in_sets_a_strict_http_only_session_cookie(console_api: Client) -> None:
    form = await console_api.get("/console/login")
    answer = await console_api.post(
        "/console/login",
        data={"csrf": csrf_of(form.text), "key": OPERATOR_KEY},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    [session] = [c for c in answer.headers.get_list("set-cookie") if "ocr_relay_console=" in c]
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Path=/console" in session
    assert "Max-Age=28800" in session
    assert "Secure" not in session  # plain http here; https gets Secure


async def test_a_wrong_key_is_refused_without_a_session(console_api: Client) -> None:
    form = await console_api.get("/console/login")
    answer = await console_api.post(
        "/console/login", data={"csrf": csrf_of(form.text), "key": "op_guess"}
    )
    assert answer.status_code == 401
    assert "That is not an operator key." in answer.text
    assert "ocr_relay_console=" not in " ".join(answer.headers.get_list("set-cookie"))
    assert (await console_api.get("/console", follow_redirects=False)).status_code == 303


async def test_an_api_client_key_does_not_open_the_console(console_api: Client) -> None:
    form = await console_api.get("/console/login")
    client_key = auth()["Authorization"].removeprefix("Bearer ")
    answer = await console_api.post(
        "/console/login", data={"csrf": csrf_of(form.text), "key": client_key}
    )
    assert answer.status_code == 401


async def test_signing_in_without_the_form_token_is_refused(console_api: Client) -> None:
    await console_api.get("/console/login")
    answer = await console_api.post("/console/login", data={"key": OPERATOR_KEY})
    assert answer.status_code == 403
    assert "security token" in answer.text


async def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(
    operator: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, duration_s=60)
    watch = await register(operator, task.id, receiver.url)
    answer = await operator.post(f"/console/watches/{watch['id']}/cancel", data={"confirm": "yes"})
    assert answer.status_code == 403
    after = await operator.get(f"/v1/watches/{watch['id']}", headers=auth())
    assert after.json()["state"] == "polling"


async def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(
    operator: Client,
) -> None:
    cookie = operator.cookies["ocr_relay_console"]
    overview = await operator.get("/console")
    out = await operator.post("/console/logout", data={"csrf": csrf_of(overview.text)})
    assert out.status_code == 200
    assert "Sign in" in out.text
    operator.cookies.set("ocr_relay_console", cookie, path="/console")
    again = await operator.get("/console", follow_redirects=False)
    assert again.status_code == 303


async def test_pages_forbid_scripts_framing_and_caching(operator: Client) -> None:
    page = await operator.get("/console")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # falls back to 'none': no script runs at all
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"


async def test_the_stylesheet_is_served_with_a_long_cache_lifetime(console_api: Client) -> None:
    login = await console_api.get("/console/login")
    href = login.text.split('rel="stylesheet" href="')[1].split('"')[0]
    assert "?v=" in href
    sheet = await console_api.get(href)
    assert sheet.status_code == 200
    assert "public" in sheet.headers["cache-control"]
    assert "max-age=31536000" in sheet.headers["cache-control"]


async def test_find_takes_a_task_id_an_event_id_a_watch_id_or_a_document_number(
    operator: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    task = await invoice_de_task(simulator)
    other = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    watch = await register(operator, task.id, receiver.url)
    await register(operator, other.id, receiver.url)
    await run_burst()
    done = await settled(operator, watch["id"])
    for term in (task.id, done["event_id"], watch["id"], "re-2026 0815"):
        page = await operator.get("/console/watches", params={"q": term})
        assert page.status_code == 200
        assert f"/console/watches/{watch['id']}" in page.text, term
        assert "1 watch<" in page.text, term


async def test_find_lists_every_clients_watches_a_page_at_a_time_without_gaps(
    operator: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    registered = set()
    # More than a page (25) per client, one client's all newer than the other's: each client's
    # page stops inside its list, and the newer one's stop is where the next page begins.
    for n in range(60):
        task = await simulator.create_task(entity_id=ENTITY, duration_s=60)
        answer = await operator.post(
            "/v1/watches",
            json={"task_id": task.id, "callback_url": receiver.url},
            headers=auth("alpha" if n < 30 else "beta"),
        )
        registered.add(answer.json()["id"])
    seen: list[str] = []
    path = "/console/watches"
    while True:
        page = await operator.get(path)
        seen += [
            part.split('"')[0]
            for part in page.text.split('<a href="/console/watches/')[1:]
            if part.startswith("wat_")
        ]
        if 'rel="next"' not in page.text:
            break
        path = page.text.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert len(seen) == len(set(seen)) == 60
    assert set(seen) == registered


async def test_find_filters_by_client_and_state(
    operator: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    ids = {}
    for client in ("alpha", "beta"):
        task = await simulator.create_task(entity_id=ENTITY, duration_s=60)
        answer = await operator.post(
            "/v1/watches",
            json={"task_id": task.id, "callback_url": receiver.url},
            headers=auth(client),
        )
        ids[client] = answer.json()["id"]
    beta = await operator.get("/console/watches", params={"client": "beta"})
    assert ids["beta"] in beta.text
    assert ids["alpha"] not in beta.text
    failed = await operator.get("/console/watches", params={"state": "failed"})
    assert ids["alpha"] not in failed.text
    assert "0 watches" in failed.text


async def test_a_malformed_filter_gets_a_message_not_an_error(operator: Client) -> None:
    page = await operator.get("/console/watches", params={"since": "yesterday"})
    assert page.status_code == 200
    assert "since: &#39;yesterday&#39; is not a date and time" in page.text
    state = await operator.get("/console/watches", params={"state": "lost"})
    assert "state: &#39;lost&#39; is not a watch state" in state.text
    stale = await operator.get("/console/watches", params={"cursor": "%%%"})
    assert "That page link is stale." in stale.text


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00", "9999-12-31T23:59", "9999-12-31T23:59-05:00"]
)
async def test_a_moment_at_the_calendars_edge_gets_a_message_not_an_error(
    operator: Client, moment: str
) -> None:
    refusal = f"until: &#39;{moment}&#39; is not between 1970 and 9998"
    found = await operator.get("/console/watches", params={"until": moment})
    assert found.status_code == 200
    assert refusal in found.text
    host = {"host": "erp.example.com"}
    form = await operator.get("/console/receivers/recover", params={**host, "until": moment})
    assert form.status_code == 400
    assert refusal in form.text
    valid = await operator.get("/console/receivers/recover", params=host)
    recover = await operator.post(
        "/console/receivers/recover",
        data={"csrf": csrf_of(valid.text), "confirm": "yes", **host, "until": moment},
    )
    assert recover.status_code == 400
    assert refusal in recover.text


# Inputs a hand or a script may send: empty, huge, control and non-ASCII characters, numbers out
# of every range, moments at the calendar's edges, path tricks.
ODD_VALUES = [
    "",
    " ",
    "x" * 5000,
    "\x00",
    "%00",
    "../../etc",
    "'\"<>",
    "☃",
    "9" * 40,
    "-1",
    "1e309",
    "nan",
    "2026-13-45T99:99",
    "0001-01-01T00:00",
    "9999-12-31T23:59:59-05:00",
]


@pytest.mark.parametrize("value", ODD_VALUES)
async def test_odd_values_in_any_field_never_cause_a_server_error(
    operator: Client, value: str
) -> None:
    segment = quote(value, safe="") or "x"
    answers = [
        *[
            await operator.get("/console/watches", params={field: value})
            for field in ("q", "client", "state", "failure_code", "since", "until", "cursor")
        ],
        await operator.get(f"/console/watches/{segment}"),
        await operator.get(f"/console/watches/{segment}/redeliver"),
        await operator.get(f"/console/watches/w/{segment}"),
        await operator.get("/console/receivers", params={"host": value}),
        await operator.get("/console/receivers/recover", params={"host": value, "until": value}),
    ]
    token = csrf_of((await operator.get("/console")).text)
    for field in ("host", "since", "until"):
        form = {"csrf": token, "confirm": "yes", "host": "h", field: value}
        answers.append(await operator.post("/console/receivers/recover", data=form))
    confirmed = {"csrf": token, "confirm": "yes"}
    answers.append(await operator.post(f"/console/watches/{segment}/cancel", data=confirmed))
    assert [
        (answer.url.path, answer.status_code) for answer in answers if answer.status_code >= 500
    ] == []


async def test_hostile_metadata_and_callback_urls_render_as_text(
    operator: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    probe = "<script>alert('x')</script>"
    task = await simulator.create_task(entity_id=ENTITY, duration_s=60)
    hook = receiver.url + '?q="><svg/onload=alert(1)>'
    watch = await register(operator, task.id, hook, metadata={"n": probe})
    page = await operator.get(f"/console/watches/{watch['id']}")
    assert "<script>" not in page.text
    assert "<svg/onload" not in page.text
    assert "&lt;script&gt;" in page.text
    # The API stores the URL percent-encoded; the page shows it as text, never as a link.
    assert "<code>http://127.0.0.1:" in page.text
    assert f'href="{receiver.url}' not in page.text


async def test_an_operators_cancel_is_recorded_as_theirs(
    operator: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, duration_s=60)
    watch = await register(operator, task.id, receiver.url)
    done = await confirm(operator, f"/console/watches/{watch['id']}/cancel")
    assert "The watch is cancelled." in done.text
    assert "by operator:alice" in done.text
    history = (await operator.get(f"/v1/watches/{watch['id']}", headers=auth())).json()
    assert history["state"] == "cancelled"
    assert history["transitions"][-1]["by"] == "operator:alice"
    assert history["transitions"][-1]["reason"] == "cancelled by operator"


async def test_an_operators_redelivery_sends_the_event_again(
    operator: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
    watch = await register(operator, task.id, receiver.url)
    await run_burst()
    await settled(operator, watch["id"])
    done = await confirm(operator, f"/console/watches/{watch['id']}/redeliver")
    assert "Redelivery started." in done.text
    await run_burst()
    [first, second] = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    page = await operator.get(f"/console/watches/{watch['id']}")
    assert page.text.count("<td>delivered</td>") + page.text.count(">delivered</span></td>") >= 2
    assert "redelivery requested" in page.text
    assert "by operator:alice" in page.text


async def test_the_watch_page_shows_the_document_as_a_table(
    operator: Client, simulator: SimulatorControl, receiver: Receiver, run_burst: Any
) -> None:
    data = invoice_de_data()
    data["sender"]["name"] = "<b>Evil & Co</b>"
    task = await invoice_de_task(simulator, data)
    watch = await register(operator, task.id, receiver.url)
    await run_burst()
    await settled(operator, watch["id"])
    page = (await operator.get(f"/console/watches/{watch['id']}")).text
    assert 'id="line-items"' in page
    assert "Kopierpapier A4, 80 g" in page
    assert "1487.50 EUR" in page
    assert "DE89370400440532013000" in page
    assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in page
    assert "<b>Evil" not in page


async def test_an_unknown_watch_is_a_page_saying_so(operator: Client) -> None:
    page = await operator.get("/console/watches/wat_nope")
    assert page.status_code == 404
    assert "There is no watch wat_nope." in page.text
    assert page.headers["content-type"].startswith("text/html")


async def test_the_overview_counts_the_last_hour_and_lists_live_workers(
    operator: Client, worker: Any, simulator: SimulatorControl, receiver: Receiver
) -> None:
    watches = []
    for _ in range(3):
        task = await simulator.create_task(entity_id=ENTITY, document_type="invoice")
        watches.append(await register(operator, task.id, receiver.url))
    for watch in watches:
        assert (await settled(operator, watch["id"]))["state"] == "delivered"
    page = (await operator.get("/console")).text
    delivered = page.split("<dt>Delivered</dt><dd>")[1].split("<")[0]
    assert delivered == "3"
    p50 = page.split("<dt>p50</dt><dd>")[1].split("<")[0]
    assert p50.endswith(("ms", " s")), p50
    requests = page.split("<dt>Requests</dt><dd>")[1].split("<")[0]
    assert int(requests) >= 1  # token and polls went through the shared budget
    assert '<span class="ok">alive</span>' in page
    assert 'http-equiv="refresh"' in page
    assert "None: every watch has finished." in page


async def test_the_overview_names_the_oldest_unfinished_watch(
    operator: Client, simulator: SimulatorControl, receiver: Receiver
) -> None:
    first = await register(operator, (await simulator.create_task(duration_s=60)).id, receiver.url)
    await register(operator, (await simulator.create_task(duration_s=60)).id, receiver.url)
    page = (await operator.get("/console")).text
    oldest = page.split("Oldest unfinished watch</h3>")[1].split("</p>")[0]
    assert first["id"] in oldest
