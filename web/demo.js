// The demo page: a plain editor for the records of the server that
// served it, kept offline-first by synk.js.
import { open } from "/synk.js";

const $ = (sel) => document.querySelector(sel);
// ?name= picks the local replica; #token= is the server's secret, if it
// has tokens (in the fragment, so it never reaches a server log).
const params = new URLSearchParams(location.search);
const secret = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const db = await open(undefined, {
  name: params.get("name") || "demo",
  token: secret,
  onBlocked: () => {
    $("#list").replaceChildren(el("p", { class: "empty" },
      "These records are open in another tab of this browser. Close it (or reload this tab later) to edit them here."));
  },
});
window.synkReplica = db; // for the console (and tests)

const form = $("#form"), typeIn = $("#type"), idIn = $("#id"), bodyIn = $("#body"), formError = $("#form-error");
const flashing = new Set();

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  formError.textContent = "";
  const type = typeIn.value.trim(), id = idIn.value.trim();
  let fields;
  try {
    fields = JSON.parse(bodyIn.value || "{}");
  } catch (e) {
    formError.textContent = "The fields are not valid JSON: " + e.message;
    return;
  }
  if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
    formError.textContent = 'The fields must be a JSON object, like {"text": "hello"}.';
    return;
  }
  for (const k of ["type", "id", "version"]) {
    if (k in fields) {
      formError.textContent = `"${k}" is kept by synkfs: leave it out of the fields.`;
      return;
    }
  }
  try {
    await db.put({ ...fields, type, id });
    clearForm();
  } catch (e) {
    formError.textContent = e.message;
  }
});
$("#clear").addEventListener("click", clearForm);

function clearForm() {
  formError.textContent = "";
  idIn.value = "";
  bodyIn.value = '{\n  "text": ""\n}';
  (typeIn.value ? idIn : typeIn).focus();
}

function edit(rec) {
  const { type, id, version, ...fields } = rec;
  typeIn.value = type;
  idIn.value = id;
  bodyIn.value = JSON.stringify(fields, null, 2);
  formError.textContent = "";
  bodyIn.focus();
}

function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...kids.filter((k) => k !== null && k !== undefined));
  return e;
}

function renderStatus() {
  const s = db.status;
  const state = $("#state");
  state.className = "state " + (s.online ? "online" : "offline") + (s.staged ? " waiting" : "");
  $("#status").textContent = s.online ? "Online" : "Offline";
  $("#status").title = s.online ? `server version ${s.serverVersion}` : s.lastError || "";
  $("#staged").textContent = s.staged === 0
    ? (s.online ? "all changes saved" : "no changes waiting")
    : `${s.staged} ${s.staged === 1 ? "change" : "changes"} waiting to be sent`;
}

function renderList() {
  const list = $("#list");
  const recs = db.list();
  list.replaceChildren();
  if (!recs.length) {
    list.append(el("p", { class: "empty" }, "No records yet. Add one with the form, or save a file in a synced folder."));
    return;
  }
  const byType = Map.groupBy(recs, (r) => r.type);
  for (const [type, group] of byType) {
    const rows = group.map((rec) => {
      const { type: t, id, version, ...fields } = rec;
      const key = `${t}/${id}`;
      const waiting = db.isStaged(t, id);
      return el("tr", { "data-key": key, class: flashing.has(key) ? "flash" : "" },
        el("td", { class: "id" }, id, waiting ? el("span", { class: "badge waiting", title: "not yet on the server" }, "waiting") : null),
        el("td", { class: "fields" }, el("code", {}, JSON.stringify(fields))),
        el("td", { class: "actions" },
          el("button", { class: "small", type: "button", onclick: () => edit(rec) }, "Edit"), " ",
          el("button", { class: "small danger", type: "button", onclick: () => db.delete(t, id) }, "Delete")));
    });
    list.append(
      el("h3", {}, `${type} (${group.length})`),
      el("table", { "data-type": type },
        el("thead", {}, el("tr", {}, el("th", {}, "id"), el("th", {}, "fields"), el("th", {}))),
        el("tbody", {}, ...rows)));
  }
}

function renderConflicts() {
  const box = $("#conflicts");
  box.replaceChildren(...db.conflicts().map((c) => el("div", { class: "notice", "data-conflict": `${c.type}/${c.id}` },
    el("strong", {}, `${c.type}/${c.id} was changed here and on the server. `),
    c.theirsDeleted ? "It was deleted on the server; your version is below." : `The server's version is shown in the list (${c.reason}); yours is below.`,
    el("pre", {}, JSON.stringify(c.ours, null, 2)),
    el("div", { class: "buttons" },
      el("button", { class: "small", type: "button", onclick: () => db.resolveConflict(c.n, "mine") }, "Use mine"),
      el("button", { class: "small secondary", type: "button", onclick: () => db.resolveConflict(c.n, "theirs") }, "Keep the server's")))));
  const rej = db.status.rejected;
  $("#rejected").replaceChildren(...(rej.length ? [el("div", { class: "notice bad" },
    el("strong", {}, "The server refused these changes: "),
    rej.map((r) => `${r.type}/${r.id} (${r.code}: ${r.message})`).join("; "), " ",
    el("button", { class: "small secondary", type: "button", onclick: () => db.clearRejected() }, "Dismiss"))] : []));
}

function render() {
  renderStatus();
  renderList();
  renderConflicts();
}

db.subscribe((ev) => {
  if (ev.type === "change" && ev.origin === "remote") {
    for (const k of ev.keys) flashing.add(`${k.type}/${k.id}`);
    setTimeout(() => {
      for (const k of ev.keys) flashing.delete(`${k.type}/${k.id}`);
    }, 1500);
  }
  if (ev.type === "status") renderStatus();
  else render();
});
render();
document.body.dataset.ready = "true";

// Keep a copy of the page so that it opens while the server is away.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js")
    .then(() => navigator.serviceWorker.ready)
    .then(() => { document.body.dataset.offlineReady = "true"; })
    .catch((e) => console.warn("synk: no offline copy of the page:", e));
}
