// Types of async-request.js (the module itself is plain JavaScript with JSDoc).

export type State = "pending" | "running" | "completed" | "failed" | "cancelled";
export type Transport = "websocket" | "sse" | "poll";

export interface Progress {
  current: number;
  total: number | null;
  percent: number | null;
  message: string | null;
  updated_at: string;
}

export interface TaskEvent {
  task_id: string;
  status: State;
  action?: string;
  seq?: number;
  progress?: Progress | null;
  error?: unknown;
}

/** The fields every status body and list item carries, whatever the state. */
export interface Lifecycle {
  task_id: string;
  state: State;
  method?: string;
  endpoint?: string;
  created_at?: string;
  started_at?: string | null;
  finished_at?: string | null;
  expires_at?: string | null;
  attempts?: number;
  rerun_of?: string | null;
  progress: Progress | null;
  [member: string]: unknown;
}

/** The body of `GET {resultsPath}{id}/`; once completed, the route's answer too. */
export interface StatusBody extends Lifecycle {
  /** The route's HTTP status; null when the operation failed or was cancelled. */
  status?: number | null;
  headers?: [string, string][];
  /** The route's body: parsed JSON, text, or base64 of the bytes, as `encoding` says. */
  response?: unknown;
  encoding?: "json" | "text" | "base64";
  error?: string | null;
}

export interface OperationsPage {
  data: Lifecycle[];
  meta: { next_cursor: string | null };
}

export interface ListQuery {
  /** One state, several (an array or "a,b"), or all when absent. */
  state?: State | State[] | string;
  /** 1 to 200; the server's default is 50. */
  limit?: number;
  /** `meta.next_cursor` of the previous page. */
  cursor?: string | null;
}

export interface ClientOptions {
  baseUrl?: string;
  token?: string | (() => string | undefined | Promise<string | undefined>);
  channel?: string;
  transport?: "auto" | Transport;
  resultsPath?: string;
  wsPath?: string;
  backoff?: { min?: number; max?: number };
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
}

export interface AsyncFetchOptions {
  /** Each new progress report of the route, while it runs. */
  onProgress?: (progress: Progress, op: Operation) => void;
  /** The state at once ("pending"), then each change up to the terminal one. */
  onState?: (state: State, op: Operation) => void;
  /** Aborting cancels the operation (DELETE) and rejects with `signal.reason`. Default: `init.signal`. */
  signal?: AbortSignal;
}

type Unsubscribe = () => void;

export declare const TERMINAL: readonly State[];

/** An answer the client did not expect, or an operation that failed or was cancelled. */
export declare class AsyncRequestError extends Error {
  constructor(message: string, status?: number, body?: unknown);
  /** The HTTP status (of the refusal, or the failed operation's: usually undefined). */
  status?: number;
  /** The server's body: a problem+json document, or the operation's status body. */
  body?: unknown;
}

export declare class Operation {
  readonly client: AsyncRequestClient;
  readonly id: string;
  readonly statusUrl: string;
  readonly state: State;
  readonly progress: Progress | null;
  readonly result: StatusBody | null;
  readonly finished: boolean;
  /** The status body once it ended (completed, failed or cancelled); rejects on 404/410 or close(). */
  readonly done: Promise<StatusBody>;
  on(name: "progress", handler: (progress: Progress) => void): Unsubscribe;
  on(name: "state", handler: (state: State) => void): Unsubscribe;
  on(name: "done", handler: (body: StatusBody) => void): Unsubscribe;
  on(name: "error", handler: (error: unknown) => void): Unsubscribe;
  refresh(): Promise<unknown>;
  cancel(): Promise<StatusBody & { cancel_requested?: boolean }>;
  rerun(): Promise<Operation>;
}

export declare class AsyncRequestClient {
  constructor(options?: ClientOptions);
  readonly active: Transport | null;
  readonly connected: boolean;
  readonly channel?: string;
  readonly operations: Map<string, Operation>;
  readonly seq: SeqTracker;
  /** `fetch`, run in the background: the route's own Response once the operation completed. */
  asyncFetch(url: string | URL, init?: RequestInit, options?: AsyncFetchOptions): Promise<Response>;
  submit(path: string, init?: RequestInit): Promise<Operation>;
  track(id: string, statusUrl?: string): Operation;
  listOperations(query?: ListQuery): Promise<OperationsPage>;
  /** The same as listOperations. */
  list(query?: ListQuery): Promise<OperationsPage>;
  on(name: "operation", handler: (op: Operation) => void): Unsubscribe;
  on(name: "event", handler: (event: TaskEvent) => void): Unsubscribe;
  on(name: "connection", handler: (info: { transport: Transport; connected: boolean }) => void): Unsubscribe;
  on(name: "error", handler: (error: unknown) => void): Unsubscribe;
  url(path: string): string;
  close(): void;
  _debugDrop(): boolean;
}

/** Make (or replace, closing the last) the client the standalone functions use. */
export declare function configure(options?: ClientOptions): AsyncRequestClient;
/** The standalone functions' client: `configure`'s, else one made with default options. */
export declare function defaultClient(): AsyncRequestClient;
/** `client.asyncFetch` on `options.client`, else on the shared client. */
export declare function asyncFetch(url: string | URL, init?: RequestInit,
  options?: AsyncFetchOptions & { client?: AsyncRequestClient }): Promise<Response>;
/** `client.listOperations` on `query.client`, else on the shared client. */
export declare function listOperations(query?: ListQuery & { client?: AsyncRequestClient }
): Promise<OperationsPage>;
/** The Response a completed status body describes (status, headers, body bytes). */
export declare function responseFrom(body: Pick<StatusBody, "headers" | "response" | "encoding">
  & { status: number }, url?: string): Response;

export declare function backoff(attempt: number,
  options?: { min?: number; max?: number; random?: () => number }): number;
export declare function retryAfterMs(value: string | null | undefined, fallback?: number,
  now?: number): number;
export declare function parseFrame(text: string): { kind: string; [member: string]: unknown };
export declare class SeqTracker {
  constructor(limit?: number);
  last: number;
  resumeAfter: number;
  accept(seq: number | null | undefined): boolean;
  complete(seq: number | null | undefined): void;
}
