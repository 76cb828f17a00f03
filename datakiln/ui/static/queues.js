// The machinery both queues share (review and label): class buttons, type-ahead, the keys panel,
// digit keys, and Walk, one example at a time through a list.
import { api, h, sharpen } from "./core.js";

// Digit keys pick a class by its index (shown on its button); "/" opens type-ahead for any class.
export function classButtons(classes, selected, given, pick) {
  return h("div", { class: "classes", id: "classes" }, classes.map((c, i) =>
    h("button", { class: (c === selected ? "selected " : "") + (c === given ? "given" : ""), "data-class": c,
      onclick: () => pick(c) }, i < 10 ? h("kbd", {}, String(i)) : null, " ", c)));
}

export function typeAhead(classes, pick) {
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

export function keysPanel(rows) {
  return h("div", { class: "keys", id: "keys" }, h("strong", {}, "Keys"),
    rows.map(([k, what]) => h("div", {}, [].concat(k).map((x) => h("kbd", {}, x)), " ", what)));
}

export function digitClass(e, classes) {
  if (e.key.length === 1 && e.key >= "0" && e.key <= "9" && !e.ctrlKey) {
    const i = Number(e.key);
    return i < classes.length ? classes[i] : null;
  }
  return null;
}

// One example at a time through a list, for both queues: decisions, skips, going back, undo.
export class Walk {
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

// The example being decided, large, with its file name.
export function itemImage(it) {
  return h("div", {}, h("img", { class: "big", src: `/img/${it.blob}`, alt: it.name || it.id, onload: sharpen }),
    h("p", { class: "muted mono" }, it.name || it.id));
}
