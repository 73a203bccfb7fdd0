// Tessera UI: plain JavaScript over /api/v1/ (docs/ui.md). No build step, nothing fetched from elsewhere.
"use strict";

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
  "#86bcb6", "#d37295", "#a0cbe8", "#8cd17d", "#f1ce63", "#499894", "#fabfd2"];
const TAINTED = 1, PARTITIONED = 2, UNKNOWN_OWNER = 8, UNUSABLE = 16;
const NODE_LIMIT = 128; // a domain with more nodes than this is drawn as one summary tile until zoomed into
const POLL_MS = 1000;

const state = {
  view: "map", version: null, synced: false, map: null, zoom: [], highlight: null, nodeCache: new Map(),
  explainPod: "", loaded: {},
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the page's Content-Security-Policy
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(path) {
  const r = await fetch("/api/v1/" + path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: "HTTP " + r.status }));
  if (!r.ok) { const err = new Error(body.error || ("HTTP " + r.status)); err.status = r.status; throw err; }
  return body;
}

function colour(i) { return i < 0 ? null : PALETTE[i % PALETTE.length]; }

// --- status and polling -----------------------------------------------------------------------

async function poll() {
  try {
    const s = await api("status");
    document.getElementById("source").textContent = s.source === "live" ? "live cluster" : "simulation";
    const notice = document.getElementById("unsynced");
    state.synced = s.synced;
    if (!s.synced) {
      notice.hidden = false;
      notice.textContent = "Waiting for Tessera's cache to sync with the cluster (" + (s.waitingFor.join(", ") || "starting") +
        "). Nothing is shown until it has: a partial view would mislead.";
      setStatus("not synced yet");
    } else {
      notice.hidden = true;
      if (s.version !== state.version) {
        state.version = s.version;
        state.nodeCache.clear();
        state.loaded = {};
        await refresh();
      }
      setStatus("up to date · version " + s.version + " · " + new Date().toLocaleTimeString());
    }
  } catch (e) {
    setStatus("cannot reach Tessera: " + e.message);
  }
  setTimeout(poll, POLL_MS);
}

function setStatus(t) { document.getElementById("status").textContent = t; }

async function refresh() {
  const v = state.view;
  if (state.loaded[v]) return;
  state.loaded[v] = true;
  try {
    if (v === "map") await loadMap();
    else if (v === "gangs") renderGangs(await api("gangs"));
    else if (v === "pending") renderPending(await api("pending"));
    else if (v === "pools") renderPools(await api("pools"));
    else if (v === "explain" && state.explainPod) await runExplain(state.explainPod, false);
  } catch (e) {
    state.loaded[v] = false;
    setStatus("error: " + e.message);
  }
}

// --- tabs ------------------------------------------------------------------------------------------

function showView(name, focus) {
  state.view = name;
  for (const b of document.querySelectorAll("nav[role=tablist] button")) {
    const on = b.dataset.view === name;
    b.setAttribute("aria-selected", on ? "true" : "false");
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
    document.getElementById(b.getAttribute("aria-controls")).hidden = !on;
  }
  if (state.synced) refresh();
}

function setupTabs() {
  const tabs = [...document.querySelectorAll("nav[role=tablist] button")];
  for (const b of tabs) {
    b.addEventListener("click", () => showView(b.dataset.view, false));
    b.addEventListener("keydown", (ev) => {
      const i = tabs.indexOf(b);
      if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
        const j = (i + (ev.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length;
        showView(tabs[j].dataset.view, true);
        ev.preventDefault();
      }
    });
  }
}

// --- map ---------------------------------------------------------------------------------------------

async function loadMap() {
  const m = await api("map");
  state.map = m;
  fillSelect(document.getElementById("f-namespace"), [...new Set(m.owners.map((o) => o.namespace))].sort());
  fillSelect(document.getElementById("f-class"), m.classes);
  renderMap();
}

function fillSelect(sel, values) {
  const cur = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "all"), ...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(cur)) sel.value = cur;
}

function countNodes(d) { return d.stats.nodes; }

// Domains with many direct nodes (a flat cluster) are cut into chunks, each a pseudo-domain.
function withChunks(d) {
  if (d._chunked) return d;
  d._chunked = true;
  if (d.nodes.length > NODE_LIMIT) {
    const chunks = [];
    for (let i = 0; i < d.nodes.length; i += NODE_LIMIT) {
      const part = d.nodes.slice(i, i + NODE_LIMIT);
      const stats = { nodes: 0, devices: 0, free: 0, allocated: 0, tainted: 0, unusable: 0 };
      for (const n of part) for (const k in stats) stats[k] += n.stats[k];
      chunks.push({ domain: "nodes " + part[0].name + " – " + part[part.length - 1].name, level: null, domains: [], nodes: part,
        stats, _chunked: true, _chunk: true });
    }
    d.domains = d.domains.concat(chunks);
    d.nodes = [];
  }
  return d;
}

function zoomRoot() {
  let d = withChunks(state.map.root);
  const path = [d];
  for (const name of state.zoom) {
    const next = d.domains.find((c) => c.domain === name);
    if (!next) break;
    d = withChunks(next);
    path.push(d);
  }
  state.zoom = path.slice(1).map((p) => p.domain);
  return path;
}

function filters() {
  const ns = document.getElementById("f-namespace").value;
  const cls = document.getElementById("f-class").value;
  return { ns, clsBit: cls ? state.map.classes.indexOf(cls) : -1 };
}

function deviceMatches(row, f) {
  const [, owner, , mask] = row;
  if (f.clsBit >= 0 && !(mask & (1 << f.clsBit))) return false;
  if (f.ns && (owner < 0 || state.map.owners[owner].namespace !== f.ns)) return false;
  return true;
}

function ownerShares(d) {
  // Allocated devices per owner inside a domain, for the summary bar of a collapsed tile.
  const counts = new Map();
  const walk = (x) => {
    for (const n of x.nodes) for (const p of n.pools) for (const r of p.devices) if (r[1] >= 0) counts.set(r[1], (counts.get(r[1]) || 0) + 1);
    for (const c of x.domains) walk(c);
  };
  walk(d);
  return counts;
}

function statsText(s) {
  return s.nodes + " node" + (s.nodes === 1 ? "" : "s") + " · " + s.devices + " devices · " + s.free + " free · " + s.allocated + " allocated" +
    (s.tainted ? " · " + s.tainted + " tainted" : "");
}

function summaryBar(d) {
  const bar = el("div", { class: "bar", role: "img", "aria-label": statsText(d.stats) });
  const total = Math.max(1, d.stats.devices);
  for (const [owner, n] of [...ownerShares(d).entries()].sort((a, b) => b[1] - a[1])) {
    bar.append(el("span", { style: "width:" + (100 * n / total) + "%;background:" + colour(owner), title: state.map.owners[owner].name + ": " + n }));
  }
  return bar;
}

function renderDomain(d, isRoot, f) {
  d = withChunks(d);
  const label = d.level === null && !d._chunk ? d.domain : d.domain;
  const big = countNodes(d) > NODE_LIMIT && !isRoot;
  if (big) {
    const tile = el("div", { class: "domain collapsed", tabindex: 0, role: "button", "data-domain": d.domain,
      "aria-label": "Zoom into " + label + ": " + statsText(d.stats),
      onclick: () => zoomInto(d.domain), onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { zoomInto(d.domain); ev.preventDefault(); } } },
    el("div", { class: "dhead" }, label, el("span", { class: "stats" }, statsText(d.stats))), summaryBar(d),
    el("div", { class: "hint" }, "Enter or click to zoom in"));
    return tile;
  }
  const box = el("div", { class: "domain", "data-domain": d.domain });
  if (!isRoot || state.zoom.length) {
    box.append(el("div", { class: "dhead", tabindex: isRoot ? null : 0, "data-domain-head": d.domain,
      onkeydown: (ev) => { if (ev.key === "Enter") { zoomInto(d.domain); ev.preventDefault(); } } },
    label, el("span", { class: "stats" }, statsText(d.stats))));
  }
  const kids = el("div", { class: "kids" });
  for (const c of d.domains) kids.append(renderDomain(c, false, f));
  for (const n of d.nodes) kids.append(renderNode(n, f));
  box.append(kids);
  return box;
}

function renderNode(n, f) {
  const box = el("div", { class: "node" + (n.unschedulable ? " cordoned" : ""), tabindex: 0, "data-node": n.name,
    "aria-label": "node " + n.name + ": " + n.stats.free + " of " + n.stats.devices + " devices free" + (n.taints.length ? ", taints " + n.taints.join(" ") : ""),
    onkeydown: (ev) => { if (ev.key === "Enter") { showNode(n.name, null); ev.preventDefault(); } } },
  el("div", { class: "nname" }, n.name + (n.unschedulable ? " (cordoned)" : "")));
  for (const p of n.pools) {
    const row = el("div", { class: "row", "data-pool": p.pool });
    for (const r of p.devices) row.append(cell(n.name, p.pool, r, f));
    box.append(row);
  }
  return box;
}

function cell(node, pool, r, f) {
  const [name, owner, flags] = r;
  let cls = "cell";
  if (flags & TAINTED) cls += " tainted";
  if (flags & PARTITIONED) cls += " partitioned";
  if (flags & UNUSABLE) cls += " unusable";
  if (owner < 0 && (flags & UNKNOWN_OWNER)) cls += " unknown";
  if (!deviceMatches(r, f)) cls += " dim";
  if (state.highlight !== null) cls += owner === state.highlight ? " hl" : " dim";
  const c = el("span", { class: cls, "data-device": pool + "/" + name, "data-owner": owner });
  if (owner >= 0) c.style.backgroundColor = colour(owner);
  c.addEventListener("mouseenter", () => showNode(node, pool + "/" + name));
  c.addEventListener("click", () => { if (owner >= 0) toggleHighlight(owner); });
  return c;
}

function renderTori(f) {
  const out = el("div", {});
  for (const t of state.map.tori) {
    const [X, Y, Z] = [t.shape[0], t.shape[1] || 1, t.shape[2] || 1];
    const byCoord = new Map(t.chips.map((c) => [c[0].join(","), c]));
    const box = el("div", { class: "torus domain", "data-torus": t.name },
      el("div", { class: "dhead" }, "torus " + t.name + " (" + t.shape.join("x") + "), one grid per z-plane"));
    for (let z = 0; z < Z; z++) {
      const grid = el("div", { class: "grid", style: "grid-template-columns:repeat(" + X + ",12px)" });
      for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) {
        const coords = [x, y, z].slice(0, t.shape.length).join(",");
        const c = byCoord.get(coords);
        if (!c) { grid.append(el("span", { class: "chip none", title: "(" + coords + "): no chip" })); continue; }
        const owner = c[3];
        let cls = "chip";
        if (state.highlight !== null) cls += owner === state.highlight ? " hl" : " dim";
        else if (f.ns && (owner < 0 || state.map.owners[owner].namespace !== f.ns)) cls += " dim";
        const chip = el("span", { class: cls, "data-chip": coords, "data-owner": owner,
          title: "(" + coords + ") " + c[1] + "/" + c[2] + (owner >= 0 ? ": " + state.map.owners[owner].name : ": free") });
        if (owner >= 0) chip.style.backgroundColor = colour(owner);
        chip.addEventListener("click", () => { if (owner >= 0) toggleHighlight(owner); });
        grid.append(chip);
      }
      box.append(el("div", { class: "plane" }, el("div", { class: "hint" }, "z=" + z), grid));
    }
    out.append(box);
  }
  return out;
}

function renderMap() {
  if (!state.map) return;
  const f = filters();
  const path = zoomRoot();
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren();
  path.forEach((d, i) => {
    if (i) crumbs.append(el("span", { class: "sep" }, "›"));
    crumbs.append(el("button", { type: "button", onclick: () => { state.zoom = state.zoom.slice(0, i); renderMap(); } }, i === 0 ? "cluster" : d.domain));
  });
  const t = state.map.totals;
  document.getElementById("totals").textContent = statsText(t);
  const map = document.getElementById("map");
  map.replaceChildren(renderDomain(path[path.length - 1], true, f));
  if (state.map.network.length && path.length === 1) {
    const net = el("div", { class: "domain", "data-domain": "network-attached" }, el("div", { class: "dhead" }, "network-attached devices"));
    const n = el("div", { class: "node" });
    for (const p of state.map.network) {
      const row = el("div", { class: "row", "data-pool": p.pool }, el("span", { class: "nname" }, p.pool + " "));
      for (const r of p.devices) row.append(cell("", p.pool, r, f));
      n.append(row);
    }
    net.append(n);
    map.append(net);
  }
  if (path.length === 1) map.append(renderTori(f));
  renderOwners(f);
}

function zoomInto(name) {
  state.zoom.push(name);
  renderMap();
  const head = document.querySelector("#map [data-domain-head], #map .node, #map .domain.collapsed");
  if (head) head.focus();
}

function renderOwners(f) {
  const list = document.getElementById("owners");
  list.replaceChildren();
  state.map.owners.forEach((o, i) => {
    if (f.ns && o.namespace !== f.ns) return;
    const b = el("button", { type: "button", "aria-pressed": state.highlight === i ? "true" : "false", "data-owner-id": o.id,
      title: o.kind + " " + o.name + (o.priority !== null ? " (priority " + o.priority + ")" : "") + "; claims " + o.claims.join(", "),
      onclick: () => toggleHighlight(i) },
    el("span", { class: "cell", style: "background:" + colour(i) }), o.kind + " " + o.name, el("span", { class: "count" }, o.devices));
    list.append(el("li", {}, b));
  });
  if (!list.children.length) list.append(el("li", { class: "hint" }, "No device is allocated" + (f.ns ? " in namespace " + f.ns : "") + "."));
}

function toggleHighlight(i) {
  state.highlight = state.highlight === i ? null : i;
  renderMap();
}

async function showNode(name, device) {
  const details = document.getElementById("details");
  if (!name) { details.replaceChildren(el("p", { class: "hint" }, "network-attached device " + device)); return; }
  let doc = state.nodeCache.get(name);
  if (!doc) {
    try { doc = await api("node?name=" + encodeURIComponent(name)); } catch (e) { details.replaceChildren(el("p", { class: "error" }, e.message)); return; }
    state.nodeCache.set(name, doc);
  }
  const out = [el("h3", {}, "node " + doc.name), el("div", { class: "hint" }, doc.domain + (doc.taints.length ? " · taints " + doc.taints.join(", ") : "") +
    (doc.pods.length ? " · pods " + doc.pods.join(", ") : ""))];
  for (const p of doc.problems) out.push(el("div", { class: "error" }, p));
  const devices = device ? doc.devices.filter((d) => d.device === device) : doc.devices;
  for (const d of devices) {
    const kv = el("dl", { class: "kv" });
    const add = (k, v) => { kv.append(el("dt", {}, k), el("dd", {}, v)); };
    add("owner", d.owner ? d.owner.kind + " " + d.owner.name + (d.owner.priority !== null ? " (priority " + d.owner.priority + ")" : "") : d.allocated ? "allocated (owner unknown)" : "free");
    if (d.owner) add("claims", d.owner.claims.join(", "));
    for (const [k, v] of Object.entries(d.attributes)) add(k, JSON.stringify(Object.values(v)[0]));
    for (const [k, v] of Object.entries(d.capacity)) add("capacity " + k, v);
    for (const c of d.consumesCounters) add("counters " + c.counterSet, Object.entries(c.counters).map(([k, v]) => k + "=" + v).join(", "));
    if (d.taints.length) add("taints", d.taints.join(", "));
    if (d.allowMultipleAllocations) add("shared", d.shares + " share(s)");
    out.push(el("h4", {}, d.device), kv);
  }
  details.replaceChildren(...out);
}

// --- gangs, pending, pools -----------------------------------------------------------------------------

function explainButton(pod) {
  return el("button", { type: "button", class: "small", onclick: () => { state.explainPod = pod; document.getElementById("explain-pod").value = pod; showView("explain", true); state.loaded.explain = false; runExplain(pod, true); } }, "Explain");
}

function renderGangs(doc) {
  const body = document.querySelector("#gangs tbody");
  body.replaceChildren();
  for (const g of doc.gangs) {
    const name = g.namespace + "/" + g.name;
    const reason = el("td", { class: "reason" });
    if (g.blockers.length) {
      const ul = el("ul", { class: "blockers" });
      for (const b of g.blockers) {
        const short = b.neededDevices - b.freeDevices;
        ul.append(el("li", { class: "blocker" }, b.domain + ": " + b.podsFit + " of " + b.pods + " pods fit" +
          (short > 0 ? ", " + short + " device" + (short === 1 ? "" : "s") + " short" : ", free devices spread too thinly") +
          (b.holders.length ? " (held by " + b.holders.slice(0, 2).map((h) => h.consumers.join(", ") || h.claim).join("; ") + ")" : "")));
      }
      reason.append(ul);
    }
    if (g.reason) reason.append(el("div", {}, g.reason));
    const pending = g.pods.find((p) => p.node === null);
    body.append(el("tr", { "data-gang": name },
      el("td", {}, name), el("td", {}, g.apiVersion), el("td", {}, el("span", { class: "state " + g.state }, g.state)),
      el("td", {}, g.placed + " / " + (g.minMember === null ? "?" : g.minMember) + (g.members !== g.minMember ? " (" + g.members + " pods)" : "")),
      el("td", {}, g.where || "–"), reason, el("td", {}, pending ? explainButton(pending.pod) : "")));
  }
  if (!doc.gangs.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "hint" }, "No PodGroup.")));
}

function renderPending(doc) {
  const body = document.querySelector("#pending tbody");
  body.replaceChildren();
  for (const p of doc.pods) {
    const name = p.namespace + "/" + p.name;
    body.append(el("tr", { "data-pod": name }, el("td", {}, name), el("td", {}, p.priority), el("td", {}, p.group || "–"),
      el("td", { class: "reason" }, p.reason || ""), el("td", {}, explainButton(name))));
  }
  if (!doc.pods.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "hint" }, "No pending pod.")));
}

function useBar(p) {
  const bar = el("div", { class: "usebar", role: "img", "aria-label": p.allocated + " allocated of " + p.devices });
  const total = Math.max(1, p.devices);
  bar.append(el("span", { style: "width:" + (100 * p.allocated / total) + "%" }), el("span", { class: "tainted", style: "width:" + (100 * p.tainted / total) + "%" }));
  return bar;
}

function renderPools(doc) {
  const drivers = document.querySelector("#drivers tbody");
  drivers.replaceChildren(...Object.entries(doc.drivers).map(([d, t]) => el("tr", {}, el("td", {}, d), el("td", {}, t.pools), el("td", {}, t.devices),
    el("td", {}, t.free), el("td", {}, t.allocated), el("td", {}, t.tainted))));
  const body = document.querySelector("#pools tbody");
  body.replaceChildren();
  for (const p of doc.pools) {
    const counters = el("td", {});
    for (const c of p.counters) {
      counters.append(el("div", {}, c.counterSet + "/" + c.counter + ": " + c.used + " / " + c.available + " (" + Math.round(100 * c.usedFraction) + "%)"));
    }
    body.append(el("tr", { "data-pool": p.driver + "/" + p.pool }, el("td", {}, p.driver + "/" + p.pool, p.problem ? el("div", { class: "error" }, p.problem) : null),
      el("td", {}, p.devices), el("td", {}, p.free), el("td", {}, p.allocated), el("td", {}, p.tainted), el("td", {}, useBar(p)), counters));
  }
}

// --- explain -------------------------------------------------------------------------------------------

async function runExplain(pod, focus) {
  const out = document.getElementById("explanation");
  out.replaceChildren(el("p", { class: "hint" }, "explaining " + pod + "…"));
  let e;
  try { e = await api("explain?pod=" + encodeURIComponent(pod)); } catch (err) { out.replaceChildren(el("p", { class: "error", role: "alert" }, err.message)); return; }
  const parts = [];
  const verdict = e.verdict === "fits" ? "fits now: Tessera would place it on " + e.node : e.verdict === "invalid" ? "cannot be scheduled"
    : e.verdict === "waiting" ? "not decided yet" : "unschedulable";
  parts.push(el("h3", {}, "pod " + e.pod + " (priority " + e.priority + ")" + (e.placedOn ? ", placed on " + e.placedOn : "")));
  parts.push(el("div", { class: "verdict " + e.verdict, tabindex: -1, id: "verdict" }, verdict));
  if (e.reason) parts.push(el("p", { class: "reason" }, e.reason));
  if (e.gang) parts.push(el("p", {}, "gang " + e.gang.name + " (" + e.gang.apiVersion + "): minMember " + e.gang.minMember + ", " + e.gang.members + " pods decided together" + (e.gang.where && !e.gang.reason ? "; would land in " + e.gang.where : "")));
  if (e.fixes.length) {
    parts.push(el("h3", {}, "What would make it fit"));
    for (const f of e.fixes) parts.push(el("p", { class: "fix" }, f));
  }
  if (e.claims.length) {
    const t = el("table", {}, el("caption", {}, "Claims and the devices that match each request"), el("thead", {}, el("tr", {}, ...["Claim", "Request", "Class", "Count", "Matching", "Free", "Nodes with enough"].map((h) => el("th", {}, h)))));
    const b = el("tbody", {});
    for (const c of e.claims) {
      if (c.allocated) { b.append(el("tr", {}, el("td", {}, c.claim), el("td", { colspan: 6 }, "allocated: " + c.devices.join(", ")))); continue; }
      if (c.error) b.append(el("tr", {}, el("td", {}, c.claim), el("td", { colspan: 6, class: "error" }, c.error)));
      for (const r of c.requests) b.append(el("tr", {}, el("td", {}, c.claim), el("td", {}, r.request), el("td", {}, r.deviceClass), el("td", {}, r.mode === "All" ? "all" : r.count),
        el("td", {}, r.matchingDevices + " on " + r.nodesWithMatching + " nodes" + (r.taintedDevices ? " (" + r.taintedDevices + " tainted)" : "")), el("td", {}, r.freeDevices), el("td", {}, r.nodesWithEnough)));
    }
    t.append(b);
    parts.push(t);
  }
  if (e.domains.length) {
    const t = el("table", { id: "explain-domains" }, el("caption", {}, "Domains, closest first"), el("thead", {}, el("tr", {}, ...["Domain", "Level", "Pods fit", "Free / needed", "Nodes fit", "Held by", "Fix"].map((h) => el("th", {}, h)))));
    const b = el("tbody", {});
    for (const d of e.domains) b.append(el("tr", { "data-fits": d.fits }, el("td", {}, d.domain), el("td", {}, d.level), el("td", {}, d.podsFit + " of " + d.pods),
      el("td", {}, d.freeDevices + " / " + d.neededDevices), el("td", {}, d.nodesFit === null ? "–" : d.nodesFit + " of " + d.nodes),
      el("td", {}, d.holders.map((h) => (h.consumers.join(", ") || h.claim) + (h.priority !== null ? " (priority " + h.priority + ")" : "")).join("; ")), el("td", {}, d.fix || "")));
    t.append(b);
    parts.push(t);
  }
  const rules = Object.entries(e.rejectedByRule).map(([k, v]) => v + " " + k).join(", ");
  parts.push(el("p", {}, e.nodesFit + " of " + e.nodeCount + " nodes fit" + (rules ? "; rejected by rule: " + rules : "")));
  const t = el("table", { id: "explain-nodes" }, el("caption", {}, "Nodes, closest first"), el("thead", {}, el("tr", {}, ...["Node", "Domain", "Verdict", "Rule", "Reason", "Held by"].map((h) => el("th", {}, h)))));
  const b = el("tbody", {});
  for (const n of e.nodes) b.append(el("tr", { "data-node": n.node }, el("td", {}, n.node), el("td", {}, n.domain), el("td", {}, n.fits ? "fits (rank " + n.score + ")" : "rejected"),
    el("td", {}, n.rule || ""), el("td", { class: "reason" }, n.reason || ""), el("td", {}, n.holders.map((h) => (h.consumers.join(", ") || h.claim) + (h.priority !== null ? " (priority " + h.priority + ")" : "")).join("; "))));
  t.append(b);
  parts.push(t);
  out.replaceChildren(...parts);
  if (focus) document.getElementById("verdict").focus();
}

// --- start ---------------------------------------------------------------------------------------------

function start() {
  setupTabs();
  document.getElementById("f-namespace").addEventListener("change", () => { state.highlight = null; renderMap(); });
  document.getElementById("f-class").addEventListener("change", renderMap);
  document.getElementById("explain-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.explainPod = document.getElementById("explain-pod").value.trim();
    if (state.explainPod) runExplain(state.explainPod, true);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && state.view === "map" && state.zoom.length) { state.zoom.pop(); renderMap(); }
  });
  poll();
}

start();
