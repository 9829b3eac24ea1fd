"use strict";
// One alert in full, in the #detail panel: meaning, verification, evidence readings, custody,
// and the actions the officer's role allows. `onChange(alert)` is told of every action taken.

function dl(pairs) {
  const d = el("dl", {class: "facts"});
  for (const [k, v] of pairs) d.append(el("dt", {text: k}), el("dd", {text: v}));
  return d;
}

function custodyItem(e) {
  const extra = [e.reason && ("reason: " + e.reason), e.assignee && ("to " + e.assignee),
    e.place && ("at " + e.place), e.note && ("“" + e.note + "”"),
    e.corrects && ("corrects #" + e.corrects), e.credential_id].filter(Boolean).join(" · ");
  return el("li", {class: "entry"}, el("span", {class: "mono", text: "#" + e.seq}), " ",
    el("span", {text: utc(e.t_ms)}), " ", el("b", {text: e.officer}), " ",
    el("span", {class: "action", text: e.action}), extra ? " — " : "", extra);
}

async function showAlert(gw, alertId, onChange, onLocate) {
  const box = document.getElementById("detail");
  const d = await api("/api/alert?gw=" + encodeURIComponent(gw) + "&id=" + encodeURIComponent(alertId));
  const a = d.alert;
  box.hidden = false;
  clear(box);
  box.dataset.alert = a.alert_id;
  const close = el("button", {type: "button", class: "close", text: "×", "aria-label": "close",
    onclick: () => { box.hidden = true; }});
  box.append(close,
    el("h2", {class: "sev-" + a.severity}, el("span", {class: "badge " + a.severity, text: a.severity}), " ",
       el("span", {class: "title", text: d.meaning.title})),
    el("p", {class: "sentence", text: d.meaning.sentence}),
    dl([["state", a.state + (a.assignee ? " (assigned to " + a.assignee + ")" : "") +
           (a.resolution ? " — " + a.resolution.replace("_", " ") : "")],
        ["raised", utc(a.t_ms) + " by gateway " + a.gw + ", record #" + a.seq],
        ["asset", a.asset], ["plan", a.plan_id || "—"],
        ["position", a.lat === null ? "no fix" : a.lat.toFixed(6) + ", " + a.lon.toFixed(6)],
        ...d.meaning.facts]));
  if (a.lat !== null && onLocate) {
    box.append(el("button", {type: "button", text: "Show on map", onclick: () => onLocate(a)}));
  }
  if (a.plan_id) box.append(" ", el("a", {href: "/trip?plan=" + encodeURIComponent(a.plan_id), text: "Open trip"}));
  const v = d.verification, an = v.anchor;
  box.append(el("h3", {text: "Verification"}), dl([
    ["signature", v.signature], ["trusted key", v.key],
    ["anchor", an.status + (an.batch ? " — batch " + an.batch + ", block " + an.block +
      (an.confirmations !== undefined ? ", " + an.confirmations + " confirmations" : "") : "")],
    ...(an.tree ? [["Merkle batch", an.tree]] : []),
    ...(v.note ? [["note", v.note]] : []),
    ["copies received", String(1 + v.duplicates)]]));
  const ev = el("table", {class: "table small"}, el("thead", {}, el("tr", {},
    el("th", {text: "#"}), el("th", {text: "time"}), el("th", {text: "kind"}), el("th", {text: "reading"}))));
  const tb = el("tbody");
  for (const r of d.evidence) {
    tb.append(el("tr", {}, el("td", {text: r.seq}), el("td", {text: r.held ? utc(r.t_ms) : "—"}),
      el("td", {text: r.held ? r.kind + " " + r.src : "not held"}),
      el("td", {text: r.held ? r.fields.map(([k, x]) => k + "=" + x).join(" ") : ""})));
  }
  ev.append(tb);
  box.append(el("h3", {text: "Evidence readings"}), d.evidence.length ? ev : el("p", {class: "muted", text: "none cited"}));
  const custody = el("ol", {class: "custody"});
  for (const e of d.audit) custody.append(custodyItem(e));
  box.append(el("h3", {text: "Custody"}), d.audit.length ? custody : el("p", {class: "muted", text: "no action yet"}));
  box.append(actionBar(a, onChange));
}

function actionBar(a, onChange) {
  const bar = el("div", {class: "actions"});
  const msg = el("p", {class: "error", role: "status"});
  const act = async (body) => {
    msg.textContent = "";
    try {
      const r = await postJson("/api/alert/action", Object.assign({gw: a.gw, alert_id: a.alert_id}, body));
      await showAlert(a.gw, a.alert_id, onChange);
      if (onChange) onChange(r.alert);
    } catch (e) { msg.textContent = e.message; }
  };
  if (can("act")) {
    if (a.state === "open") bar.append(el("button", {type: "button", name: "acknowledge", text: "Acknowledge", onclick: () => act({action: "acknowledge"})}));
    if (a.state !== "resolved") {
      const reason = el("select", {name: "reason"}, el("option", {value: "false_alarm", text: "false alarm"}),
        el("option", {value: "inspected", text: "inspected"}), el("option", {value: "escalated", text: "escalated"}));
      const note = el("input", {name: "resolve-note", placeholder: "note (optional)"});
      bar.append(el("span", {class: "group"}, reason, note, el("button", {type: "button", name: "resolve", text: "Resolve",
        onclick: () => act({action: "resolve", reason: reason.value, note: note.value})})));
    }
    const n = el("input", {name: "note", placeholder: "add a note"});
    bar.append(el("span", {class: "group"}, n, el("button", {type: "button", name: "add-note", text: "Add note",
      onclick: () => act({action: "note", note: n.value})})));
  }
  if (can("supervise") && a.state !== "resolved") {
    const who = el("select", {name: "assignee"}, ...ST.me.officers.map((o) => el("option", {value: o, text: o})));
    bar.append(el("span", {class: "group"}, who, el("button", {type: "button", name: "assign", text: "Assign",
      onclick: () => act({action: "assign", assignee: who.value})})));
  }
  if (can("supervise") && a.state === "resolved") {
    const why = el("input", {name: "reopen-note", placeholder: "why reopen (required)"});
    bar.append(el("span", {class: "group"}, why, el("button", {type: "button", name: "reopen", text: "Reopen",
      onclick: () => act({action: "reopen", note: why.value})})));
  }
  bar.append(el("a", {class: "button", href: "/api/evidence/alert?gw=" + encodeURIComponent(a.gw) +
    "&id=" + encodeURIComponent(a.alert_id), text: "Evidence file"}));
  if (can("act") && a.plan_id) {
    bar.append(el("button", {type: "button", name: "credential", text: "Issue credential", onclick: async () => {
      try { await download("/api/credential", {gw: a.gw, alert_id: a.alert_id}, "credential.json"); }
      catch (e) { msg.textContent = e.message; } }}));
  }
  bar.append(msg);
  return bar;
}
