// Public types of the Parley TypeScript SDK. They mirror the Go SDK
// (client/types.go) and the wire schema in docs/protocol.md.

/** Error codes the server sends in error frames. */
export const Codes = {
  BadRequest: "bad_request",
  UnknownType: "unknown_type",
  NotMember: "not_member",
  ChatNotFound: "chat_not_found",
  GroupFull: "group_full",
  TooLarge: "too_large",
  Forbidden: "forbidden",
  RateLimited: "rate_limited",
  IDReused: "id_reused",
  Overloaded: "overloaded",
  Unavailable: "unavailable",
  Internal: "internal",
} as const;

const retryableCodes = new Set<string>([Codes.RateLimited, Codes.Overloaded, Codes.Unavailable, Codes.Internal]);

/** Reports whether an error code is retryable by definition. */
export function retryableCode(code: string): boolean {
  return retryableCodes.has(code);
}

/** WebSocket close codes the SDK treats specially (docs/protocol.md). */
export const CloseCodes = {
  Normal: 1000,
  GoingAway: 1001,
  Policy: 1008,
  TooBig: 1009,
  ServiceRestart: 1012,
  Idle: 4000,
  TokenExpired: 4001,
  SlowConsumer: 4002,
  Overloaded: 4003,
  Replaced: 4004,
  AuthFailed: 4005,
} as const;

/** An error frame from the server. */
export class ParleyError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    /** Server's hint for the next attempt, in ms; 0 if none. */
    readonly retryAfterMs = 0,
  ) {
    super(`parley: ${code}: ${message}`);
    this.name = "ParleyError";
  }
}

/** The connection dropped before the answer arrived. Retryable. */
export class DisconnectedError extends Error {
  constructor() {
    super("client: disconnected before the answer");
    this.name = "DisconnectedError";
  }
}

/** One attempt of a request got no answer within requestTimeoutMs. Retryable. */
export class TimeoutError extends Error {
  constructor() {
    super("client: request timed out");
    this.name = "TimeoutError";
  }
}

/** The client was closed, or stopped because the server refused the session. */
export class ClosedError extends Error {
  constructor(readonly cause?: unknown) {
    super(cause instanceof Error ? `client: closed: ${cause.message}` : "client: closed");
    this.name = "ClosedError";
  }
}

/** A WebSocket close frame from the server. */
export class CloseError extends Error {
  constructor(readonly code: number, readonly reason: string) {
    super(`connection closed by server: code ${code} ${JSON.stringify(reason)}`);
    this.name = "CloseError";
  }
}

/** The server asked the client to reconnect (goaway). */
export class GoawayError extends Error {
  constructor(readonly retryAfterMs: number, readonly url: string) {
    super(url ? `server asked to reconnect to ${url} after ${retryAfterMs}ms` : `server asked to reconnect after ${retryAfterMs}ms`);
    this.name = "GoawayError";
  }
}

/** The server sent a frame the client cannot use. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(`client: protocol error: ${message}`);
    this.name = "ProtocolError";
  }
}

/** The current session, from the server's hello frame. */
export interface Hello {
  protocol: number;
  user: string;
  device: string;
  session: string;
  heartbeatMs: number;
}

/** A delivered message (a msg frame or an entry of a history page). */
export interface Message {
  chat: string;
  seq: number;
  from: string;
  device: string;
  /** Sender's request id; "" for system messages. */
  id: string;
  /** Unix ms. */
  ts: number;
  kind: "text" | "system" | string;
  body: string;
}

/** The server's confirmation that a send is durable. */
export interface Sent {
  id: string;
  chat: string;
  seq: number;
  ts: number;
}

/** A device of another member received every message of chat up to seq. */
export interface Receipt {
  chat: string;
  user: string;
  device: string;
  seq: number;
  status: string;
}

/** One user's presence. lastSeen is Unix ms (0 when online or unknown). */
export interface UserPresence {
  user: string;
  online: boolean;
  lastSeen: number;
}

/** A chat's membership (docs/protocol.md, "Groups and roles"). */
export interface GroupMembers {
  members: string[];
  /** Groups only: the members with the admin or creator role, sorted. */
  admins: string[];
  /** Groups only: the creator while a member, else "". */
  creator: string;
}

/** The user's settings (docs/protocol.md, Settings). */
export interface Settings {
  /** The user's last-seen time is withheld from everyone else. */
  hideLastSeen: boolean;
}

/** One entry of the user's chat list. */
export interface ChatInfo {
  chat: string;
  kind: "direct" | "group" | string;
  name?: string;
  members?: string[];
  last_seq: number;
  read_seq: number;
  unread: number;
}

/** Selects a page of history: before, else after, else the newest. */
export interface HistoryQuery {
  /** Messages with seq < before, the newest of them (0 or absent: no bound). */
  before?: number;
  /** Messages with seq > after, the oldest of them (0: from the first message). */
  after?: number;
  /** 1..200; 0 or absent means the server default (50). */
  limit?: number;
}

/** A page of history, ascending seq. */
export interface HistoryPage {
  messages: Message[];
  more: boolean;
}

export type StateKind = "connecting" | "connected" | "reconnecting" | "closed";

/** A connection state change. */
export interface State {
  kind: StateKind;
  hello?: Hello;
  /** Set on a second "connected" state once the catch-up after sync is complete. */
  synced?: boolean;
  error?: unknown;
  /** Reconnect attempt number, when kind is "reconnecting". */
  attempt?: number;
}

/** Counters since the client started. */
export interface Stats {
  reconnects: number;
  syncs: number;
  duplicates: number;
  retransmits: number;
  gaps: number;
  gapsFilled: number;
  gapsSkipped: number;
  acksSent: number;
  goaways: number;
  retries: number;
  resyncs: number;
}

/** A capped exponential backoff with full jitter (ms). */
export interface Backoff {
  min: number;
  max: number;
}
