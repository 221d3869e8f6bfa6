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

/** The status body of `GET {resultsPath}{id}/` once the operation ended. */
export interface StatusBody {
  task_id: string;
  state: State;
  status?: number | null;
  endpoint?: string;
  headers?: [string, string][];
  response?: unknown;
  encoding?: string;
  error?: unknown;
  progress: Progress | null;
  [member: string]: unknown;
}

export interface OperationsPage {
  data: Array<Record<string, unknown> & { task_id: string; state: State }>;
  meta: { next_cursor: string | null };
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

type Unsubscribe = () => void;

export declare const TERMINAL: readonly State[];

export declare class AsyncRequestError extends Error {
  status?: number;
  body?: unknown;
}

export declare class Operation {
  readonly id: string;
  readonly statusUrl: string;
  readonly state: State;
  readonly progress: Progress | null;
  readonly result: StatusBody | null;
  readonly finished: boolean;
  readonly done: Promise<StatusBody>;
  on(name: "progress", handler: (progress: Progress) => void): Unsubscribe;
  on(name: "state", handler: (state: State) => void): Unsubscribe;
  on(name: "done", handler: (body: StatusBody) => void): Unsubscribe;
  on(name: "error", handler: (error: unknown) => void): Unsubscribe;
  refresh(): Promise<unknown>;
  cancel(): Promise<{ task_id: string; state: State }>;
  rerun(): Promise<Operation>;
}

export declare class AsyncRequestClient {
  constructor(options?: ClientOptions);
  readonly active: Transport | null;
  readonly connected: boolean;
  readonly operations: Map<string, Operation>;
  submit(path: string, init?: RequestInit): Promise<Operation>;
  track(id: string, statusUrl?: string): Operation;
  list(query?: { state?: string | State[]; limit?: number; cursor?: string }): Promise<OperationsPage>;
  on(name: "operation", handler: (op: Operation) => void): Unsubscribe;
  on(name: "event", handler: (event: TaskEvent) => void): Unsubscribe;
  on(name: "connection", handler: (info: { transport: Transport; connected: boolean }) => void): Unsubscribe;
  on(name: "error", handler: (error: unknown) => void): Unsubscribe;
  url(path: string): string;
  close(): void;
  _debugDrop(): boolean;
}

export declare function backoff(attempt: number,
  options?: { min?: number; max?: number; random?: () => number }): number;
export declare function retryAfterMs(value: string | null | undefined, fallback?: number,
  now?: number): number;
export declare function parseFrame(text: string): { kind: string; [member: string]: unknown };
export declare class SeqTracker {
  last: number;
  resumeAfter: number;
  accept(seq: number | null | undefined): boolean;
  complete(seq: number | null | undefined): void;
}
