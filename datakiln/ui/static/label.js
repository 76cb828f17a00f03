// The labelling queue: unlabeled examples chosen to label next, one at a time, by keyboard; when
// it is empty, a form to choose more.
import { api, h, link, main, page, pct, put, route, setCount, short, toast } from "./core.js";
import { Walk, classButtons, digitClass, itemImage, keysPanel, typeAhead } from "./queues.js";

const KEYS = [["Enter", "confirm the selected class"], [["0", "–", "9"], "label as that class"],
  ["/", "type a class (new ones too)"], [["s", "→"], "skip"], ["←", "previous"], ["u", "undo the last label"]];
const STRATEGIES = ["auto", "margin", "entropy", "least-confidence", "badge", "coreset", "random"];

export async function label() {
  const data = await api("/api/queue");
  const items = data.items;
  const classes = data.classes;
  const w = new Walk(items);
  let selected = items.length ? items[0].suggestion : null;
  setCount("n-label", items.length);
  if (!items.length && !data.undecided) {
    put(main, h("div", { class: "done", id: "queue-empty" }, "Every example has a label: there is nothing to label. ",
      link("/changes", "Import images"), " to grow the dataset, or review ", link("/review", "suspected label errors"), "."));
    return;
  }
  if (!items.length) {
    put(main, chooseMore(data.undecided));
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
  const buttons = { save, skip: advance, undo: undoLast };
  const draw = () => {
    setCount("n-label", w.remaining());
    put(main, w.item ? toLabel(w, classes, selected, buttons) : labelled(w));
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

// Fill the empty queue with the form's choice, then show it.
async function fill() {
  const n = Number(document.getElementById("fill-n").value) || 20;
  const strategy = document.getElementById("fill-strategy").value;
  const picked = await api("/api/queue", { n, strategy }, "chosen ✓");
  if (!picked.length) toast("Nothing left to choose: every unlabeled example is queued or predicted by no build.");
  route();
}

function chooseMore(undecided) {
  return h("div", { class: "done", id: "queue-empty" },
    h("p", {}, `The labelling queue is empty; ${undecided.toLocaleString()} example(s) have no label yet. Choose which to label next: uncertain and diverse (`,
      h("span", { class: "mono" }, "kiln queue"), ")."),
    h("div", { class: "form-row" },
      h("label", {}, "how many", h("input", { id: "fill-n", type: "number", value: 20, min: 1, max: 1000 })),
      h("label", {}, "strategy", h("select", { id: "fill-strategy" }, STRATEGIES.map((s) => h("option", {}, s)))),
      h("button", { class: "primary", id: "fill", onclick: fill }, "Choose examples")));
}

// The end of the list: what was labelled, what was skipped, and a way to go on.
function labelled(w) {
  const remaining = w.remaining();
  return h("div", { class: "queue" }, h("div", { class: "done", id: "label-done" },
    `Labelled ${w.decided}. `, remaining ? `${remaining} skipped. ` : "", link("/changes", "See the staged changes"),
    " or ", h("button", { onclick: () => api("/api/queue", { n: 20, strategy: "auto" }).then(route) }, "choose 20 more")),
  h("div"), keysPanel(KEYS));
}

function toLabel(w, classes, selected, on) {
  const it = w.item;
  return h("div", { class: "queue", id: "label-item", "data-id": it.id },
    itemImage(it),
    h("div", {},
      h("p", { class: "muted" }, `${w.pos + 1} of ${w.items.length} · ${w.remaining()} to go`),
      suggestion(it),
      classButtons(classes, selected, null, on.save),
      h("div", { class: "form-row" }, typeAhead(classes, on.save),
        h("button", { class: "primary", disabled: !selected, onclick: () => on.save(selected) }, h("kbd", {}, "Enter"), " confirm ", selected ?? ""),
        h("button", { onclick: on.skip }, h("kbd", {}, "s"), " skip"),
        h("button", { onclick: on.undo, disabled: !w.undo.length }, h("kbd", {}, "u"), " undo"))),
    keysPanel(KEYS));
}

function suggestion(it) {
  if (!it.suggestion) return h("p", { class: "muted" }, "no suggestion: pick a class");
  const from = it.suggestion_from || "";
  return h("p", {}, "suggestion ", h("span", { class: "big-label", id: "suggestion" }, it.suggestion), " ",
    h("span", { class: "muted" }, from.startsWith("model:") ? ["from build ", link(`/builds/${from.slice(6)}`, short(from.slice(6)))] : "",
      it.confidence !== null ? ` · ${pct(it.confidence)}` : ""));
}
