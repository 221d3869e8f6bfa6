// `npm run build`: dist/async-request.min.js, its sizes, and the size gate of issue 11 item 6
// (at most 5 kB minified and gzipped). Exits 1 above the limit or when the build is broken.
//
// Minified by esbuild; `_`-prefixed members (private by convention) are renamed too, except
// `_debugDrop` (tests and debug panels call it). A smoke run of the built file then checks the
// exports and one asyncFetch round trip, so a rename cannot break it unseen.
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { gzipSync, constants } from "node:zlib";
import { build } from "esbuild";

const LIMIT = 5120;
const SOURCE = new URL("./async-request.js", import.meta.url);
const OUT = new URL("./dist/async-request.min.js", import.meta.url);

const { outputFiles } = await build({
  entryPoints: [SOURCE.pathname], format: "esm", minify: true, write: false,
  target: "es2022", mangleProps: /^_/, reserveProps: /^_debugDrop$/, legalComments: "none",
});
const code = outputFiles[0].contents;
mkdirSync(new URL("./dist/", import.meta.url), { recursive: true });
writeFileSync(OUT, code);

const raw = readFileSync(SOURCE).length;
const gzipped = gzipSync(code, { level: constants.Z_BEST_COMPRESSION }).length;
console.log(`async-request.js  raw ${raw} B  minified ${code.length} B  min+gzip ${gzipped} B`
  + `  (limit ${LIMIT} B)`);

await smoke();

if (gzipped > LIMIT) {
  console.error(`async-request.js: ${gzipped} B minified and gzipped is over the ${LIMIT} B limit`);
  process.exit(1);
}

/** The built module exports what the source does and runs one asyncFetch (polling). */
async function smoke() {
  const built = await import(`${OUT.href}?${Date.now()}`);
  const source = await import(SOURCE.href);
  const missing = Object.keys(source).filter((name) => typeof built[name] !== typeof source[name]);
  if (missing.length) fail(`the build lacks ${missing.join(", ")}`);
  const id = "0b6f1c52-3d8e-4d7a-9a51-1f0e3c1d2b4a";
  const answers = {
    "GET http://host/x": [202, { meta: { async_request_id: id } }],
    [`GET http://host/api/v1/async_background_response/${id}/`]: [200, {
      task_id: id, state: "completed", status: 201, encoding: "base64", response: "aGk=",
      headers: [["content-type", "application/octet-stream"]] }],
  };
  const fetch = async (url, init) => {
    const [status, body] = answers[`${init.method ?? "GET"} ${url}`] ?? [404, {}];
    return new Response(JSON.stringify(body), { status, headers: { "retry-after": "0" } });
  };
  const client = new built.AsyncRequestClient({ baseUrl: "http://host", token: "t", fetch,
    transport: "poll" });
  try {
    const response = await client.asyncFetch("/x");
    const text = await response.text();
    if (response.status !== 201 || text !== "hi") fail(`asyncFetch gave ${response.status} ${text}`);
  } finally {
    client.close();
  }
}

function fail(why) {
  console.error(`dist/async-request.min.js is broken: ${why}`);
  process.exit(1);
}
