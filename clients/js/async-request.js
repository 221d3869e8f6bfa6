// async-request.js: a dependency-free browser client for async-request (ES module, no build
// needed; `npm run build` makes the minified copy and checks its size).
//
// const response = await asyncFetch("/api/v1/reports/", { method: "POST", body }, {
//   onProgress: (p) => (bar.value = p.percent), signal });   // a real Response, as fetch's
// const page = await listOperations({ state: "running" });
//
// The lower level: const op = await client.submit(path, init); op.on("progress", ...); op.done.
//
// One push connection per client, shared by every operation: a WebSocket (ticket auth, resume
// by seq), else Server-Sent Events, else polling the status URL. See README.md next to this file.

/** @typedef {"pending"|"running"|"completed"|"failed"|"cancelled"} State */
/** @typedef {{current: number, total: number|null, percent: number|null, message: string|null, updated_at: string}} Progress */
/** @typedef {{task_id: string, status: State, action?: string, seq?: number, progress?: Progress|null, error?: unknown}} TaskEvent */
/** @typedef {"websocket"|"sse"|"poll"} Transport */

export const TERMINAL = Object.freeze(["completed", "failed", "cancelled"]);
const DEFAULT_RESULTS_PATH = "/api/v1/async_background_response/";
/** The order "auto" tries them in; one whose class this runtime lacks is skipped. */
const TRANSPORTS = ["websocket", "sse", "poll"];
/** After this many WebSocket (or SSE) failures in a row without a subscription, "auto" moves on. */
const FAILURES_BEFORE_FALLBACK = 3;
/** How long an event for an id nobody tracks (yet) is kept: submit() may still be in flight. */
const BUFFER_MS = 60_000;
const BUFFER_MAX = 500;
const PING_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
/** Close codes after which reconnecting cannot help (bad request, forbidden, server error). */
const FATAL_CODES = [4400, 4403, 1011];
/** Where a tab may have slept or been offline: check the connection and catch up at once. */
const WAKE_EVENTS = ["visibilitychange", "online", "pageshow"];
/** Statuses whose Response must have no body (the constructor throws otherwise). */
const NULL_BODY = [204, 205, 304];

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
  const frame = parseJson(text);
  if (frame?.type === "data") {
    const event = typeof frame.data === "string" ? parseJson(frame.data) : frame.data;
    return isEvent(event) ? { kind: "event", event } : { kind: "ignore" };
  }
  return ["subscribed", "resumed", "gap", "error", "pong", "status"].includes(frame?.type)
    ? { kind: frame.type, ...frame } : { kind: "ignore" };
}

function parseJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

function isEvent(event) {
  return typeof event?.task_id === "string" && typeof event.status === "string";
}

/**
 * The route's own answer, rebuilt from a completed operation's status body: `status`,
 * `headers` and the body bytes (`response` as `encoding` says: base64 of the bytes, text, or
 * parsed JSON, serialised again). `url` becomes the Response's `url`.
 * @param {{status: number, headers?: [string, string][], response?: unknown, encoding?: string}} body
 * @param {string} [url]
 */
export function responseFrom(body, url = "") {
  const headers = new Headers();
  // The length (and a transfer coding) described the original bytes on the original wire.
  for (const [name, value] of body.headers ?? []) {
    if (!/^(content-length|transfer-encoding)$/i.test(name)) headers.append(name, value);
  }
  let bytes = null;
  if (!NULL_BODY.includes(body.status)) {
    const value = body.response;
    if (body.encoding === "base64") bytes = Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
    else {
      const text = body.encoding === "json" ? JSON.stringify(value) : String(value ?? "");
      // The server decoded text with the charset it named: latin-1 maps back byte for byte.
      bytes = /charset=(?!"?utf-?8)/i.test(headers.get("content-type")) && !/[^\0-\xff]/.test(text)
        ? Uint8Array.from(text, (c) => c.charCodeAt(0)) : new TextEncoder().encode(text);
    }
  }
  const response = new Response(bytes, { status: body.status, headers });
  Object.defineProperty(response, "url", { value: url });
  return response;
}

/** The completed operation's Response; a failed or cancelled one rejects with its body. */
function outcome(body, url) {
  if (body?.state === "completed") return responseFrom(body, url);
  throw new AsyncRequestError(`operation ${body?.task_id} ${body?.state}: ${body?.error ?? ""}`,
    body?.status ?? undefined, body);
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
    this._floor = 0;
  }
  /** @param {number|undefined|null} seq */
  accept(seq) {
    if (typeof seq !== "number") return true; // events without a seq cannot be de-duplicated
    if (this._seen.has(seq) || seq <= this._floor) return false;
    if (this.resumeAfter === 0 && this._seen.size === 0) this.resumeAfter = seq - 1;
    this._seen.add(seq);
    if (seq > this.last) this.last = seq;
    this._advance();
    if (this._seen.size > this._limit) this._prune();
    return true;
  }
  /** The server sent all it has up to `seq` (a `resumed` or `gap` frame): none below will come. */
  complete(seq) {
    if (typeof seq !== "number" || seq <= this.resumeAfter) return;
    this.resumeAfter = seq;
    this._advance();
    if (this.resumeAfter > this.last) this.last = this.resumeAfter;
    this._prune();
  }
  _advance() { while (this._seen.has(this.resumeAfter + 1)) this.resumeAfter += 1; }
  _prune() {
    // Seqs at or below the watermark need no entry: `accept` refuses them by comparison.
    for (const seq of this._seen) if (seq <= this.resumeAfter) this._seen.delete(seq);
    this._floor = this.resumeAfter;
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
    if (rank(event.status) > rank(this.state)) this._setState(event.status);
    if (TERMINAL.includes(event.status)) {
      this.refresh().catch((error) => this._emit("error", error));
    }
  }

  _setState(state) {
    this.state = state;
    this._emit("state", state);
  }

  /** GET the status body once (shared by concurrent callers); settles `done` when it ended. */
  refresh() {
    if (this.finished) return Promise.resolve(this.result);
    this._refreshing ??= this._fetchStatus().finally(() => { this._refreshing = null; });
    return this._refreshing;
  }

  async _fetchStatus() {
    const response = await this.client._fetch(this.statusUrl);
    const body = await readBody(response);
    if (response.status === 202) {
      this._apply({ status: body?.state, progress: body?.progress });
      return { body, retryAfter: retryAfterMs(response.headers.get("retry-after")) };
    }
    if (response.status === 200 && TERMINAL.includes(body?.state)) {
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
    if (this.state !== body.state) this._setState(body.state);
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
    const body = await this.client._call(this.statusUrl, "DELETE", `cancel ${this.id}`);
    if (body?.state === "cancelled") this._apply({ status: "cancelled" });
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
  return text ? parseJson(text) ?? text : null;
}

function abortReason(signal) {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
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
    if (transport !== "auto" && !TRANSPORTS.includes(transport)) {
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
    this._ticket = null;
    this._wake = () => this._resync();
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
      .then((response) => this._check(response, "new channel"))
      .then((body) => (this.channel = body.channel))
      .finally(() => { this._newChannel = null; });
    return this._newChannel;
  }

  get anonymous() { return !this.token; }

  /** An absolute (or origin-relative) URL for `path`. */
  url(path) { return /^[a-z]+:/i.test(path) ? path : this.baseUrl + path; }

  /** fetch() with the caller's credential added. */
  async _fetch(path, init = {}) {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(await this._credentialHeaders())) {
      if (!headers.has(name)) headers.set(name, value);
    }
    return this._fetchImpl(this.url(String(path)), { ...init, headers });
  }

  /** `method path` with the credential; its JSON body, or an AsyncRequestError if not 2xx. */
  async _call(path, method, what) {
    return this._check(await this._fetch(path, { method }), what);
  }

  async _check(response, what) {
    const body = await readBody(response);
    if (!response.ok) throw new AsyncRequestError(`${what}: HTTP ${response.status}`, response.status, body);
    return body;
  }

  /** Send `path` deferred (`X-Async-Request`), once subscribed; the server's answer as is. */
  async _send(path, init) {
    this._ensureConnection();
    const headers = new Headers(init.headers);
    headers.set("x-async-request", this.anonymous ? await this._channelName() : "true");
    // Subscribe first (briefly): an event of this op then reaches us, never only the log.
    // The signal stays out: an aborted request may still have been queued, under an id that
    // then nobody would learn (asyncFetch cancels it instead).
    let timer;
    await Promise.race([this._ready, new Promise((resolve) => { timer = setTimeout(resolve, 3000); })]);
    clearTimeout(timer);
    return this._fetch(path, { ...init, headers, signal: undefined });
  }

  /**
   * Send `path` to the background (`X-Async-Request`); resolves with its Operation once the
   * server answered 202. Any other answer rejects with an AsyncRequestError holding it.
   */
  async submit(path, init = {}) {
    return this._accepted(await this._send(path, init), `${init.method ?? "GET"} ${path}`);
  }

  /**
   * `fetch(url, init)`, run in the background: resolves with the route's own Response (any
   * status) once the operation completed. Rejects with an AsyncRequestError when the server
   * refused to defer it (its problem body) or the operation failed or was cancelled (its status
   * body), and with `signal.reason` (an AbortError) when `signal` aborts, which also cancels
   * the operation (DELETE). A server that answered at once (`Prefer: wait`, or no deferral)
   * resolves with that answer. `onState(state, op)` and `onProgress(progress, op)` follow it.
   */
  async asyncFetch(url, init = {}, { onProgress, onState, signal = init.signal } = {}) {
    signal?.throwIfAborted();
    const what = `${init.method ?? "GET"} ${url}`;
    const response = await this._send(url, init);
    if (response.status !== 202) {
      const id = response.headers.get("x-async-request-id");
      // A `Prefer: wait` answer names its operation; a status body (it failed or was
      // cancelled meanwhile) says where it lives.
      if (id ? !response.headers.get("content-location")?.endsWith(`${id}/`) : response.ok) {
        return response;
      }
      const body = await readBody(response);
      if (id) outcome(body);
      throw new AsyncRequestError(`${what}: HTTP ${response.status}`, response.status, body);
    }
    const op = await this._accepted(response, what);
    const tell = (name, handler) => {
      if (handler) op.on(name, (value) => handler(value, op));
    };
    tell("progress", onProgress);
    tell("state", onState);
    onState?.(op.state, op);
    if (op.progress) onProgress?.(op.progress, op);
    return new Promise((resolve, reject) => {
      const abort = () => {
        reject(abortReason(signal));
        if (!op.finished) op.cancel().catch((error) => this._emit("error", error));
      };
      signal?.addEventListener("abort", abort);
      if (signal?.aborted) abort();
      op.done.then((body) => outcome(body, new URL(this.url(String(url)), globalThis.location?.href).href))
        .then(resolve, reject)
        .finally(() => signal?.removeEventListener("abort", abort));
    });
  }

  async _accepted(response, what) {
    const body = await readBody(response);
    const id = body?.meta?.async_request_id ?? body?.task_id;
    if (response.status !== 202 || typeof id !== "string") {
      throw new AsyncRequestError(`${what}: expected 202, got HTTP ${response.status}`,
        response.status, body);
    }
    return this.track(id, response.headers.get("location") ?? undefined,
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

  /** GET the caller's operations, newest first: `{data: [...], meta: {next_cursor}}`. */
  listOperations({ state, limit, cursor } = {}) {
    const query = new URLSearchParams();
    if (state) query.set("state", [state].flat().join(","));
    if (limit != null) query.set("limit", limit);
    if (cursor) query.set("cursor", cursor);
    return this._call(`${this.resultsPath}${query.size ? `?${query}` : ""}`, "GET", "list");
  }

  /** The same as `listOperations` (its first name). */
  list(query) { return this.listOperations(query); }

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
      while (!op.finished && !this._closed && !this.connected) {
        let wait = 2000;
        try {
          wait = Math.min((await op.refresh())?.retryAfter ?? 1000, 5000);
        } catch (error) {
          if (!op.finished) this._emit("error", error);
        }
        if (!op.finished) await sleep(wait);
      }
    } finally {
      op._polling = false;
    }
  }

  // -- the push connection -----------------------------------------------------------------

  /** Whether this runtime has what `transport` needs. */
  _can(transport) {
    return transport === "poll" || !!(transport === "sse" ? this._EventSource : this._WebSocket);
  }

  _ensureConnection() {
    if (this._closed || this.active !== null) return;
    this.active = this.transport === "auto" ? TRANSPORTS.find((t) => this._can(t)) : this.transport;
    this._ready = new Promise((resolve) => { this._markReady = resolve; });
    for (const name of WAKE_EVENTS) globalThis.addEventListener?.(name, this._wake);
    if (this.active === "poll") this._markReady();
    else this._connect();
  }

  /** The tab is back (visible, online, restored): check the connection, catch up now. */
  _resync() {
    if (this._closed || globalThis.document?.visibilityState === "hidden") return;
    if (this.connected) { this._ping(); return; }
    // A reconnect waiting out its backoff goes now; throttled polls ask now.
    if (this._timer) {
      clearTimeout(this._timer);
      this._attempt = 0;
      this._connect();
    }
    this._refreshAll();
  }

  _ping() {
    const socket = this._socket;
    if (this.active !== "websocket" || !socket) return;
    socket.send('{"type":"ping"}');
    clearTimeout(this._pong);
    this._pong = setTimeout(() => this._drop(socket), PONG_TIMEOUT_MS);
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
    clearTimeout(this._pong);
    if (this._closed) return;
    if (was) this._emit("connection", { transport: this.active, connected: false });
    else {
      // Refused before subscribing: maybe for its ticket (expired, from another key).
      this._failures += 1;
      this._ticket = null;
    }
    if (fatal || (this.transport === "auto" && this._failures >= FAILURES_BEFORE_FALLBACK)) {
      this._fallBack();
      if (this.active === "poll") return;
    }
    for (const op of this.operations.values()) this._poll(op, 1000);
    this._timer = setTimeout(() => this._connect(), backoff(this._attempt++, this._backoff));
  }

  _fallBack() {
    const next = this.transport === "auto"
      ? TRANSPORTS.slice(TRANSPORTS.indexOf(this.active) + 1).find((t) => this._can(t)) : "poll";
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
    this._timer = null;
    if (this._closed) return;
    let query;
    try {
      query = await this._subscribeQuery();
    } catch (error) {
      this._emit("error", error);
      this._disconnected(false);
      return;
    }
    if (this._closed) return;
    const after = this.seq.last > 0 ? this.seq.resumeAfter : null;
    if (after !== null) query.set("after", after);
    if (this.active === "websocket") this._openSocket(query, after !== null);
    else this._openEventSource(query, after !== null);
  }

  async _subscribeQuery() {
    if (this.anonymous) return new URLSearchParams({ channel: await this._channelName() });
    // A ticket, never the JWT in a URL. Kept for 90% of its life, so a reconnect costs no
    // request; a new one after it expired or a connect failed.
    if (!(this._ticket?.until > Date.now())) {
      const body = await this._call(`${this.resultsPath}tickets/`, "POST", "ticket");
      this._ticket = { value: body.ticket, until: Date.now() + body.expires_in * 900 };
    }
    return new URLSearchParams({ ticket: this._ticket.value });
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
    socket.onmessage = (message) => {
      const frame = parseFrame(String(message.data));
      switch (frame.kind) {
        case "event": this._event(frame.event); break;
        case "subscribed":
          if (!resuming) this._connected(false);
          this._pinger = setInterval(() => this._ping(), PING_MS);
          break;
        case "resumed": this.seq.complete(frame.last); this._connected(true); break;
        case "gap": this.seq.complete(frame.last); this._refreshAll(); break;
        case "pong": clearTimeout(this._pong); break;
        case "error":
          // 4401: the ticket expired or was refused; the next attempt gets a new one.
          fatal ||= FATAL_CODES.includes(frame.code);
          this._emit("error", new AsyncRequestError(frame.detail ?? "error frame", frame.code, frame));
          break;
        default: break;
      }
    };
    socket.onclose = (event) => {
      if (this._socket === socket) this._disconnected(fatal || FATAL_CODES.includes(event.code));
    };
  }

  _openEventSource(query, resuming) {
    if (!this._EventSource) { this._disconnected(true); return; }
    const source = new this._EventSource(this.url(`${this.resultsPath}events/?${query}`));
    this._socket = source;
    // SSE has no "resumed" frame: the catch-up comes first, in the same stream.
    source.onopen = () => this._connected(resuming);
    source.onmessage = (message) => {
      const event = parseJson(message.data);
      if (!isEvent(event)) return;
      const seq = message.lastEventId ? Number(message.lastEventId) : event.seq;
      this._event(event, Number.isFinite(seq) ? seq : undefined);
    };
    source.addEventListener("gap", (message) => {
      this.seq.complete(parseJson(message.data)?.last);
      this._refreshAll();
    });
    source.onerror = () => {
      // EventSource would retry with the old (maybe expired) ticket: we reconnect ourselves.
      source.close();
      if (this._socket === source) this._disconnected(false);
    };
  }

  /** Close the push connection of a test or a debug panel, as a network drop would. */
  _debugDrop() {
    const socket = this._socket;
    if (!socket) return false;
    if (this.active === "sse") socket.onerror();
    else this._drop(socket);
    return true;
  }

  /** Give up on `socket` now: on a dead network its close handshake (and its `onclose`,
   *  ignored once another socket or none is current) can take 30 s and more (Chromium). */
  _drop(socket) {
    socket.close();
    if (this._socket === socket) this._disconnected(false);
  }

  /** Stop: close the connection and timers; unfinished operations' `done` rejects. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    clearInterval(this._pinger);
    clearTimeout(this._pong);
    for (const name of WAKE_EVENTS) globalThis.removeEventListener?.(name, this._wake);
    const socket = this._socket;
    this._socket = null;
    socket?.close();
    this.connected = false;
    for (const op of [...this.operations.values()]) op._fail(new AsyncRequestError("client closed"));
  }
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

// -- the shared client of the standalone functions -----------------------------------------

let shared = null;

/** Set the options of the client `asyncFetch` and `listOperations` use (closing the last). */
export function configure(options) {
  shared?.close();
  return (shared = new AsyncRequestClient(options));
}

/** The client of the standalone functions: `configure`'s, else one with default options. */
export function defaultClient() {
  return (shared ??= new AsyncRequestClient());
}

/** `client.asyncFetch` on `options.client`, else the shared client. */
export function asyncFetch(url, init, options) {
  return (options?.client ?? defaultClient()).asyncFetch(url, init, options);
}

/** `client.listOperations` on `query.client`, else the shared client. */
export function listOperations(query) {
  return (query?.client ?? defaultClient()).listOperations(query);
}
