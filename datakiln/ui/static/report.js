// A build's report (accuracy, per class, confusion matrix, slices), its embeddings map (lasso to
// select and label), and two builds compared.
import { api, h, link, main, navigate, page, pct, put, short, thumb, toast } from "./core.js";

const SPLIT_NAMES = { train_oos: "train (out-of-sample)" };

export async function reportPage(id) {
  const r = await api(`/api/builds/${encodeURIComponent(id)}/report`);
  put(main,
    h("p", {}, link("/builds", "‹ builds")),
    h("h1", {}, `Build ${short(r.id)}`),
    h("p", { class: "muted" }, `commit `, link(`/history/${r.commit}`, short(r.commit)), ` · ${trainingSummary(r)} · `,
      link(`/gallery?build=${r.id}&wrong=1`, "examples it gets wrong"), " · ", link(`/review?build=${r.id}`, "review its suspects")),
    h("div", { class: "report" },
      h("div", {}, h("h2", {}, "accuracy"), accuracyTable(r.metrics),
        h("h2", {}, `per class (${r.per_class.split})`), perClassTable(r.per_class.classes)),
      h("div", {}, h("h2", {}, `confusion matrix (${r.confusion.split}; rows: label, columns: predicted; click a cell)`),
        confusionTable(r), h("h2", {}, "slices"), slicesTable(r.slices))),
    ...(r.backbone ? [h("p", {}, `built on ${r.backbone.name} ${r.backbone.version} (sha256 ${short(r.backbone.sha256)})`)] : []),
    ...(r.expect ? [h("h2", {}, `expectations: ${r.expect.passed ? "pass" : "FAIL"} (${r.expect.split}, n=${r.expect.n})`),
      expectTable(r.expect.checks)] : []),
    h("h2", {}, "embeddings map"), h("div", { id: "map-box" }, h("p", { class: "muted" }, "Loading the map…")));
  embeddingMap(r.id);
}

// The [expect] checks of kiln.toml: each measured value beside its limit (kiln test re-measures).
function expectTable(checks) {
  return h("table", { id: "expect" }, h("tr", {}, ["check", "measured", "limit", ""].map((x) => h("th", {}, x))),
    checks.map((c) => h("tr", { class: c.passed ? "" : "bad" }, h("td", {}, c.name),
      h("td", { class: "num" }, Number(c.measured).toFixed(4)), h("td", { class: "num" }, `${c.op} ${c.limit}`),
      h("td", {}, c.passed ? "ok" : "FAIL"))));
}

function trainingSummary(r) {
  const t = r.training, train = r.spec.train;
  return `${r.spec.model.arch} ×${r.spec.model.width} · ` +
    (t.epochs_run < train.epochs ? `trained ${t.epochs_run} of ${train.epochs} epochs (early stopping)` : `${train.epochs} epochs`) + ` · ` +
    (t.oos ? `${train.folds}-fold out-of-sample predictions` : "no out-of-sample predictions for train examples (folds = 0): few suspects") +
    ` · ${r.seconds.total.toFixed(1)} s`;
}

function accuracyTable(m) {
  return h("table", {}, h("tr", {}, h("th", {}, "split"), h("th", { class: "num" }, "accuracy"), h("th", { class: "num" }, "n")),
    ["valid", "test", "train_oos"].map((s) => h("tr", {}, h("td", {}, SPLIT_NAMES[s] || s),
      h("td", { class: "num" }, pct(m[s].accuracy)), h("td", { class: "num" }, m[s].n))));
}

function perClassTable(classes) {
  return h("table", {}, h("tr", {}, ["class", "precision", "recall", "F1", "n"].map((x) => h("th", { class: x === "class" ? "" : "num" }, x))),
    classes.map((c) => h("tr", {}, h("td", {}, c.class), h("td", { class: "num" }, pct(c.precision)),
      h("td", { class: "num" }, pct(c.recall)), h("td", { class: "num" }, pct(c.f1)), h("td", { class: "num" }, c.support ?? c.n))));
}

// Each non-empty cell opens the gallery of the held-out examples with that label and prediction.
function confusionTable(r) {
  const held = r.confusion.split;
  const cls = r.classes;
  const conf = r.confusion.matrix;
  const cell = (i, j) => {
    const n = conf[i][j];
    const href = `/gallery?build=${r.id}&split=${held}&given=${encodeURIComponent(cls[i])}&predicted=${encodeURIComponent(cls[j])}`;
    return h("td", { class: "cell " + (n === 0 ? "zero" : i === j ? "diag" : "off"), "data-given": cls[i], "data-predicted": cls[j] },
      n ? h("a", { href, "data-nav": true, title: `${n} ${held} example(s) labelled ${cls[i]}, predicted ${cls[j]}` }, n) : "0");
  };
  return h("table", { class: "confusion", id: "confusion" }, h("tr", {}, h("th", {}, ""), cls.map((c) => h("th", { class: "num" }, c))),
    cls.map((c, i) => h("tr", {}, h("th", {}, c), cls.map((_, j) => cell(i, j)))));
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

// ---- the embeddings map -----------------------------------------------------------------------
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const W = 620, H = 460, PAD = 10;  // the canvas, in its own pixels (CSS may show it smaller)
const ERROR_KEY = [["#9ca3af", "model agrees"], ["#dc2626", "model disagrees"], ["#bbb", "no label"]];

function pointColor(m, mode, i) {
  if (m.label[i] < 0) return "#bbb";
  if (mode === "label") return PALETTE[m.label[i] % PALETTE.length];
  return m.label[i] === m.pred[i] ? "#9ca3af" : "#dc2626";
}

// Even-odd rule: is (x, y) inside the polygon `poly` of [x, y] points?
function insidePolygon(x, y, poly) {
  let c = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) c = !c;
  }
  return c;
}

// A mouse event's position in canvas pixels: a narrow screen shows the canvas scaled down.
function canvasPos(canvas, e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * W / r.width, (e.clientY - r.top) * H / r.height];
}

async function embeddingMap(id) {
  const box = document.getElementById("map-box");
  const m = await api(`/api/builds/${encodeURIComponent(id)}/map`);
  const canvas = h("canvas", { id: "map", width: W, height: H, "aria-label": "embeddings map; drag to lasso, click a point" });
  const px = m.x.map((x) => PAD + (x + 1) / 2 * (W - 2 * PAD));
  const py = m.y.map((y) => PAD + (1 - (y + 1) / 2) * (H - 2 * PAD));
  const view = { mode: "label", lasso: null, selected: [] };
  const sel = h("div", { class: "selection", id: "map-selection" });
  const draw = () => drawMap(canvas, m, px, py, view);
  const pos = (e) => canvasPos(canvas, e);
  canvas.addEventListener("mousedown", (e) => { view.lasso = [pos(e)]; });
  canvas.addEventListener("mousemove", (e) => { if (view.lasso) { view.lasso.push(pos(e)); draw(); } });
  const endDrag = (e) => { if (view.lasso && e.target !== canvas) { view.lasso = null; draw(); } };
  window.addEventListener("mouseup", endDrag);
  page.cleanup = () => window.removeEventListener("mouseup", endDrag);
  canvas.addEventListener("mouseup", (e) => {
    const pts = view.lasso || [];
    view.lasso = null;
    if (pts.length < 4) {  // a click, not a drag: open the nearest point within 8 pixels
      const [x, y] = pos(e);
      let best = -1, bd = 64;
      for (const i of m.x.keys()) { const d = (px[i] - x) ** 2 + (py[i] - y) ** 2; if (d < bd) { bd = d; best = i; } }
      if (best >= 0) navigate(`/example/${m.ids[best]}`);
      draw();
      return;
    }
    view.selected = [...m.x.keys()].filter((i) => insidePolygon(px[i], py[i], pts));
    draw();
    put(sel, selectionPanel(m, view.selected));
  });
  const legend = h("div", { id: "map-legend" });
  const toggle = h("select", { id: "map-color", onchange: (e) => { view.mode = e.target.value; put(legend, legendRows(m, view.mode)); draw(); } },
    h("option", { value: "label" }, "colour by label"), h("option", { value: "error" }, "colour by error"));
  put(legend, legendRows(m, view.mode));
  put(box, h("p", {}, toggle, h("span", { class: "muted" },
    ` ${m.ids.length.toLocaleString()} of ${m.total.toLocaleString()} examples; PCA of the penultimate layer. Drag to lasso, click a point to open it.`)),
    h("div", { class: "map-row" }, canvas, legend), sel);
  draw();
}

function drawMap(canvas, m, px, py, view) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, W, H);
  // Colour by error draws disagreements last, on top.
  const order = view.mode === "error" ? [...m.x.keys()].sort((a, b) => (m.label[a] !== m.pred[a]) - (m.label[b] !== m.pred[b])) : m.x.keys();
  const chosen = new Set(view.selected);
  for (const i of order) {
    ctx.fillStyle = pointColor(m, view.mode, i);
    ctx.globalAlpha = chosen.size && !chosen.has(i) ? 0.25 : 0.85;
    ctx.fillRect(px[i] - 1.5, py[i] - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  const lasso = view.lasso;
  if (lasso && lasso.length > 1) {
    ctx.strokeStyle = "#111"; ctx.beginPath(); ctx.moveTo(...lasso[0]);
    for (const p of lasso) ctx.lineTo(...p);
    ctx.stroke();
  }
}

function legendRows(m, mode) {
  const rows = mode === "label" ? m.classes.map((c, i) => [PALETTE[i % PALETTE.length], c]) : ERROR_KEY;
  return rows.map(([col, what]) => h("div", {}, h("span", { style: `color:${col}` }, "■ "), what));
}

// The lassoed examples as cards, and a box to label them all at once.
function selectionPanel(m, selected) {
  // The map sends ids only (it can hold 20,000 points): thumbnails are fetched by example id.
  const shown = selected.slice(0, 200);
  const bulk = h("input", { id: "bulk-label", list: "map-classes", placeholder: "class", size: 10 });
  const labelAll = async () => {
    const lab = bulk.value.trim();
    if (!lab) { toast("Type the class to give every selected example."); return; }
    if (!confirm(`Label all ${selected.length} selected examples as ${lab}?`)) return;
    await api("/api/label", { items: selected.map((i) => ({ id: m.ids[i], label: lab })) });
  };
  const name = (k) => m.classes[k];
  return [selected.length ? h("div", { class: "form-row" }, h("span", {}, `${selected.length} selected` + (selected.length > 200 ? " (first 200 shown)" : "") + "; cards show the labels the build saw"),
    bulk, h("datalist", { id: "map-classes" }, m.classes.map((c) => h("option", { value: c }))),
    h("button", { id: "bulk-apply", onclick: labelAll }, "label all selected (staged)")) : null,
  h("div", { class: "grid" }, shown.map((i) => {
    const wrong = m.label[i] >= 0 && m.label[i] !== m.pred[i];
    return h("a", { class: "card", href: `/example/${m.ids[i]}`, "data-nav": true, "data-id": m.ids[i],
      title: m.label[i] >= 0 ? `label ${name(m.label[i])}, predicted ${name(m.pred[i])}` : null },
      h("img", { src: `/api/examples/${m.ids[i]}/thumb`, class: "thumb", alt: "" }),
      h("div", { class: "cap" }, h("span", {}, m.label[i] >= 0 ? name(m.label[i]) : "—"),
        wrong ? h("span", { class: "pred" }, "→ " + name(m.pred[i])) : null));
  }))];
}

// ---- two builds compared ----------------------------------------------------------------------
export async function compareBuilds(a, b) {
  const d = await api(`/api/compare-builds?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const grid = (rows, id) => h("div", { class: "grid", id }, rows.map((r) => h("a", { class: "card", href: `/example/${r.id}`, "data-nav": true,
    title: `label ${r.label}; predicted by A ${r.a}, by B ${r.b}` },
  r.blob ? thumb(r.blob) : null, h("div", { class: "cap" }, h("span", {}, r.label), h("span", { title: "predicted by A → by B" }, `${r.a} → ${r.b}`)))));
  const delta = (x) => (x === null ? "n/a" : (x >= 0 ? "+" : "") + (100 * x).toFixed(1) + " pts");
  put(main, h("p", {}, link("/builds", "‹ builds")),
    h("h1", {}, `${short(d.a)} → ${short(d.b)}`),
    h("table", {}, h("tr", {}, h("th", {}, "split"), h("th", { class: "num" }, short(d.a)), h("th", { class: "num" }, short(d.b)), h("th", { class: "num" }, "change")),
      Object.entries(d.splits).map(([s, v]) => h("tr", {}, h("td", {}, SPLIT_NAMES[s] || s), h("td", { class: "num" }, pct(v.a)), h("td", { class: "num" }, pct(v.b)), h("td", { class: "num" }, delta(v.delta))))),
    h("p", { class: "muted" }, "Examples both builds saw with the same label; each card: label, then A's prediction → B's."),
    h("h2", {}, `newly wrong (${d.newly_wrong_count})`), grid(d.newly_wrong, "newly-wrong"),
    h("h2", {}, `newly right (${d.newly_right_count})`), grid(d.newly_right, "newly-right"));
}
