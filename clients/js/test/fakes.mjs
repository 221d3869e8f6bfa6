// Fakes shared by the unit tests: a server behind `fetch`, WebSocket and EventSource classes.
import { AsyncRequestClient } from "../async-request.js";

export const ID = "0b6f1c52-3d8e-4d7a-9a51-1f0e3c1d2b4a";
export const R = "/api/v1/async_background_response/";
export const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

export async function until(check, what) {
  for (let i = 0; i < 200; i++) { if (check()) return; await tick(); }
  throw new Error(`timed out waiting for ${what}`);
}

export class FakeSocket {
  static all = [];
  constructor(url) { this.url = url; this.sent = []; FakeSocket.all.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000) { this.closed = true; this.onclose?.({ code }); }
  frame(value) { this.onmessage?.({ data: JSON.stringify(value) }); }
  data(event) { this.frame({ type: "data", data: JSON.stringify(event) }); }
}

export class FakeEventSource {
  static all = [];
  constructor(url) { this.url = url; FakeEventSource.all.push(this); this.listeners = {}; }
  addEventListener(name, handler) { this.listeners[name] = handler; }
  close() { this.closed = true; }
}

/**
 * A fake server: `routes` maps "METHOD path" to a function returning [status, body, headers]
 * (a string body is sent as it is, anything else as JSON). `calls` records each request.
 */
export function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const key = `${init.method ?? "GET"} ${String(url).replace("http://host", "")}`;
    calls.push({ key, headers: new Headers(init.headers ?? {}), signal: init.signal });
    const route = routes[key];
    if (!route) return new Response("{}", { status: 404 });
    const [status, body, headers] = await route();
    return new Response(typeof body === "string" ? body : JSON.stringify(body),
      { status, headers: headers ?? {} });
  };
  return { fetch, calls };
}

export const ticket = () => [201, { ticket: "art1.x", expires_at: "", expires_in: 60 }];
export const completed = () => [200, {
  task_id: ID, state: "completed", status: 201, response: { ok: 1 }, encoding: "json",
  headers: [["content-type", "application/json"]],
}];
export const accepted = () => [202, { data: null, meta: { async_request_id: ID } },
  { location: `${R}${ID}/`, "retry-after": "0" }];

const made = [];

/** Close every client `client()` made: a failed test leaves no poll loop running. */
export function closeAll() {
  for (const one of made.splice(0)) one.close();
}

/** A client on the fake server, with FakeSocket as its WebSocket and quick reconnects. */
export function client(routes, options = {}) {
  FakeSocket.all = [];
  FakeEventSource.all = [];
  const server = fakeFetch({ [`POST ${R}tickets/`]: ticket, ...routes });
  const one = new AsyncRequestClient({
    baseUrl: "http://host", token: () => "jwt", fetch: server.fetch, WebSocket: FakeSocket,
    backoff: { min: 1, max: 2 }, ...options,
  });
  made.push(one);
  return { client: one, calls: server.calls };
}
