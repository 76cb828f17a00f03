// Changes: the staged label edits (commit, discard, revert one) and importing images from this
// computer.
import { api, h, link, main, navigate, put, route, short, thumb, toast } from "./core.js";

export async function changes() {
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
  const anything = st.added + st.removed + st.relabeled > 0 || data.merge;
  put(main,
    h("h1", {}, "Changes"),
    h("p", {}, `${data.total} label edit(s) staged` + (st.added ? `, ${st.added} example(s) imported` : "") +
      (st.removed ? `, ${st.removed} removed` : "") + (data.merge ? `; merging ${short(data.merge.theirs)}` : "")),
    anything ? h("div", { class: "commit-form" }, msg,
      h("button", { class: "primary", id: "commit", onclick: commit }, "Commit"),
      h("button", { onclick: discardAll }, "Discard all")) : h("p", { class: "muted" }, "Nothing staged. Label in the queues or the gallery."),
    data.edits.length ? editsTable(data.edits) : null,
    data.total > data.edits.length ? h("p", { class: "muted" }, `showing ${data.edits.length} of ${data.total}`) : null,
    importPanel());
  msg.focus();
}

async function discardAll() {
  if (!confirm("Discard every staged change? This cannot be undone.")) return;
  await api("/api/discard", {});
  route();
}

function editsTable(edits) {
  return h("table", { class: "row-list", id: "edits" },
    h("tr", {}, h("th", {}, "example"), h("th", {}, "old → new"), h("th", {}, "by"), h("th", {}, "")),
    edits.map((e) => h("tr", { "data-id": e.id },
      h("td", {}, h("span", { class: "pair" }, e.blob ? thumb(e.blob) : null, link(`/example/${e.id}`, h("span", { class: "mono" }, short(e.id))))),
      h("td", {}, `${e.old ?? "none"} → `, h("strong", {}, e.new ?? "none"), e.old === e.new ? h("span", { class: "muted" }, " (confirmed)") : null),
      h("td", {}, e.source ?? "-"),
      h("td", {}, h("button", { onclick: async () => { await api("/api/discard", { ids: [e.id] }, "reverted ✓"); route(); } }, "revert")))));
}

// Images from this computer, imported like 'kiln import' (checked; one bad file refuses the batch).
function importPanel() {
  const files = h("input", { type: "file", id: "import-files", multiple: true, accept: "image/png,image/jpeg,image/webp" });
  const label = h("input", { id: "import-label", placeholder: "label (empty: unlabeled)", size: 24 });
  const out = h("span", { id: "import-result", class: "muted" });
  const run = () => importFiles([...files.files], label.value.trim() || null, out);
  return h("div", {}, h("h2", {}, "import images"),
    h("div", { class: "form-row" }, files, label, h("button", { id: "import", onclick: run }, "Import"), out),
    h("p", { class: "muted" }, "Files are checked like ", h("span", { class: "mono" }, "kiln import"),
      ": a file that is not a PNG, JPEG or WebP image refuses its batch, by name. They are named upload/FILE; ",
      link("/gallery?search=upload/", "see them in the gallery"), "."));
}

const b64 = (file) => new Promise((ok, fail) => {
  const r = new FileReader();
  r.onload = () => ok(String(r.result).split(",", 2)[1] || "");
  r.onerror = () => fail(r.error);
  r.readAsDataURL(file);
});

// Send `picked` in batches (requests stay well under the server's limit), reporting into `out`.
async function importFiles(picked, label, out) {
  if (!picked.length) { toast("Choose image files first."); return; }
  let batch = [], bytes = 0, added = 0, present = 0, sent = 0;
  const flush = async () => {
    if (!batch.length) return;
    const r = await api("/api/import", { files: batch }, undefined, forBrowser);
    added += r.added; present += r.present; sent += batch.length;
    put(out, `imported ${sent} of ${picked.length}…`);
    batch = []; bytes = 0;
  };
  try {
    for (const f of picked) {
      if (bytes + f.size > 16 * 1024 * 1024) await flush();
      batch.push({ name: f.name, label, data: await b64(f) });
      bytes += f.size;
    }
    await flush();
    put(out, `${added} added, ${present} already in the repository (staged: commit to record them)`);
    setTimeout(route, 1500);
  } catch (e) {
    put(out, h("span", { class: "bad" }, `stopped after ${sent} of ${picked.length}: ${e.message}`));
  }
}

// The server's refusal of bad images is worded for every client and ends with advice ("... or
// skip them", once a CLI flag) that a browser cannot follow: here the way out is the selection.
const BAD_FILES = /\bbad file\(s\)/;
const SKIP_ADVICE = /\bskip them\.?$|--skip-bad/;
const IMPORT_HINT = "Remove the bad files from your selection and import again.";

function forBrowser(msg) {
  if (!BAD_FILES.test(msg)) return msg;
  const lines = msg.split("\n").filter((line) => !SKIP_ADVICE.test(line.trim()));
  return [...lines, IMPORT_HINT].join("\n");
}
