"use strict";
// Shared helpers. Every value shown comes from a gateway or an officer: the DOM is built with
// textContent and attributes only, never innerHTML with data.
const ST = {me: null};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function utc(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

async function api(path) {
  const r = await fetch(path, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}

async function post(path, body) {
  const r = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": ST.me.csrf},
    body: JSON.stringify(body)});
  if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
  return r;
}

async function postJson(path, body) {
  const r = await post(path, body);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}

async function download(path, body, fallbackName) {
  const r = await post(path, body);
  if (!r.ok) { const d = await r.json(); throw new Error(d.error || r.statusText); }
  const blob = await r.blob();
  const m = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
  const a = el("a", {href: URL.createObjectURL(blob), download: m ? m[1] : fallbackName});
  document.body.append(a); a.click(); a.remove();
}

function can(action) {
  const role = ST.me && ST.me.role;
  if (action === "supervise") return role === "supervisor";
  return role === "officer" || role === "supervisor";
}

async function header(active) {
  ST.me = await api("/api/me");
  const top = document.getElementById("top");
  if (!top) return ST.me;
  const link = (href, text, key) => el("a", {href, class: key === active ? "active" : null, text});
  clear(top).append(
    el("span", {class: "brand", text: "SealTrail customs"}),
    el("nav", {}, link("/", "Control room", "room"), link("/audit", "Audit chain", "audit")),
    el("span", {class: "who"}, el("span", {text: ST.me.name}), " ",
       el("span", {class: "role", text: ST.me.role}), " ",
       el("button", {type: "button", text: "Log out", onclick: async () => {
         await post("/logout", {}); location.href = "/login"; }})));
  return ST.me;
}

const STATE_COLOURS = {normal: "#2e7d32", alert: "#c62828", comm: "#616161", gnss: "#8e24aa"};
const STATE_WORDS = {normal: "normal", alert: "alert open", comm: "comm lost", gnss: "GNSS lost"};
const SEVERITY_COLOURS = {critical: "#c62828", warning: "#ef6c00", info: "#1565c0"};
const ROLE_COLOURS = {customs_office: "#2e7d32", authorized_stop: "#1e88e5", forbidden: "#e53935",
  port_area: "#757575"};
