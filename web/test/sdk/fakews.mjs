// A fake WebSocket server for SDK unit tests: every connection the client
// opens is recorded; tests push server frames and inspect client frames.
export class FakeConn {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = []; // parsed client frames
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.waiters = [];
    this.closed = false;
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("not open");
    const f = JSON.parse(data);
    this.sent.push(f);
    for (const w of this.waiters.splice(0)) w();
  }
  close(code = 1000, reason = "") {
    this.serverClose(code, reason);
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  hello(user = "alice", heartbeat_ms = 0) {
    this.open();
    this.push({ type: "hello", protocol: 1, user, device: "d1", session: "s1", heartbeat_ms });
  }
  serverClose(code = 1006, reason = "") {
    if (this.closed) return;
    this.closed = true;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Resolves with the first client frame (from index from on) matching pred. */
  async next(pred, from = 0, timeout = 2000) {
    const end = Date.now() + timeout;
    for (;;) {
      const f = this.sent.slice(from).find(pred);
      if (f) return f;
      if (Date.now() > end) throw new Error(`no matching client frame; sent: ${JSON.stringify(this.sent)}`);
      await new Promise((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
  }
}

export class FakeServer {
  constructor() {
    this.conns = [];
    this.waiters = [];
    this.factory = (url, protocols) => {
      const c = new FakeConn(url, protocols);
      this.conns.push(c);
      for (const w of this.waiters.splice(0)) w();
      return c;
    };
  }
  /** Resolves with connection number n (0-based) once the client opened it. */
  async conn(n, timeout = 3000) {
    const end = Date.now() + timeout;
    while (this.conns.length <= n) {
      if (Date.now() > end) throw new Error(`connection ${n} not opened`);
      await new Promise((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
    return this.conns[n];
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
