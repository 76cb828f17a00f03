// Builds: start one (with live progress) and list the finished ones; /builds/<id> is a build's
// report and /builds/compare two builds side by side (report.js).
import { api, h, link, main, navigate, page, params, pct, put, refreshStatus, route, short, stagedCount, statusCache, toast, when } from "./core.js";
import { compareBuilds, reportPage } from "./report.js";

export async function buildsPage(parts) {
  if (parts[0] === "compare") return compareBuilds(params().get("a"), params().get("b"));
  if (parts[0]) return reportPage(parts[0]);
  const data = await api("/api/builds");
  const picked = new Set();
  const made = Object.fromEntries(data.builds.map((b) => [b.id, b.created]));
  const cmp = h("button", { disabled: true, onclick: () => {
    const [a, b] = [...picked].sort((x, y) => made[x] - made[y]);  // older → newer
    navigate(`/builds/compare?a=${a}&b=${b}`);
  } }, "Compare the two checked (older → newer)");
  const tick = (e, id) => {
    if (e.target.checked) picked.add(id); else picked.delete(id);
    cmp.disabled = picked.size !== 2;
  };
  const staged = stagedCount(statusCache);
  put(main, h("h1", {}, "Builds"), buildForm(),
    staged ? h("p", { class: "muted" }, `${staged} staged change(s) are not in any build: `, link("/changes", "commit them"), " first to build them.") : null,
    h("div", { id: "job" }),
    h("h2", {}, "finished builds"), h("p", {}, cmp),
    data.builds.length ? buildTable(data.builds, tick) : h("p", { class: "muted" }, "No builds yet."));
  // The running job, or one that ended in the last two minutes (its result link stays in view).
  const recent = data.jobs.find((j) => j.state === "running" || Date.now() / 1000 - (j.finished || 0) < 120);
  if (recent) watchJob(recent.id);
}

function buildForm() {
  const field = (name, title, value) => h("label", {}, title, h("input", { name, value: value ?? "", placeholder: "spec" }));
  const form = h("div", { class: "form-row" },
    h("label", {}, "commit", h("input", { name: "rev", value: "HEAD" })),
    field("epochs", "epochs"), field("width", "width"), field("folds", "folds"),
    h("button", { class: "primary", id: "start-build", onclick: () => startBuild(form) }, "Start build"));
  return form;
}

// Empty fields keep the spec's value.
async function startBuild(form) {
  const overrides = {};
  for (const k of ["epochs", "width", "folds"]) {
    const v = form.querySelector(`[name=${k}]`).value.trim();
    if (v) overrides[k] = Number(v);
  }
  const job = await api("/api/builds", { rev: form.querySelector("[name=rev]").value.trim() || "HEAD", overrides }, "started ✓");
  if (job.already_running) toast("A build is already running (one at a time): showing it. Start yours when it is done.");
  watchJob(job.id);
}

function buildTable(builds, tick) {
  return h("table", { id: "build-list" },
    h("tr", {}, h("th", {}, ""), h("th", {}, "build"), h("th", {}, "commit"), h("th", {}, "when"), h("th", { class: "num" }, "valid (n)"), h("th", { class: "num" }, "test (n)"), h("th", { class: "num" }, "train out-of-sample (n)"), h("th", { class: "num" }, "seconds"), h("th", {}, "model")),
    builds.map((b) => h("tr", {},
      h("td", {}, h("input", { type: "checkbox", "aria-label": "compare " + short(b.id), onchange: (e) => tick(e, b.id) })),
      h("td", { class: "mono" }, link(`/builds/${b.id}`, short(b.id))),
      h("td", { class: "mono" }, link(`/history/${b.commit}`, short(b.commit))),
      h("td", {}, when(b.created)),
      ["valid", "test", "train_oos"].map((k) => h("td", { class: "num" }, b.metrics[k].n ? `${pct(b.metrics[k].accuracy)} (${b.metrics[k].n})` : "—")),
      h("td", { class: "num" }, b.seconds.toFixed(1)),
      h("td", {}, `${b.spec.model.arch} ×${b.spec.model.width}, ${(b.resolved || {}).epochs || b.spec.train.epochs} epochs, ${b.spec.train.folds >= 2 ? b.spec.train.folds + " folds" : "no folds"}` +
        (b.warm_from ? `, warm from ${b.warm_from.slice(0, 8)}` : "")))));
}

// Poll job `id` twice a second into #job until it ends or the page is left.
function watchJob(id) {
  const box = document.getElementById("job");
  let stop = false;
  page.cleanup = () => { stop = true; };
  const tick = async () => {
    if (stop || !document.body.contains(box)) return;
    let j;
    try { j = await api("/api/jobs/" + id); } catch (e) { return; }
    put(box, jobView(j));
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

function duration(s) {
  s = Math.max(0, Math.round(s));
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function jobView(j) {
  const p = j.progress || {};
  const frac = j.state === "done" ? 1 : (p.fraction || 0);
  const eta = p.eta_s !== null && p.eta_s !== undefined ? ` · about ${duration(p.eta_s)} left` : "";
  const what = p.phase === "train" ? `fits ${p.fits_done ?? 0}/${p.fits ?? 1} done · ${p.desc}${eta}` : (p.desc || "starting");
  return [h("p", {}, `build job ${j.id}: `, h("strong", { id: "job-state" }, j.state), " · ",
      j.state === "running" ? what : j.state === "done" ? link(`/builds/${j.build}`, "open the report") : (j.error || "")),
    h("div", { class: "progress", role: "progressbar", "aria-valuenow": Math.round(100 * frac) },
      h("span", { style: `width:${(100 * frac).toFixed(1)}%` })),
    j.state === "running" ? h("button", { onclick: () => api(`/api/jobs/${j.id}/cancel`, {}) }, "Stop") : null];
}
