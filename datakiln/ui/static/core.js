// kiln ui's shared core: DOM building, the JSON API, the status header and the router. Pages
// import this module; only app.js imports the pages, so nothing here depends on a page.
// DOM is built with h() (text nodes, never innerHTML from data), so labels and file names cannot
// inject markup.

const TOKEN = document.querySelector('meta[name="kiln-token"]').content;
export const main = document.getElementById("main");
// The page on screen: its key handler and what to stop when it is left. One object, mutated by
// the router, so pages that set page.cleanup after an await reach whatever page is current then.
export const page = { onKey: null, cleanup: null };

// ---- DOM --------------------------------------------------------------------------------------
export function h(tag, attrs, ...kids) {
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
export function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k)))));
}

export function toast(msg) {
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

// A count in the nav (suspects, queued examples, staged changes); empty hides the badge.
export function setCount(id, n) {
  document.getElementById(id).textContent = n || "";
}

export const short = (id) => (id ? id.slice(0, 10) : "");
export const pct = (x) => (x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + "%");
export const when = (t) => new Date(t * 1000).toLocaleString();
// Small images (8x8 digits) are upscaled with hard pixels; photos are scaled smoothly.
export const sharpen = (e) => e.target.classList.toggle("px", e.target.naturalWidth < e.target.clientWidth);
export const thumb = (blob, cls) => h("img", { src: `/thumb/${blob}`, loading: "lazy", alt: "", class: cls || "thumb", onload: sharpen });
export const link = (href, ...kids) => h("a", { href, "data-nav": true }, ...kids);
export const params = () => new URLSearchParams(location.search);

// ---- the JSON API -----------------------------------------------------------------------------
// GET without a body, POST with one (shown as saving/saved in the header). `explain` rewords an
// error for this page before anyone sees it (the toast included).
export async function api(path, body, doneText, explain) {
  const post = body !== undefined;
  const opts = !post ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Kiln-Token": TOKEN },
    body: JSON.stringify(body),
  };
  if (post) saveState("saving", "saving…");
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    if (post) saveState("failed", "not saved: server unreachable");
    toast("The kiln ui server is not answering; is 'kiln ui' still running?");
    throw e;
  }
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw failed(res, data, post, explain);
  if (post) {
    saveState("saved", (doneText || "saved ✓") + " " + new Date().toLocaleTimeString());
    refreshStatus();
  }
  return data;
}

function failed(res, data, post, explain) {
  const raw = (data && data.error) || `${res.status} ${res.statusText}`;
  const msg = explain ? explain(raw) : raw;
  if (post) saveState("failed", "not saved");
  toast(msg);
  const err = new Error(msg);
  err.status = res.status;
  return err;
}

// ---- the status header ------------------------------------------------------------------------
// The last /api/status answer. A live binding: importers always read the current one.
export let statusCache = null;

export const stagedCount = (s) => (s ? s.staged.added + s.staged.removed + s.staged.relabeled : 0);

export async function refreshStatus() {
  try {
    statusCache = await api("/api/status");
  } catch (e) {
    return;
  }
  const s = statusCache;
  document.getElementById("branch").textContent =
    (s.branch ? "on " + s.branch : "detached") + " · " + (s.head ? short(s.head) : "no commits") +
    (s.build ? " · build " + short(s.build.id) + (s.stale_build ? " (older than HEAD)" : "") : " · no build yet");
  setCount("n-staged", stagedCount(s));
}

// ---- navigation -------------------------------------------------------------------------------
let views = {};

// Each page's scroll position, so coming back to a gallery page lands where you left it.
function saveScroll() { sessionStorage.setItem("scroll:" + location.pathname + location.search, String(window.scrollY)); }
export function restoreScroll() { window.scrollTo(0, Number(sessionStorage.getItem("scroll:" + location.pathname + location.search) || 0)); }

export function navigate(href) {
  saveScroll();
  history.pushState(null, "", href);
  route();
}

export async function route() {
  if (page.cleanup) page.cleanup();
  document.getElementById("toast").classList.remove("show");
  Object.assign(page, { onKey: null, cleanup: null });
  const parts = location.pathname.split("/").filter(Boolean);
  const name = parts[0] || (statusCache && statusCache.build ? "review" : "gallery");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  const url = location.pathname + location.search;
  delete main.dataset.url;
  put(main, h("p", { class: "muted" }, "Loading…"));
  try {
    await (views[name] || views.gallery)(parts.slice(1));
  } catch (e) {
    put(main, h("p", { class: "bad" }, String(e.message || e)));
  }
  // Which URL the page now shows: tests (and scripts) wait for it instead of guessing.
  if (location.pathname + location.search === url) main.dataset.url = url;
}

function onClick(e) {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
}

// Keys are handled one after another: a decision waits for the previous one to be saved, so
// fast typing labels successive examples instead of the same one twice.
let keyChain = Promise.resolve();
function onKeyDown(e) {
  const t = e.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
  if (!page.onKey || typing || e.altKey || e.metaKey) return;
  // Enter and Space on a focused link or button belong to it (open, press), not to the page.
  if ((e.key === "Enter" || e.key === " ") && t.closest && t.closest("a, button")) return;
  if (["Enter", "/", "ArrowLeft", "ArrowRight"].includes(e.key)) e.preventDefault();
  const handler = page.onKey;
  const ev = { key: e.key, ctrlKey: e.ctrlKey, preventDefault: () => {} };
  keyChain = keyChain.then(() => (page.onKey === handler ? handler(ev) : null)).catch(() => {});
}

// Start the app with `pages`, name → async function(path parts after the name); an unknown name
// shows the gallery.
export function start(pages) {
  views = pages;
  document.addEventListener("click", onClick);
  document.addEventListener("keydown", onKeyDown);
  window.addEventListener("popstate", route);
  history.scrollRestoration = "manual";  // the app restores it after drawing (the browser would before)
  refreshStatus().then(() => {
    if (location.pathname === "/") history.replaceState(null, "", statusCache && statusCache.build ? "/review" : "/gallery");
    route();
    api("/api/review").then((r) => setCount("n-review", r.total)).catch(() => {});
    api("/api/queue").then((r) => setCount("n-label", r.items.length)).catch(() => {});
  });
}
