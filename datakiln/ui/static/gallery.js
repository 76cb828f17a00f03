// The gallery: every example, filtered by the URL's query (label, split, source, flags, sort), a
// page of 100 at a time.
import { api, h, link, navigate, page, params, pct, put, main, restoreScroll, short, thumb } from "./core.js";

const PAGE = 100;
const FLAGS = { issue: "suspected label error", unlabeled: "unlabeled", wrong: "model disagrees with the label it saw" };
const CHIPS = { given: "label the build saw", predicted: "predicted", build: "build" };

export async function gallery() {
  const p = params();
  const facets = await api("/api/facets" + (p.get("build") ? "?build=" + encodeURIComponent(p.get("build")) : ""));
  const q = new URLSearchParams(p);
  q.set("limit", String(PAGE));
  let data;
  try {
    data = await api("/api/gallery?" + q);
  } catch (e) {
    data = { total: 0, offset: 0, items: [], error: e.message };
  }
  const offset = data.offset;
  const pageTo = (o) => { const n = new URLSearchParams(location.search); n.set("offset", o); navigate("/gallery?" + n); };
  // The example page walks this page of results with ← and →.
  sessionStorage.setItem("kiln-list", JSON.stringify({ ids: data.items.map((x) => x.id), back: location.pathname + location.search }));
  const grid = data.error
    ? h("p", { class: "bad" }, data.error, " ", link("/gallery", "clear every filter"))
    : h("div", { class: "grid", id: "gallery-grid" }, data.items.map(card));
  put(main, h("div", { class: "gallery" }, filtersPanel(p, facets), h("div", {}, pager(data, pageTo), grid)));
  restoreScroll();
  page.onKey = (e) => {
    if (e.key === "/") return document.querySelector("input[name=search]").focus();
    if (e.key === "ArrowRight" && offset + PAGE < data.total) pageTo(offset + PAGE);
    if (e.key === "ArrowLeft" && offset > 0) pageTo(Math.max(0, offset - PAGE));
  };
}

// A filter changed: the same query with `k` set (or dropped), from the first page.
function setFilter(k, v) {
  const n = new URLSearchParams(location.search);
  if (v) n.set(k, v); else n.delete(k);
  n.delete("offset");
  navigate("/gallery?" + n);
}

function filtersPanel(p, facets) {
  const select = (key, title, values, labels) =>
    h("label", {}, title,
      h("select", { name: key, onchange: (e) => setFilter(key, e.target.value) },
        key === "sort" ? null : h("option", { value: "" }, "any"),
        values.map((v, i) => h("option", { value: v, selected: p.get(key) === v }, labels ? labels[i] : v))));
  const metaValues = Object.entries(facets.meta).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`));
  const hasBuild = !!facets.build;
  return h("div", { class: "filters" },
    h("label", {}, "search (id or file name)",
      h("input", { type: "search", name: "search", value: p.get("search") || "", placeholder: "Enter to search",
        onchange: (e) => setFilter("search", e.target.value.trim()) })),
    select("label", "label", facets.labels),
    select("split", "split", facets.splits),
    select("source", "label source", facets.sources),
    metaValues.length ? select("meta", "metadata slice", metaValues) : null,
    Object.entries(FLAGS).map(([f, title]) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: f, checked: p.get(f) === "1", disabled: f !== "unlabeled" && !hasBuild,
        onchange: (e) => setFilter(f, e.target.checked ? "1" : "") }),
      title)),
    select("sort", "sort by", ["added", "id", "issue", "uncertainty", "confidence"],
      ["order added", "id", "most suspect label first", "most uncertain first", "most confident first"]),
    h("div", { class: "chips" },
      Object.keys(CHIPS).filter((k) => p.get(k)).map((k) =>
        h("span", { class: "chip" }, `${CHIPS[k]}: ${k === "build" ? short(p.get(k)) : p.get(k)} `,
          h("a", { href: "#", onclick: (e) => { e.preventDefault(); setFilter(k, ""); } }, "×")))),
    hasBuild ? h("p", { class: "muted" }, "predictions: build ", link(`/builds/${facets.build}`, short(facets.build)))
      : h("p", { class: "muted" }, "no build yet: ", link("/builds", "start one"), " for predictions and issues"));
}

function pager(data, pageTo) {
  const offset = data.offset;
  return h("div", { class: "pager" },
    h("button", { disabled: offset === 0, onclick: () => pageTo(Math.max(0, offset - PAGE)) }, "‹ prev"),
    h("span", { id: "gallery-count" },
      !data.total ? "no examples match" : !data.items.length ? `past the end: ${data.total.toLocaleString()} match` :
        `${offset + 1}–${offset + data.items.length} of ${data.total.toLocaleString()}`),
    h("button", { disabled: offset + PAGE >= data.total, onclick: () => pageTo(offset + PAGE) }, "next ›"));
}

// The title holds the whole caption: a long label is cut short on the card itself.
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
