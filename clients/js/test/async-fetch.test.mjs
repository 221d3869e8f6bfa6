// Unit tests of asyncFetch, listOperations, the transport order, tickets and waking up, with a
// fake server (fakes.mjs): `node --test clients/js/test/`.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import {
  AsyncRequestClient, AsyncRequestError, asyncFetch, configure, defaultClient, listOperations,
  responseFrom,
} from "../async-request.js";
import {
  FakeEventSource, FakeSocket, ID, R, accepted, client, closeAll, completed, fakeFetch, ticket,
  until,
} from "./fakes.mjs";

afterEach(closeAll);

const STATUS = `GET ${R}${ID}/`;
const ended = (state, extra = {}) => () => [200, { task_id: ID, state, status: null,
  error: `it ${state}`, ...extra }];

test("responseFrom rebuilds base64 bodies byte for byte", async () => {
  const bytes = [0, 255, 128, 10, 13, 200];
  const response = responseFrom({
    status: 200, encoding: "base64", response: Buffer.from(bytes).toString("base64"),
    headers: [["content-type", "image/png"], ["content-length", "999"], ["x-a", "1"],
      ["x-a", "2"]],
  }, "http://host/img");
  assert.deepEqual([...new Uint8Array(await response.arrayBuffer())], bytes);
  assert.equal(response.headers.get("content-type"), "image/png");
  assert.equal(response.headers.get("content-length"), null); // it described other bytes
  assert.equal(response.headers.get("x-a"), "1, 2");
  assert.equal(response.url, "http://host/img");
});

test("responseFrom: JSON, UTF-8 text, latin-1 text, an empty 204, a route's 500", async () => {
  const json = responseFrom({ status: 201, encoding: "json", response: { a: [1, "é"] },
    headers: [["content-type", "application/json"]] });
  assert.equal(json.status, 201);
  assert.deepEqual(await json.json(), { a: [1, "é"] });

  const text = responseFrom({ status: 200, encoding: "text", response: "naïve ✓",
    headers: [["content-type", "text/plain; charset=utf-8"]] });
  assert.equal(await text.text(), "naïve ✓");

  const latin = responseFrom({ status: 200, encoding: "text", response: "café",
    headers: [["content-type", "text/plain; charset=ISO-8859-1"]] });
  assert.deepEqual([...new Uint8Array(await latin.arrayBuffer())], [99, 97, 102, 0xe9]);

  const bare = responseFrom({ status: 200, encoding: "text", response: "x", headers: [] });
  assert.equal(bare.headers.get("content-type"), null); // none was sent: none is invented

  const empty = responseFrom({ status: 204, encoding: "text", response: "", headers: [] });
  assert.equal(empty.status, 204);
  assert.equal(empty.body, null);

  const crashed = responseFrom({ status: 500, encoding: "text", response: "boom",
    headers: [["content-type", "text/plain"]] });
  assert.equal(crashed.ok, false);
  assert.equal(await crashed.text(), "boom");
});

test("asyncFetch resolves with the route's Response and tells states and progress", async () => {
  let reads = 0;
  const { client: c, calls } = client({
    "POST /api/v1/reports/": accepted,
    [STATUS]: () => (++reads === 1
      ? [202, { task_id: ID, state: "running", progress: { percent: 40, current: 2 } },
        { "retry-after": "0" }]
      : completed()),
  }, { transport: "poll" });
  const states = [];
  const progress = [];
  const response = await c.asyncFetch("/api/v1/reports/", {
    method: "POST", body: "{}", headers: { "content-type": "application/json" },
  }, {
    onState: (state, op) => states.push([state, op.id]),
    onProgress: (p) => progress.push(p.percent),
  });
  assert.ok(response instanceof Response);
  assert.equal(response.status, 201);
  assert.equal(response.url, "http://host/api/v1/reports/");
  assert.deepEqual(await response.json(), { ok: 1 });
  assert.deepEqual(states, [["pending", ID], ["running", ID], ["completed", ID]]);
  assert.deepEqual(progress, [40]);
  const submit = calls.find((call) => call.key === "POST /api/v1/reports/");
  assert.equal(submit.headers.get("x-async-request"), "true");
  assert.equal(submit.headers.get("authorization"), "Bearer jwt");
  assert.equal(submit.headers.get("content-type"), "application/json");
  c.close();
});

test("asyncFetch rejects a failed or cancelled operation with its status body", async () => {
  for (const state of ["failed", "cancelled"]) {
    const { client: c } = client({ "GET /x": accepted, [STATUS]: ended(state) },
      { transport: "poll" });
    await assert.rejects(c.asyncFetch("/x"), (error) => error instanceof AsyncRequestError
      && error.body.state === state && error.message.includes(`it ${state}`));
    c.close();
  }
});

test("asyncFetch: a refusal rejects with its problem; an answer given at once is returned", async () => {
  const problem = { type: "about:blank", title: "Too Many Requests", status: 429, detail: "cap" };
  const { client: c } = client({
    "GET /busy": () => [429, problem, { "content-type": "application/problem+json" }],
    "GET /plain": () => [200, "not deferred"],
    "GET /waited": () => [404, "the route's own 404", { "x-async-request-id": ID }],
    "GET /waited-failed": () => [200, ended("failed")()[1],
      { "x-async-request-id": ID, "content-location": `${R}${ID}/` }],
  }, { transport: "poll" });
  await assert.rejects(c.asyncFetch("/busy"), (error) => error.status === 429
    && error.body.detail === "cap");
  assert.equal(await (await c.asyncFetch("/plain")).text(), "not deferred");
  const waited = await c.asyncFetch("/waited", { headers: { prefer: "wait=5" } });
  assert.equal(waited.status, 404);
  assert.equal(await waited.text(), "the route's own 404");
  await assert.rejects(c.asyncFetch("/waited-failed"), (error) => error.body.state === "failed");
  c.close();
});

test("aborting while it runs cancels it (DELETE) and rejects with an AbortError", async () => {
  let deleted = 0;
  const { client: c, calls } = client({
    "GET /slow": accepted,
    [STATUS]: () => [202, { task_id: ID, state: "running" }, { "retry-after": "0" }],
    [`DELETE ${R}${ID}/`]: () => { deleted += 1; return [202, { task_id: ID, state: "running",
      cancel_requested: true }]; },
  }, { transport: "poll" });
  const control = new AbortController();
  const states = [];
  const pending = c.asyncFetch("/slow", { signal: control.signal },
    { onState: (state) => states.push(state) });
  await until(() => states.includes("running"), "running");
  control.abort();
  await assert.rejects(pending, (error) => error instanceof DOMException
    && error.name === "AbortError");
  await until(() => deleted === 1, "a DELETE");
  // The signal never reached the submit request: aborting it could lose the operation's id.
  assert.equal(calls.find((call) => call.key === "GET /slow").signal, undefined);
  c.close();
});

test("aborting during the submit cancels the operation once the 202 names it", async () => {
  let answer;
  let deleted = 0;
  const { client: c } = client({
    "POST /x": () => new Promise((resolve) => { answer = resolve; }),
    [`DELETE ${R}${ID}/`]: () => { deleted += 1; return [200, { task_id: ID, state: "cancelled" }]; },
    [STATUS]: ended("cancelled"),
  }, { transport: "poll" });
  const control = new AbortController();
  const pending = c.asyncFetch("/x", { method: "POST" }, { signal: control.signal });
  await until(() => answer, "the submit request");
  control.abort(new DOMException("user left", "AbortError"));
  answer(accepted());
  await assert.rejects(pending, (error) => error.message === "user left");
  await until(() => deleted === 1, "a DELETE");
  c.close();
});

test("an already aborted signal sends nothing", async () => {
  const { client: c, calls } = client({}, { transport: "poll" });
  await assert.rejects(c.asyncFetch("/x", {}, { signal: AbortSignal.abort() }),
    (error) => error.name === "AbortError");
  assert.equal(calls.length, 0);
  c.close();
});

test("listOperations builds its query; `list` is the same call", async () => {
  const { client: c, calls } = client({
    [`GET ${R}?state=pending%2Crunning&limit=5&cursor=abc%3D`]: () => [200,
      { data: [{ task_id: ID, state: "running" }], meta: { next_cursor: "n" } }],
    [`GET ${R}?state=failed`]: () => [200, { data: [], meta: { next_cursor: null } }],
    [`GET ${R}`]: () => [200, { data: [], meta: { next_cursor: null } }],
    [`GET ${R}?limit=0`]: () => [400, { detail: "limit: '0' is not a number from 1 to 200" }],
  }, { transport: "poll" });
  const page = await c.listOperations({ state: ["pending", "running"], limit: 5, cursor: "abc=" });
  assert.equal(page.meta.next_cursor, "n");
  assert.equal(page.data[0].task_id, ID);
  assert.deepEqual((await c.list({ state: "failed" })).data, []);
  assert.deepEqual((await c.listOperations()).data, []);
  await assert.rejects(c.listOperations({ limit: 0 }), (error) => error.status === 400);
  assert.equal(calls.at(-1).headers.get("authorization"), "Bearer jwt");
  c.close();
});

test("the standalone functions use configure()'s client, or the one passed", async () => {
  const server = fakeFetch({
    [`GET ${R}`]: () => [200, { data: [], meta: { next_cursor: null } }],
    "GET /x": accepted,
    [STATUS]: completed,
  });
  const shared = configure({ baseUrl: "http://host", token: "jwt", fetch: server.fetch,
    transport: "poll" });
  assert.equal(defaultClient(), shared);
  assert.deepEqual((await listOperations()).meta, { next_cursor: null });
  assert.equal((await asyncFetch("/x")).status, 201);
  const other = new AsyncRequestClient({ baseUrl: "http://host", token: "other",
    fetch: server.fetch, transport: "poll" });
  await listOperations({ client: other });
  assert.equal(server.calls.at(-1).headers.get("authorization"), "Bearer other");
  const next = configure({ fetch: server.fetch });
  assert.ok(shared._closed && defaultClient() === next); // the old one is closed
  next.close();
  other.close();
});

test("transport order: WebSocket, else SSE, else polling, by what the runtime has", () => {
  const cases = [
    [{ WebSocket: FakeSocket, EventSource: FakeEventSource }, "websocket"],
    [{ WebSocket: null, EventSource: FakeEventSource }, "sse"],
    [{ WebSocket: null, EventSource: null }, "poll"],
  ];
  for (const [classes, expected] of cases) {
    const { client: c } = client({}, { ...classes, fetch: async () => new Response("{}") });
    c._WebSocket = classes.WebSocket;   // null: as a runtime without the global
    c._EventSource = classes.EventSource;
    c._ensureConnection();
    assert.equal(c.active, expected);
    c.close();
  }
});

test("auto without EventSource goes from WebSocket straight to polling", async () => {
  const { client: c } = client({ "GET /x": accepted, [STATUS]: completed });
  c._EventSource = null;
  c._ensureConnection();
  for (let n = 1; n <= 3; n++) {
    await until(() => FakeSocket.all.length === n, `socket ${n}`);
    FakeSocket.all[n - 1].close(1006);
  }
  await until(() => c.active === "poll", "polling");
  assert.equal((await c.asyncFetch("/x")).status, 201);
  assert.equal(FakeSocket.all.length, 3);
  c.close();
});

test("one connection for many operations, and the ticket is kept across a reconnect", async () => {
  let tickets = 0;
  const ids = ["1", "2", "3"].map((n) => `${ID.slice(0, -1)}${n}`);
  const routes = { [`POST ${R}tickets/`]: () => { tickets += 1; return ticket(); } };
  for (const id of ids) {
    routes[`GET /op/${id}`] = () => [202, { meta: { async_request_id: id } }];
    routes[`GET ${R}${id}/`] = () => [200, { ...completed()[1], task_id: id }];
  }
  const { client: c } = client(routes);
  c._ensureConnection();
  await until(() => FakeSocket.all.length === 1, "a socket");
  FakeSocket.all[0].frame({ type: "subscribed" });
  const fetches = ids.map((id) => c.asyncFetch(`/op/${id}`));
  await until(() => c.operations.size === 3, "three operations");
  FakeSocket.all[0].data({ task_id: ids[0], status: "running", seq: 1 });
  FakeSocket.all[0].close(1006);  // a drop of a live connection: the ticket is still good
  await until(() => FakeSocket.all.length === 2, "a second socket");
  const second = FakeSocket.all[1];
  assert.match(second.url, /\?ticket=art1\.x&after=1$/);
  second.frame({ type: "subscribed" });
  ids.forEach((id, n) => second.data({ task_id: id, status: "completed", seq: n + 2 }));
  second.frame({ type: "resumed", last: 4, count: 3 });
  const responses = await Promise.all(fetches);
  assert.deepEqual(responses.map((r) => r.status), [201, 201, 201]);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(tickets, 1);
  c.close();
});

test("an expired ticket is not reused", async () => {
  let tickets = 0;
  const { client: c } = client({
    [`POST ${R}tickets/`]: () => { tickets += 1; return [201, { ticket: `art1.${tickets}`,
      expires_in: 0 }]; },
  });
  c._ensureConnection();
  await until(() => FakeSocket.all.length === 1, "a socket");
  FakeSocket.all[0].frame({ type: "subscribed" });
  FakeSocket.all[0].close(1006);
  await until(() => FakeSocket.all.length === 2, "a second socket");
  assert.match(FakeSocket.all[1].url, /ticket=art1\.2/);
  c.close();
});

test("waking up (online, visible, pageshow) reconnects at once and re-reads", async () => {
  const listeners = {};
  globalThis.addEventListener = (name, handler) => { listeners[name] = handler; };
  globalThis.removeEventListener = (name) => { delete listeners[name]; };
  try {
    let reads = 0;
    const { client: c } = client({
      "GET /x": accepted,
      [STATUS]: () => { reads += 1; return [202, { task_id: ID, state: "running" }]; },
    }, { backoff: { min: 3_600_000, max: 3_600_000 } });
    c._ensureConnection();
    assert.deepEqual(Object.keys(listeners).sort(), ["online", "pageshow", "visibilitychange"]);
    await until(() => FakeSocket.all.length === 1, "a socket");
    FakeSocket.all[0].frame({ type: "subscribed" });
    const op = await c.submit("/x");
    FakeSocket.all[0].close(1006);       // the next attempt would be in an hour
    await until(() => c._timer, "a reconnect timer");
    const before = reads;
    listeners.online();
    await until(() => FakeSocket.all.length === 2, "a reconnect now");
    await until(() => reads > before, "a status read");
    assert.match(FakeSocket.all[1].url, /ticket=art1\.x/);
    FakeSocket.all[1].frame({ type: "subscribed" });
    listeners.visibilitychange();        // connected: a ping checks the socket is alive
    assert.deepEqual(FakeSocket.all[1].sent.at(-1), { type: "ping" });
    assert.equal(op.state, "running");
    c.close();
    assert.deepEqual(listeners, {});
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});
