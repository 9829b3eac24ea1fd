"""The monitoring centre in a real browser: headless Chromium (Debian's, driven by Playwright)
against `customs serve` on a free loopback port, its real receiver behind the deployed
Mosquitto (TLS, passwords, ACL), and a simulated truck publishing signed records as its own
broker account. One service and one logged-in browser for the module; the tests run in order
(each builds on what the previous one did, as an officer's shift would).

Screenshots of every main page go to tests/artifacts/console/ (git-ignored).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.console_rig import (
    CHROMIUM_ARGS,
    Rig,
    corridor_points,
    password_of,
    running_console,
)
from helpers.customs_data import T0

from customs.credentials.keys import public_bytes
from ledger_client.acks import open_ack
from sealtrail.cli import main

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (deploy/install.sh installs it)")
    with running_console(tmp_path_factory.mktemp("console")) as r:
        gw = r.gateways["gw-a"]
        readings = [gw.fix(T0 + i * 10_000, lat, lon)
                    for i, (lat, lon) in enumerate(corridor_points(60))]
        readings.append(gw.status(T0 + 600_500, "gnssLost", since_ms=T0 + 600_000))
        r.publish("gw-a", "readings", b"\n".join(readings))
        first = gw.alert(T0 + 300_000, "sealLowBattery", "warning", plan_id="PLAN-gw-a",
                         asset={"vehicle": "truck-SBX-1234", "seal": "MSCU1234567"},
                         details={"battery_pct": 18})
        r.publish("gw-a", "alerts", first)
        r.publish("gw-a", "anchors", gw.receipt(1, 1, gw.seq))
        store = r.store
        r.service.call(r.service.service.watcher.wait_until(
            lambda: store.plan_envelope("PLAN-gw-a") is not None and len(store.alerts()) == 1
            and store.anchor_of("gw-a", 1) is not None))
        yield r


@pytest.fixture(scope="module")
def page(rig: Rig) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 900})
        outside: list[str] = []

        def only_local(route: Any) -> None:  # the network is cut off: only loopback answers
            if re.match(r"^https?://127\.0\.0\.1(:\d+)?/", route.request.url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        pg = context.new_page()
        pg.problems = []  # type: ignore[attr-defined]
        pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.problems.append(str(e)))
        pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
        pg.goto(rig.url + "/")
        expect(pg).to_have_url(re.compile(r"/login$"))
        pg.screenshot(path=str(ARTIFACTS / "login.png"))
        pg.fill("input[name=name]", "sam")
        pg.fill("input[name=password]", password_of("sam"))
        pg.click("button[type=submit]")
        pg.wait_for_selector("body[data-ready='1']")
        yield pg
        assert outside == [], f"the console tried to reach outside: {outside}"
        assert pg.problems == [], pg.problems
        browser.close()


def test_logged_out_and_csrf_less_requests_are_refused(rig: Rig) -> None:
    with httpx.Client(base_url=rig.url) as anon:
        assert anon.get("/").status_code == 303
        for path in ("/api/overview", "/api/alerts", "/api/trip?plan=PLAN-gw-a",
                     "/api/evidence/trip?plan=PLAN-gw-a", "/api/audit", "/api/events"):
            assert anon.get(path).status_code == 401, path
        assert anon.post("/api/alert/action", json={}).status_code == 401
        bad = anon.post("/login", data={"name": "sam", "password": "wrong password"})
        assert bad.status_code == 303 and bad.headers["location"].endswith("failed=1")
    [alert] = rig.store.alerts()
    action = {"gw": "gw-a", "alert_id": alert.alert_id, "action": "acknowledge"}
    with httpx.Client(base_url=rig.url) as officer:
        ok = officer.post("/login", data={"name": "aud", "password": password_of("aud")})
        assert ok.status_code == 303 and "sealtrail" in officer.cookies
        assert "HttpOnly" in ok.headers["set-cookie"] and "SameSite=strict" in \
            ok.headers["set-cookie"]
        csrf = officer.get("/api/me").json()["csrf"]
        assert officer.post("/api/alert/action", json=action).status_code == 403
        assert officer.post("/api/alert/action", json=action,
                            headers={"X-CSRF-Token": "forged"}).status_code == 403
        refused = officer.post("/api/alert/action", json=action, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403 and "auditor may not" in refused.json()["error"]
        page = officer.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert rig.store.alert("gw-a", alert.alert_id).state == "open"  # type: ignore[union-attr]


def test_the_console_works_with_the_network_cut_off(rig: Rig, page: Any) -> None:
    """Every request to anything but the console is aborted (the page fixture's route); the
    map still has its base layer of countries, the plan's corridor and the vehicle."""
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    drawn = page.evaluate("""() => { let n = 0; R.map.eachLayer(() => n++);
        return [document.getElementById('map').dataset.basemap, WORLD.borders.coordinates.length,
                R.plans.buffers.length, R.vehicles.size, n]; }""")
    assert drawn[0] == "ready" and drawn[1] > 100 and drawn[2] == 1 and drawn[3] == 1
    assert page.locator("#map canvas").count() >= 1


def test_a_new_alert_appears_in_the_queue_and_on_the_map_without_a_reload(
        rig: Rig, page: Any) -> None:
    expect(page.locator("#live")).to_have_text("live")
    page.screenshot(path=str(ARTIFACTS / "room-before.png"))
    assert page.evaluate("document.getElementById('map').dataset.basemap") == "ready"
    gw = rig.gateways["gw-a"]
    lat, lon = corridor_points(60)[40]
    signed = gw.alert(T0 + 400_000, "routeDeviation", "critical", plan_id="PLAN-gw-a",
                      lat_e7=lat + 30_000, lon_e7=lon, details={"distance_m": 340})
    alert_id = json.loads(signed)["body"]["alert_id"]
    acks = rig.publishers["gw-a"].subscribe("sealtrail/v1/gw-a/acks")
    rig.publish("gw-a", "alerts", signed)
    item = page.locator(f"#queue li[data-alert='{alert_id}']")
    expect(item).to_be_visible()
    # the service acknowledged it to the gateway, signed, through the deployed ACL
    key = rig.service.service.ctx.service_key
    acked = [open_ack(acks.get(timeout=30), [public_bytes(key)], "gw-a").acked_seq
             for _ in range(2)]  # the retained one from before, then this alert's
    assert acked[-1] == json.loads(signed)["seq"]
    expect(item).to_contain_text("left the declared corridor, 340 m from the route")
    expect(page.locator("#queue li").first).to_have_attribute("data-alert", alert_id)
    page.wait_for_function("document.getElementById('map').dataset.v_gw_a === 'alert'")
    marked = page.evaluate("(id) => { const m = R.alertMarks.get('gw-a/' + id);"
                           " return m && [m.getLatLng().lat, m.getLatLng().lng]; }", alert_id)
    assert marked == [pytest.approx((lat + 30_000) / 1e7), pytest.approx(lon / 1e7)]
    page.screenshot(path=str(ARTIFACTS / "room-live-alert.png"))


def test_acknowledge_assign_resolve_then_the_audit_chain_verifies(rig: Rig, page: Any) -> None:
    alert = rig.store.alerts(types=["routeDeviation"])[0]
    page.click(f"#queue li[data-alert='{alert.alert_id}']")
    detail = page.locator("#detail")
    expect(detail).to_contain_text("Left the route corridor")
    expect(detail).to_contain_text("verified on receipt")
    expect(detail).to_contain_text("Evidence readings")
    page.click("#detail button[name=acknowledge]")
    expect(detail).to_contain_text("acknowledged")
    page.select_option("#detail select[name=assignee]", "ana")
    page.click("#detail button[name=assign]")
    expect(detail).to_contain_text("assigned to ana")
    page.select_option("#detail select[name=reason]", "inspected")
    page.fill("#detail input[name=resolve-note]", "seals intact, driver detoured for roadworks")
    page.click("#detail button[name=resolve]")
    expect(detail).to_contain_text("resolved")
    expect(detail.locator(".custody li")).to_have_count(3)
    page.screenshot(path=str(ARTIFACTS / "alert-detail.png"))
    held = rig.store.alert("gw-a", alert.alert_id)
    assert (held.state, held.assignee, held.resolution) == ("resolved", "ana", "inspected")
    page.goto(rig.url + "/audit")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#verification")).to_contain_text("Chain verified: 3 entries")
    expect(page.locator("#entries tbody tr")).to_have_count(3)
    page.screenshot(path=str(ARTIFACTS / "audit.png"))
    assert main(["customs", "audit", "verify", "-c", str(rig.config_path)]) == 0


def test_the_trip_view_plays_the_vehicle_along_its_stored_track(rig: Rig, page: Any) -> None:
    page.goto(rig.url + "/trip?plan=PLAN-gw-a")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#title")).to_have_text("Trip PLAN-gw-a")
    expect(page.locator("#plan")).to_contain_text("UY-DUA-2026-000123")
    expect(page.locator("#summary")).to_contain_text("km")
    expect(page.locator("#timeline")).to_contain_text("gnssLost")
    start = page.evaluate("document.getElementById('map').dataset.playhead")
    first = corridor_points(60)[0]
    assert start == f"0:{first[0] / 1e7:.6f},{first[1] / 1e7:.6f}"
    page.click("#play")
    page.wait_for_function(
        "(s) => { const p = document.getElementById('map').dataset.playhead;"
        " return p !== s && Number(p.split(':')[0]) >= 30; }", arg=start)
    head = page.evaluate("document.getElementById('map').dataset.playhead")
    index = int(head.split(":")[0])
    lat, lon = corridor_points(60)[index]
    assert head.split(":")[1] == f"{lat / 1e7:.6f},{lon / 1e7:.6f}"  # a stored fix
    page.screenshot(path=str(ARTIFACTS / "trip.png"))
    page.click("button[name=released]")
    expect(page.locator("#custody")).to_contain_text("trip.released")
    with page.expect_download() as download:
        page.click("text=Evidence file")
    doc = json.loads(Path(download.value.path()).read_text())
    assert doc["format"] == "sealtrail-evidence/1" and doc["gateway_id"] == "gw-a"
    proven = {r["seq"] for r in doc["records"] if r["proof"] is not None}
    assert proven == set(range(1, 63))  # batch 1 (seq 1..62): the store holds all of it
    assert "not covered by an anchor receipt" in doc["selection"]["unproven"][0]
    with page.expect_download() as download:
        page.click("button[name=credential]")
    credential = json.loads(Path(download.value.path()).read_text())
    assert "TransitTripCredential" in str(credential["type"]) or credential["proof"]
    page.goto(rig.url + "/trip/print?plan=PLAN-gw-a")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#alerts tbody tr")).to_have_count(2)
    expect(page.locator("#custody tbody")).to_contain_text("trip.released")
    page.screenshot(path=str(ARTIFACTS / "print.png"), full_page=True)


def test_a_signed_alert_with_markup_in_its_asset_renders_as_text(rig: Rig, page: Any) -> None:
    page.goto(rig.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#live")).to_have_text("live")
    gw = rig.gateways["gw-a"]
    signed = gw.alert(T0 + 500_000, "sealOpened", "critical", plan_id="PLAN-gw-a",
                      asset={"vehicle": HOSTILE, "seal": HOSTILE},
                      details={"zone_name": HOSTILE, HOSTILE: HOSTILE})
    alert_id = json.loads(signed)["body"]["alert_id"]
    rig.publish("gw-a", "alerts", signed)
    item = page.locator(f"#queue li[data-alert='{alert_id}']")
    expect(item).to_contain_text(f"vehicle {HOSTILE}")
    item.click()
    expect(page.locator("#detail")).to_contain_text(HOSTILE)
    assert page.locator("#queue img, #detail img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "hostile.png"))
    assert not any("dialog" in p for p in page.problems)
