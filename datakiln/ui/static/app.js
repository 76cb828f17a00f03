// kiln ui: plain JavaScript, no build step. Every number and label comes from the JSON API; this
// file only draws it and sends the user's decisions back. DOM is built with h() (text nodes,
// never innerHTML from data), so labels and file names cannot inject markup.
"use strict";

const TOKEN = document.querySelector('meta[name="kiln-token"]').content;
const main = document.getElementById("main");
let page = { onKey: null, cleanup: null };

// ---- plumbing -------------------------------------------------------------------------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

// replaceChildren with h()'s rules: arrays flattened, null/false skipped, strings as text.
function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k)))));
}

function toast(msg) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 6000);
}

function saveState(state, text) {
  const s = document.getElementById("save-state");
  s.className = state;
  s.textContent = text;
}

async function api(path, body, doneText) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Kiln-Token": TOKEN },
    body: JSON.stringify(body),
  };
  if (body !== undefined) saveState("saving", "saving…");
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    if (body !== undefined) saveState("failed", "not saved: server unreachable");
    toast("The kiln ui server is not answering; is 'kiln ui' still running?");
    throw e;
  }
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) {
    const msg = (data && data.error) || `${res.status} ${res.statusText}`;
    if (body !== undefined) saveState("failed", "not saved");
    toast(msg);
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  if (body !== undefined) {
    saveState("saved", (doneText || "saved ✓") + " " + new Date().toLocaleTimeString());
    refreshStatus();
  }
  return data;
}

const short = (id) => (id ? id.slice(0, 10) : "");
const pct = (x) => (x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + "%");
const when = (t) => new Date(t * 1000).toLocaleString();
// Small images (8x8 digits) are upscaled with hard pixels; photos are scaled smoothly.
const sharpen = (e) => e.target.classList.toggle("px", e.target.naturalWidth < e.target.clientWidth);
const thumb = (blob, cls) => h("img", { src: `/thumb/${blob}`, loading: "lazy", alt: "", class: cls || "thumb", onload: sharpen });
const link = (href, ...kids) => h("a", { href, "data-nav": true }, ...kids);
const params = () => new URLSearchParams(location.search);

// Each page's scroll position, so coming back to a gallery page lands where you left it.
function saveScroll() { sessionStorage.setItem("scroll:" + location.pathname + location.search, String(window.scrollY)); }
function restoreScroll() { window.scrollTo(0, Number(sessionStorage.getItem("scroll:" + location.pathname + location.search) || 0)); }

function navigate(href) {
  saveScroll();
  history.pushState(null, "", href);
  route();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
history.scrollRestoration = "manual";  // the app restores it after drawing (the browser would before)

// Keys are handled one after another: a decision waits for the previous one to be saved, so
// fast typing labels successive examples instead of the same one twice.
let keyChain = Promise.resolve();
document.addEventListener("keydown", (e) => {
  const t = e.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
  if (!page.onKey || typing || e.altKey || e.metaKey) return;
  // Enter and Space on a focused link or button belong to it (open, press), not to the page.
  if ((e.key === "Enter" || e.key === " ") && t.closest && t.closest("a, button")) return;
  if (["Enter", "/", "ArrowLeft", "ArrowRight"].includes(e.key)) e.preventDefault();
  const handler = page.onKey;
  const ev = { key: e.key, ctrlKey: e.ctrlKey, preventDefault: () => {} };
  keyChain = keyChain.then(() => (page.onKey === handler ? handler(ev) : null)).catch(() => {});
});

let statusCache = null;
async function refreshStatus() {
  try {
    statusCache = await api("/api/status");
  } catch (e) {
    return;
  }
  const s = statusCache;
  document.getElementById("branch").textContent =
    (s.branch ? "on " + s.branch : "detached") + " · " + (s.head ? short(s.head) : "no commits") +
    (s.build ? " · build " + short(s.build.id) + (s.stale_build ? " (older than HEAD)" : "") : " · no build yet");
  const staged = s.staged.added + s.staged.removed + s.staged.relabeled;
  document.getElementById("n-staged").textContent = staged || "";
}

async function route() {
  if (page.cleanup) page.cleanup();
  document.getElementById("toast").classList.remove("show");
  page = { onKey: null, cleanup: null };
  const parts = location.pathname.split("/").filter(Boolean);
  const name = parts[0] || (statusCache && statusCache.build ? "review" : "gallery");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  const views = { gallery, example, review, label, changes, history: historyPage, builds: buildsPage };
  const url = location.pathname + location.search;
  delete main.dataset.url;
  put(main, h("p", { class: "muted" }, "Loading…"));
  try {
    await (views[name] || gallery)(parts.slice(1));
  } catch (e) {
    put(main, h("p", { class: "bad" }, String(e.message || e)));
  }
  // Which URL the page now shows: tests (and scripts) wait for it instead of guessing.
  if (location.pathname + location.search === url) main.dataset.url = url;
}

// ---- gallery ---------------------------------------------------------------------------------
const FLAGS = ["issue", "unlabeled", "wrong"];

async function gallery() {
  const p = params();
  const facets = await api("/api/facets" + (p.get("build") ? "?build=" + encodeURIComponent(p.get("build")) : ""));
  const q = new URLSearchParams(p);
  q.set("limit", "100");
  let data;
  try {
    data = await api("/api/gallery?" + q);
  } catch (e) {
    data = { total: 0, offset: 0, items: [], error: e.message };
  }
  const set = (k, v) => {
    const n = new URLSearchParams(location.search);
    if (v) n.set(k, v); else n.delete(k);
    n.delete("offset");
    navigate("/gallery?" + n);
  };
  const select = (key, title, values, labels) =>
    h("label", {}, title,
      h("select", { name: key, onchange: (e) => set(key, e.target.value) },
        key === "sort" ? null : h("option", { value: "" }, "any"),
        values.map((v, i) => h("option", { value: v, selected: p.get(key) === v }, labels ? labels[i] : v))));
  const metaValues = Object.entries(facets.meta).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`));
  const hasBuild = !!facets.build;
  const filters = h("div", { class: "filters" },
    h("label", {}, "search (id or file name)",
      h("input", { type: "search", name: "search", value: p.get("search") || "", placeholder: "Enter to search",
        onchange: (e) => set("search", e.target.value.trim()) })),
    select("label", "label", facets.labels),
    select("split", "split", facets.splits),
    select("source", "label source", facets.sources),
    metaValues.length ? select("meta", "metadata slice", metaValues) : null,
    FLAGS.map((f) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: f, checked: p.get(f) === "1", disabled: f !== "unlabeled" && !hasBuild,
        onchange: (e) => set(f, e.target.checked ? "1" : "") }),
      { issue: "suspected label error", unlabeled: "unlabeled", wrong: "model disagrees with the label it saw" }[f])),
    select("sort", "sort by", ["added", "id", "issue", "uncertainty", "confidence"],
      ["order added", "id", "most suspect label first", "most uncertain first", "most confident first"]),
    h("div", { class: "chips" },
      ["given", "predicted", "build"].filter((k) => p.get(k)).map((k) =>
        h("span", { class: "chip" }, `${{ given: "label the build saw", predicted: "predicted", build: "build" }[k]}: ${k === "build" ? short(p.get(k)) : p.get(k)} `,
          h("a", { href: "#", onclick: (e) => { e.preventDefault(); set(k, ""); } }, "×")))),
    hasBuild ? h("p", { class: "muted" }, "predictions: build ", link(`/builds/${facets.build}`, short(facets.build)))
      : h("p", { class: "muted" }, "no build yet: ", link("/builds", "start one"), " for predictions and issues"));
  const offset = data.offset;
  const pageTo = (o) => { const n = new URLSearchParams(location.search); n.set("offset", o); navigate("/gallery?" + n); };
  const pager = h("div", { class: "pager" },
    h("button", { disabled: offset === 0, onclick: () => pageTo(Math.max(0, offset - 100)) }, "‹ prev"),
    h("span", { id: "gallery-count" },
      !data.total ? "no examples match" : !data.items.length ? `past the end: ${data.total.toLocaleString()} match` :
        `${offset + 1}–${offset + data.items.length} of ${data.total.toLocaleString()}`),
    h("button", { disabled: offset + 100 >= data.total, onclick: () => pageTo(offset + 100) }, "next ›"));
  // The example page walks this page of results with ← and →.
  sessionStorage.setItem("kiln-list", JSON.stringify({ ids: data.items.map((x) => x.id), back: location.pathname + location.search }));
  const grid = data.error
    ? h("p", { class: "bad" }, data.error, " ", link("/gallery", "clear every filter"))
    : h("div", { class: "grid", id: "gallery-grid" }, data.items.map(card));
  put(main, h("div", { class: "gallery" }, filters, h("div", {}, pager, grid)));
  restoreScroll();
  page.onKey = (e) => {
    if (e.key === "/") return document.querySelector("input[name=search]").focus();
    if (e.key === "ArrowRight" && offset + 100 < data.total) pageTo(offset + 100);
    if (e.key === "ArrowLeft" && offset > 0) pageTo(Math.max(0, offset - 100));
  };
}

function card(it) {
  const disagrees = it.predicted && it.label && it.predicted !== it.label;
  return h("a", { class: "card" + (it.issue ? " issue" : ""), href: `/example/${it.id}`, "data-nav": true,
    "data-id": it.id, title: `${it.name || it.id}\nlabel ${it.label ?? "none"} (${it.source ?? "-"})` +
      (it.predicted ? `\npredicted ${it.predicted} ${pct(it.confidence)}` : "") },
    thumb(it.blob),
    h("div", { class: "cap" },
      h("span", { class: "lab" }, it.label ?? "—"),
      disagrees ? h("span", { class: "pred" }, "→ " + it.predicted) : null,
      h("span", { class: "muted mono" }, it.id.slice(0, 6))));
}

// ---- one example -----------------------------------------------------------------------------
async function example(parts) {
  const ex = await api("/api/examples/" + encodeURIComponent(parts[0] || ""));
  const classes = statusCache && statusCache.build ? statusCache.build.classes : [];
  const save = async () => {
    const label = input.value.trim() || null;
    if (label === ex.label) return;
    if (label === null && !confirm("Remove this example's label (make it unlabeled)?")) return;
    await api("/api/label", { items: [{ id: ex.id, label, expect: ex.label }] });
    route();
  };
  const input = h("input", { list: "class-list", name: "label", value: ex.label ?? "", size: 12,
    onkeydown: (e) => { if (e.key === "Enter") save(); } });
  const list = JSON.parse(sessionStorage.getItem("kiln-list") || "null");
  const at = list ? list.ids.indexOf(ex.id) : -1;
  const prev = at > 0 ? list.ids[at - 1] : null;
  const nextId = at >= 0 && at + 1 < list.ids.length ? list.ids[at + 1] : null;
  page.onKey = (e) => {
    if (e.key === "/") return input.focus();
    if (e.key === "ArrowLeft" && prev) navigate(`/example/${prev}`);
    if (e.key === "ArrowRight" && nextId) navigate(`/example/${nextId}`);
    if (e.key === "Escape" && at >= 0) navigate(list.back);
  };
  put(main,
    h("p", { class: "form-row" }, at >= 0 ? link(list.back, "‹ back to the gallery") : h("a", { href: "#", onclick: (e) => { e.preventDefault(); history.back(); } }, "‹ back"),
      at >= 0 ? [prev ? link(`/example/${prev}`, "← previous") : h("span", { class: "muted" }, "← previous"),
        h("span", { class: "muted" }, `${at + 1} of ${list.ids.length} on this page · Esc: back · /: edit the label`),
        nextId ? link(`/example/${nextId}`, "next →") : h("span", { class: "muted" }, "next →")] : null),
    h("div", { class: "detail" },
      h("div", {}, h("img", { class: "big huge", src: `/img/${ex.blob}`, alt: ex.name || ex.id, onload: sharpen }),
        h("p", {}, h("a", { href: `/img/${ex.blob}`, target: "_blank", rel: "noopener" }, "full size ↗"))),
      h("div", {},
        h("h1", {}, ex.name || short(ex.id)),
        h("p", { class: "mono" }, ex.id),
        h("p", {}, "label ", h("span", { class: "big-label" }, ex.label ?? "none"), " ",
          h("span", { class: "muted" }, `(${ex.source ?? "-"})`), ex.kept ? " · kept by a reviewer" : ""),
        h("p", {}, `split ${ex.split} · ${ex.width}×${ex.height}`,
          Object.entries(ex.meta).map(([k, v]) => ` · ${k}=${v}`)),
        h("div", { class: "commit-form" }, input, h("datalist", { id: "class-list" }, classes.map((c) => h("option", { value: c }))),
          h("button", { class: "primary", onclick: save }, "Save label")),
        ex.issue ? h("p", { class: "bad" }, `suspected label error #${ex.issue}: the model suggests ${ex.suggested}`) : null,
        ex.probs ? [h("h2", {}, `prediction of build ${short(ex.build)}: ${ex.predicted} (${pct(ex.confidence)})`), probBars(ex.probs, 10)] : h("p", { class: "muted" }, "no prediction (no build has seen this example)"),
        h("h2", {}, "label history"),
        h("table", {}, h("tr", {}, h("th", {}, "when"), h("th", {}, "commit"), h("th", {}, "label"), h("th", {}, "by"), h("th", {}, "message")),
          ex.history.map((e) => h("tr", {},
            h("td", {}, when(e.label_time || e.time)),
            h("td", { class: "mono" }, e.commit ? link(`/history/${e.commit}`, short(e.commit)) : "staged"),
            h("td", {}, e.event === "removed" ? "removed" : (e.label ?? "none")),
            h("td", {}, e.source ?? "-"),
            h("td", {}, e.message)))))));
}

function probBars(probs, n) {
  const top = Object.entries(probs).sort((a, b) => b[1] - a[1]).slice(0, n);
  return h("div", { class: "bars" }, top.map(([c, p]) => h("div", { class: "bar" },
    h("span", {}, c), h("span", {}, h("span", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
    h("span", { class: "muted" }, pct(p)))));
}

// ---- the queues: shared keyboard machinery ---------------------------------------------------
// Digit keys pick a class by its index (shown on its button); "/" opens type-ahead for any class.
function classButtons(classes, selected, given, pick) {
  return h("div", { class: "classes", id: "classes" }, classes.map((c, i) =>
    h("button", { class: (c === selected ? "selected " : "") + (c === given ? "given" : ""), "data-class": c,
      onclick: () => pick(c) }, i < 10 ? h("kbd", {}, String(i)) : null, " ", c)));
}

function typeAhead(classes, pick) {
  const input = h("input", { list: "ta-list", id: "type-ahead", placeholder: "type a class, then Enter", size: 24,
    onkeydown: (e) => {
      if (e.key === "Enter") {
        const v = input.value.trim();
        const hit = classes.find((c) => c.toLowerCase() === v.toLowerCase()) ||
          classes.find((c) => c.toLowerCase().startsWith(v.toLowerCase()));
        if (hit) pick(hit);
        else if (v && confirm(`"${v}" is not one of the classes (${classes.slice(0, 12).join(", ")}${classes.length > 12 ? ", …" : ""}). Start a new class "${v}"?`)) {
          classes.push(v);
          pick(v);
        }
        e.preventDefault();
      } else if (e.key === "Escape") { input.blur(); }
    } });
  return h("span", {}, input, h("datalist", { id: "ta-list" }, classes.map((c) => h("option", { value: c }))));
}

function keysPanel(rows) {
  return h("div", { class: "keys", id: "keys" }, h("strong", {}, "Keys"),
    rows.map(([k, what]) => h("div", {}, [].concat(k).map((x) => h("kbd", {}, x)), " ", what)));
}

function digitClass(e, classes) {
  if (e.key.length === 1 && e.key >= "0" && e.key <= "9" && !e.ctrlKey) {
    const i = Number(e.key);
    return i < classes.length ? classes[i] : null;
  }
  return null;
}

// One example at a time through a list, for both queues: decisions, skips, going back, undo.
class Walk {
  constructor(items) { this.items = items; this.pos = 0; this.undo = []; this.decided = 0; }
  get item() { return this.items[this.pos]; }
  remaining() { return this.items.filter((x) => !x.done).length; }
  record(row, label) {
    this.undo.push({ pos: this.pos, token: row.undo, item: this.item });
    if (!this.item.done) this.decided += 1;
    this.item.done = label;
    this.next();
  }
  // The label the page shows for the current example: a decision made here, else the one loaded.
  seen() { return this.item.done ?? this.item.label; }
  // After a 409 (someone else labelled it), load what it has now, so the next decision is judged
  // against that.
  async reload() {
    const it = this.item;
    const ex = await api("/api/examples/" + it.id);
    Object.assign(it, { label: ex.label, source: ex.source, done: null });
  }
  next() {
    this.pos += 1;
    while (this.pos < this.items.length && this.items[this.pos].done) this.pos += 1;
  }
  back() { if (this.pos > 0) this.pos -= 1; }
  async undoLast() {
    const u = this.undo.pop();
    if (!u) return null;
    await api("/api/restore", { undo: u.token }, "undone ✓");
    u.item.done = null;
    this.decided -= 1;
    this.pos = u.pos;
    return u.item;
  }
}

// ---- review queue: suspected label errors -----------------------------------------------------
async function review() {
  const chosen = params().get("build");
  const data = await api("/api/review" + (chosen ? "?build=" + encodeURIComponent(chosen) : ""));
  const items = data.items;
  const classes = data.classes;
  const w = new Walk(items);
  document.getElementById("n-review").textContent = data.total || "";
  if (!data.build) {
    put(main, h("div", { class: "done" }, "No build yet, so no suspected label errors. ",
      link("/builds", "Start a build"), " to find them."));
    return;
  }
  const act = async (kind, label) => {
    const it = w.item;
    if (!it) return;
    const expect = { [it.id]: w.seen() };  // refused if someone changed the label meanwhile
    let rows;
    try {
      if (kind === "accept") rows = await api("/api/accept", { ids: [it.id], expect, build: data.build });
      else if (kind === "keep") rows = await api("/api/keep", { ids: [it.id], expect });
      else rows = await api("/api/label", { items: [{ id: it.id, label, expect: w.seen() }] });
    } catch (e) {
      if (e.status === 409) { await w.reload(); draw(); }
      return;
    }
    w.record(rows[0], kind === "accept" ? it.suggested : kind === "keep" ? w.seen() : label);
    draw();
  };
  const next = () => { w.next(); draw(); };
  const undoLast = async () => { if (await w.undoLast()) draw(); };
  const draw = () => {
    const it = w.item;
    const remaining = w.remaining();
    document.getElementById("n-review").textContent = remaining || "";
    const keys = keysPanel([["a", "accept the suggestion"], ["k", "keep the given label"],
      [["0", "–", "9"], "relabel as that class"], ["/", "type a class"], [["s", "→"], "skip"], ["←", "previous"],
      ["u", "undo the last decision"]]);
    if (!items.length) {
      put(main, h("div", { class: "done", id: "review-done" }, "Build ", link(`/builds/${data.build}`, short(data.build)),
        " finds no suspected label errors among the current labels. Kept labels are not shown again."));
      return;
    }
    if (!it) {
      put(main, h("div", { class: "queue" }, h("div", { class: "done", id: "review-done" },
        `Reviewed ${w.decided} of ${items.length}. `, remaining ? `${remaining} skipped. ` : "",
        link("/changes", "See the staged changes"), " and commit them."), h("div"), keys));
      return;
    }
    const pick = (c) => act("label", c);
    put(main, h("div", { class: "queue", id: "review-item", "data-id": it.id },
      h("div", {}, h("img", { class: "big", src: `/img/${it.blob}`, alt: it.name || it.id, onload: sharpen }),
        h("p", { class: "muted mono" }, it.name || it.id)),
      h("div", {},
        h("p", { class: "muted" }, `suspect ${w.pos + 1} of ${items.length}` + (data.total > items.length ? ` (first ${items.length} of ${data.total})` : "") + ` · ${remaining} to go · build `,
          link(`/builds/${data.build}`, short(data.build))),
        h("p", {}, "given ", h("span", { class: "big-label", id: "given" }, it.label), " ",
          h("span", { class: "muted" }, `(${it.source}) · p=${it.score === null ? "n/a" : it.score.toFixed(3)}`)),
        h("p", {}, "suggested ", h("span", { class: "big-label ok", id: "suggested" }, it.suggested), " ",
          h("span", { class: "muted" }, `(model ${pct(it.confidence)})`)),
        h("div", { class: "form-row" },
          h("button", { class: "primary", onclick: () => act("accept") }, h("kbd", {}, "a"), " accept ", it.suggested),
          h("button", { onclick: () => act("keep") }, h("kbd", {}, "k"), " keep ", it.label),
          h("button", { onclick: next }, h("kbd", {}, "s"), " skip"),
          h("button", { onclick: undoLast, disabled: !w.undo.length }, h("kbd", {}, "u"), " undo")),
        classButtons(classes, null, it.label, pick), typeAhead(classes, pick)),
      keys));
  };
  page.onKey = (e) => {
    if (e.key === "a" || e.key === "Enter") return act("accept");
    if (e.key === "k") return act("keep");
    if (e.key === "s" || e.key === "ArrowRight") return next();
    if (e.key === "ArrowLeft") { w.back(); return draw(); }
    if (e.key === "u" || (e.key === "z" && e.ctrlKey)) return undoLast();
    if (e.key === "/") return document.getElementById("type-ahead")?.focus();
    const c = digitClass(e, classes);
    return c !== null ? act("label", c) : null;
  };
  draw();
}

// ---- labelling queue ----------------------------------------------------------------------------
async function label() {
  const data = await api("/api/queue");
  const items = data.items;
  const classes = data.classes;
  const w = new Walk(items);
  let selected = items.length ? items[0].suggestion : null;
  document.getElementById("n-label").textContent = items.length || "";
  const fill = async () => {
    const n = Number(document.getElementById("fill-n").value) || 20;
    const strategy = document.getElementById("fill-strategy").value;
    const picked = await api("/api/queue", { n, strategy }, "chosen ✓");
    if (!picked.length) toast("Nothing left to choose: every unlabeled example is queued or predicted by no build.");
    route();
  };
  if (!items.length && !data.undecided) {
    put(main, h("div", { class: "done", id: "queue-empty" }, "Every example has a label: there is nothing to label. ",
      link("/changes", "Import images"), " to grow the dataset, or review ", link("/review", "suspected label errors"), "."));
    return;
  }
  if (!items.length) {
    put(main, h("div", { class: "done", id: "queue-empty" },
      h("p", {}, `The labelling queue is empty; ${data.undecided.toLocaleString()} example(s) have no label yet. Choose which to label next: uncertain and diverse (`,
        h("span", { class: "mono" }, "kiln queue"), ")."),
      h("div", { class: "form-row" },
        h("label", {}, "how many", h("input", { id: "fill-n", type: "number", value: 20, min: 1, max: 1000 })),
        h("label", {}, "strategy", h("select", { id: "fill-strategy" },
          ["auto", "margin", "entropy", "least-confidence", "badge", "coreset", "random"].map((s) => h("option", {}, s)))),
        h("button", { class: "primary", id: "fill", onclick: fill }, "Choose examples"))));
    page.onKey = (e) => (e.key === "Enter" ? fill() : null);
    return;
  }
  const save = async (lab) => {
    const it = w.item;
    if (!it || !lab) return;
    let rows;
    try {
      rows = await api("/api/label", { items: [{ id: it.id, label: lab, expect: w.seen() }] });
    } catch (e) {
      if (e.status === 409) { await w.reload(); draw(); }
      return;
    }
    w.record(rows[0], lab);
    selected = w.item ? w.item.suggestion : null;
    draw();
  };
  const advance = () => { w.next(); selected = w.item ? w.item.suggestion : null; draw(); };
  const undoLast = async () => {
    const item = await w.undoLast();
    if (item) { selected = item.suggestion; draw(); }
  };
  const draw = () => {
    const it = w.item;
    const remaining = w.remaining();
    document.getElementById("n-label").textContent = remaining || "";
    const keys = keysPanel([["Enter", "confirm the selected class"], [["0", "–", "9"], "label as that class"],
      ["/", "type a class (new ones too)"], [["s", "→"], "skip"], ["←", "previous"], ["u", "undo the last label"]]);
    if (!it) {
      put(main, h("div", { class: "queue" }, h("div", { class: "done", id: "label-done" },
        `Labelled ${w.decided}. `, remaining ? `${remaining} skipped. ` : "", link("/changes", "See the staged changes"),
        " or ", h("button", { onclick: () => api("/api/queue", { n: 20, strategy: "auto" }).then(route) }, "choose 20 more")),
        h("div"), keys));
      return;
    }
    put(main, h("div", { class: "queue", id: "label-item", "data-id": it.id },
      h("div", {}, h("img", { class: "big", src: `/img/${it.blob}`, alt: it.name || it.id, onload: sharpen }),
        h("p", { class: "muted mono" }, it.name || it.id)),
      h("div", {},
        h("p", { class: "muted" }, `${w.pos + 1} of ${items.length} · ${remaining} to go`),
        it.suggestion ? h("p", {}, "suggestion ", h("span", { class: "big-label", id: "suggestion" }, it.suggestion), " ",
          h("span", { class: "muted" }, (it.suggestion_from || "").startsWith("model:") ? ["from build ", link(`/builds/${it.suggestion_from.slice(6)}`, short(it.suggestion_from.slice(6)))] : "",
            it.confidence !== null ? ` · ${pct(it.confidence)}` : ""))
          : h("p", { class: "muted" }, "no suggestion: pick a class"),
        classButtons(classes, selected, null, save),
        h("div", { class: "form-row" }, typeAhead(classes, save),
          h("button", { class: "primary", disabled: !selected, onclick: () => save(selected) }, h("kbd", {}, "Enter"), " confirm ", selected ?? ""),
          h("button", { onclick: advance }, h("kbd", {}, "s"), " skip"),
          h("button", { onclick: undoLast, disabled: !w.undo.length }, h("kbd", {}, "u"), " undo"))),
      keys));
  };
  page.onKey = (e) => {
    if (e.key === "Enter") return save(selected);
    if (e.key === "s" || e.key === "ArrowRight") return advance();
    if (e.key === "ArrowLeft") { w.back(); selected = w.item.done || w.item.suggestion; return draw(); }
    if (e.key === "u" || (e.key === "z" && e.ctrlKey)) return undoLast();
    if (e.key === "/") return document.getElementById("type-ahead")?.focus();
    const c = digitClass(e, classes);
    return c !== null ? save(c) : null;
  };
  draw();
}

// ---- changes ------------------------------------------------------------------------------------
async function changes() {
  const data = await api("/api/changes");
  const st = data.staged;
  const msg = h("input", { id: "commit-message", placeholder: "why the labels changed (Ctrl+Enter commits)",
    onkeydown: (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) commit(); } });
  const commit = async () => {
    if (!msg.value.trim()) { toast("Write a commit message first: why did these labels change?"); msg.focus(); return; }
    let r;
    try {
      r = await api("/api/commit", { message: msg.value }, "committed ✓");
    } catch (e) {
      setTimeout(route, 2500);  // the stage may have changed elsewhere: show what is there now
      return;
    }
    navigate(`/history/${r.commit}`);
  };
  const discardAll = async () => {
    if (!confirm("Discard every staged change? This cannot be undone.")) return;
    await api("/api/discard", {});
    route();
  };
  const anything = st.added + st.removed + st.relabeled > 0 || data.merge;
  put(main,
    h("h1", {}, "Changes"),
    h("p", {}, `${data.total} label edit(s) staged` + (st.added ? `, ${st.added} example(s) imported` : "") +
      (st.removed ? `, ${st.removed} removed` : "") + (data.merge ? `; merging ${short(data.merge.theirs)}` : "")),
    anything ? h("div", { class: "commit-form" }, msg,
      h("button", { class: "primary", id: "commit", onclick: commit }, "Commit"),
      h("button", { onclick: discardAll }, "Discard all")) : h("p", { class: "muted" }, "Nothing staged. Label in the queues or the gallery."),
    data.edits.length ? h("table", { class: "row-list", id: "edits" },
      h("tr", {}, h("th", {}, "example"), h("th", {}, "old → new"), h("th", {}, "by"), h("th", {}, "")),
      data.edits.map((e) => h("tr", { "data-id": e.id },
        h("td", {}, h("span", { class: "pair" }, e.blob ? thumb(e.blob) : null, link(`/example/${e.id}`, h("span", { class: "mono" }, short(e.id))))),
        h("td", {}, `${e.old ?? "none"} → `, h("strong", {}, e.new ?? "none"), e.old === e.new ? h("span", { class: "muted" }, " (confirmed)") : null),
        h("td", {}, e.source ?? "-"),
        h("td", {}, h("button", { onclick: async () => { await api("/api/discard", { ids: [e.id] }, "reverted ✓"); route(); } }, "revert"))))) : null,
    data.total > data.edits.length ? h("p", { class: "muted" }, `showing ${data.edits.length} of ${data.total}`) : null,
    importPanel());
  msg.focus();
}

// Images from this computer, imported like 'kiln import' (checked; one bad file refuses the batch).
function importPanel() {
  const files = h("input", { type: "file", id: "import-files", multiple: true, accept: "image/png,image/jpeg,image/webp" });
  const label = h("input", { id: "import-label", placeholder: "label (empty: unlabeled)", size: 24 });
  const out = h("span", { id: "import-result", class: "muted" });
  const b64 = (file) => new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(String(r.result).split(",", 2)[1] || "");
    r.onerror = () => fail(r.error);
    r.readAsDataURL(file);
  });
  const run = async () => {
    const picked = [...files.files];
    if (!picked.length) { toast("Choose image files first."); return; }
    let batch = [], bytes = 0, added = 0, present = 0, sent = 0;
    const flush = async () => {
      if (!batch.length) return;
      const r = await api("/api/import", { files: batch });
      added += r.added; present += r.present; sent += batch.length;
      put(out, `imported ${sent} of ${picked.length}…`);
      batch = []; bytes = 0;
    };
    try {
      for (const f of picked) {
        if (bytes + f.size > 16 * 1024 * 1024) await flush();  // requests stay well under the server's limit
        batch.push({ name: f.name, label: label.value.trim() || null, data: await b64(f) });
        bytes += f.size;
      }
      await flush();
      put(out, `${added} added, ${present} already in the repository (staged: commit to record them)`);
      setTimeout(route, 1500);
    } catch (e) {
      put(out, h("span", { class: "bad" }, `stopped after ${sent} of ${picked.length}: ${e.message}`));
    }
  };
  return h("div", {}, h("h2", {}, "import images"),
    h("div", { class: "form-row" }, files, label, h("button", { id: "import", onclick: run }, "Import"), out),
    h("p", { class: "muted" }, "Files are checked like ", h("span", { class: "mono" }, "kiln import"),
      ": a file that is not a PNG, JPEG or WebP image refuses its batch, by name. They are named upload/FILE; ",
      link("/gallery?search=upload/", "see them in the gallery"), "."));
}

// ---- history --------------------------------------------------------------------------------------
async function historyPage(parts) {
  if (parts[0] === "compare") return diffPage(await api(`/api/compare?a=${encodeURIComponent(params().get("a"))}&b=${encodeURIComponent(params().get("b"))}`));
  if (parts[0]) return diffPage(await api("/api/commits/" + encodeURIComponent(parts[0])));
  const rev = params().get("rev") || "";
  const commits = await api("/api/log?n=200" + (rev ? "&rev=" + encodeURIComponent(rev) : ""));
  const branches = statusCache ? statusCache.branches : [];
  const pickBranch = h("label", {}, "branch ", h("select", { id: "branch-pick", onchange: (e) =>
    navigate("/history" + (e.target.value ? "?rev=" + encodeURIComponent(e.target.value) : "")) },
    h("option", { value: "" }, `HEAD (${statusCache && statusCache.branch ? statusCache.branch : "detached"})`),
    branches.map((b) => h("option", { value: b, selected: b === rev }, b))));
  const picked = new Set();
  const when_ = Object.fromEntries(commits.map((c) => [c.id, c.time]));
  const cmp = h("button", { disabled: true, onclick: () => {
    const [a, b] = [...picked].sort((x, y) => when_[x] - when_[y]);  // older → newer, whatever the tick order
    navigate(`/history/compare?a=${a}&b=${b}`);
  } }, "Compare the two checked (older → newer)");
  put(main, h("h1", {}, "History"), h("p", { class: "form-row" }, pickBranch, cmp),
    commits.length ? h("table", { id: "log" },
      h("tr", {}, h("th", {}, ""), h("th", {}, "commit"), h("th", {}, "message"), h("th", {}, "author"), h("th", {}, "when"), h("th", { class: "num" }, "examples"), h("th", { class: "num" }, "labeled")),
      commits.map((c) => h("tr", {},
        h("td", {}, h("input", { type: "checkbox", "aria-label": "compare " + short(c.id), onchange: (e) => {
          if (e.target.checked) picked.add(c.id); else picked.delete(c.id);
          cmp.disabled = picked.size !== 2;
        } })),
        h("td", { class: "mono" }, link(`/history/${c.id}`, short(c.id))),
        h("td", { class: "message", title: c.message }, link(`/history/${c.id}`, c.message.length > 120 ? c.message.slice(0, 120) + "…" : c.message)),
        h("td", {}, c.author), h("td", {}, when(c.time)),
        h("td", { class: "num" }, c.stats.examples ?? ""), h("td", { class: "num" }, c.stats.labeled ?? "")))) : h("p", { class: "muted" }, "No commits yet."));
}

function diffPage(d) {
  const head = d.commit
    ? [h("h1", { class: "message" }, d.commit.message), h("p", { class: "muted" }, `commit ${d.commit.id} · ${d.commit.author} · ${when(d.commit.time)}`,
        d.commit.parents.length ? [" · parent ", d.commit.parents.map((p) => link(`/history/${p}`, short(p)))] : " · first commit")]
    : [h("h1", {}, `${short(d.a)} → ${short(d.b)}`)];
  const c = d.counts;
  const relabeled = h("div", { class: "grid", id: "diff-relabeled" }, d.relabeled.map((r) =>
    h("a", { class: "card", href: `/example/${r.id}`, "data-nav": true },
      thumb(r.blob), h("div", { class: "cap" }, h("span", {}, `${r.old ?? "none"} → `, h("strong", {}, r.new ?? "none"))),
      h("div", { class: "cap muted" }, r.source ?? ""))));
  const plain = (rows, id) => h("div", { class: "grid", id }, rows.map((r) =>
    h("a", { class: "card", href: `/example/${r.id}`, "data-nav": true }, thumb(r.blob), h("div", { class: "cap" }, r.label ?? "—"))));
  put(main, h("p", {}, link("/history", "‹ history")), ...head,
    h("p", { id: "diff-counts" }, `${c.added} added, ${c.removed} removed, ${c.relabeled} relabeled` +
      (c.newly_labeled || c.unlabeled ? ` (${[c.newly_labeled ? `${c.newly_labeled} had no label before` : "", c.unlabeled ? `${c.unlabeled} left without one` : ""].filter(Boolean).join(", ")})` : "") +
      (c.confirmed ? `, ${c.confirmed} confirmed (same label, now a person's)` : "")),
    c.relabeled ? [h("h2", {}, "relabeled"), relabeled] : null,
    c.added ? [h("h2", {}, `added` + (c.added > d.added.length ? ` (first ${d.added.length})` : "")), plain(d.added, "diff-added")] : null,
    c.removed ? [h("h2", {}, "removed"), plain(d.removed, "diff-removed")] : null,
    c.confirmed ? [h("h2", {}, "confirmed"), plain(d.confirmed, "diff-confirmed")] : null);
}

// ---- builds -----------------------------------------------------------------------------------------
async function buildsPage(parts) {
  if (parts[0] === "compare") return compareBuilds(params().get("a"), params().get("b"));
  if (parts[0]) return reportPage(parts[0]);
  const data = await api("/api/builds");
  const field = (name, title, value) => h("label", {}, title, h("input", { name, value: value ?? "", placeholder: "spec" }));
  const form = h("div", { class: "form-row" },
    h("label", {}, "commit", h("input", { name: "rev", value: "HEAD" })),
    field("epochs", "epochs"), field("width", "width"), field("folds", "folds"),
    h("button", { class: "primary", id: "start-build", onclick: async () => {
      const overrides = {};
      for (const k of ["epochs", "width", "folds"]) {
        const v = form.querySelector(`[name=${k}]`).value.trim();
        if (v) overrides[k] = Number(v);
      }
      const job = await api("/api/builds", { rev: form.querySelector("[name=rev]").value.trim() || "HEAD", overrides }, "started ✓");
      if (job.already_running) toast("A build is already running (one at a time): showing it. Start yours when it is done.");
      watchJob(job.id);
    } }, "Start build"));
  const picked = new Set();
  const made = Object.fromEntries(data.builds.map((b) => [b.id, b.created]));
  const cmp = h("button", { disabled: true, onclick: () => {
    const [a, b] = [...picked].sort((x, y) => made[x] - made[y]);  // older → newer
    navigate(`/builds/compare?a=${a}&b=${b}`);
  } }, "Compare the two checked (older → newer)");
  const staged = statusCache ? statusCache.staged.added + statusCache.staged.removed + statusCache.staged.relabeled : 0;
  put(main, h("h1", {}, "Builds"), form,
    staged ? h("p", { class: "muted" }, `${staged} staged change(s) are not in any build: `, link("/changes", "commit them"), " first to build them.") : null,
    h("div", { id: "job" }),
    h("h2", {}, "finished builds"), h("p", {}, cmp),
    data.builds.length ? h("table", { id: "build-list" },
      h("tr", {}, h("th", {}, ""), h("th", {}, "build"), h("th", {}, "commit"), h("th", {}, "when"), h("th", { class: "num" }, "valid (n)"), h("th", { class: "num" }, "test (n)"), h("th", { class: "num" }, "train out-of-sample (n)"), h("th", { class: "num" }, "seconds"), h("th", {}, "model")),
      data.builds.map((b) => h("tr", {},
        h("td", {}, h("input", { type: "checkbox", "aria-label": "compare " + short(b.id), onchange: (e) => {
          if (e.target.checked) picked.add(b.id); else picked.delete(b.id);
          cmp.disabled = picked.size !== 2;
        } })),
        h("td", { class: "mono" }, link(`/builds/${b.id}`, short(b.id))),
        h("td", { class: "mono" }, link(`/history/${b.commit}`, short(b.commit))),
        h("td", {}, when(b.created)),
        ["valid", "test", "train_oos"].map((k) => h("td", { class: "num" }, b.metrics[k].n ? `${pct(b.metrics[k].accuracy)} (${b.metrics[k].n})` : "—")),
        h("td", { class: "num" }, b.seconds.toFixed(1)),
        h("td", {}, `${b.spec.model.arch} ×${b.spec.model.width}, ${b.spec.train.epochs} epochs, ${b.spec.train.folds >= 2 ? b.spec.train.folds + " folds" : "no folds"}`)))) : h("p", { class: "muted" }, "No builds yet."));
  // The running job, or one that ended in the last two minutes (its result link stays in view).
  const recent = data.jobs.find((j) => j.state === "running" || Date.now() / 1000 - (j.finished || 0) < 120);
  if (recent) watchJob(recent.id);
}

function watchJob(id) {
  const box = document.getElementById("job");
  let stop = false;
  page.cleanup = () => { stop = true; };
  const tick = async () => {
    if (stop || !document.body.contains(box)) return;
    let j;
    try { j = await api("/api/jobs/" + id); } catch (e) { return; }
    const p = j.progress || {};
    const frac = j.state === "done" ? 1 : (p.fraction || 0);
    const what = p.phase === "train" ? `${p.desc}: epoch ${p.epoch}/${p.epochs}, loss ${p.loss.toFixed(4)}` +
      (p.valid !== null && p.valid !== undefined ? `, valid ${pct(p.valid)}` : "") : (p.desc || "starting");
    put(box, h("p", {}, `build job ${j.id}: `, h("strong", { id: "job-state" }, j.state), " · ",
        j.state === "running" ? what : j.state === "done" ? link(`/builds/${j.build}`, "open the report") : (j.error || "")),
      h("div", { class: "progress", role: "progressbar", "aria-valuenow": Math.round(100 * frac) },
        h("span", { style: `width:${(100 * frac).toFixed(1)}%` })),
      j.state === "running" ? h("button", { onclick: () => api(`/api/jobs/${id}/cancel`, {}) }, "Stop") : null);
    if (j.state === "running") setTimeout(tick, 500);
    else if (j.state === "done" && !document.querySelector(`#build-list a[href="/builds/${j.build}"]`)) {
      refreshStatus();
      setTimeout(() => { if (document.body.contains(box)) route(); }, 600);  // list the new build
    }
    const start = document.getElementById("start-build");
    if (start) start.disabled = j.state === "running";
  };
  tick();
}

async function reportPage(id) {
  const r = await api(`/api/builds/${encodeURIComponent(id)}/report`);
  const m = r.metrics;
  const held = r.confusion.split;
  const cls = r.classes;
  const conf = r.confusion.matrix;
  const cell = (i, j) => {
    const n = conf[i][j];
    const href = `/gallery?build=${r.id}&split=${held}&given=${encodeURIComponent(cls[i])}&predicted=${encodeURIComponent(cls[j])}`;
    return h("td", { class: "cell " + (n === 0 ? "zero" : i === j ? "diag" : "off"), "data-given": cls[i], "data-predicted": cls[j] },
      n ? h("a", { href, "data-nav": true, title: `${n} ${held} example(s) labelled ${cls[i]}, predicted ${cls[j]}` }, n) : "0");
  };
  put(main,
    h("p", {}, link("/builds", "‹ builds")),
    h("h1", {}, `Build ${short(r.id)}`),
    h("p", { class: "muted" }, `commit `, link(`/history/${r.commit}`, short(r.commit)), ` · ${r.spec.model.arch} ×${r.spec.model.width} · ` + (r.training.epochs_run < r.spec.train.epochs ? `trained ${r.training.epochs_run} of ${r.spec.train.epochs} epochs (early stopping)` : `${r.spec.train.epochs} epochs`) + ` · ` +
      (r.training.oos ? `${r.spec.train.folds}-fold out-of-sample predictions` : "no out-of-sample predictions for train examples (folds = 0): few suspects") +
      ` · ${r.seconds.total.toFixed(1)} s · `,
      link(`/gallery?build=${r.id}&wrong=1`, "examples it gets wrong"), " · ", link(`/review?build=${r.id}`, "review its suspects")),
    h("div", { class: "report" },
      h("div", {}, h("h2", {}, "accuracy"), h("table", {}, h("tr", {}, h("th", {}, "split"), h("th", { class: "num" }, "accuracy"), h("th", { class: "num" }, "n")),
        ["valid", "test", "train_oos"].map((s) => h("tr", {}, h("td", {}, s === "train_oos" ? "train (out-of-sample)" : s),
          h("td", { class: "num" }, pct(m[s].accuracy)), h("td", { class: "num" }, m[s].n)))),
        h("h2", {}, `per class (${r.per_class.split})`),
        h("table", {}, h("tr", {}, ["class", "precision", "recall", "F1", "n"].map((x) => h("th", { class: x === "class" ? "" : "num" }, x))),
          r.per_class.classes.map((c) => h("tr", {}, h("td", {}, c.class), h("td", { class: "num" }, pct(c.precision)),
            h("td", { class: "num" }, pct(c.recall)), h("td", { class: "num" }, pct(c.f1)), h("td", { class: "num" }, c.support ?? c.n))))),
      h("div", {}, h("h2", {}, `confusion matrix (${held}; rows: label, columns: predicted; click a cell)`),
        h("table", { class: "confusion", id: "confusion" }, h("tr", {}, h("th", {}, ""), cls.map((c) => h("th", { class: "num" }, c))),
          cls.map((c, i) => h("tr", {}, h("th", {}, c), cls.map((_, j) => cell(i, j))))),
        h("h2", {}, "slices"), slicesTable(r.slices))),
    h("h2", {}, "embeddings map"), h("div", { id: "map-box" }, h("p", { class: "muted" }, "Loading the map…")));
  embeddingMap(r.id);
}

function slicesTable(slices) {
  const rows = Array.isArray(slices) ? slices : Object.entries(slices || {}).flatMap(([col, vals]) =>
    Array.isArray(vals) ? vals.map((v) => ({ column: col, ...v })) : []);
  if (!rows.length) return h("p", { class: "muted" }, "no slices");
  const first = ["slice", "n", "accuracy", "low", "high"];
  const keys = [...first.filter((k) => k in rows[0]),
    ...Object.keys(rows[0]).filter((k) => !first.includes(k) && typeof rows[0][k] !== "object")];
  return h("table", { id: "slices" }, h("tr", {}, keys.map((k) => h("th", {}, k))),
    rows.slice(0, 40).map((s) => h("tr", {}, keys.map((k) => h("td", { class: typeof s[k] === "number" ? "num" : "" },
      ["accuracy", "low", "high"].includes(k) ? pct(s[k]) : String(s[k]))))));
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

async function embeddingMap(id) {
  const box = document.getElementById("map-box");
  const m = await api(`/api/builds/${encodeURIComponent(id)}/map`);
  const W = 620, H = 460, pad = 10;
  const canvas = h("canvas", { id: "map", width: W, height: H, "aria-label": "embeddings map; drag to lasso, click a point" });
  const px = m.x.map((x) => pad + (x + 1) / 2 * (W - 2 * pad));
  const py = m.y.map((y) => pad + (1 - (y + 1) / 2) * (H - 2 * pad));
  let mode = "label";
  let lasso = null;
  let selected = [];
  const sel = h("div", { class: "selection", id: "map-selection" });
  const color = (i) => mode === "label"
    ? (m.label[i] < 0 ? "#bbb" : PALETTE[m.label[i] % PALETTE.length])
    : (m.label[i] < 0 ? "#bbb" : m.label[i] === m.pred[i] ? "#9ca3af" : "#dc2626");
  const draw = () => {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    const order = mode === "error" ? [...m.x.keys()].sort((a, b) => (m.label[a] !== m.pred[a]) - (m.label[b] !== m.pred[b])) : m.x.keys();
    const chosen = new Set(selected);
    for (const i of order) {
      ctx.fillStyle = color(i);
      ctx.globalAlpha = chosen.size && !chosen.has(i) ? 0.25 : 0.85;
      ctx.fillRect(px[i] - 1.5, py[i] - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    if (lasso && lasso.length > 1) {
      ctx.strokeStyle = "#111"; ctx.beginPath(); ctx.moveTo(...lasso[0]);
      for (const p of lasso) ctx.lineTo(...p);
      ctx.stroke();
    }
  };
  const inside = (x, y, poly) => {
    let c = false;
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i], [xj, yj] = poly[j];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) c = !c;
    }
    return c;
  };
  const pos = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  const showSelection = () => {
    // The map sends ids only (it can hold 20,000 points): thumbnails are fetched by example id.
    const shown = selected.slice(0, 200);
    const bulk = h("input", { id: "bulk-label", list: "map-classes", placeholder: "class", size: 10 });
    const labelAll = async () => {
      const lab = bulk.value.trim();
      if (!lab) { toast("Type the class to give every selected example."); return; }
      if (!confirm(`Label all ${selected.length} selected examples as ${lab}?`)) return;
      await api("/api/label", { items: selected.map((i) => ({ id: m.ids[i], label: lab })) });
    };
    put(sel, selected.length ? h("div", { class: "form-row" }, h("span", {}, `${selected.length} selected` + (selected.length > 200 ? " (first 200 shown)" : "") + "; cards show the labels the build saw"),
      bulk, h("datalist", { id: "map-classes" }, m.classes.map((c) => h("option", { value: c }))),
      h("button", { id: "bulk-apply", onclick: labelAll }, "label all selected (staged)")) : null,
      h("div", { class: "grid" }, shown.map((i) => h("a", { class: "card", href: `/example/${m.ids[i]}`, "data-nav": true, "data-id": m.ids[i] },
        h("img", { src: `/api/examples/${m.ids[i]}/thumb`, class: "thumb", alt: "" }),
        h("div", { class: "cap" }, h("span", {}, m.label[i] >= 0 ? m.classes[m.label[i]] : "—"),
          m.label[i] >= 0 && m.label[i] !== m.pred[i] ? h("span", { class: "pred" }, "→ " + m.classes[m.pred[i]]) : null)))));
  };
  canvas.addEventListener("mousedown", (e) => { lasso = [pos(e)]; });
  canvas.addEventListener("mousemove", (e) => { if (lasso) { lasso.push(pos(e)); draw(); } });
  const endDrag = (e) => { if (lasso && e.target !== canvas) { lasso = null; draw(); } };
  window.addEventListener("mouseup", endDrag);
  page.cleanup = () => window.removeEventListener("mouseup", endDrag);
  canvas.addEventListener("mouseup", (e) => {
    const pts = lasso || [];
    lasso = null;
    if (pts.length < 4) {
      const [x, y] = pos(e);
      let best = -1, bd = 64;
      for (const i of m.x.keys()) { const d = (px[i] - x) ** 2 + (py[i] - y) ** 2; if (d < bd) { bd = d; best = i; } }
      if (best >= 0) navigate(`/example/${m.ids[best]}`);
      draw();
      return;
    }
    selected = [...m.x.keys()].filter((i) => inside(px[i], py[i], pts));
    draw();
    showSelection();
  });
  const legend = h("div", { id: "map-legend" });
  const drawLegend = () => put(legend, mode === "label"
    ? m.classes.map((c, i) => h("div", {}, h("span", { style: `color:${PALETTE[i % PALETTE.length]}` }, "■ "), c))
    : [["#9ca3af", "model agrees"], ["#dc2626", "model disagrees"], ["#bbb", "no label"]].map(([col, what]) =>
      h("div", {}, h("span", { style: `color:${col}` }, "■ "), what)));
  const toggle = h("select", { id: "map-color", onchange: (e) => { mode = e.target.value; drawLegend(); draw(); } },
    h("option", { value: "label" }, "colour by label"), h("option", { value: "error" }, "colour by error"));
  drawLegend();
  put(box, h("p", {}, toggle, h("span", { class: "muted" },
    ` ${m.ids.length.toLocaleString()} of ${m.total.toLocaleString()} examples; PCA of the penultimate layer. Drag to lasso, click a point to open it.`)),
    h("div", { style: "display:flex;gap:14px;align-items:start" }, canvas, legend), sel);
  draw();
}

async function compareBuilds(a, b) {
  const d = await api(`/api/compare-builds?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const grid = (rows, id) => h("div", { class: "grid", id }, rows.map((r) => h("a", { class: "card", href: `/example/${r.id}`, "data-nav": true },
    r.blob ? thumb(r.blob) : null, h("div", { class: "cap" }, h("span", {}, r.label), h("span", { title: "predicted by A → by B" }, `${r.a} → ${r.b}`)))));
  const delta = (x) => (x === null ? "n/a" : (x >= 0 ? "+" : "") + (100 * x).toFixed(1) + " pts");
  put(main, h("p", {}, link("/builds", "‹ builds")),
    h("h1", {}, `${short(d.a)} → ${short(d.b)}`),
    h("table", {}, h("tr", {}, h("th", {}, "split"), h("th", { class: "num" }, short(d.a)), h("th", { class: "num" }, short(d.b)), h("th", { class: "num" }, "change")),
      Object.entries(d.splits).map(([s, v]) => h("tr", {}, h("td", {}, s === "train_oos" ? "train (out-of-sample)" : s), h("td", { class: "num" }, pct(v.a)), h("td", { class: "num" }, pct(v.b)), h("td", { class: "num" }, delta(v.delta))))),
    h("p", { class: "muted" }, "Examples both builds saw with the same label; each card: label, then A's prediction → B's."),
    h("h2", {}, `newly wrong (${d.newly_wrong_count})`), grid(d.newly_wrong, "newly-wrong"),
    h("h2", {}, `newly right (${d.newly_right_count})`), grid(d.newly_right, "newly-right"));
}

// ---- start ------------------------------------------------------------------------------------------
refreshStatus().then(() => {
  if (location.pathname === "/") history.replaceState(null, "", statusCache && statusCache.build ? "/review" : "/gallery");
  route();
  api("/api/review").then((r) => { document.getElementById("n-review").textContent = r.total || ""; }).catch(() => {});
  api("/api/queue").then((r) => { document.getElementById("n-label").textContent = r.items.length || ""; }).catch(() => {});
});
