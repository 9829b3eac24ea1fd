"""Console benchmark: how fast an alert reaches an officer's screen, and how fast the control
room opens with a thousand trips.

1. Alert latency. `customs serve` (receiver + console, one process, here a thread) behind a
   real Mosquitto on loopback; 200 simulated gateways each publish a signed fix a second (200
   active trips reporting); alerts from random gateways at ``--alert-rate``. Headless Chromium
   (Playwright, Debian's binary) has the control room open; a MutationObserver stamps the time
   each alert's row appears in the queue. Latency = that time minus the ``changes`` row the
   receiver wrote in the alert's transaction (commit happens right after, so this slightly
   overstates it). Goal (DESIGN.md): p99 < 1 s.
2. Page load. A store with 1,000 trips (signed plans, each with its gateway's last fix and
   some alerts); from navigation to the page's "ready" mark (basemap drawn, 1,000 corridors and
   vehicles on the map, queue filled). Cold = the first load after start (every plan's
   signature checked, the browser's cache empty: the 750 kB base map fetched and converted),
   warm = the next ones. Goal: < 2 s.

Prints one JSON line.  .venv/bin/python bench/console.py [--alerts 300] [--trips 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the broker and service helpers the tests use
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from helpers.console_rig import CHROMIUM_ARGS, ServiceThread, plan_envelope  # noqa: E402
from helpers.customs_data import SimGateway  # noqa: E402
from helpers.mosquitto import free_port, running_mosquitto  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from customs.config import load_config  # noqa: E402
from customs.receive import Receiver  # noqa: E402
from customs.serve import build  # noqa: E402
from customs.store import open_store  # noqa: E402
from customs.trust import StaticTrust  # noqa: E402
from customs.users import add_user  # noqa: E402
from ledger_client.keys import create_key  # noqa: E402

PASSWORD = "bench password, long enough"
OBSERVER = """
window.__seen = {};
new MutationObserver((records) => {
  const t = Date.now();
  for (const r of records) for (const n of r.addedNodes)
    if (n.dataset && n.dataset.alert && !(n.dataset.alert in window.__seen))
      window.__seen[n.dataset.alert] = t;
}).observe(document.getElementById('queue'), {childList: true});
"""


def write_config(tmp: Path, key: Path, *, broker_port: int | None) -> Path:
    mqtt = (f'[mqtt]\nbroker = "127.0.0.1"\nport = {broker_port}\ntls = false\n'
            'client_id = "bench-customs"\n\n[trust]\nfile = "' + str(tmp / "trust.json") +
            '"\n') if broker_port else ""
    path = tmp / "customs.toml"
    path.write_text(f'[office]\nservice_key = "{key}"\n\n[store]\ntarget = "'
                    f'{tmp / "customs.db"}"\n\n{mqtt}\n[console]\nlisten = "127.0.0.1:'
                    f'{free_port()}"\nsecure_cookie = false\n')
    return path


def login(page: Any, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=name]", "bench")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)


def alert_latency(tmp: Path, browser: Any, gateways: int, alerts: int,
                  rate: float) -> dict[str, Any]:
    key = create_key(tmp / "service.key")
    sims = [SimGateway(f"gw-{i:03d}") for i in range(gateways)]
    (tmp / "trust.json").write_text(json.dumps({"gateways": {s.gw: s.pub for s in sims}}))
    with running_mosquitto(tmp, extra_conf="max_queued_messages 100000") as broker:
        config = write_config(tmp, tmp / "service.key", broker_port=broker.port)
        store = open_store(tmp / "customs.db")
        add_user(store, "bench", "supervisor", PASSWORD)
        store.close()
        service = ServiceThread(build(load_config(config)))
        service.start()
        watcher = service.service.watcher
        service.call(watcher.connected.wait())
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-fleet")
        client.connect(broker.host, broker.port)
        client.loop_start()
        for i, s in enumerate(sims):  # every trip has a plan and a first fix
            client.publish(f"sealtrail/v1/{s.gw}/plans", plan_envelope(key, f"PLAN-{i:03d}"),
                           qos=1, retain=True)
        url = f"http://127.0.0.1:{service.service.port}"
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        stop = threading.Event()
        t0 = int(time.time() * 1000)

        def fleet() -> None:  # one fix a second per gateway, spread over the second
            tick = 0
            while not stop.is_set():
                for s in sims:
                    lat = -349_000_000 + int(s.gw[3:]) * 10_000 + tick * 50
                    with lock:  # one chain per gateway: fixes and alerts take turns
                        signed = s.fix(t0 + tick * 1000, lat, -562_000_000)
                        client.publish(f"sealtrail/v1/{s.gw}/readings", signed, qos=1)
                    if stop.wait(1.0 / len(sims)):
                        return
                tick += 1

        sent: list[str] = []
        lock = threading.Lock()
        worker = threading.Thread(target=fleet, daemon=True)
        try:
            worker.start()
            login(page, url)
            page.evaluate(OBSERVER)
            rng = random.Random(7)
            for n in range(alerts):
                s = rng.choice(sims)
                with lock:
                    signed = s.alert(t0 + n, "routeDeviation", "critical",
                                     plan_id=f"PLAN-{sims.index(s):03d}")
                    client.publish(f"sealtrail/v1/{s.gw}/alerts", signed, qos=1)
                sent.append(json.loads(signed)["body"]["alert_id"])
                time.sleep(1.0 / rate)  # the load's pace (not a synchronisation)
            page.wait_for_function(f"Object.keys(window.__seen).length >= {alerts}",
                                   timeout=60_000)
            seen = page.evaluate("window.__seen")
        finally:
            stop.set()
            worker.join(10)
            client.loop_stop()
            client.disconnect()
            page.close()
            commits = {ref: t for _, t, kind, _, ref in
                       service.service.store.changes_since(0, 10**7) if kind == "alert"}
            readings = service.service.store.counts()["readings"]
            service.stop()
    lat = sorted(seen[a] - commits[a] for a in sent if a in commits and a in seen)
    return {"alerts": len(lat), "gateways": gateways, "readings_stored": readings,
            "p50_ms": statistics.median(lat), "p99_ms": lat[int(0.99 * (len(lat) - 1))],
            "max_ms": lat[-1]}


def page_load(tmp: Path, browser: Any, trips: int) -> dict[str, Any]:
    key = create_key(tmp / "service.key")
    config = write_config(tmp, tmp / "service.key", broker_port=None)
    store = open_store(tmp / "customs.db")
    add_user(store, "bench", "supervisor", PASSWORD)
    sims = [SimGateway(f"gw-{i:04d}") for i in range(trips)]
    receiver = Receiver(store, StaticTrust({s.gw: s.pub for s in sims}))
    base = json.loads((ROOT / "sealtrail" / "demo_data" / "plan.json").read_text())
    messages = []
    for i, s in enumerate(sims):
        doc = json.loads(json.dumps(base))
        doc["plan_id"] = f"PLAN-{i:04d}"
        dlat, dlon = (i // 40) * 0.05, (i % 40) * 0.05  # spread the trips over a region
        _shift(doc, dlat, dlon)
        from geofences import sign_envelope

        messages.append((f"sealtrail/v1/{s.gw}/plans",
                         sign_envelope("plan", json.dumps(doc).encode(), key)))
        lat, lon = round((-34.9 + dlat) * 1e7), round((-56.2 + dlon) * 1e7)
        messages.append((f"sealtrail/v1/{s.gw}/readings", s.fix(1_790_000_000_000, lat, lon)))
        if i % 5 == 0:
            messages.append((f"sealtrail/v1/{s.gw}/alerts",
                             s.alert(1_790_000_001_000, "sealOpened", "critical",
                                     plan_id=f"PLAN-{i:04d}", lat_e7=lat, lon_e7=lon)))
    for n in range(0, len(messages), 500):
        receiver.handle_batch(messages[n:n + 500])
    store.close()
    service = ServiceThread(build(load_config(config)))
    service.start()
    url = f"http://127.0.0.1:{service.service.port}"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.context.request.post(url + "/login", form={"name": "bench",
                                                        "password": PASSWORD},
                                  max_redirects=0)  # the session cookie, without a page
        times = []
        for _ in range(4):  # the first: service and browser caches cold
            start = time.perf_counter()
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            times.append((time.perf_counter() - start) * 1000)
        shown = int(page.evaluate("document.body.dataset.trips"))
    finally:
        page.close()
        service.stop()
    return {"trips": shown, "cold_ms": round(times[0]), "warm_ms": round(
        statistics.median(times[1:])), "warm_max_ms": round(max(times[1:]))}


def _shift(doc: dict[str, Any], dlat: float, dlon: float) -> None:
    def move(coords: Any) -> Any:
        if isinstance(coords[0], int | float):
            return [coords[0] + dlon, coords[1] + dlat]
        return [move(c) for c in coords]

    doc["corridor"]["geometry"]["coordinates"] = move(doc["corridor"]["geometry"]["coordinates"])
    for f in doc["zones"]["features"]:
        f["geometry"]["coordinates"] = move(f["geometry"]["coordinates"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--alert-rate", type=float, default=10.0, help="alerts per second")
    parser.add_argument("--trips", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            (Path(tmp) / "a").mkdir()
            (Path(tmp) / "b").mkdir()
            latency = alert_latency(Path(tmp) / "a", browser, args.gateways, args.alerts,
                                    args.alert_rate)
            load = page_load(Path(tmp) / "b", browser, args.trips)
        finally:
            browser.close()
    print(json.dumps({"bench": "console", "alert_to_dom": latency, "page_load": load,
                      "goals": {"alert_p99_ms": 1000, "page_load_ms": 2000},
                      "ok": latency["p99_ms"] < 1000 and load["warm_ms"] < 2000
                      and load["cold_ms"] < 2000}))


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
