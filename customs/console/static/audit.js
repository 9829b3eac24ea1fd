"use strict";
(async () => {
  await header("audit");
  const d = await api("/api/audit");
  document.getElementById("auditid").textContent = d.audit_id;
  const v = d.verification, banner = document.getElementById("verification");
  banner.className = "banner " + (v.ok ? "ok" : "bad");
  banner.textContent = v.ok ? "Chain verified: " + v.records + " entries, every signature and link; " + v.batches +
    " batch(es), " + v.anchored_batches + " anchored; entries 1.." + v.batched_through + " covered by batch roots."
    : "CHAIN BROKEN: " + v.error;
  const bt = document.querySelector("#batches tbody");
  for (const b of d.batches) bt.append(el("tr", {}, el("td", {text: b.batch_seq}), el("td", {text: b.first_seq + ".." + b.last_seq}),
    el("td", {text: b.status}), el("td", {text: b.block ?? "—"}), el("td", {class: "mono", text: b.tx || "—"})));
  const et = document.querySelector("#entries tbody");
  for (const e of d.entries) {
    et.append(el("tr", {"data-seq": e.seq}, el("td", {text: e.seq}), el("td", {text: utc(e.t_ms)}), el("td", {text: e.officer}),
      el("td", {text: e.action}), el("td", {text: e.alert_id ? e.gw + " / " + e.alert_id : (e.plan_id || "")}),
      el("td", {text: [e.reason, e.assignee && "to " + e.assignee, e.place, e.note, e.corrects && "corrects #" + e.corrects, e.credential_id].filter(Boolean).join(" · ")}),
      el("td", {class: "mono", text: e.record_hash.slice(0, 16) + "…"})));
  }
  document.body.dataset.ready = "1";
})();
