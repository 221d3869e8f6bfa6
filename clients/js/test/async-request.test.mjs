// Unit tests of async-request.js with a fake fetch and WebSocket: `node --test clients/js/test/`.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import {
  AsyncRequestClient, SeqTracker, backoff, parseFrame, retryAfterMs,
} from "../async-request.js";
import {
  FakeEventSource, FakeSocket, ID, R, client, closeAll, completed, ticket, tick, until,
} from "./fakes.mjs";

afterEach(closeAll);

test("backoff grows, is capped and jittered", () => {
  assert.equal(backoff(0, { min: 100, random: () => 0 }), 50);
  assert.equal(backoff(0, { min: 100, random: () => 1 }), 100);
  assert.equal(backoff(3, { min: 100, random: () => 1 }), 800);
  assert.equal(backoff(50, { min: 100, max: 5000, random: () => 1 }), 5000);
});

test("Retry-After: seconds, a date, or the fallback", () => {
  assert.equal(retryAfterMs("2"), 2000);
  assert.equal(retryAfterMs(null, 700), 700);
  assert.equal(retryAfterMs("Thu, 01 Jan 1970 00:00:10 GMT", 1, 4000), 6000);
  assert.equal(retryAfterMs("soon", 900), 900);
});

test("parseFrame reads data frames and ignores the rest", () => {
  const event = { task_id: ID, status: "running", action: "async_request", seq: 3 };
  assert.deepEqual(parseFrame(JSON.stringify({ type: "data", data: JSON.stringify(event) })),
    { kind: "event", event });
  assert.equal(parseFrame('{"type":"resumed","last":4,"count":1}').last, 4);
  assert.equal(parseFrame("not json").kind, "ignore");
  assert.equal(parseFrame('{"type":"data","data":"{}"}').kind, "ignore");
  assert.equal(parseFrame('{"type":"future"}').kind, "ignore");
});

test("SeqTracker drops repeats and keeps the highest", () => {
  const seq = new SeqTracker();
  assert.ok(seq.accept(2));
  assert.ok(!seq.accept(2));
  assert.ok(seq.accept(1));
  assert.equal(seq.last, 2);
  assert.ok(seq.accept(undefined));
});

test("SeqTracker resumes after the highest contiguous seq, advanced by resumed/gap", () => {
  const seq = new SeqTracker(4);
  seq.accept(6);
  seq.accept(8);                    // 7 is late (another worker published it first)
  assert.equal(seq.resumeAfter, 6);
  assert.equal(seq.last, 8);
  seq.accept(7);
  assert.equal(seq.resumeAfter, 8);
  seq.accept(11);
  seq.complete(10);                 // `resumed` with last 10: 9 and 10 are gone for good
  assert.equal(seq.resumeAfter, 11);
  assert.ok(!seq.accept(9) && !seq.accept(11));
  for (let n = 12; n < 30; n++) seq.accept(n);
  assert.equal(seq.resumeAfter, 29);
  assert.ok(!seq.accept(20));       // pruned, still refused
});

test("a frame that arrives before submit() resolved is not lost", async () => {
  let answer;
  const { client: c, calls } = client({
    "POST /api/v1/reports/": () => new Promise((resolve) => { answer = resolve; }),
    [`GET ${R}${ID}/`]: completed,
  });
  const submitted = c.submit("/api/v1/reports/", { method: "POST", body: "{}" });
  await until(() => FakeSocket.all.length === 1, "a socket");
  const socket = FakeSocket.all[0];
  assert.match(socket.url, /^ws:\/\/host\/ws\/\?ticket=art1\.x$/);
  socket.frame({ type: "subscribed" });
  await until(() => answer, "the submit request");
  socket.data({ task_id: ID, status: "completed", action: "async_request", seq: 1 });
  answer([202, { data: null, meta: { async_request_id: ID } },
    { location: `${R}${ID}/`, "retry-after": "1" }]);
  const op = await submitted;
  assert.deepEqual((await op.done).response, { ok: 1 });
  const submit = calls.find((call) => call.key.startsWith("POST /api/v1/reports/"));
  assert.equal(submit.headers.get("x-async-request"), "true");
  assert.equal(submit.headers.get("authorization"), "Bearer jwt");
  c.close();
});

test("reconnects with after=<last seq>, de-duplicates, and re-reads after a gap", async () => {
  let statusReads = 0;
  const { client: c } = client({
    "GET /api/v1/x": () => [202, { meta: { async_request_id: ID } }],
    [`GET ${R}${ID}/`]: () => { statusReads += 1; return [202, { task_id: ID, state: "running" }]; },
  });
  const pending = c.submit("/api/v1/x");
  await until(() => FakeSocket.all.length === 1, "a socket");
  FakeSocket.all[0].frame({ type: "subscribed" });
  const op = await pending;
  const progress = [];
  op.on("progress", (p) => progress.push(p.percent));
  const first = FakeSocket.all[0];
  first.data({ task_id: ID, status: "running", seq: 5, progress: { percent: 10 } });
  first.close(1006);
  await until(() => FakeSocket.all.length === 2, "a second socket");
  const second = FakeSocket.all[1];
  assert.match(second.url, /ticket=art1\.x&after=5$/);
  second.frame({ type: "subscribed" });
  second.data({ task_id: ID, status: "running", seq: 5, progress: { percent: 10 } });
  second.data({ task_id: ID, status: "running", seq: 6, progress: { percent: 20 } });
  second.data({ task_id: ID, status: "pending", seq: 4 });   // told late: not a step back
  assert.equal(op.state, "running");
  const before = statusReads;
  second.frame({ type: "gap", after: 5, last: 9 });
  second.frame({ type: "resumed", last: 9, count: 1 });
  await until(() => statusReads > before, "a status read after the gap");
  assert.deepEqual(progress, [10, 20]);
  assert.equal(c.connected, true);
  c.close();
  await assert.rejects(op.done);
});

test("a drop counts at once, though the dead socket's close never ends", async () => {
  const { client: c } = client({
    "GET /api/v1/x": () => [202, { meta: { async_request_id: ID } }],
    [`GET ${R}${ID}/`]: () => [202, { task_id: ID, state: "running" }],
  });
  const connection = [];
  c.on("connection", ({ connected }) => connection.push(connected));
  const pending = c.submit("/api/v1/x");
  await until(() => FakeSocket.all.length === 1, "a socket");
  const dead = FakeSocket.all[0];
  dead.frame({ type: "subscribed" });
  await pending;
  dead.close = () => { dead.closed = true; };   // an offline network: no onclose comes
  assert.equal(c._debugDrop(), true);
  assert.equal(dead.closed, true);
  assert.equal(c.connected, false);
  assert.deepEqual(connection, [true, false]);
  await until(() => FakeSocket.all.length === 2, "a new socket");
  dead.onclose?.({ code: 1006 });   // the late close of the dead one changes nothing
  FakeSocket.all[1].frame({ type: "subscribed" });
  assert.equal(c.connected, true);
  c.close();
});

test("a 4403 close stops the push connection and polls the status URL", async () => {
  let reads = 0;
  const { client: c } = client({
    "GET /api/v1/x": () => [202, { meta: { async_request_id: ID } }, { "retry-after": "0" }],
    [`GET ${R}${ID}/`]: () => (++reads < 2 ? [202, { state: "running" }, { "retry-after": "0" }]
      : completed()),
  });
  const pending = c.submit("/api/v1/x");
  await until(() => FakeSocket.all.length === 1, "a socket");
  const socket = FakeSocket.all[0];
  socket.frame({ type: "error", code: 4403, detail: "anonymous sockets are off" });
  socket.close(4403);
  const op = await pending;
  assert.equal((await op.done).state, "completed");
  assert.equal(c.active, "poll");
  assert.equal(FakeSocket.all.length, 1);
  c.close();
});

test("anonymous clients get a channel and send it as X-Async-Request", async () => {
  const { client: c, calls } = client({
    [`POST ${R}channels/`]: () => [201, { channel: "anon-abc" }],
    "GET /api/v1/x": () => [202, { meta: { async_request_id: ID } }],
    [`GET ${R}${ID}/`]: completed,
  }, { token: undefined, transport: "poll" });
  const op = await c.submit("/api/v1/x");
  await op.done;
  const submit = calls.find((call) => call.key === "GET /api/v1/x");
  assert.equal(submit.headers.get("x-async-request"), "anon-abc");
  assert.equal(submit.headers.get("authorization"), null);
  const status = calls.find((call) => call.key === `GET ${R}${ID}/`);
  assert.equal(status.headers.get("x-async-request"), "anon-abc");
  assert.equal(calls.filter((call) => call.key === `POST ${R}channels/`).length, 1);
  c.close();
});

test("an anonymous client on a socket asks for one channel only", async () => {
  const { client: c, calls } = client({
    [`POST ${R}channels/`]: async () => { await tick(); return [201, { channel: "anon-one" }]; },
    "GET /api/v1/x": () => [202, { meta: { async_request_id: ID } }],
    [`GET ${R}${ID}/`]: completed,
  }, { token: undefined });
  const pending = c.submit("/api/v1/x");
  await until(() => FakeSocket.all.length === 1, "a socket");
  assert.match(FakeSocket.all[0].url, /\?channel=anon-one$/);
  FakeSocket.all[0].frame({ type: "subscribed" });
  await pending;
  assert.equal(calls.filter((call) => call.key === `POST ${R}channels/`).length, 1);
  c.close();
});

test("auto: WebSocket refused 3 times in a row, then Server-Sent Events", async () => {
  let tickets = 0;
  const { client: c } = client({
    [`POST ${R}tickets/`]: () => { tickets += 1; return ticket(); },
    "GET /api/v1/x": () => [202, { meta: { async_request_id: ID } }],
    [`GET ${R}${ID}/`]: completed,
  }, { EventSource: FakeEventSource });
  c._ensureConnection();
  for (let n = 1; n <= 3; n++) {
    await until(() => FakeSocket.all.length === n, `socket ${n}`);
    FakeSocket.all[n - 1].close(1006);
  }
  await until(() => FakeEventSource.all.length === 1, "an EventSource");
  assert.equal(c.active, "sse");
  assert.equal(tickets, 4); // a new ticket for every attempt
  const source = FakeEventSource.all[0];
  assert.equal(source.url, `http://host${R}events/?ticket=art1.x`);
  source.onopen();
  assert.equal(c.connected, true);
  const op = await c.submit("/api/v1/x");
  const states = [];
  op.on("state", (s) => states.push(s));
  const message = { task_id: ID, status: "completed", action: "async_request" };
  source.onmessage({ data: JSON.stringify(message), lastEventId: "7" });
  source.onmessage({ data: JSON.stringify(message), lastEventId: "7" });
  assert.equal((await op.done).state, "completed");
  assert.deepEqual(states, ["completed"]);
  assert.equal(c.seq.last, 7);
  source.onerror(); // dropped: we reconnect ourselves, with after=
  await until(() => FakeEventSource.all.length === 2, "a second EventSource");
  assert.match(FakeEventSource.all[1].url, /ticket=art1\.x&after=7$/);
  c.close();
});

test("a 4401 close (expired ticket) reconnects with a new ticket", async () => {
  let tickets = 0;
  const { client: c } = client({
    [`POST ${R}tickets/`]: () => { tickets += 1; return ticket(); },
  });
  c._ensureConnection();
  await until(() => FakeSocket.all.length === 1, "a socket");
  FakeSocket.all[0].frame({ type: "error", code: 4401, detail: "ticket expired" });
  FakeSocket.all[0].close(4401);
  await until(() => FakeSocket.all.length === 2, "a second socket");
  assert.equal(tickets, 2);
  assert.equal(c.active, "websocket");
  c.close();
});

test("a non-202 answer rejects with the server's status and body", async () => {
  const { client: c } = client({
    "GET /api/v1/x": () => [409, { detail: "nope" }],
  }, { transport: "poll" });
  await assert.rejects(c.submit("/api/v1/x"), (error) => error.status === 409
    && error.body.detail === "nope");
  c.close();
});

test("an unknown transport is refused when the client is built", () => {
  assert.throws(() => new AsyncRequestClient({ transport: "carrier-pigeon" }), /transport/);
});
