// The review queue: a build's suspected label errors, one at a time, by keyboard: accept the
// suggestion, keep the given label, or relabel.
import { api, h, link, main, page, params, pct, put, setCount, short } from "./core.js";
import { Walk, classButtons, digitClass, itemImage, keysPanel, typeAhead } from "./queues.js";

const KEYS = [["a", "accept the suggestion"], ["k", "keep the given label"],
  [["0", "–", "9"], "relabel as that class"], ["/", "type a class"], [["s", "→"], "skip"], ["←", "previous"],
  ["u", "undo the last decision"]];

export async function review() {
  const chosen = params().get("build");
  const data = await api("/api/review" + (chosen ? "?build=" + encodeURIComponent(chosen) : ""));
  const items = data.items;
  const classes = data.classes;
  const w = new Walk(items);
  setCount("n-review", data.total);
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
  const buttons = { accept: () => act("accept"), keep: () => act("keep"), skip: next, undo: undoLast, pick: (c) => act("label", c) };
  const draw = () => {
    setCount("n-review", w.remaining());
    put(main, !items.length ? nothingToReview(data.build) : !w.item ? reviewed(w, keysPanel(KEYS))
      : suspect(w, data, classes, buttons));
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

function nothingToReview(build) {
  return h("div", { class: "done", id: "review-done" }, "Build ", link(`/builds/${build}`, short(build)),
    " finds no suspected label errors among the current labels. Kept labels are not shown again. ",
    "The examples whose labels it finds least likely come first in ",
    link("/gallery?sort=issue", "the gallery sorted by issue score"), ".");
}

// The end of the list: what was decided, what was skipped, where to go next.
function reviewed(w, keys) {
  const remaining = w.remaining();
  return h("div", { class: "queue" }, h("div", { class: "done", id: "review-done" },
    `Reviewed ${w.decided} of ${w.items.length}. `, remaining ? `${remaining} skipped. ` : "",
    link("/changes", "See the staged changes"), " and commit them."), h("div"), keys);
}

function suspect(w, data, classes, on) {
  const it = w.item;
  const items = w.items;
  return h("div", { class: "queue", id: "review-item", "data-id": it.id },
    itemImage(it),
    h("div", {},
      h("p", { class: "muted" }, `suspect ${w.pos + 1} of ${items.length}` + (data.total > items.length ? ` (first ${items.length} of ${data.total})` : "") + ` · ${w.remaining()} to go · build `,
        link(`/builds/${data.build}`, short(data.build))),
      h("p", {}, "given ", h("span", { class: "big-label", id: "given" }, it.label), " ",
        h("span", { class: "muted" }, `(${it.source}) · p=${it.score === null ? "n/a" : it.score.toFixed(3)}`)),
      h("p", {}, "suggested ", h("span", { class: "big-label ok", id: "suggested" }, it.suggested), " ",
        h("span", { class: "muted" }, `(model ${pct(it.confidence)})`)),
      h("div", { class: "form-row" },
        h("button", { class: "primary", onclick: on.accept }, h("kbd", {}, "a"), " accept ", it.suggested),
        h("button", { onclick: on.keep }, h("kbd", {}, "k"), " keep ", it.label),
        h("button", { onclick: on.skip }, h("kbd", {}, "s"), " skip"),
        h("button", { onclick: on.undo, disabled: !w.undo.length }, h("kbd", {}, "u"), " undo")),
      classButtons(classes, null, it.label, on.pick), typeAhead(classes, on.pick)),
    keysPanel(KEYS));
}
