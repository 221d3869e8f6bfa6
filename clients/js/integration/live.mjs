// The client against a live server: `node clients/js/integration/live.mjs <base_url> <token>`.
// Prints one JSON object of what it saw; tests/integration/test_js_client_node.py runs it on
// the session's stack and checks it. Transport "auto": WebSocket where the runtime has one
// (Node 22+), else polling (Node 20 has neither WebSocket nor EventSource).
import {
  AsyncRequestClient, asyncFetch, configure, listOperations,
} from "../async-request.js";

const [baseUrl, token] = process.argv.slice(2);
if (!baseUrl || !token) {
  console.error("usage: node live.mjs <base_url> <token>");
  process.exit(2);
}
const client = configure({ baseUrl, token, backoff: { min: 100, max: 1000 } });
const errors = [];
client.on("error", (error) => errors.push(String(error)));
const seen = {};

try {
  // The same call with fetch and with asyncFetch gives the same body.
  const direct = await fetch(`${baseUrl}/api/v1/orders/`, {
    headers: { authorization: `Bearer ${token}` } });
  const orders = await asyncFetch("/api/v1/orders/");
  seen.orders = { direct: await direct.json(), status: orders.status, body: await orders.json(),
    type: orders.headers.get("content-type"), url: orders.url };

  // A report: progress while it runs, its id from onState's operation, 201 at the end.
  const progress = [];
  const states = [];
  let reportId = null;
  const report = await asyncFetch("/api/v1/reports/", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ kind: "sales", seconds: 4 }),
  }, {
    onProgress: (p) => progress.push(p.percent),
    onState: (state, op) => { states.push(state); reportId = op.id; },
  });
  seen.report = { id: reportId, status: report.status, body: await report.json(), progress,
    states };

  // Bytes that are not text come back exact (base64 in the status body).
  const binary = await asyncFetch("/api/v1/binary/?n=1000");
  const bytes = new Uint8Array(await binary.arrayBuffer());
  seen.binary = { status: binary.status, length: bytes.length,
    exact: bytes.every((byte, i) => byte === i % 256) };

  // A route's own error is a completed operation: the Response carries it.
  const missing = await asyncFetch("/api/v1/reports/999999999/");
  seen.missing = { status: missing.status, body: await missing.json() };

  // A refusal of the server (a bad bearer token): rejects with its problem.
  const stranger = new AsyncRequestClient({ baseUrl, token: "not-a-jwt", transport: "poll" });
  try {
    await asyncFetch("/api/v1/orders/", {}, { client: stranger });
    seen.refused = { rejected: false };
  } catch (error) {
    seen.refused = { rejected: true, name: error.name, status: error.status,
      type: typeof error.body?.detail };
  } finally {
    stranger.close();
  }

  // Abort while it runs: AbortError at once, and the operation ends cancelled.
  const control = new AbortController();
  let slow = null;
  const slowFetch = asyncFetch("/api/v1/analytics/slow/?seconds=20", {}, {
    signal: control.signal,
    onState: (state, op) => {
      slow = op;
      // Once the worker runs it (or after a second), abort.
      if (state === "running") control.abort();
    },
  });
  setTimeout(() => control.abort(), 1500);
  try {
    await slowFetch;
    seen.aborted = { rejected: false };
  } catch (error) {
    seen.aborted = { rejected: true, name: error.name, isDomException: error instanceof DOMException };
  }
  const cancelled = await slow.done;
  seen.aborted.state = cancelled.state;
  seen.aborted.id = slow.id;

  // My operations: filtered by state, and paged by cursor.
  const done = await listOperations({ state: "completed", limit: 50 });
  const cancelledPage = await listOperations({ state: ["cancelled"] });
  const first = await listOperations({ limit: 1 });
  const second = await listOperations({ limit: 1, cursor: first.meta.next_cursor });
  seen.list = {
    completed: done.data.map((item) => item.task_id),
    completedStates: [...new Set(done.data.map((item) => item.state))],
    cancelled: cancelledPage.data.map((item) => item.task_id),
    pages: [first.data.map((item) => item.task_id), second.data.map((item) => item.task_id)],
  };
  seen.transport = client.active;
  seen.errors = errors;
} finally {
  client.close();
}
console.log(JSON.stringify(seen));
process.exit(0); // poll loops of closed clients end on their next tick; nothing is left to do
