// async-request.js: a dependency-free browser client for async-request (ES module, no build).
//
// const client = new AsyncRequestClient({ token: () => jwt });
// const op = await client.submit("/api/v1/reports/", { method: "POST", body, headers });
// op.on("progress", p => ...); const body = await op.done;
//
// One push connection per client, shared by every operation: a WebSocket (ticket auth, resume
// by seq), else Server-Sent Events, else polling the status URL. See README.md next to this file.

/** @typedef {"pending"|"running"|"completed"|"failed"|"cancelled"} State */
/** @typedef {{current: number, total: number|null, percent: number|null, message: string|null, updated_at: string}} Progress */
/** @typedef {{task_id: string, status: State, action?: string, seq?: number, progress?: Progress|null, error?: unknown}} TaskEvent */
/** @typedef {"websocket"|"sse"|"poll"} Transport */

export const TERMINAL = Object.freeze(["completed", "failed", "cancelled"]);
const DEFAULT_RESULTS_PATH = "/api/v1/async_background_response/";
/** After this many WebSocket (or SSE) failures in a row without a subscription, "auto" moves on. */
const FAILURES_BEFORE_FALLBACK = 3;
/** How long an event for an id nobody tracks (yet) is kept: submit() may still be in flight. */
const BUFFER_MS = 60_000;
const BUFFER_MAX = 500;
const PING_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;

/** An HTTP answer the client did not expect; `status` and `body` are the server's. */
export class AsyncRequestError extends Error {
  /** @param {string} message @param {number} [status] @param {unknown} [body] */
  constructor(message, status, body) {
    super(message);
    this.name = "AsyncRequestError";
    this.status = status;
    this.body = body;
  }
}

/** Reconnect delay for attempt n (0-based): exponential, capped, with "equal jitter". */
export function backoff(attempt, { min = 500, max = 15_000, random = Math.random } = {}) {
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Seconds of a Retry-After header (delta-seconds or an HTTP date) in ms, or `fallback`. */
export function retryAfterMs(value, fallback = 1000, now = Date.now()) {
  if (value == null || value === "") return fallback;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? fallback : Math.max(0, date - now);
}

/**
 * Turn one WebSocket text frame into `{kind, ...}`: kind "event" (with `event`), "subscribed",
 * "resumed", "gap", "error", "pong", "status", or "ignore" for anything unknown or malformed.
 * @param {string} text
 */
export function parseFrame(text) {
  let frame;
  try { frame = JSON.parse(text); } catch { return { kind: "ignore" }; }
  if (!frame || typeof frame !== "object") return { kind: "ignore" };
  if (frame.type === "data") {
    let event = frame.data;
    if (typeof event === "string") {
      try { event = JSON.parse(event); } catch { return { kind: "ignore" }; }
    }
    if (!event || typeof event.task_id !== "string" || typeof event.status !== "string") {
      return { kind: "ignore" };
    }
    return { kind: "event", event };
  }
  if (["subscribed", "resumed", "gap", "error", "pong", "status"].includes(frame.type)) {
    return { kind: frame.type, ...frame };
  }
  return { kind: "ignore" };
}

/**
 * Seen-seq bookkeeping: `accept(seq)` is false for a seq already handled. `resumeAfter` is the
 * highest seq up to which every one was seen (from the first one seen): what a reconnect asks
 * for, so an event that arrived late (seq 5 after 6) is not skipped by resuming after 6.
 */
export class SeqTracker {
  constructor(limit = 2000) {
    this.last = 0;
    this.resumeAfter = 0;
    this._seen = new Set();
    this._limit = limit;
  }
  /** @param {number|undefined|null} seq */
  accept(seq) {
    if (typeof seq !== "number") return true; // events without a seq cannot be de-duplicated
    if (this._seen.has(seq) || seq <= this._floor()) return false;
    if (this.resumeAfter === 0 && this._seen.size === 0) this.resumeAfter = seq - 1;
    this._seen.add(seq);
    if (seq > this.last) this.last = seq;
    while (this._seen.has(this.resumeAfter + 1)) this.resumeAfter += 1;
    if (this._seen.size > this._limit) this._prune();
    return true;
  }
  /** The server sent all it has up to `seq` (a `resumed` or `gap` frame): none below will come. */
  complete(seq) {
    if (typeof seq !== "number" || seq <= this.resumeAfter) return;
    this.resumeAfter = seq;
    while (this._seen.has(this.resumeAfter + 1)) this.resumeAfter += 1;
    if (this.resumeAfter > this.last) this.last = this.resumeAfter;
    this._prune();
  }
  _floor() { return this._pruned ?? 0; }
  _prune() {
    // Seqs at or below the watermark need no entry: `accept` refuses them by comparison.
    for (const seq of this._seen) if (seq <= this.resumeAfter) this._seen.delete(seq);
    this._pruned = this.resumeAfter;
    while (this._seen.size > this._limit) this._seen.delete(this._seen.values().next().value);
  }
}

class Emitter {
  constructor() { /** @type {Map<string, Set<Function>>} */ this._handlers = new Map(); }
  /** Call `handler` on each `name` event; returns a function that unsubscribes it. */
  on(name, handler) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this._handlers.get(name)?.delete(handler);
  }
  _emit(name, value) {
    for (const handler of [...(this._handlers.get(name) ?? [])]) {
      try { handler(value); } catch (error) { queueMicrotask(() => { throw error; }); }
    }
  }
}

/** One deferred request: `id`, live `state` / `progress`, events, `done`, `cancel()`. */
export class Operation extends Emitter {
  /** @param {AsyncRequestClient} client @param {string} id @param {string} statusUrl */
  constructor(client, id, statusUrl) {
    super();
    this.client = client;
    this.id = id;
    this.statusUrl = statusUrl;
    /** @type {State} */ this.state = "pending";
    /** @type {Progress|null} */ this.progress = null;
    /** @type {any} the status body once ended */ this.result = null;
    this._refreshing = null;
    /** @type {Promise<any>} resolves with the status body once completed, failed or cancelled */
    this.done = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    this.done.catch(() => {}); // a rejection nobody awaits is not an unhandled one
  }

  get finished() { return this.result !== null; }

  /** Apply a pushed event (or a status body) to this operation. @param {TaskEvent} event */
  _apply(event) {
    if (this.finished) return;
    const progress = event.progress;
    const last = this.progress;
    if (progress && (!last || progress.updated_at !== last.updated_at
        || progress.current !== last.current || progress.percent !== last.percent)) {
      this.progress = progress;
      this._emit("progress", progress);
    }
    // Never backwards: the web process tells "pending" after its 202, and a quick worker's
    // "running" can be told first.
    if (event.status && rank(event.status) > rank(this.state)) {
      this.state = event.status;
      this._emit("state", event.status);
    }
    if (TERMINAL.includes(event.status)) {
      this.refresh().catch((error) => this._emit("error", error));
    }
  }

  /** GET the status body once (shared by concurrent callers); settles `done` when it ended. */
  refresh() {
    if (this.finished) return Promise.resolve(this.result);
    if (!this._refreshing) {
      this._refreshing = this._fetchStatus().finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async _fetchStatus() {
    const response = await this.client._fetch(this.statusUrl, { method: "GET" });
    const body = await readBody(response);
    if (response.status === 202) {
      if (body?.progress) this._apply({ task_id: this.id, status: body.state, progress: body.progress });
      else if (body?.state) this._apply({ task_id: this.id, status: body.state });
      return { body, retryAfter: retryAfterMs(response.headers.get("retry-after")) };
    }
    if (response.status === 200 && body && TERMINAL.includes(body.state)) {
      this._finish(body);
      return body;
    }
    const error = new AsyncRequestError(`status of ${this.id}: HTTP ${response.status}`,
      response.status, body);
    if (response.status === 404 || response.status === 410) this._fail(error);
    throw error;
  }

  _finish(body) {
    if (this.finished) return;
    this.result = body;
    if (body.progress) this.progress = body.progress;
    if (this.state !== body.state) { this.state = body.state; this._emit("state", body.state); }
    this._emit("done", body);
    this._resolve(body);
    this.client._forget(this);
  }

  _fail(error) {
    if (this.finished) return;
    this.result = { state: this.state, error: String(error) };
    this._emit("error", error);
    this._reject(error);
    this.client._forget(this);
  }

  /** DELETE the operation: resolves with the cancel body (409 rejects: it already ended). */
  async cancel() {
    const response = await this.client._fetch(this.statusUrl, { method: "DELETE" });
    const body = await readBody(response);
    if (!response.ok) {
      throw new AsyncRequestError(`cancel ${this.id}: HTTP ${response.status}`, response.status, body);
    }
    if (body?.state === "cancelled") this._apply({ task_id: this.id, status: "cancelled" });
    return body;
  }

  /** POST `{id}/rerun/`: a new Operation running the same request again. */
  async rerun() {
    const response = await this.client._fetch(joinUrl(this.statusUrl, "rerun/"), { method: "POST" });
    return this.client._accepted(response, `rerun ${this.id}`);
  }
}

function rank(state) { return TERMINAL.includes(state) ? 2 : state === "running" ? 1 : 0; }

function joinUrl(base, tail) { return base.endsWith("/") ? base + tail : `${base}/${tail}`; }

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

/**
 * The client: submits deferred requests and keeps one push connection for all of them.
 *
 * Options: `baseUrl` ("" = this origin), `token` (a JWT or a function returning one, maybe
 * async), `channel` (anonymous: a channel name, or `true` for a fresh one; used when no token),
 * `transport` ("auto" | "websocket" | "sse" | "poll"), `resultsPath`, `wsPath` ("/ws/"),
 * `fetch`, `WebSocket`, `EventSource` (for tests and other runtimes), `backoff` ({min, max} ms).
 */
export class AsyncRequestClient extends Emitter {
  constructor(options = {}) {
    super();
    const transport = options.transport ?? "auto";
    if (!["auto", "websocket", "sse", "poll"].includes(transport)) {
      throw new TypeError(`transport must be auto, websocket, sse or poll, got ${transport}`);
    }
    this.baseUrl = (options.baseUrl ?? "").replace(/\/$/, "");
    this.token = options.token;
    this.channel = options.channel;
    this.resultsPath = options.resultsPath ?? DEFAULT_RESULTS_PATH;
    this.wsPath = options.wsPath ?? "/ws/";
    this.transport = transport;
    this._backoff = options.backoff ?? {};
    this._fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._EventSource = options.EventSource ?? globalThis.EventSource;
    /** @type {Map<string, Operation>} */ this.operations = new Map();
    /** @type {Map<string, {at: number, events: TaskEvent[]}>} */ this._buffer = new Map();
    this.seq = new SeqTracker();
    /** @type {Transport|null} the transport in use now */ this.active = null;
    this.connected = false;
    this._closed = false;
    this._failures = 0;
    this._attempt = 0;
    this._socket = null;
    this._timer = null;
    this._ready = null;
    this._markReady = null;
    this._newChannel = null;
  }

  // -- HTTP --------------------------------------------------------------------------------

  async _credentialHeaders() {
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (token) return { authorization: `Bearer ${token}` };
    // Anonymous: the channel name is the credential of the results endpoints too.
    return { "x-async-request": await this._channelName() };
  }

  _channelName() {
    if (typeof this.channel === "string") return Promise.resolve(this.channel);
    // One request however many callers ask at once: two names would be two owners.
    this._newChannel ??= this._fetchImpl(this.url(`${this.resultsPath}channels/`), { method: "POST" })
      .then(async (response) => {
        const body = await readBody(response);
        if (!response.ok || !body?.channel) {
          throw new AsyncRequestError(`new channel: HTTP ${response.status}`, response.status, body);
        }
        this.channel = body.channel;
        return this.channel;
      })
      .finally(() => { this._newChannel = null; });
    return this._newChannel;
  }

  get anonymous() { return !this.token; }

  /** An absolute (or origin-relative) URL for `path`. */
  url(path) { return /^[a-z]+:/i.test(path) ? path : this.baseUrl + path; }

  /** fetch() with the caller's credential added. */
  async _fetch(path, init = {}) {
    const headers = new Headers(init.headers ?? {});
    for (const [name, value] of Object.entries(await this._credentialHeaders())) {
      if (!headers.has(name)) headers.set(name, value);
    }
    return this._fetchImpl(this.url(path), { ...init, headers });
  }

  /**
   * Send `path` to the background (`X-Async-Request`); resolves with its Operation once the
   * server answered 202. Any other answer rejects with an AsyncRequestError holding it.
   */
  async submit(path, init = {}) {
    this._ensureConnection();
    const headers = new Headers(init.headers ?? {});
    headers.set("x-async-request", this.anonymous ? await this._channelName() : "true");
    // Subscribe first (briefly): an event of this op then reaches us, never only the log.
    await Promise.race([this._ready, sleep(3000)]);
    const response = await this._fetch(path, { ...init, headers });
    return this._accepted(response, `${init.method ?? "GET"} ${path}`);
  }

  async _accepted(response, what) {
    const body = await readBody(response);
    const id = body?.meta?.async_request_id ?? body?.task_id;
    if (response.status !== 202 || typeof id !== "string") {
      throw new AsyncRequestError(`${what}: expected 202, got HTTP ${response.status}`,
        response.status, body);
    }
    const location = response.headers.get("location");
    return this.track(id, location ?? `${this.resultsPath}${id}/`,
      retryAfterMs(response.headers.get("retry-after")));
  }

  /** Follow an operation by id (one submitted elsewhere, e.g. before a page reload). */
  track(id, statusUrl = `${this.resultsPath}${id}/`, firstPollMs = 1000) {
    const known = this.operations.get(id);
    if (known) return known;
    const op = new Operation(this, id, statusUrl);
    this.operations.set(id, op);
    this._emit("operation", op);
    const early = this._buffer.get(id);
    this._buffer.delete(id);
    for (const event of early?.events ?? []) op._apply(event);
    this._ensureConnection();
    // Without a live push connection (poll, or connecting): ask the status URL ourselves.
    if (!this.connected) this._poll(op, firstPollMs);
    return op;
  }

  _forget(op) { this.operations.delete(op.id); }

  /** GET the caller's operations: `{data: [...], meta: {next_cursor}}`. */
  async list({ state, limit, cursor } = {}) {
    const query = new URLSearchParams();
    if (state) query.set("state", Array.isArray(state) ? state.join(",") : state);
    if (limit != null) query.set("limit", String(limit));
    if (cursor) query.set("cursor", cursor);
    const suffix = query.size ? `?${query}` : "";
    const response = await this._fetch(`${this.resultsPath}${suffix}`, { method: "GET" });
    const body = await readBody(response);
    if (!response.ok) throw new AsyncRequestError(`list: HTTP ${response.status}`, response.status, body);
    return body;
  }

  // -- events ------------------------------------------------------------------------------

  /** Route one pushed event to its operation, or buffer it until submit() knows the id. */
  _event(event, seq = event.seq) {
    if (!this.seq.accept(seq)) return;
    this._emit("event", event);
    const op = this.operations.get(event.task_id);
    if (op) { op._apply(event); return; }
    const now = Date.now();
    for (const [id, entry] of this._buffer) {
      if (now - entry.at > BUFFER_MS || this._buffer.size > BUFFER_MAX) this._buffer.delete(id);
    }
    const entry = this._buffer.get(event.task_id) ?? { at: now, events: [] };
    entry.events.push(event);
    this._buffer.set(event.task_id, entry);
  }

  /** Re-read every unfinished operation's status (after a gap or a fresh subscription). */
  _refreshAll() {
    for (const op of this.operations.values()) op.refresh().catch(() => {});
  }

  async _poll(op, delay) {
    if (op._polling) return;
    op._polling = true;
    try {
      await sleep(delay);
      await this._pollLoop(op);
    } finally {
      op._polling = false;
    }
  }

  async _pollLoop(op) {
    while (!op.finished && !this._closed && !this.connected) {
      let wait = 2000;
      try {
        const answer = await op.refresh();
        if (op.finished) return;
        wait = Math.min(answer?.retryAfter ?? 1000, 5000);
      } catch (error) {
        if (op.finished) return;
        this._emit("error", error);
      }
      await sleep(wait);
    }
  }

  // -- the push connection -----------------------------------------------------------------

  _ensureConnection() {
    if (this._closed || this.active !== null) return;
    this.active = this.transport === "auto" ? "websocket" : this.transport;
    this._ready = new Promise((resolve) => { this._markReady = resolve; });
    if (this.active === "poll") { this._markReady(); return; }
    this._connect();
  }

  _connected(resumed) {
    this.connected = true;
    this._attempt = 0;
    this._failures = 0;
    this._markReady?.();
    this._emit("connection", { transport: this.active, connected: true });
    // A first subscription has no `after` to resume from: what happened meanwhile is in the
    // status bodies. A resume replays the log instead (and says "gap" when it cannot).
    if (!resumed) this._refreshAll();
  }

  _disconnected(fatal) {
    const was = this.connected;
    this.connected = false;
    this._socket = null;
    clearInterval(this._pinger);
    if (this._closed) return;
    if (was) this._emit("connection", { transport: this.active, connected: false });
    else this._failures += 1;
    if (fatal || (this.transport === "auto" && this._failures >= FAILURES_BEFORE_FALLBACK)) {
      this._fallBack();
      if (this.active === "poll") return;
    }
    for (const op of this.operations.values()) this._poll(op, 1000);
    const delay = backoff(this._attempt++, this._backoff);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _fallBack() {
    const next = this.transport === "auto" && this.active === "websocket" ? "sse" : "poll";
    this._failures = 0;
    this._attempt = 0;
    this.active = next;
    this._emit("connection", { transport: next, connected: false });
    if (next === "poll") {
      this._markReady?.();
      for (const op of this.operations.values()) this._poll(op, 0);
    }
  }

  async _connect() {
    if (this._closed) return;
    let credential;
    try {
      credential = await this._subscribeQuery();
    } catch (error) {
      this._emit("error", error);
      this._disconnected(false);
      return;
    }
    if (this._closed) return;
    const after = this.seq.last > 0 ? this.seq.resumeAfter : null;
    if (after !== null) credential.set("after", String(after));
    if (this.active === "websocket") this._openSocket(credential, after !== null);
    else this._openEventSource(credential, after !== null);
  }

  async _subscribeQuery() {
    if (this.anonymous) return new URLSearchParams({ channel: await this._channelName() });
    // A fresh ticket each time: it is short-lived, and never the JWT in a URL.
    const response = await this._fetch(`${this.resultsPath}tickets/`, { method: "POST" });
    const body = await readBody(response);
    if (response.status !== 201 || !body?.ticket) {
      throw new AsyncRequestError(`ticket: HTTP ${response.status}`, response.status, body);
    }
    return new URLSearchParams({ ticket: body.ticket });
  }

  _wsUrl(query) {
    const origin = this.baseUrl || globalThis.location?.origin || "";
    return `${origin.replace(/^http/, "ws")}${this.wsPath}?${query}`;
  }

  _openSocket(query, resuming) {
    if (!this._WebSocket) { this._disconnected(true); return; }
    const socket = new this._WebSocket(this._wsUrl(query));
    this._socket = socket;
    let fatal = false;
    let waitingPong = null;
    socket.onmessage = (message) => {
      const frame = parseFrame(String(message.data));
      switch (frame.kind) {
        case "event": this._event(frame.event); break;
        case "subscribed":
          if (!resuming) this._connected(false);
          this._pinger = setInterval(() => {
            socket.send(JSON.stringify({ type: "ping" }));
            waitingPong = setTimeout(() => socket.close(), PONG_TIMEOUT_MS);
          }, PING_MS);
          break;
        case "resumed": this.seq.complete(frame.last); this._connected(true); break;
        case "gap": this.seq.complete(frame.last); this._refreshAll(); break;
        case "pong": clearTimeout(waitingPong); break;
        case "error":
          // 4401: the ticket expired or was refused; the next attempt gets a new one.
          if ([4400, 4403, 1011].includes(frame.code)) fatal = true;
          this._emit("error", new AsyncRequestError(frame.detail ?? "error frame", frame.code, frame));
          break;
        default: break;
      }
    };
    socket.onclose = (event) => {
      clearTimeout(waitingPong);
      if (this._socket !== socket) return;
      this._disconnected(fatal || [4400, 4403, 1011].includes(event.code));
    };
  }

  _openEventSource(query, resuming) {
    if (!this._EventSource) { this._disconnected(true); return; }
    const source = new this._EventSource(this.url(`${this.resultsPath}events/?${query}`));
    this._socket = source;
    let opened = false;
    source.onopen = () => {
      opened = true;
      // SSE has no "resumed" frame: the catch-up comes first, in the same stream.
      this._connected(resuming);
    };
    source.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      if (!event || typeof event.task_id !== "string") return;
      const seq = message.lastEventId ? Number(message.lastEventId) : event.seq;
      this._event(event, Number.isFinite(seq) ? seq : undefined);
    };
    source.addEventListener("gap", (message) => {
      try { this.seq.complete(JSON.parse(message.data).last); } catch { /* a gap without data */ }
      this._refreshAll();
    });
    source.onerror = () => {
      // EventSource would retry with the old (soon expired) ticket: we reconnect ourselves.
      source.close();
      if (this._socket !== source) return;
      this._disconnected(false);
      void opened;
    };
  }

  /** Close the push connection of a test or a debug panel, as a network drop would. */
  _debugDrop() {
    const socket = this._socket;
    if (!socket) return false;
    if (this.active === "sse") socket.onerror?.();
    else socket.close();
    return true;
  }

  /** Stop: close the connection and timers; unfinished operations' `done` rejects. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    clearInterval(this._pinger);
    const socket = this._socket;
    this._socket = null;
    socket?.close();
    this.connected = false;
    for (const op of [...this.operations.values()]) op._fail(new AsyncRequestError("client closed"));
  }
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
