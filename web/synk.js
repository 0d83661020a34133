// synk.js: an offline-first replica of synkfs records for the browser.
//
// It keeps every record, the server cursor (epoch and version), the edits
// not yet acknowledged and the body last agreed with the server (the merge
// base) in IndexedDB, and keeps them in step with `synkfs serve` over one
// WebSocket, speaking the protocol of docs/PROTOCOL.md with the ack,
// conflict and snapshot features.
//
//   import { open } from "/synk.js";
//   const db = await open("ws://127.0.0.1:8080/", { name: "notes" });
//   await db.put({ type: "note", id: "1", text: "hello" });
//   db.get("note", "1");          // {type, id, version, text}
//   db.list("note");              // records of one type, by id
//   await db.delete("note", "1");
//   const stop = db.subscribe(ev => render());
//   db.status;                    // {online, staged, conflicts, ...}
//
// Contracts:
//   - put and delete resolve once the edit is durable in IndexedDB: a
//     reload or a closed tab loses none. Edits are pushed in batches with
//     ids that increase per replica and are stored with their content
//     before they are sent, so a batch resent after a lost link is
//     identical and the server applies it once.
//   - A record changed here and on the server is settled like `synkfs sync`
//     settles it by default: fields changed on one side take that side;
//     when the same field changed differently on both sides, the server's
//     version is kept and the local one is saved as a conflict copy
//     (conflicts()), never sent, until the page resolves or dismisses it.
//   - When the server's history is not continuous with the replica's (a
//     new epoch, a compacted history) the replica takes a snapshot and
//     keeps its local edits, re-sending them against the snapshot.
//   - After a lost link it reconnects with capped exponential backoff and
//     full jitter.
//   - One tab at a time holds a given name (a Web Lock): a second tab's
//     open waits until the first closes it, so two tabs never push under
//     the same client id nor overwrite each other's state.

const PROTOCOL = 1;
const FEATURES = ["ack", "conflict", "snapshot"];
const MAX_BATCH = 1000;
const PAGE = 1000;
// Error codes that refuse a batch for what it holds; retrying cannot help.
const TRANSIENT = new Set(["busy", "rate-limit", "internal"]);

/**
 * Opens (creating if needed) the replica called opts.name and starts
 * syncing it with the server at url (default: the page's own server).
 * Options: name (default "default"), token (the server's bearer secret,
 * offered as the "synkfs.bearer.<token>" WebSocket subprotocol beside
 * "synkfs"), minBackoff and maxBackoff in ms
 * (default 250 and 10000), indexedDB (default globalThis.indexedDB),
 * onBlocked (called when another tab has the replica open: open then
 * waits until that tab closes it).
 */
export async function open(url, opts = {}) {
  const r = new Replica(url || defaultURL(), opts);
  await r._lock(opts.onBlocked);
  await r._load();
  r._connect();
  return r;
}

/** defaultURL is the WebSocket URL of the server that served the page. */
export function defaultURL() {
  const l = globalThis.location;
  return (l.protocol === "https:" ? "wss://" : "ws://") + l.host + "/";
}

// ---- JSON values: equality and the three-way merge of docs (package merge)

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** jsonEqual reports whether a and b are the same JSON value (key order aside). */
export function jsonEqual(a, b) {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a), kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * merge3 merges two versions of a JSON object, ours and theirs, derived
 * from base (null: no common ancestor, taken as {}), field by field, as
 * the Go package merge does: a field changed on one side takes that side;
 * changed alike on both, that value; objects on both sides merge
 * recursively; changed differently on both sides is a conflict and keeps
 * ours. Returns {merged, conflicts}, each conflict {path, base, ours, theirs}
 * with undefined where the field is absent.
 */
export function merge3(base, ours, theirs) {
  const conflicts = [];
  const merged = mergeObject([], isObject(base) ? base : {}, ours, theirs, conflicts);
  return { merged, conflicts };
}

function mergeObject(path, b, o, t, conflicts) {
  const keys = [...new Set([...Object.keys(b), ...Object.keys(o), ...Object.keys(t)])].sort(byteOrder);
  const out = {};
  for (const k of keys) {
    const at = (v) => (Object.hasOwn(v, k) ? v[k] : undefined);
    const bv = at(b), ov = at(o), tv = at(t);
    const p = [...path, k];
    let m;
    if (jsonEqual(ov, tv) || (ov === undefined && tv === undefined)) m = ov;
    else if (isObject(ov) && isObject(tv)) m = mergeObject(p, isObject(bv) ? bv : {}, ov, tv, conflicts);
    else if (sameField(bv, ov)) m = tv;
    else if (sameField(bv, tv)) m = ov;
    else {
      m = ov;
      conflicts.push({ path: p, base: bv, ours: ov, theirs: tv });
    }
    if (m !== undefined) out[k] = m;
  }
  return out;
}

const sameField = (a, b) => (a === undefined && b === undefined) || jsonEqual(a, b);

// byteOrder compares strings by their UTF-8 bytes, as Go sorts keys.
function byteOrder(a, b) {
  const ea = utf8.encode(a), eb = utf8.encode(b);
  for (let i = 0; i < ea.length && i < eb.length; i++) {
    if (ea[i] !== eb[i]) return ea[i] - eb[i];
  }
  return ea.length - eb.length;
}
const utf8 = new TextEncoder();

/** pathString joins a field path for display, as the Go side does. */
export function pathString(path) {
  return path
    .map((k) => (k === "" || /[\x00-\x20."\x7f]/.test(k) ? JSON.stringify(k) : k))
    .join(".");
}

// ---- records

const keyOf = (type, id) => JSON.stringify([type, id]);
const RESERVED = new Set(["type", "id", "version"]);

// bodyOf returns the fields of a flat wire record other than the reserved ones.
function bodyOf(rec) {
  const body = {};
  for (const [k, v] of Object.entries(rec)) if (!RESERVED.has(k)) body[k] = v;
  return body;
}

const flat = (type, id, version, body) => ({ type, id, version, ...body });

function cmpRecords(a, b) {
  return byteOrder(a.type, b.type) || byteOrder(a.id, b.id);
}

// ---- IndexedDB helpers

const req = (r) =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });

function openDB(idb, name) {
  const r = idb.open("synk:" + name, 1);
  r.onupgradeneeded = () => {
    const db = r.result;
    db.createObjectStore("records", { keyPath: ["type", "id"] });
    db.createObjectStore("stage", { keyPath: ["type", "id"] });
    db.createObjectStore("conflicts", { keyPath: "n" });
    db.createObjectStore("meta");
  };
  return req(r);
}

// ---- the replica

class Replica {
  constructor(url, opts) {
    this.url = url;
    this.name = opts.name || "default";
    this.token = opts.token || "";
    this.minBackoff = opts.minBackoff || 250;
    this.maxBackoff = Math.max(opts.maxBackoff || 10000, this.minBackoff);
    this._idb = opts.indexedDB || globalThis.indexedDB;
    this._subs = new Set();
    this._queue = Promise.resolve();
    this._sess = null;
    this._attempts = 0;
    this._timer = null;
    this._closed = false;
    this._online = false;
    this._lastError = "";
    this._dirty = newDirty();
    this._pendingConflicts = [];
  }

  // ---- public API

  /** status reports the connection and what waits to be sent. */
  get status() {
    const s = this._sess;
    return {
      online: this._online,
      staged: this._stage.size,
      conflicts: this._conflicts.size,
      rejected: this._st.rejected.slice(),
      epoch: this._st.epoch,
      version: this._st.version,
      serverVersion: s ? s.target : 0,
      lastError: this._lastError,
      attempts: this._attempts,
    };
  }

  /** get returns the record type/id as a flat object, or undefined. */
  get(type, id) {
    const r = this._records.get(keyOf(type, id));
    if (!r || r.deleted) return undefined;
    return flat(r.type, r.id, r.version, structuredClone(r.body));
  }

  /** list returns the live records (of one type if given), by type then id. */
  list(type) {
    const out = [];
    for (const r of this._records.values()) {
      if (r.deleted || (type !== undefined && r.type !== type)) continue;
      out.push(flat(r.type, r.id, r.version, structuredClone(r.body)));
    }
    return out.sort(cmpRecords);
  }

  /** isStaged reports whether type/id has a local edit not yet acknowledged. */
  isStaged(type, id) {
    return this._stage.has(keyOf(type, id));
  }

  /**
   * put creates or replaces a record: {type, id, ...fields} (a version
   * field is ignored). It resolves once the edit is durable locally; it
   * is pushed as soon as the server is reachable.
   */
  async put(record) {
    if (!isObject(record)) throw new TypeError("put: a record is an object");
    const { type, id } = record;
    checkKey(type, id);
    let body;
    try {
      body = JSON.parse(JSON.stringify(bodyOf(record)));
    } catch (e) {
      throw new TypeError("put: the record is not JSON: " + e.message);
    }
    return this._run(async () => {
      const k = keyOf(type, id);
      const cur = this._records.get(k);
      if (cur && !cur.deleted && jsonEqual(cur.body, body)) return;
      this._setRecord({
        type, id,
        version: cur ? cur.version : 0,
        base: cur ? cur.base : null,
        body,
        deleted: false,
      });
      this._stageOne(type, id, false);
      await this._flush();
      this._emit({ type: "change", origin: "local", keys: [{ type, id }] });
      this._kick();
    });
  }

  /** delete removes the record type/id; it resolves once that is durable. */
  async delete(type, id) {
    checkKey(type, id);
    return this._run(async () => {
      const k = keyOf(type, id);
      const cur = this._records.get(k);
      if (!cur || cur.deleted) return false;
      const e = this._stage.get(k);
      if (cur.version === 0 && !cur.base && (!e || !e.batch)) {
        // Never reached the server: forget it.
        this._delRecord(k);
        if (e) this._unstage(k);
      } else {
        this._setRecord({ ...cur, body: null, deleted: true });
        this._stageOne(type, id, true);
      }
      await this._flush();
      this._emit({ type: "change", origin: "local", keys: [{ type, id }] });
      this._kick();
      return true;
    });
  }

  /**
   * subscribe calls fn with every event: {type:"change", origin:"local"|
   * "remote", keys:[{type,id}]}, {type:"status"} or {type:"conflict",
   * conflict}. It returns a function that ends the subscription.
   */
  subscribe(fn) {
    this._subs.add(fn);
    return () => this._subs.delete(fn);
  }

  /**
   * conflicts returns the conflict copies: {n, type, id, time, reason,
   * fields, ours, theirs, theirsDeleted}, oldest first. ours is the local
   * body that lost; the record holds the server's version.
   */
  conflicts() {
    return [...this._conflicts.values()].sort((a, b) => a.n - b.n).map((c) => structuredClone(c));
  }

  /** resolveConflict settles conflict n: "mine" puts the local body back, anything else keeps the record as it is. */
  async resolveConflict(n, keep) {
    const c = this._conflicts.get(n);
    if (!c) return;
    if (keep === "mine") await this.put(flat(c.type, c.id, 0, c.ours));
    await this._run(async () => {
      this._conflicts.delete(n);
      this._dirty.conflicts.add(n);
      await this._flush();
    });
    this._emit({ type: "conflict" });
  }

  /** clearRejected forgets the list of changes the server refused. */
  async clearRejected() {
    await this._run(async () => {
      this._st.rejected = [];
      this._dirty.state = true;
      await this._flush();
    });
    this._emit({ type: "status" });
  }

  /** reconnect drops the link (if any) and connects again now. */
  reconnect() {
    this._attempts = 0;
    if (this._sess) this._sess.ws.close();
    else {
      clearTimeout(this._timer);
      this._connect();
    }
  }

  /** close stops syncing and closes the database. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._sess) this._sess.ws.close(1000);
    globalThis.removeEventListener?.("online", this._onOnline);
    return this._run(async () => {
      this._db.close();
      this._release?.();
    });
  }

  // ---- local state

  // _lock takes the Web Lock of this replica's name and holds it until
  // close; when another tab holds it, it calls onBlocked and waits.
  async _lock(onBlocked) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return;
    const name = "synk:" + this.name;
    const hold = () => new Promise((release) => (this._release = release));
    const got = await new Promise((decided) => {
      locks.request(name, { ifAvailable: true }, (lock) => {
        decided(!!lock);
        return lock ? hold() : undefined;
      });
    });
    if (got) return;
    onBlocked?.();
    await new Promise((acquired) =>
      locks.request(name, () => {
        acquired();
        return hold();
      }),
    );
  }

  async _load() {
    this._db = await openDB(this._idb, this.name);
    const t = this._db.transaction(["records", "stage", "conflicts", "meta"], "readonly");
    const [recs, stage, conflicts, st, sealed] = await Promise.all([
      req(t.objectStore("records").getAll()),
      req(t.objectStore("stage").getAll()),
      req(t.objectStore("conflicts").getAll()),
      req(t.objectStore("meta").get("state")),
      req(t.objectStore("meta").get("sealed")),
    ]);
    this._records = new Map(recs.map((r) => [keyOf(r.type, r.id), r]));
    this._stage = new Map(stage.map((e) => [keyOf(e.type, e.id), e]));
    this._conflicts = new Map(conflicts.map((c) => [c.n, c]));
    this._st = st || {
      epoch: "", version: 0, nextBatch: 0, nextSeq: 0, nextConflict: 0,
      clientId: "browser-" + randomHex(12), rejected: [],
    };
    this._sealed = sealed || null;
    this._dirty = newDirty();
    if (!st) {
      this._dirty.state = true;
      await this._flush();
    }
    this._onOnline = () => {
      if (!this._sess) this.reconnect();
    };
    globalThis.addEventListener?.("online", this._onOnline);
  }

  // _run serialises every change of state: local edits and server
  // messages each run to the end, IndexedDB write included, in order.
  _run(fn) {
    const p = this._queue.then(fn);
    this._queue = p.catch(() => {});
    return p;
  }

  _setRecord(r) {
    const k = keyOf(r.type, r.id);
    this._records.set(k, r);
    this._dirty.records.add(k);
  }

  _delRecord(k) {
    this._records.delete(k);
    this._dirty.records.add(k);
  }

  _unstage(k) {
    this._stage.delete(k);
    this._dirty.stage.add(k);
  }

  _touchStage(k) {
    this._dirty.stage.add(k);
  }

  // _stageOne notes a local change of type/id; a change of a record whose
  // earlier change is in the sealed batch stays staged after that ack.
  _stageOne(type, id, deleted) {
    const k = keyOf(type, id);
    let e = this._stage.get(k);
    if (!e) {
      e = { type, id, deleted, seq: ++this._st.nextSeq, batch: 0, again: false, fresh: false };
      this._stage.set(k, e);
      this._dirty.state = true;
    }
    e.deleted = deleted;
    if (e.batch) e.again = true;
    this._touchStage(k);
  }

  // _flush writes everything changed since the last flush in one
  // transaction. On failure the in-memory state is reloaded from the
  // database, so the two never disagree.
  async _flush() {
    const d = this._dirty;
    this._dirty = newDirty();
    if (!d.state && !d.sealed && !d.records.size && !d.stage.size && !d.conflicts.size) return;
    const t = this._db.transaction(["records", "stage", "conflicts", "meta"], "readwrite");
    const done = new Promise((resolve, reject) => {
      t.oncomplete = resolve;
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error("transaction aborted"));
    });
    try {
      const recs = t.objectStore("records"), stage = t.objectStore("stage");
      const confs = t.objectStore("conflicts"), meta = t.objectStore("meta");
      for (const k of d.records) {
        const r = this._records.get(k);
        if (r) recs.put(r);
        else recs.delete(JSON.parse(k));
      }
      for (const k of d.stage) {
        const e = this._stage.get(k);
        if (e) stage.put(e);
        else stage.delete(JSON.parse(k));
      }
      for (const n of d.conflicts) {
        const c = this._conflicts.get(n);
        if (c) confs.put(c);
        else confs.delete(n);
      }
      if (d.state) meta.put(this._st, "state");
      if (d.sealed) meta.put(this._sealed, "sealed");
      await done;
    } catch (err) {
      try { t.abort(); } catch { /* already finished */ }
      await this._reload();
      throw err;
    }
  }

  async _reload() {
    const t = this._db.transaction(["records", "stage", "conflicts", "meta"], "readonly");
    const [recs, stage, conflicts, st, sealed] = await Promise.all([
      req(t.objectStore("records").getAll()),
      req(t.objectStore("stage").getAll()),
      req(t.objectStore("conflicts").getAll()),
      req(t.objectStore("meta").get("state")),
      req(t.objectStore("meta").get("sealed")),
    ]);
    this._records = new Map(recs.map((r) => [keyOf(r.type, r.id), r]));
    this._stage = new Map(stage.map((e) => [keyOf(e.type, e.id), e]));
    this._conflicts = new Map(conflicts.map((c) => [c.n, c]));
    if (st) this._st = st;
    this._sealed = sealed || null;
    this._dirty = newDirty();
  }

  _emit(ev) {
    for (const fn of this._subs) {
      try {
        fn(ev);
      } catch (e) {
        console.error("synk: subscriber failed", e);
      }
    }
  }

  // ---- batches (client.Replica.NextBatch and Acked)

  // _nextBatch returns the sealed batch, or seals the oldest staged
  // changes into a new one (stored with its id and content), or null.
  _nextBatch() {
    if (this._sealed) return this._sealed;
    const entries = [...this._stage.values()].sort((a, b) => a.seq - b.seq).slice(0, MAX_BATCH);
    if (!entries.length) return null;
    const b = { id: this._st.nextBatch + 1, update: [], delete: [] };
    for (const e of entries) {
      const k = keyOf(e.type, e.id);
      const r = this._records.get(k);
      const base = r && !e.fresh ? r.version : 0;
      if (e.deleted) b.delete.push({ type: e.type, id: e.id, version: base });
      else if (r && !r.deleted) b.update.push(flat(e.type, e.id, base, r.body));
      else {
        this._unstage(k); // nothing left to send
        continue;
      }
      e.batch = b.id;
      e.again = false;
      this._touchStage(k);
    }
    if (!b.update.length && !b.delete.length) return null;
    this._st.nextBatch = b.id;
    this._sealed = b;
    this._dirty.state = this._dirty.sealed = true;
    return b;
  }

  // _acked takes the server's answer to batch b (see client.Replica.Acked).
  _acked(b, ack) {
    const results = new Map((ack.results || []).map((r) => [keyOf(r.type, r.id), r]));
    const keys = [];
    const changes = [
      ...b.update.map((r) => ({ type: r.type, id: r.id, body: bodyOf(r), deleted: false })),
      ...b.delete.map((t) => ({ type: t.type, id: t.id, body: null, deleted: true })),
    ];
    for (const c of changes) {
      const k = keyOf(c.type, c.id);
      const e = this._stage.get(k);
      if (!e || e.batch !== b.id) continue; // settled meanwhile
      const res = results.get(k);
      keys.push({ type: c.type, id: c.id });
      if (ack.duplicate || !res || res.status === "applied") {
        const r = this._records.get(k);
        if (r) {
          const nr = { ...r, base: c.deleted ? null : c.body };
          if (!ack.duplicate && ack.version > 0) nr.version = ack.version;
          this._setRecord(nr);
        }
        this._done(k, e);
      } else if (res.status === "conflict") {
        e.batch = 0;
        this._touchStage(k);
        const deleted = !!res.deleted || !res.current;
        const theirs = res.current
          ? { type: c.type, id: c.id, version: res.current.version, body: bodyOf(res.current) }
          : { type: c.type, id: c.id, version: res.currentVersion || 0, body: null };
        this._settle(e, theirs, deleted);
      } else {
        this._st.rejected.push({
          type: c.type, id: c.id, deleted: c.deleted,
          code: res.code || "", message: res.message || "", time: new Date().toISOString(),
        });
        this._dirty.state = true;
        this._done(k, e);
      }
    }
    this._sealed = null;
    this._dirty.sealed = true;
    return keys;
  }

  _done(k, e) {
    if (e.again) {
      e.batch = 0;
      e.again = e.fresh = false;
      this._touchStage(k);
    } else {
      this._unstage(k);
    }
  }

  // _takeTheirs makes the server's state of a record the local one and its base.
  _takeTheirs(theirs, deleted) {
    if (deleted) {
      this._setRecord({ type: theirs.type, id: theirs.id, version: theirs.version, base: null, body: null, deleted: true });
    } else {
      const body = theirs.body || {};
      this._setRecord({ type: theirs.type, id: theirs.id, version: theirs.version, base: body, body, deleted: false });
    }
  }

  // _settle decides a record with the local change e against the server's
  // state, as `synkfs sync` does with its default strategy (merge, falling
  // back to keep-both).
  _settle(e, theirs, theirsDeleted) {
    const k = keyOf(e.type, e.id);
    const r = this._records.get(k);
    const oursDeleted = e.deleted || !r || r.deleted;
    const ours = oursDeleted ? null : r.body;
    if (oursDeleted && theirsDeleted) {
      this._takeTheirs(theirs, true);
      this._unstage(k);
      return;
    }
    if (!oursDeleted && !theirsDeleted && jsonEqual(ours, theirs.body)) {
      this._takeTheirs(theirs, false);
      this._unstage(k);
      return;
    }
    const base = r ? r.base : null;
    if (oursDeleted && !theirsDeleted && base && jsonEqual(base, theirs.body)) {
      // Deleted here, unchanged there: the delete stands, based on theirs.
      this._setRecord({ type: e.type, id: e.id, version: theirs.version, base, body: null, deleted: true });
      e.batch = 0;
      e.again = e.fresh = false;
      this._touchStage(k);
      return;
    }
    if (theirsDeleted && !oursDeleted && base && jsonEqual(base, ours)) {
      this._takeTheirs(theirs, true); // deleted there, unchanged here
      this._unstage(k);
      return;
    }
    let reason = "";
    let fields = [];
    if (!oursDeleted && !theirsDeleted) {
      const { merged, conflicts } = merge3(r.base, ours, theirs.body);
      if (!conflicts.length) {
        this._setRecord({ type: e.type, id: e.id, version: theirs.version, base: theirs.body, body: merged, deleted: false });
        if (jsonEqual(merged, theirs.body)) this._unstage(k);
        else {
          e.batch = 0;
          e.again = e.fresh = false;
          this._touchStage(k);
        }
        return;
      }
      fields = conflicts.map((c) => pathString(c.path));
      reason = "fields changed on both sides: " + fields.join(" ");
    }
    // Keep both: the server's version takes the record, the local one is
    // kept as a conflict copy (a local delete needs none: nothing typed is lost).
    if (!oursDeleted) {
      const n = ++this._st.nextConflict;
      const c = {
        n, type: e.type, id: e.id, time: new Date().toISOString(),
        reason: reason || (theirsDeleted ? "changed here but deleted on the server" : "changed on both sides"),
        fields, base: r.base, ours, theirs: theirsDeleted ? null : theirs.body, theirsDeleted,
      };
      this._conflicts.set(n, c);
      this._dirty.conflicts.add(n);
      this._dirty.state = true;
      this._pendingConflicts.push(c);
    }
    this._takeTheirs(theirs, theirsDeleted);
    this._unstage(k);
  }

  // _applyRemote applies a changes message and moves the cursor.
  _applyRemote(epoch, ch) {
    const keys = [];
    const one = (theirs, deleted) => {
      const k = keyOf(theirs.type, theirs.id);
      keys.push({ type: theirs.type, id: theirs.id });
      const e = this._stage.get(k);
      if (e) return this._settle(e, theirs, deleted);
      const cur = this._records.get(k);
      if (cur && cur.version >= theirs.version) return; // already have it
      this._takeTheirs(theirs, deleted);
    };
    for (const rec of ch.update || []) one({ type: rec.type, id: rec.id, version: rec.version, body: bodyOf(rec) }, false);
    for (const t of ch.delete || []) one({ type: t.type, id: t.id, version: t.version, body: null }, true);
    const sameEpoch = epoch === this._st.epoch;
    this._st.epoch = epoch;
    this._st.version = sameEpoch ? Math.max(ch.version, this._st.version) : ch.version;
    this._dirty.state = true;
    return keys;
  }

  // _applySnapshot replaces the view of the server by a snapshot, keeping
  // local edits (re-staged as creates in a new history).
  _applySnapshot(epoch, version, records) {
    const newHistory = epoch !== this._st.epoch;
    if (this._sealed) {
      for (const [k, e] of this._stage) {
        e.batch = 0;
        e.again = false;
        this._touchStage(k);
      }
      this._sealed = null;
      this._dirty.sealed = true;
    }
    if (newHistory) {
      for (const [k, e] of this._stage) {
        e.fresh = true;
        this._touchStage(k);
      }
    }
    const seen = new Set();
    for (const rec of records) {
      const k = keyOf(rec.type, rec.id);
      seen.add(k);
      const theirs = { type: rec.type, id: rec.id, version: rec.version, body: bodyOf(rec) };
      const e = this._stage.get(k);
      if (e) {
        this._settle(e, theirs, false);
        continue;
      }
      const cur = this._records.get(k);
      if (cur && !cur.deleted && cur.version === rec.version && jsonEqual(cur.body, theirs.body)) continue;
      this._takeTheirs(theirs, false);
    }
    for (const [k, r] of [...this._records]) {
      if (seen.has(k)) continue;
      const e = this._stage.get(k);
      if (r.deleted) {
        if (e) this._unstage(k); // deleted here, and the server has none either
        this._delRecord(k);
        continue;
      }
      if (e) continue;
      if (newHistory) {
        // The server lost it (a reset): keep it and send it again.
        this._stage.set(k, { type: r.type, id: r.id, deleted: false, seq: ++this._st.nextSeq, batch: 0, again: false, fresh: true });
        this._touchStage(k);
        continue;
      }
      this._delRecord(k);
    }
    this._st.epoch = epoch;
    this._st.version = version;
    this._dirty.state = true;
  }

  // ---- the connection

  _connect() {
    if (this._closed || this._sess) return;
    // A browser cannot set an Authorization header on an upgrade: the
    // secret goes in a subprotocol the server reads and never echoes.
    const protocols = this.token ? ["synkfs", "synkfs.bearer." + this.token] : [];
    let ws;
    try {
      ws = new WebSocket(this.url, protocols);
    } catch (e) {
      this._lastError = String(e.message || e);
      this._retry(false);
      return;
    }
    const s = {
      ws, phase: "hello", epoch: "", cursor: 0, target: 0, lastBatch: 0,
      pulling: false, pullUntil: 0, inflight: null, caughtUp: false,
      snap: null, heard: Date.now(), probe: 0, timer: 0,
    };
    this._sess = s;
    ws.onopen = () => {
      s.heard = Date.now();
      this._send(s, {
        type: "hello", protocol: PROTOCOL, client: this._st.clientId,
        epoch: this._st.epoch, version: this._st.version, features: FEATURES,
      });
    };
    ws.onmessage = (ev) => {
      s.heard = Date.now();
      if (typeof ev.data !== "string") return; // binary frames are zstd: never agreed
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return this._drop(s, "the server sent a message that is not JSON");
      }
      this._run(() => this._handle(s, msg)).catch((err) => this._drop(s, String(err.message || err)));
    };
    ws.onclose = (ev) => {
      if (this._sess !== s) return;
      clearInterval(s.timer);
      this._sess = null;
      const was = this._online;
      this._online = false;
      if (ev.code !== 1000 && ev.code !== 1005 && !this._lastError) {
        this._lastError = ev.reason || (was ? "the link was lost" : "the server cannot be reached");
      }
      this._emit({ type: "status" });
      this._retry(s.caughtUp);
    };
    // Browsers answer the server's pings by themselves but cannot ping:
    // a link quiet for long is probed with a pull, dropped if that too
    // goes unanswered.
    s.timer = setInterval(() => {
      if (this._sess !== s) return;
      const quiet = Date.now() - s.heard;
      if (s.phase !== "ready") {
        if (quiet > 15000) this._drop(s, "the server did not answer in time");
        return;
      }
      if (s.probe && quiet > 15000) this._drop(s, "the server stopped answering");
      else if (!s.probe && quiet > 25000 && !s.pulling && !s.inflight) {
        s.probe = Date.now();
        this._send(s, { type: "changes", version: s.cursor });
      }
    }, 5000);
  }

  _retry(healthy) {
    if (this._closed) return;
    if (healthy) this._attempts = 0;
    const n = this._attempts++;
    const ceil = Math.min(this.maxBackoff, this.minBackoff * 2 ** Math.min(n, 30));
    const delay = Math.floor(Math.random() * (ceil + 1));
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _drop(s, why) {
    if (this._sess !== s) return;
    this._lastError = why;
    try {
      s.ws.close(4000, why.slice(0, 100));
    } catch {
      s.ws.close();
    }
  }

  _send(s, msg) {
    if (s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(msg));
  }

  _kick() {
    const s = this._sess;
    if (s && s.phase === "ready") this._pushNext(s);
  }

  _serverAt(s, v) {
    if (v > s.target) s.target = v;
  }

  async _handle(s, m) {
    if (this._sess !== s || !isObject(m)) return;
    this._pendingConflicts = [];
    s.probe = 0;
    if (m.type === "error") return this._serverError(s, m);
    if (s.phase === "hello") {
      if (m.type !== "welcome") return this._drop(s, "the server did not answer the handshake");
      s.epoch = m.epoch;
      s.cursor = this._st.version;
      s.target = m.version;
      s.lastBatch = m.lastBatch || 0;
      this._online = true;
      this._lastError = "";
      let keys = [];
      // Batches the server applied before the link was lost leave the stage.
      if (this._sealed && this._sealed.id <= s.lastBatch) {
        keys = this._acked(this._sealed, { batch: this._sealed.id, duplicate: true, version: s.target });
      }
      if (m.resync) {
        s.phase = "snapshot";
        this._send(s, { type: "snapshot", limit: PAGE });
      } else {
        s.phase = "ready";
      }
      await this._flush();
      if (keys.length) this._emit({ type: "change", origin: "local", keys });
      this._emit({ type: "status" });
      if (s.phase === "ready") await this._settleIdle(s);
      return;
    }
    if (s.phase === "snapshot") {
      if (m.type === "notify") return this._serverAt(s, m.version);
      if (m.type !== "snapshot-page") return;
      if (!s.snap) s.snap = { epoch: m.epoch, version: m.version, records: [] };
      else if (m.epoch !== s.snap.epoch) return this._drop(s, "the server's epoch changed during a snapshot");
      this._serverAt(s, m.version);
      s.snap.records.push(...(m.records || []));
      if (!m.done && m.next) {
        this._send(s, { type: "snapshot", after: m.next, limit: PAGE });
        return;
      }
      const snap = s.snap;
      s.snap = null;
      this._applySnapshot(snap.epoch, snap.version, snap.records);
      await this._flush();
      s.epoch = snap.epoch;
      s.cursor = snap.version;
      s.phase = "ready";
      this._emitConflicts();
      this._emit({ type: "change", origin: "remote", keys: [] });
      await this._settleIdle(s);
      return;
    }
    switch (m.type) {
      case "changes": {
        if (m.version >= s.pullUntil) s.pulling = false;
        this._serverAt(s, m.version);
        const n = (m.update || []).length + (m.delete || []).length;
        if (m.version > s.cursor || (m.version === s.cursor && n > 0)) {
          const keys = this._applyRemote(s.epoch, m);
          await this._flush();
          s.cursor = m.version;
          this._emitConflicts();
          if (keys.length) this._emit({ type: "change", origin: "remote", keys });
        }
        break;
      }
      case "notify":
        this._serverAt(s, m.version);
        break;
      case "ack": {
        if (!s.inflight || m.batch !== s.inflight.id) break;
        if (m.duplicate) s.pulling = false;
        else s.pullUntil = Math.max(s.pullUntil, m.version);
        this._serverAt(s, m.version);
        const b = s.inflight;
        s.inflight = null;
        const keys = this._acked(b, m);
        await this._flush();
        this._emitConflicts();
        this._emit({ type: "change", origin: "local", keys });
        break;
      }
      default:
        return; // a message this client does not know: ignored
    }
    await this._settleIdle(s);
  }

  // _settleIdle pushes what is staged and pulls what the server has.
  async _settleIdle(s) {
    await this._pushNext(s);
    this._maybePull(s);
    if (!s.inflight && !s.pulling && s.target <= s.cursor && !s.caughtUp) {
      s.caughtUp = true;
      this._attempts = 0;
    }
    this._emit({ type: "status" });
  }

  _emitConflicts() {
    for (const c of this._pendingConflicts || []) this._emit({ type: "conflict", conflict: structuredClone(c) });
    this._pendingConflicts = [];
  }

  async _pushNext(s) {
    if (this._sess !== s || s.phase !== "ready" || s.inflight) return;
    const wasSealed = !!this._sealed;
    const b = this._nextBatch();
    if (!b) return;
    if (!wasSealed) await this._flush(); // durable before it is sent
    if (this._sess !== s) return;
    s.inflight = b;
    s.pulling = true;
    s.pullUntil = s.target;
    this._send(s, { type: "changes", version: s.cursor, batch: b.id, update: b.update, delete: b.delete });
  }

  _maybePull(s) {
    if (s.pulling || s.target <= s.cursor) return;
    s.pulling = true;
    s.pullUntil = s.target;
    this._send(s, { type: "changes", version: s.cursor });
  }

  // _serverError: a batch refused for good is rejected record by record;
  // anything else ends the link (the reconnect backoff retries).
  async _serverError(s, e) {
    const why = (e.code || "error") + ": " + (e.message || "");
    if (!e.batch || !s.inflight || e.batch !== s.inflight.id || TRANSIENT.has(e.code)) {
      return this._drop(s, why);
    }
    const b = s.inflight;
    s.inflight = null;
    s.pulling = false;
    const results = [...b.update, ...b.delete].map((r) => ({
      type: r.type, id: r.id, status: "rejected", code: e.code, message: e.message,
    }));
    const keys = this._acked(b, { batch: b.id, results });
    await this._flush();
    this._emit({ type: "change", origin: "local", keys });
    await this._settleIdle(s);
  }
}

function newDirty() {
  return { records: new Set(), stage: new Set(), conflicts: new Set(), state: false, sealed: false };
}

function checkKey(type, id) {
  if (typeof type !== "string" || type === "") throw new TypeError("a record needs a type (a non-empty string)");
  if (typeof id !== "string" || id === "") throw new TypeError("a record needs an id (a non-empty string)");
}

function randomHex(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
