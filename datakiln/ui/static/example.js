// One example: its image, label (editable), prediction and label history; ← and → walk the
// gallery page it was opened from.
import { api, h, link, main, navigate, page, pct, put, route, sharpen, short, statusCache, when } from "./core.js";

export async function example(parts) {
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
  const walk = galleryWalk(ex.id);
  page.onKey = (e) => {
    if (e.key === "/") return input.focus();
    if (e.key === "ArrowLeft" && walk.prev) navigate(`/example/${walk.prev}`);
    if (e.key === "ArrowRight" && walk.next) navigate(`/example/${walk.next}`);
    if (e.key === "Escape" && walk.at >= 0) navigate(walk.back);
  };
  put(main, walkLinks(walk),
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
        h("h2", {}, "label history"), labelHistory(ex.history))));
}

// Where example `id` sits in the gallery page last shown (the gallery saves its ids): at is -1
// when it is not there.
function galleryWalk(id) {
  const list = JSON.parse(sessionStorage.getItem("kiln-list") || "null");
  const at = list ? list.ids.indexOf(id) : -1;
  return {
    at, ids: list ? list.ids : [], back: list ? list.back : null,
    prev: at > 0 ? list.ids[at - 1] : null,
    next: at >= 0 && at + 1 < list.ids.length ? list.ids[at + 1] : null,
  };
}

function walkLinks(w) {
  const back = w.at >= 0 ? link(w.back, "‹ back to the gallery")
    : h("a", { href: "#", onclick: (e) => { e.preventDefault(); history.back(); } }, "‹ back");
  return h("p", { class: "form-row" }, back,
    w.at >= 0 ? [w.prev ? link(`/example/${w.prev}`, "← previous") : h("span", { class: "muted" }, "← previous"),
      h("span", { class: "muted" }, `${w.at + 1} of ${w.ids.length} on this page · Esc: back · /: edit the label`),
      w.next ? link(`/example/${w.next}`, "next →") : h("span", { class: "muted" }, "next →")] : null);
}

function labelHistory(events) {
  return h("table", {}, h("tr", {}, h("th", {}, "when"), h("th", {}, "commit"), h("th", {}, "label"), h("th", {}, "by"), h("th", {}, "message")),
    events.map((e) => h("tr", {},
      h("td", {}, when(e.label_time || e.time)),
      h("td", { class: "mono" }, e.commit ? link(`/history/${e.commit}`, short(e.commit)) : "staged"),
      h("td", {}, e.event === "removed" ? "removed" : (e.label ?? "none")),
      h("td", {}, e.source ?? "-"),
      h("td", {}, e.message))));
}

function probBars(probs, n) {
  const top = Object.entries(probs).sort((a, b) => b[1] - a[1]).slice(0, n);
  return h("div", { class: "bars" }, top.map(([c, p]) => h("div", { class: "bar" },
    h("span", {}, c), h("span", {}, h("span", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
    h("span", { class: "muted" }, pct(p)))));
}
