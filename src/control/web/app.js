// peerlet's web page: calls the JSON API on the same origin (docs/API.md).
// Everything from the daemon (torrent names come from the network) is put
// into the page with textContent, never as HTML, and names and errors
// through visible(): no control characters, no bidirectional overrides (the
// rule of src/text.rs).
"use strict";

const $ = (id) => document.getElementById(id);
const HASH_RE = /^([0-9a-fA-F]{40}|[A-Za-z2-7]{32})$/;

const HIDDEN_RE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const visible = (s) => String(s).replace(HIDDEN_RE, "?");

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + u[i];
}
const rate = (n) => bytes(n) + "/s";

function duration(s) {
  if (!isFinite(s) || s < 0) return "∞";
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

// Calls the API; resolves to the JSON answer, rejects with the API's error message.
async function api(method, path, body, type) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.body = body;
    opts.headers["Content-Type"] = type;
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new Error("the daemon does not answer (" + e.message + ")");
  }
  let json = null;
  try { json = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const msg = json && json.error ? json.error : res.status + " " + res.statusText;
    throw new Error(msg);
  }
  return json;
}

let errorTimer = null;
function showError(msg) {
  const box = $("error");
  box.textContent = visible(msg);
  box.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { box.hidden = true; }, 15000);
}
function clearError() { $("error").hidden = true; }

// ---- torrents ----

const rows = new Map(); // info_hash -> {li, parts}
const removing = new Set(); // info-hashes whose remove confirmation is open

function torrentCard(t) {
  const li = el("li");
  li.dataset.hash = t.info_hash;
  const p = {};
  p.name = el("p", "name");
  const bar = el("div", "bar");
  p.progress = el("progress");
  p.progress.max = 1;
  p.pct = el("span", "pct");
  bar.append(p.progress, p.pct);
  p.meta = el("div", "meta");
  p.state = el("span", "state");
  p.down = el("span");
  p.up = el("span");
  p.peers = el("span");
  p.eta = el("span");
  p.size = el("span");
  p.meta.append(p.state, p.down, p.up, p.peers, p.eta, p.size);
  p.err = el("p", "terr");
  p.actions = el("div", "actions");
  p.toggle = el("button", "secondary");
  p.toggle.type = "button";
  p.toggle.addEventListener("click", () => {
    const paused = p.toggle.dataset.action === "resume";
    act("POST", "/api/torrents/" + t.info_hash + (paused ? "/resume" : "/pause"));
  });
  p.remove = el("button", "danger", "Remove");
  p.remove.type = "button";
  p.remove.addEventListener("click", () => { removing.add(t.info_hash); renderActions(t.info_hash); });
  p.confirm = el("div", "actions");
  const q = el("span", null, "Remove this torrent?");
  const lbl = el("label");
  p.deleteData = el("input");
  p.deleteData.type = "checkbox";
  lbl.append(p.deleteData, document.createTextNode("delete data"));
  const yes = el("button", "danger solid", "Remove");
  yes.type = "button";
  yes.addEventListener("click", async () => {
    const del = p.deleteData.checked ? "?delete_data=1" : "";
    removing.delete(t.info_hash);
    await act("DELETE", "/api/torrents/" + t.info_hash + del);
  });
  const no = el("button", "secondary", "Cancel");
  no.type = "button";
  no.addEventListener("click", () => { removing.delete(t.info_hash); renderActions(t.info_hash); });
  p.confirm.append(q, lbl, yes, no);
  p.actions.append(p.toggle, p.remove);
  p.hash = el("p", "hash", t.info_hash);
  li.append(p.name, bar, p.meta, p.err, p.actions, p.confirm, p.hash);
  return { li, p };
}

function renderActions(hash) {
  const row = rows.get(hash);
  if (!row) return;
  const open = removing.has(hash);
  row.p.actions.hidden = open;
  row.p.confirm.hidden = !open;
  if (!open) row.p.deleteData.checked = false;
}

function updateCard(row, t) {
  const p = row.p;
  const frac = t.total_size > 0 ? t.have_bytes / t.total_size : 0;
  const done = t.pieces > 0 && t.pieces_have === t.pieces;
  const pct = done ? 100 : Math.min(99.9, Math.floor(frac * 1000) / 10);
  p.name.textContent = visible(t.name || t.info_hash);
  p.progress.value = done ? 1 : frac;
  p.progress.classList.toggle("done", done);
  p.progress.setAttribute("aria-label", "progress of " + visible(t.name || t.info_hash));
  p.pct.textContent = t.state === "metadata" ? "–" : pct + "%";
  p.state.textContent = t.state;
  p.state.classList.toggle("error", t.state === "error");
  p.down.textContent = "↓ " + rate(t.download_rate);
  p.down.title = "download rate";
  p.up.textContent = "↑ " + rate(t.upload_rate);
  p.up.title = "upload rate";
  p.peers.textContent = t.peers + (t.peers === 1 ? " peer" : " peers");
  const left = t.total_size - t.have_bytes;
  let eta = "";
  if (t.state === "downloading") {
    eta = "ETA " + (t.download_rate > 0 ? duration(left / t.download_rate) : "∞");
  }
  p.eta.textContent = eta;
  p.eta.hidden = !eta;
  p.size.textContent = t.total_size ? bytes(t.total_size) : "";
  p.err.textContent = visible(t.error || "");
  p.err.hidden = !t.error;
  const paused = t.state === "paused";
  const label = visible(t.name || t.info_hash);
  p.toggle.textContent = paused ? "Resume" : "Pause";
  p.toggle.dataset.action = paused ? "resume" : "pause";
  p.toggle.setAttribute("aria-label", (paused ? "Resume " : "Pause ") + label);
  p.remove.setAttribute("aria-label", "Remove " + label);
  renderActions(t.info_hash);
}

async function act(method, path) {
  try {
    await api(method, path);
    clearError();
  } catch (e) {
    showError(e.message);
  }
  refreshTorrents();
}

function renderTorrents(list) {
  const ul = $("torrents");
  const seen = new Set();
  for (const t of list) {
    seen.add(t.info_hash);
    let row = rows.get(t.info_hash);
    if (!row) {
      row = torrentCard(t);
      rows.set(t.info_hash, row);
      ul.append(row.li);
    }
    updateCard(row, t);
  }
  for (const [hash, row] of rows) {
    if (!seen.has(hash)) {
      row.li.remove();
      rows.delete(hash);
      removing.delete(hash);
    }
  }
  $("empty").hidden = list.length > 0;
}

let torrentsBusy = false;
let pollFailed = false;
async function refreshTorrents() {
  if (torrentsBusy) return;
  torrentsBusy = true;
  try {
    renderTorrents(await api("GET", "/api/torrents"));
    // The daemon is back: drop the error the polling showed.
    if (pollFailed) clearError();
    pollFailed = false;
  } catch (e) {
    showError(e.message);
    pollFailed = true;
  } finally {
    torrentsBusy = false;
  }
}

// ---- adding ----

function asMagnet(text) {
  text = text.trim();
  if (HASH_RE.test(text)) return "magnet:?xt=urn:btih:" + text;
  return text;
}

async function add(body, type, peers) {
  let path = "/api/torrents";
  if (peers && peers.length) {
    path += "?" + peers.slice(0, 50).map((p) => "peer=" + encodeURIComponent(p)).join("&");
  }
  const r = await api("POST", path, body, type);
  clearError();
  const known = rows.get(r.info_hash);
  const name = known ? known.p.name.textContent : visible(r.name);
  $("add-status").textContent = (r.added ? "Added " : "Already present: ") + name;
  refreshTorrents();
  return r;
}

$("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("add-link");
  const link = asMagnet(input.value);
  if (!link) { showError("paste a magnet link or an info-hash (40 hex digits or 32 base32 characters)"); return; }
  if (!link.toLowerCase().startsWith("magnet:")) {
    showError("'" + link.slice(0, 60) + "' is neither a magnet link nor an info-hash");
    return;
  }
  $("add-btn").disabled = true;
  try {
    await add(link, "text/plain");
    input.value = "";
  } catch (e) {
    showError(e.message);
  } finally {
    $("add-btn").disabled = false;
  }
});

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("add-file");
  const file = input.files && input.files[0];
  if (!file) { showError("choose a .torrent file first"); return; }
  $("upload-btn").disabled = true;
  try {
    await add(await file.arrayBuffer(), "application/x-bittorrent");
    input.value = "";
  } catch (e) {
    showError(file.name + ": " + e.message);
  } finally {
    $("upload-btn").disabled = false;
  }
});

// ---- search ----

let searchGen = 0;
$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) return;
  const gen = ++searchGen;
  const param = HASH_RE.test(q) ? "hash=" : "q=";
  $("results").replaceChildren();
  $("search-status").textContent = "searching…";
  let id;
  try {
    id = (await api("POST", "/api/search?" + param + encodeURIComponent(q) + "&timeout=10")).id;
  } catch (e) {
    $("search-status").textContent = "";
    showError(e.message);
    return;
  }
  const shown = new Map();
  while (gen === searchGen) {
    let page;
    try {
      page = await api("GET", "/api/search/" + id);
    } catch (e) {
      showError(e.message);
      $("search-status").textContent = "";
      return;
    }
    if (gen !== searchGen) return;
    for (const r of page.results) showResult(shown, r);
    const n = page.results.length;
    if (page.done) {
      $("search-status").textContent = n ? n + (n === 1 ? " result" : " results") : "no results";
      return;
    }
    $("search-status").textContent = "searching… " + n + (n === 1 ? " result" : " results") + " so far";
    await new Promise((ok) => setTimeout(ok, 1000));
  }
});

function showResult(shown, r) {
  let row = shown.get(r.info_hash);
  if (!row) {
    const li = el("li");
    const name = el("p", "name");
    const meta = el("div", "meta");
    const actions = el("div", "actions");
    const btn = el("button", null, "Add");
    btn.type = "button";
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        const a = await add("magnet:?xt=urn:btih:" + r.info_hash, "text/plain", row.holders);
        btn.textContent = a.added ? "Added" : "Already here";
      } catch (e) {
        showError(e.message);
        btn.disabled = false;
      }
    });
    actions.append(btn);
    li.append(name, meta, actions, el("p", "hash", r.info_hash));
    $("results").append(li);
    row = { name, meta, btn, holders: [] };
    shown.set(r.info_hash, row);
  }
  row.holders = r.holders || [];
  row.name.textContent = visible(r.name || r.info_hash);
  row.btn.setAttribute("aria-label", "add " + visible(r.name || r.info_hash));
  const h = row.holders.length;
  row.meta.textContent = (r.size ? bytes(r.size) + " · " : "") + h + (h === 1 ? " holder" : " holders");
}

// ---- node and overlay ----

function kv(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    dl.append(el("dt", null, k), el("dd", null, v === null || v === undefined ? "–" : String(v)));
  }
}

async function refreshNode() {
  try {
    const n = await api("GET", "/api/node");
    const plural = (k, word) => k + " " + word + (k === 1 ? "" : "s");
    $("summary").textContent = plural(n.torrents, "torrent") + " · " + plural(n.peers, "peer") + " · ↓ " +
      rate(n.download_rate) + " · ↑ " + rate(n.upload_rate);
    kv($("node"), [
      ["version", n.version], ["peers on", n.listen], ["node id", n.node_id],
      ["uptime", duration(n.uptime_secs)],
      ["limits", (n.download_limit ? "↓ " + rate(n.download_limit) : "↓ none") + " · " +
                 (n.upload_limit ? "↑ " + rate(n.upload_limit) : "↑ none")],
      ["memory", bytes(n.bytes_in_flight) + " of " + bytes(n.memory_budget)],
    ]);
    // State files that cannot be written (a read-only or full state directory).
    const se = $("state-error");
    se.textContent = n.state_dir_error ? "State directory: " + n.state_dir_error : "";
    se.hidden = !n.state_dir_error;
  } catch (e) {
    $("summary").textContent = "daemon not answering";
  }
  try {
    const o = await api("GET", "/api/nodes");
    const nb = o.nodes.filter((x) => x.neighbour).length;
    $("nodes-summary").textContent = "overlay " + o.udp + (o.external ? ", external " + o.external : "") +
      " · table " + o.nodes.length + "/" + o.capacity + " · neighbours " + nb + "/" + o.degree +
      " · content " + o.content_entries + " entries";
    const ul = $("nodes");
    ul.replaceChildren();
    for (const x of o.nodes) {
      const li = el("li");
      li.append(el("span", "addr", x.addr));
      if (x.neighbour) li.append(el("span", "nb", "neighbour"));
      li.append(el("span", "hash", x.id ? x.id.slice(0, 12) : "no id yet"),
        el("span", null, x.source),
        el("span", null, x.rtt_ms === null ? "rtt –" : "rtt " + x.rtt_ms + " ms"),
        el("span", null, x.last_seen_secs === null ? "never seen" : "seen " + duration(x.last_seen_secs) + " ago"));
      ul.append(li);
    }
  } catch (e) {
    // 503 and the like when the overlay is off: say so, quietly.
    $("nodes-summary").textContent = "overlay: " + e.message;
    $("nodes").replaceChildren();
  }
  try {
    const d = await api("GET", "/api/dht");
    const c = d.counters || {};
    $("dht-summary").textContent = "DHT " + visible(d.udp) +
      (d.external_ip ? ", external " + visible(d.external_ip) : "") +
      (d.read_only ? " (read-only)" : "") +
      " · " + d.nodes + " nodes in " + d.buckets.length + " buckets" +
      " · " + d.tracked + " torrents tracked · " + (c.lookups_done || 0) + " lookups, " +
      (c.announces || 0) + " announces · " + d.stored_peers + " peers stored" +
      " · packets " + (c.packets_in || 0) + " in, " + (c.packets_out || 0) + " out";
  } catch (e) {
    // 400 when the DHT is off: say so, quietly.
    $("dht-summary").textContent = "DHT: " + e.message;
  }
}

refreshTorrents();
refreshNode();
setInterval(refreshTorrents, 1500);
setInterval(refreshNode, 5000);
