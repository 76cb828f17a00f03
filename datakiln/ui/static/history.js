// History: the log of a branch, one commit's changes, or the changes between two commits.
import { api, h, link, main, navigate, params, put, short, statusCache, thumb, when } from "./core.js";

export async function historyPage(parts) {
  if (parts[0] === "compare") return diffPage(await api(`/api/compare?a=${encodeURIComponent(params().get("a"))}&b=${encodeURIComponent(params().get("b"))}`));
  if (parts[0]) return diffPage(await api("/api/commits/" + encodeURIComponent(parts[0])));
  const rev = params().get("rev") || "";
  const commits = await api("/api/log?n=200" + (rev ? "&rev=" + encodeURIComponent(rev) : ""));
  const picked = new Set();
  const when_ = Object.fromEntries(commits.map((c) => [c.id, c.time]));
  const cmp = h("button", { disabled: true, onclick: () => {
    const [a, b] = [...picked].sort((x, y) => when_[x] - when_[y]);  // older → newer, whatever the tick order
    navigate(`/history/compare?a=${a}&b=${b}`);
  } }, "Compare the two checked (older → newer)");
  const tick = (e, id) => {
    if (e.target.checked) picked.add(id); else picked.delete(id);
    cmp.disabled = picked.size !== 2;
  };
  put(main, h("h1", {}, "History"), h("p", { class: "form-row" }, branchPicker(rev), cmp),
    commits.length ? logTable(commits, tick) : h("p", { class: "muted" }, "No commits yet."));
}

function branchPicker(rev) {
  const branches = statusCache ? statusCache.branches : [];
  return h("label", {}, "branch ", h("select", { id: "branch-pick", onchange: (e) =>
    navigate("/history" + (e.target.value ? "?rev=" + encodeURIComponent(e.target.value) : "")) },
    h("option", { value: "" }, `HEAD (${statusCache && statusCache.branch ? statusCache.branch : "detached"})`),
    branches.map((b) => h("option", { value: b, selected: b === rev }, b))));
}

function logTable(commits, tick) {
  return h("table", { id: "log" },
    h("tr", {}, h("th", {}, ""), h("th", {}, "commit"), h("th", {}, "message"), h("th", {}, "author"), h("th", {}, "when"), h("th", { class: "num" }, "examples"), h("th", { class: "num" }, "labeled")),
    commits.map((c) => h("tr", {},
      h("td", {}, h("input", { type: "checkbox", "aria-label": "compare " + short(c.id), onchange: (e) => tick(e, c.id) })),
      h("td", { class: "mono" }, link(`/history/${c.id}`, short(c.id))),
      h("td", { class: "message", title: c.message }, link(`/history/${c.id}`, c.message.length > 120 ? c.message.slice(0, 120) + "…" : c.message)),
      h("td", {}, c.author), h("td", {}, when(c.time)),
      h("td", { class: "num" }, c.stats.examples ?? ""), h("td", { class: "num" }, c.stats.labeled ?? ""))));
}

function diffPage(d) {
  const head = d.commit
    ? [h("h1", { class: "message" }, d.commit.message), h("p", { class: "muted" }, `commit ${d.commit.id} · ${d.commit.author} · ${when(d.commit.time)}`,
        d.commit.parents.length ? [" · parent ", d.commit.parents.map((p) => link(`/history/${p}`, short(p)))] : " · first commit")]
    : [h("h1", {}, `${short(d.a)} → ${short(d.b)}`)];
  const c = d.counts;
  put(main, h("p", {}, link("/history", "‹ history")), ...head,
    h("p", { id: "diff-counts" }, diffCounts(c)),
    c.relabeled ? [h("h2", {}, "relabeled"), relabeledGrid(d.relabeled)] : null,
    c.added ? [h("h2", {}, `added` + (c.added > d.added.length ? ` (first ${d.added.length})` : "")), plainGrid(d.added, "diff-added")] : null,
    c.removed ? [h("h2", {}, "removed"), plainGrid(d.removed, "diff-removed")] : null,
    c.confirmed ? [h("h2", {}, "confirmed"), plainGrid(d.confirmed, "diff-confirmed")] : null);
}

function diffCounts(c) {
  const unlabeled = [c.newly_labeled ? `${c.newly_labeled} had no label before` : "", c.unlabeled ? `${c.unlabeled} left without one` : ""];
  return `${c.added} added, ${c.removed} removed, ${c.relabeled} relabeled` +
    (c.newly_labeled || c.unlabeled ? ` (${unlabeled.filter(Boolean).join(", ")})` : "") +
    (c.confirmed ? `, ${c.confirmed} confirmed (same label, now a person's)` : "");
}

// The caption wraps ("cap wrap"): old → new is the point of these cards, so none of it is cut.
function relabeledGrid(rows) {
  return h("div", { class: "grid", id: "diff-relabeled" }, rows.map((r) =>
    h("a", { class: "card", href: `/example/${r.id}`, "data-nav": true },
      thumb(r.blob), h("div", { class: "cap wrap" }, h("span", {}, `${r.old ?? "none"} → `, h("strong", {}, r.new ?? "none"))),
      h("div", { class: "cap muted" }, h("span", {}, r.source ?? "")))));
}

function plainGrid(rows, id) {
  return h("div", { class: "grid", id }, rows.map((r) =>
    h("a", { class: "card", href: `/example/${r.id}`, "data-nav": true, title: r.label },
      thumb(r.blob), h("div", { class: "cap" }, h("span", {}, r.label ?? "—")))));
}
