// ParleyClient: the TypeScript SDK's connection, with the semantics of the
// Go SDK (client/): it keeps itself connected (full-jitter backoff with a
// cap, goaway honoured), sends sync with its positions after every hello,
// hands each (chat, seq) to the app exactly once and in seq order (dropping
// retransmits and catch-up overlap, filling gaps from history), acks
// cumulatively per chat in batches, and retries sends with the same request
// id until the server answers sent.
//
// Concurrency: JavaScript is single-threaded; every method may be called at
// any time. Listeners run synchronously inside the socket's event handler:
// a message counts as handed to the app (and may be acked) once its
// listener returned.
import { jitter, goawayDelay, type Rand } from "./backoff.js";
import { decodeServerFrame, frameError, frameMessage, framePresence, wireMessage, type ServerFrame } from "./frame.js";
import { Orderer, type Gap } from "./order.js";
import {
  CloseCodes, CloseError, ClosedError, DisconnectedError, GoawayError, ParleyError, ProtocolError, TimeoutError,
  type Backoff, type ChatInfo, type Hello, type HistoryPage, type HistoryQuery, type Message, type Receipt,
  type GroupMembers, type Sent, type Settings, type State, type Stats, type UserPresence,
} from "./types.js";

/** The subset of the WebSocket API the client uses (browsers' WebSocket fits). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Opens a WebSocket; the default uses the global WebSocket. */
export type WebSocketFactory = (url: string, protocols?: string[]) => WebSocketLike;

export type LogLevel = "debug" | "info" | "warn";
export type Logger = (level: LogLevel, msg: string, attrs?: Record<string, unknown>) => void;

/** Options of a ParleyClient. Durations are in milliseconds. */
export interface ClientOptions {
  /** The server's WebSocket endpoint, ws://host:port/ws. Required. */
  url: string;
  /** The JWT, unless tokenProvider is set. */
  token?: string;
  /**
   * Returns the JWT for a (re)connect; called before every connection. After
   * the server refused the session (close 4001, 4005, 1008, 4004) the client
   * reconnects only if it returns a different token.
   */
  tokenProvider?: () => Promise<string>;
  /** This device's id, sent as ?device=. Empty lets the server decide. */
  device?: string;
  /** Where the token goes: the ?token= query parameter (default) or the parley.v1 + bearer.<jwt> subprotocols. */
  auth?: "query" | "subprotocol";
  /** Bounds connecting and waiting for hello. Default 10000. */
  dialTimeoutMs?: number;
  /** Bounds one attempt of a request. Default 10000. */
  requestTimeoutMs?: number;
  /** Reconnect backoff. Default {min: 250, max: 30000}. */
  backoff?: Backoff;
  /** Retry sends and read-only requests with the same id on retryable failures. Default true. */
  sendRetry?: boolean;
  /** Request retry backoff. Default {min: 100, max: 5000}. */
  retryBackoff?: Backoff;
  /** How long a message after a gap waits for the gap to fill before history is asked. Default 500. */
  gapWaitMs?: number;
  /** Longest an ack waits. Default 50. */
  ackIntervalMs?: number;
  /** Ack a chat at once when this many of its messages are unacked. Default 64. */
  ackBatch?: number;
  /** Positions of an earlier run (from positions()): chat -> highest seq received without gaps. */
  resume?: Record<string, number>;
  /** Skip the first catch-up's messages of chats not in resume (acked, not delivered). Default false. */
  fromNow?: boolean;
  /** WebSocket constructor; default the global WebSocket. */
  webSocket?: WebSocketFactory;
  /** Random source for jitter; default Math.random. */
  rand?: Rand;
  /** Receives connection events; default none. */
  logger?: Logger;
}

interface Events {
  message: Message;
  receipt: Receipt;
  presence: UserPresence;
  state: State;
}
type Listener<T> = (v: T) => void;

interface Session {
  ws: WebSocketLike;
  gen: number;
  hello: Hello;
  syncId: string;
  lastRead: number;
  end: (err: unknown) => void;
  ended: Promise<unknown>;
  hbTimer?: ReturnType<typeof setInterval>;
}

interface Call {
  gen: number;
  resolve: (f: ServerFrame) => void;
  reject: (e: unknown) => void;
}

const wsOpen = 1;

/** Returns a random 128-bit request id in hex. */
export function newRequestId(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reports whether err means the server refused the session for good. */
export function permanent(err: unknown): boolean {
  if (err instanceof CloseError) {
    return [CloseCodes.TokenExpired, CloseCodes.AuthFailed, CloseCodes.Policy, CloseCodes.Replaced].includes(err.code as 4001);
  }
  return false;
}

/** Reports whether a failed request attempt may succeed when retried with the same id. */
export function retryable(err: unknown): boolean {
  return err instanceof DisconnectedError || err instanceof TimeoutError || (err instanceof ParleyError && err.retryable);
}

export class ParleyClient {
  private readonly o: Required<Omit<ClientOptions, "token" | "tokenProvider" | "resume" | "logger" | "device">> & {
    token?: string; tokenProvider?: () => Promise<string>; device: string; logger: Logger;
  };
  private readonly listeners: { [K in keyof Events]: Set<Listener<Events[K]>> } = {
    message: new Set(), receipt: new Set(), presence: new Set(), state: new Set(),
  };
  private readonly orderer: Orderer;
  private readonly resume: Record<string, number>;
  private url: string;
  private token = "";
  private gen = 0;
  private conn: Session | null = null;
  private readyWaiters: (() => void)[] = [];
  private syncedWaiters: (() => void)[] = [];
  private synced = false;
  private catchingUp: boolean;
  private readonly pending = new Map<string, Call>();
  private readonly ownSends = new Map<string, number>();
  /** Per destination, the newest queued send: sends go out one at a time in call order, so a retried one is never overtaken. */
  private readonly sendTails = new Map<string, Promise<unknown>>();
  /** This user's id from the first hello, kept across reconnects (the send queues' key). */
  private self = "";
  private closed = false;
  private stopErr: unknown = null;
  private started: Promise<Hello> | null = null;
  private currentState: State = { kind: "connecting" };
  private sleepCancel: (() => void) | null = null;
  private dialCancel: (() => void) | null = null; // aborts a connection attempt waiting for hello
  // Acks: consumed = position handed to the app; acked = position acked.
  private readonly consumed = new Map<string, number>();
  private readonly acked = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private readonly urgent = new Set<string>(); // dirty chats to ack at once (after a retransmit)
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  private gapTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly st: Stats = {
    reconnects: 0, syncs: 0, duplicates: 0, retransmits: 0, gaps: 0, gapsFilled: 0, gapsSkipped: 0,
    acksSent: 0, goaways: 0, retries: 0, resyncs: 0,
  };

  constructor(opts: ClientOptions) {
    if (!opts.url) throw new Error("cannot create client: url is required");
    if (!opts.token === !opts.tokenProvider) throw new Error("cannot create client: set exactly one of token and tokenProvider");
    const factory: WebSocketFactory = opts.webSocket ?? ((u, p) => new (globalThis as unknown as { WebSocket: new (u: string, p?: string[]) => WebSocketLike }).WebSocket(u, p));
    this.o = {
      url: opts.url, token: opts.token, tokenProvider: opts.tokenProvider, device: opts.device ?? "",
      auth: opts.auth ?? "query", dialTimeoutMs: opts.dialTimeoutMs ?? 10000, requestTimeoutMs: opts.requestTimeoutMs ?? 10000,
      backoff: opts.backoff ?? { min: 250, max: 30000 }, sendRetry: opts.sendRetry ?? true,
      retryBackoff: opts.retryBackoff ?? { min: 100, max: 5000 }, gapWaitMs: opts.gapWaitMs ?? 500,
      ackIntervalMs: opts.ackIntervalMs ?? 50, ackBatch: opts.ackBatch ?? 64, fromNow: opts.fromNow ?? false,
      webSocket: factory, rand: opts.rand ?? Math.random, logger: opts.logger ?? (() => {}),
    };
    this.resume = { ...(opts.resume ?? {}) };
    this.orderer = new Orderer(this.resume, this.o.fromNow);
    for (const [c, s] of Object.entries(this.resume)) {
      this.consumed.set(c, s);
      this.acked.set(c, s);
    }
    this.catchingUp = this.o.fromNow;
    this.url = opts.url;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    this.listeners[event].add(fn);
    return () => this.listeners[event].delete(fn);
  }

  private emit<K extends keyof Events>(event: K, v: Events[K]): void {
    for (const fn of [...this.listeners[event]]) {
      try {
        fn(v);
      } catch (e) {
        this.o.logger("warn", `${event} listener threw`, { err: String(e) });
      }
    }
  }

  private setState(s: State): void {
    this.currentState = s;
    this.emit("state", s);
  }

  /**
   * Starts the client and resolves with the first session's hello. Unlike the
   * Go SDK's Dial it keeps retrying a failed first connection with backoff
   * (a browser cannot tell a refused upgrade from a network error); it
   * rejects only when the client is closed or the session is refused for good.
   * Calling it again returns the same promise.
   */
  start(): Promise<Hello> {
    if (!this.started) {
      this.started = new Promise<Hello>((resolve, reject) => {
        const off = this.on("state", (s) => {
          if (s.kind === "connected" && s.hello) {
            off();
            resolve(s.hello);
          } else if (s.kind === "closed") {
            off();
            reject(new ClosedError(s.error));
          }
        });
      });
      this.started.catch(() => {}); // callers that ignore the promise get no unhandled rejection
      void this.run();
    }
    return this.started;
  }

  /** The current connection state. */
  state(): State {
    return this.currentState;
  }

  /** The current (or last) session's hello, if any. */
  hello(): Hello | undefined {
    return this.currentState.hello ?? this.conn?.hello;
  }

  /** Counters since start. */
  stats(): Stats {
    return { ...this.st };
  }

  /** The URL the client (re)connects to: options.url, or the last goaway's url. */
  currentUrl(): string {
    return this.url;
  }

  /**
   * The app's positions: chat -> highest seq such that every message up to it
   * was handed to a message listener (or was this client's own send). Persist
   * them and pass them back as options.resume to continue without gaps or
   * re-downloads.
   */
  positions(): Record<string, number> {
    return Object.fromEntries(this.consumed);
  }

  /** Resolves once the current connection's catch-up after sync is complete. */
  waitSynced(): Promise<void> {
    if (this.stopErr || this.closed) return Promise.reject(new ClosedError(this.stopErr));
    if (this.synced && this.conn) return Promise.resolve();
    return new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  /** Closes the connection (1000), stops reconnecting and fails pending requests. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sleepCancel?.();
    this.dialCancel?.();
    if (this.ackTimer) clearTimeout(this.ackTimer);
    if (this.gapTimer) clearTimeout(this.gapTimer);
    const s = this.conn;
    if (s) {
      this.flushAcks();
      s.end(new ClosedError());
      try {
        s.ws.close(CloseCodes.Normal, "");
      } catch {
        /* already closed */
      }
    }
    for (const [id, c] of this.pending) {
      this.pending.delete(id);
      c.reject(new ClosedError(this.stopErr));
    }
    for (const w of this.readyWaiters.splice(0)) w();
    this.setState({ kind: "closed", error: this.stopErr ?? undefined });
  }

  // --- connection loop ---

  private async run(): Promise<void> {
    let err: unknown = null;
    let attempt = 0;
    for (;;) {
      if (this.closed) return;
      if (err !== null) {
        if (permanent(err)) {
          let same = true;
          if (this.o.tokenProvider) {
            try {
              same = (await this.o.tokenProvider()) === this.token;
            } catch {
              same = true;
            }
          }
          if (same) {
            this.stopErr = err;
            this.o.logger("warn", "client stopped: server refused the session", { err: String(err) });
            this.close();
            return;
          }
        }
        this.setState({ kind: "reconnecting", error: err, attempt: attempt + 1 });
        let delay = jitter(this.o.backoff, attempt, this.o.rand);
        if (attempt === 0 && err instanceof GoawayError) delay = goawayDelay(this.o.backoff, err.retryAfterMs, this.o.rand);
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay);
          this.sleepCancel = () => {
            clearTimeout(t);
            r();
          };
        });
        this.sleepCancel = null;
        if (this.closed) return;
      }
      let s: Session;
      try {
        s = await this.connect();
      } catch (e) {
        if (this.closed) return;
        this.o.logger("info", "connect failed", { attempt: attempt + 1, err: String(e) });
        err = e;
        attempt++;
        continue;
      }
      if (err !== null) this.st.reconnects++;
      attempt = 0;
      err = await s.ended;
      this.dropConn(s);
      if (this.closed) return;
      if (err instanceof GoawayError) {
        this.st.goaways++;
        if (err.url) this.url = err.url;
      }
      this.o.logger("info", "connection lost", { err: String(err) });
    }
  }

  private wsURL(token: string): string {
    const u = new URL(this.url);
    if (this.o.auth === "query") u.searchParams.set("token", token);
    if (this.o.device) u.searchParams.set("device", this.o.device);
    return u.toString();
  }

  /** Opens a connection, waits for hello, writes sync and publishes the session. */
  private async connect(): Promise<Session> {
    const token = this.o.tokenProvider ? await this.o.tokenProvider() : (this.o.token ?? "");
    this.token = token;
    const protocols = this.o.auth === "subprotocol" ? ["parley.v1", `bearer.${token}`] : undefined;
    const ws = this.o.webSocket(this.wsURL(token), protocols);
    const early: string[] = [];
    let earlyClose: { code: number; reason: string } | null = null;
    const hello = await new Promise<Hello>((resolve, reject) => {
      const t = setTimeout(() => {
        fail(new TimeoutError());
        try {
          ws.close(CloseCodes.Normal, "");
        } catch {
          /* ignore */
        }
      }, this.o.dialTimeoutMs);
      const fail = (e: unknown) => {
        clearTimeout(t);
        this.dialCancel = null;
        ws.onmessage = ws.onclose = ws.onerror = null;
        reject(e);
      };
      this.dialCancel = () => fail(new ClosedError());
      ws.onerror = () => {};
      ws.onclose = (ev) => fail(ev.code === 1006 || !ev.code ? new Error("cannot connect: connection failed") : new CloseError(ev.code, ev.reason));
      ws.onmessage = (ev) => {
        let f: ServerFrame;
        try {
          f = decodeServerFrame(String(ev.data));
        } catch (e) {
          fail(e);
          return;
        }
        if (f.type === "error") {
          fail(frameError(f));
          return;
        }
        if (f.type !== "hello") {
          fail(new ProtocolError(`first frame is ${JSON.stringify(f.type)}, want hello`));
          return;
        }
        clearTimeout(t);
        this.dialCancel = null;
        // Frames after hello wait here until the session is installed.
        ws.onmessage = (e2) => early.push(String(e2.data));
        ws.onclose = (e2) => (earlyClose = e2);
        resolve({ protocol: f.protocol ?? 0, user: f.user ?? "", device: f.device ?? "", session: f.session ?? "", heartbeatMs: f.heartbeat_ms ?? 0 });
      };
    }).catch((e) => {
      try {
        ws.close(CloseCodes.Normal, "");
      } catch {
        /* ignore */
      }
      throw e;
    });
    if (this.closed) {
      ws.close(CloseCodes.Normal, "");
      throw new ClosedError();
    }
    let end!: (e: unknown) => void;
    const ended = new Promise<unknown>((r) => (end = r));
    const s: Session = { ws, gen: ++this.gen, hello, syncId: newRequestId(), lastRead: Date.now(), end: () => {}, ended };
    let done = false;
    s.end = (e) => {
      if (done) return;
      done = true;
      if (s.hbTimer) clearInterval(s.hbTimer);
      end(e);
    };
    ws.onclose = (ev) => s.end(new CloseError(ev.code, ev.reason));
    const onFrame = (data: string) => {
      s.lastRead = Date.now();
      let f: ServerFrame;
      try {
        f = decodeServerFrame(data);
      } catch (e) {
        this.o.logger("debug", "ignoring bad server frame", { err: String(e) });
        return;
      }
      this.dispatch(f, s);
    };
    ws.onmessage = (ev) => onFrame(String(ev.data));
    // Sync before anything else: the positions handed to the app.
    const chats = this.positions();
    const sync: Record<string, unknown> = { type: "sync", id: s.syncId };
    if (Object.keys(chats).length > 0) sync.chats = chats;
    ws.send(JSON.stringify(sync));
    if (hello.heartbeatMs > 0) {
      const iv = hello.heartbeatMs;
      let n = 0;
      s.hbTimer = setInterval(() => {
        const silent = Date.now() - s.lastRead;
        if (silent >= 3 * iv) {
          s.end(new Error("connection silent for three heartbeat intervals"));
          try {
            ws.close(CloseCodes.Normal, "");
          } catch {
            /* ignore */
          }
        } else if (silent >= iv && ws.readyState === wsOpen) {
          ws.send(JSON.stringify({ type: "ping", id: `hb-${++n}` }));
        }
      }, iv);
    }
    this.conn = s;
    this.self ||= s.hello.user;
    this.synced = false;
    for (const w of this.readyWaiters.splice(0)) w();
    this.setState({ kind: "connected", hello });
    this.o.logger("info", "connected", { user_id: hello.user, device_id: hello.device, session: hello.session });
    for (const data of early.splice(0)) onFrame(data);
    const ec = earlyClose as { code: number; reason: string } | null;
    if (ec) s.end(new CloseError(ec.code, ec.reason));
    return s;
  }

  /** Forgets s and fails the requests written on it. */
  private dropConn(s: Session): void {
    s.end(null);
    try {
      s.ws.close(CloseCodes.Normal, "");
    } catch {
      /* ignore */
    }
    if (this.conn !== s) return;
    this.conn = null;
    this.synced = false;
    for (const [id, c] of this.pending) {
      if (c.gen === s.gen) {
        this.pending.delete(id);
        c.reject(new DisconnectedError());
      }
    }
  }

  private markSynced(s: Session): void {
    if (this.conn !== s || this.synced) return;
    this.synced = true;
    this.st.syncs++;
    for (const w of this.syncedWaiters.splice(0)) w();
    this.setState({ kind: "connected", hello: s.hello, synced: true });
  }

  // --- frames ---

  private dispatch(f: ServerFrame, s: Session): void {
    switch (f.type) {
      case "msg": {
        const m = frameMessage(f);
        const own = this.isOwn(m);
        let skip = own;
        if (this.catchingUp && !skip && !(m.chat in this.resume)) skip = true;
        this.add(m, skip, own, true);
        return;
      }
      case "sent":
        this.add({ chat: f.chat!, seq: f.seq!, from: "", device: "", id: f.id!, ts: f.ts ?? 0, kind: "text", body: "" }, true, true, false);
        this.resolve(f);
        return;
      case "synced":
        if (f.id && f.id === s.syncId) {
          this.catchingUp = false;
          this.markSynced(s);
        }
        return;
      case "goaway":
        s.end(new GoawayError(f.retry_after_ms ?? 0, f.url ?? ""));
        return;
      case "receipt":
        this.emit("receipt", { chat: f.chat!, user: f.user!, device: f.device ?? "", seq: f.seq!, status: f.status ?? "delivered" });
        return;
      case "presence":
        if (f.id && this.resolve(f)) return;
        for (const p of framePresence(f)) this.emit("presence", p);
        return;
      case "error":
        if (f.id && f.id === s.syncId) {
          this.o.logger("info", "server refused sync; resyncing from history", { code: f.code });
          this.catchingUp = false;
          void this.resyncChats(this.positions());
          this.markSynced(s);
          return;
        }
        if (!f.id || !this.resolve(f)) this.o.logger("warn", "server error", { request_id: f.id, code: f.code, message: f.message });
        return;
      case "ok":
        if (f.id === s.syncId) return;
        this.resolve(f);
        return;
      case "hello":
        return;
      default:
        if (f.id) this.resolve(f);
    }
  }

  /** A send of this client still in flight. Request ids are scoped per device, so a message of another device with the same id is not. */
  private isOwn(m: Message): boolean {
    const hello = this.conn?.hello;
    if (m.id === "" || m.from !== hello?.user) return false;
    if (m.device !== "" && m.device !== hello.device) return false;
    return (this.ownSends.get(m.id) ?? 0) > 0;
  }

  private resolve(f: ServerFrame): boolean {
    const c = f.id ? this.pending.get(f.id) : undefined;
    if (!c) return false;
    this.pending.delete(f.id!);
    if (f.type === "error") c.reject(frameError(f));
    else c.resolve(f);
    return true;
  }

  // --- delivery ---

  private add(m: Message, skip: boolean, own: boolean, push: boolean): void {
    const r = this.orderer.add(m, skip, Date.now());
    if (r.dup && !own) {
      this.st.duplicates++;
      if (push) {
        this.st.retransmits++;
        // The server pushed it again: our ack may have been lost.
        this.dirty.add(m.chat);
        this.urgent.add(m.chat);
      }
    }
    if (r.gapOpened) this.st.gaps++;
    this.deliver(m.chat, r.ready, own);
    this.checkGaps();
  }

  private deliver(chat: string, ready: Message[], quiet: boolean): void {
    for (const m of ready) this.emit("message", m);
    const pos = this.orderer.cursor(chat);
    if (pos > (this.consumed.get(chat) ?? 0)) {
      this.consumed.set(chat, pos);
      if (!quiet || ready.length > 0) this.dirty.add(chat);
    }
    this.scheduleAcks();
  }

  private scheduleAcks(): void {
    if (this.dirty.size === 0) return;
    for (const c of this.dirty) {
      if (this.urgent.has(c) || (this.consumed.get(c) ?? 0) >= (this.acked.get(c) ?? 0) + this.o.ackBatch) {
        this.flushAcks();
        return;
      }
    }
    if (!this.ackTimer) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        this.flushAcks();
      }, this.o.ackIntervalMs);
    }
  }

  /** Writes a cumulative ack for every chat that moved; kept for later when disconnected. */
  private flushAcks(): void {
    const s = this.conn;
    if (!s || s.ws.readyState !== wsOpen) return; // the next sync carries the positions
    for (const c of [...this.dirty]) {
      const seq = this.consumed.get(c) ?? 0;
      this.dirty.delete(c);
      this.urgent.delete(c);
      if (seq === 0) continue;
      try {
        s.ws.send(JSON.stringify({ type: "ack", chat: c, seq }));
      } catch {
        this.dirty.add(c);
        return;
      }
      this.acked.set(c, seq);
      this.st.acksSent++;
    }
  }

  private checkGaps(): void {
    if (this.gapTimer) {
      clearTimeout(this.gapTimer);
      this.gapTimer = null;
    }
    if (this.closed) return;
    const now = Date.now();
    const { gaps, next } = this.orderer.due(now, this.o.gapWaitMs);
    for (const g of gaps) void this.fillGap(g);
    if (next > 0) this.gapTimer = setTimeout(() => this.checkGaps(), Math.max(next - now, 1));
  }

  private async fillGap(g: Gap): Promise<void> {
    let msgs: Message[] = [];
    let err: unknown = null;
    try {
      msgs = await this.fetchRange(g.chat, g.after, g.before);
    } catch (e) {
      err = e;
      msgs = (e as { partial?: Message[] }).partial ?? [];
    }
    if (this.closed) return;
    this.orderer.filled(g.chat);
    for (const m of msgs) this.add(m, this.isOwn(m), false, false);
    if (err !== null && retryable(err)) {
      this.orderer.retryGap(g.chat, Date.now());
      this.checkGaps();
      return;
    }
    if (this.orderer.cursor(g.chat) + 1 >= g.before) {
      this.st.gapsFilled++;
      return;
    }
    const { ready, skipped } = this.orderer.skipGap(g.chat);
    this.st.gapsSkipped++;
    if (skipped > 0) this.o.logger("warn", "skipping gap in chat", { chat_id: g.chat, missing: skipped, err: String(err) });
    this.deliver(g.chat, ready, false);
    this.checkGaps();
  }

  /** Pages through history for after < seq < before. */
  private async fetchRange(chat: string, after: number, before: number): Promise<Message[]> {
    const msgs: Message[] = [];
    while (after + 1 < before) {
      let page: HistoryPage;
      const limit = Math.min(before - after - 1, 200);
      // The first page of a chat is asked as the one below seq limit+1:
      // older servers read after 0 as "no bound".
      const first = after === 0;
      try {
        page = await this.history(chat, first ? { before: limit + 1, limit } : { after, limit });
      } catch (e) {
        throw Object.assign(e as object, { partial: msgs });
      }
      let progressed = false;
      for (const m of page.messages) {
        if (m.seq > after && m.seq < before) {
          msgs.push(m);
          after = m.seq;
          progressed = true;
        }
      }
      // more of a before page speaks of older messages: none below 1.
      if (!progressed || (!first && !page.more)) break;
    }
    return msgs;
  }

  /** Catch-up from history for servers that refuse sync. */
  private async resyncChats(cursors: Record<string, number>): Promise<void> {
    if (Object.keys(cursors).length === 0) return;
    let chats: ChatInfo[];
    try {
      chats = await this.chats();
    } catch (e) {
      this.o.logger("info", "cannot resync after reconnect", { err: String(e) });
      return;
    }
    this.st.resyncs++;
    for (const ch of chats) {
      const cur = cursors[ch.chat];
      if (cur === undefined || ch.last_seq <= cur) continue;
      try {
        for (const m of await this.fetchRange(ch.chat, cur, ch.last_seq + 1)) this.add(m, this.isOwn(m), false, false);
      } catch (e) {
        this.o.logger("info", "cannot resync chat", { chat_id: ch.chat, err: String(e) });
      }
    }
  }

  // --- requests ---

  private waitConn(deadline: number): Promise<Session> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.closed) return reject(new ClosedError(this.stopErr));
        if (this.conn) return resolve(this.conn);
        const left = deadline - Date.now();
        if (left <= 0) return reject(new TimeoutError());
        const t = setTimeout(() => {
          const i = this.readyWaiters.indexOf(w);
          if (i >= 0) this.readyWaiters.splice(i, 1);
          check();
        }, left);
        const w = () => {
          clearTimeout(t);
          check();
        };
        this.readyWaiters.push(w);
      };
      check();
    });
  }

  private async roundTrip(req: Record<string, unknown> & { id: string }): Promise<ServerFrame> {
    const deadline = Date.now() + this.o.requestTimeoutMs;
    const s = await this.waitConn(deadline);
    return new Promise<ServerFrame>((resolve, reject) => {
      const t = setTimeout(() => {
        if (this.pending.get(req.id) === c) this.pending.delete(req.id);
        reject(new TimeoutError());
      }, Math.max(deadline - Date.now(), 1));
      const c: Call = {
        gen: s.gen,
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.pending.set(req.id, c);
      try {
        s.ws.send(JSON.stringify(req));
      } catch {
        this.pending.delete(req.id);
        c.reject(new DisconnectedError());
      }
    });
  }

  /** Runs one request, retrying retryable failures (same id) when retry is set. */
  private async request(req: Record<string, unknown> & { id: string }, retry: boolean): Promise<ServerFrame> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.roundTrip(req);
      } catch (e) {
        if (!retry || !retryable(e) || this.closed) throw e;
        let delay = jitter(this.o.retryBackoff, attempt, this.o.rand);
        if (e instanceof ParleyError && e.retryAfterMs > delay) delay = e.retryAfterMs;
        this.st.retries++;
        this.o.logger("debug", "retrying request", { request_id: req.id, type: req.type, attempt: attempt + 1, delay, err: String(e) });
        await sleep(delay);
        if (this.closed) throw new ClosedError(this.stopErr);
      }
    }
  }

  /** Posts body to the chat and resolves once it is durable. Retried with the same id (see sendRetry). */
  send(chat: string, body: string): Promise<Sent> {
    return this.sendWithId(newRequestId(), chat, body);
  }

  /** Posts body to the 1-on-1 chat with user (created on the first message). */
  sendTo(user: string, body: string): Promise<Sent> {
    return this.sendWithId(newRequestId(), user, body);
  }

  /**
   * send with a caller-chosen request id (for an app that keeps an outbox).
   * dest is a chat id when it contains ':', else a user id.
   */
  sendWithId(id: string, dest: string, body: string): Promise<Sent> {
    // Sends to one destination go out one at a time in call order: a send
    // retried after rate_limited (or any retryable error) is never
    // overtaken by a later one. docs/protocol.md, "Order of a device's sends".
    // A 1-on-1 chat reached by user id and by its dm: id is one queue.
    // this.self, not the current connection's hello: sends made while
    // reconnecting must queue behind the ones retrying. Before the first
    // hello the user is unknown and every send goes on one queue ("*"),
    // which later sends also wait for.
    const me = this.self;
    const key = !me ? "*" : !dest.includes(":") && dest !== me ? (me < dest ? `dm:${me}:${dest}` : `dm:${dest}:${me}`) : dest;
    const before = [this.sendTails.get(key), key === "*" ? undefined : this.sendTails.get("*")];
    const prev = Promise.all(before.map((p) => (p ?? Promise.resolve()).catch(() => undefined)));
    const mine = prev.then(() => this.sendNow(id, dest, body));
    const tail = mine.catch(() => undefined);
    this.sendTails.set(key, tail);
    void tail.then(() => {
      if (this.sendTails.get(key) === tail) this.sendTails.delete(key);
    });
    return mine;
  }

  private async sendNow(id: string, dest: string, body: string): Promise<Sent> {
    this.ownSends.set(id, (this.ownSends.get(id) ?? 0) + 1);
    try {
      const req: Record<string, unknown> & { id: string } = { type: "send", id, body };
      if (dest.includes(":")) req.chat = dest;
      else req.to = dest;
      const f = await this.request(req, this.o.sendRetry);
      if (f.type !== "sent" || !f.seq) throw new ProtocolError(`answer ${JSON.stringify(f.type)} to send`);
      return { id, chat: f.chat ?? "", seq: f.seq, ts: f.ts ?? 0 };
    } finally {
      const n = (this.ownSends.get(id) ?? 1) - 1;
      if (n <= 0) this.ownSends.delete(id);
      else this.ownSends.set(id, n);
    }
  }

  /** A page of chat's messages in ascending seq order, and whether more exist beyond it. */
  async history(chat: string, q: HistoryQuery = {}): Promise<HistoryPage> {
    const req: Record<string, unknown> & { id: string } = { type: "history", id: newRequestId(), chat };
    if (q.before) req.before = q.before;
    else if (q.after !== undefined) req.after = q.after; // after 0: from the oldest
    if (q.limit) req.limit = q.limit;
    const f = await this.request(req, this.o.sendRetry);
    if (f.type !== "history") throw new ProtocolError(`answer ${JSON.stringify(f.type)} to history`);
    return { messages: (f.messages ?? []).map((m) => wireMessage(m, chat)), more: Boolean(f.more) };
  }

  /** The user's chat list with unread counts. */
  async chats(): Promise<ChatInfo[]> {
    const f = await this.request({ type: "chats", id: newRequestId() }, this.o.sendRetry);
    if (f.type !== "chats") throw new ProtocolError(`answer ${JSON.stringify(f.type)} to chats`);
    return f.chats ?? [];
  }

  /** Creates a group with the caller and members; resolves with its chat id. Idempotent, so retried like send. */
  async createGroup(name: string, members: string[]): Promise<string> {
    const f = await this.request({ type: "group_create", id: newRequestId(), name, members }, this.o.sendRetry);
    if (!f.chat) throw new ProtocolError("group_create answer without chat");
    return f.chat;
  }

  /** Adds user to the group (admins only); resolves with the seq of the system message. Not retried. */
  async addMember(chat: string, user: string): Promise<number> {
    return (await this.request({ type: "group_add", id: newRequestId(), chat, user }, false)).seq ?? 0;
  }

  /** Removes user from the group (admins only; never the creator). Not retried. */
  async removeMember(chat: string, user: string): Promise<number> {
    return (await this.request({ type: "group_remove", id: newRequestId(), chat, user }, false)).seq ?? 0;
  }

  /** Makes user an admin of the group, or a plain member again (admins only); resolves with the seq of the role_changed event (0 when unchanged). Not retried. */
  async setRole(chat: string, user: string, role: "admin" | "member"): Promise<number> {
    return (await this.request({ type: "group_role", id: newRequestId(), chat, user, role }, false)).seq ?? 0;
  }

  /** Leaves the group. Not retried. */
  async leave(chat: string): Promise<number> {
    return (await this.request({ type: "group_leave", id: newRequestId(), chat }, false)).seq ?? 0;
  }

  /** The chat's members, sorted. */
  async members(chat: string): Promise<string[]> {
    return (await this.groupMembers(chat)).members;
  }

  /** The chat's members with a group's admins (sorted, the creator included) and creator ("" when not a member). */
  async groupMembers(chat: string): Promise<GroupMembers> {
    const f = await this.request({ type: "members", id: newRequestId(), chat }, this.o.sendRetry);
    return { members: f.members ?? [], admins: f.admins ?? [], creator: f.creator ?? "" };
  }

  /** The users' presence. */
  async presence(users: string[]): Promise<UserPresence[]> {
    const f = await this.request({ type: "presence", id: newRequestId(), users }, this.o.sendRetry);
    if (f.type !== "presence") throw new ProtocolError(`answer ${JSON.stringify(f.type)} to presence`);
    return framePresence(f);
  }

  /** The user's settings. */
  async settings(): Promise<Settings> {
    return this.settingsRequest(undefined);
  }

  /** Hides (or shows again) the user's last-seen time from everyone else; resolves with the settings after the change. */
  async setHideLastSeen(hide: boolean): Promise<Settings> {
    return this.settingsRequest(hide);
  }

  private async settingsRequest(hide: boolean | undefined): Promise<Settings> {
    const req: Record<string, unknown> & { id: string } = { type: "settings", id: newRequestId() };
    if (hide !== undefined) req.hide_last_seen = hide;
    // A retried change sets the same value again: safe to retry.
    const f = await this.request(req, this.o.sendRetry);
    if (f.type !== "settings") throw new ProtocolError(`answer ${JSON.stringify(f.type)} to settings`);
    return { hideLastSeen: f.hide_last_seen === true };
  }

  /** An application-level ping; resolves with the round-trip time in ms. */
  async ping(): Promise<number> {
    const start = Date.now();
    await this.request({ type: "ping", id: newRequestId() }, this.o.sendRetry);
    return Date.now() - start;
  }

  /** Tells the server the user read chat up to seq (no answer). Waits for a connection within requestTimeoutMs. */
  async markRead(chat: string, seq: number): Promise<void> {
    const s = await this.waitConn(Date.now() + this.o.requestTimeoutMs);
    try {
      s.ws.send(JSON.stringify({ type: "read", chat, seq }));
    } catch {
      throw new DisconnectedError();
    }
  }
}
