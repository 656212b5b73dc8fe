// ParleyClient against a fake WebSocket server: sync, exactly-once in-order
// hand-off, batched acks, send retries with the same id, goaway, gaps.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { ParleyClient, ParleyError } from "../../dist/sdk/parley.js";
import { FakeServer, sleep } from "./fakews.mjs";

const clients = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function newClient(srv, extra = {}) {
  const c = new ParleyClient({
    url: "ws://fake/ws", token: "tok", device: "d1", webSocket: srv.factory,
    backoff: { min: 5, max: 20 }, retryBackoff: { min: 5, max: 20 }, ackIntervalMs: 10, gapWaitMs: 30,
    requestTimeoutMs: 1000, ...extra,
  });
  clients.push(c);
  const got = [];
  c.on("message", (m) => got.push(`${m.chat}#${m.seq}:${m.body}`));
  return { c, got };
}

const msg = (chat, seq, extra = {}) => ({ type: "msg", chat, seq, from: "bob", device: "p", id: `r${seq}`, ts: 1, kind: "text", body: `m${seq}`, ...extra });

test("connects with token and device in the query and syncs resume positions", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv, { resume: { "dm:alice:bob": 7 } });
  const started = c.start();
  const cn = await srv.conn(0);
  const u = new URL(cn.url);
  assert.equal(u.searchParams.get("token"), "tok");
  assert.equal(u.searchParams.get("device"), "d1");
  cn.hello();
  const h = await started;
  assert.equal(h.user, "alice");
  const sync = await cn.next((f) => f.type === "sync");
  assert.deepEqual(sync.chats, { "dm:alice:bob": 7 });
  cn.push({ type: "ok", id: sync.id });
  cn.push({ type: "synced", id: sync.id });
  await c.waitSynced();
  assert.equal(c.stats().syncs, 1);
  c.close();
});

test("subprotocol auth puts the token in bearer.<jwt>", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv, { auth: "subprotocol" });
  void c.start();
  const cn = await srv.conn(0);
  assert.deepEqual(cn.protocols, ["parley.v1", "bearer.tok"]);
  assert.equal(new URL(cn.url).searchParams.get("token"), null);
  c.close();
});

test("hands each (chat, seq) over once, in order, and acks cumulatively", async () => {
  const srv = new FakeServer();
  const { c, got } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  const sync = await cn.next((f) => f.type === "sync");
  assert.equal(sync.chats, undefined);
  for (const s of [1, 2, 2, 1, 3]) cn.push(msg("c", s));
  cn.push(msg("c", 3)); // retransmit
  assert.deepEqual(got, ["c#1:m1", "c#2:m2", "c#3:m3"]);
  const ack = await cn.next((f) => f.type === "ack" && f.seq === 3);
  assert.equal(ack.chat, "c");
  assert.equal(c.stats().duplicates, 3);
  assert.equal(c.stats().retransmits, 3);
  assert.deepEqual(c.positions(), { c: 3 });

  // reconnect: the new sync carries the positions; overlap is dropped
  cn.serverClose(1012, "link lost");
  const cn2 = await srv.conn(1);
  cn2.hello();
  const sync2 = await cn2.next((f) => f.type === "sync");
  assert.deepEqual(sync2.chats, { c: 3 });
  cn2.push(msg("c", 3));
  cn2.push(msg("c", 4));
  cn2.push({ type: "synced", id: sync2.id });
  assert.deepEqual(got, ["c#1:m1", "c#2:m2", "c#3:m3", "c#4:m4"]);
  assert.equal(c.stats().reconnects, 1);
  c.close();
});

test("acks are batched and cumulative", async () => {
  const srv = new FakeServer();
  const { c, got } = newClient(srv, { ackIntervalMs: 30 });
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await cn.next((f) => f.type === "sync");
  for (let s = 1; s <= 5; s++) cn.push(msg("c", s));
  for (let s = 1; s <= 3; s++) cn.push(msg("d", s));
  assert.equal(got.length, 8);
  await sleep(80);
  const acks = cn.sent.filter((f) => f.type === "ack").map((f) => `${f.chat}:${f.seq}`).sort();
  assert.deepEqual(acks, ["c:5", "d:3"]);
  c.close();
});

test("a retransmit asks for an immediate re-ack", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv, { ackIntervalMs: 5000 });
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await cn.next((f) => f.type === "sync");
  cn.push(msg("c", 1));
  cn.push(msg("c", 1));
  const ack = await cn.next((f) => f.type === "ack", 0, 500);
  assert.equal(ack.seq, 1);
  c.close();
});

test("send is retried with the same id across a reconnect until sent", async () => {
  const srv = new FakeServer();
  const { c, got } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello("alice");
  const p = c.sendTo("bob", "hello");
  const s1 = await cn.next((f) => f.type === "send");
  assert.equal(s1.to, "bob");
  assert.equal(s1.body, "hello");
  cn.serverClose(1006);
  const cn2 = await srv.conn(1);
  cn2.hello("alice");
  const s2 = await cn2.next((f) => f.type === "send");
  assert.equal(s2.id, s1.id, "same request id on retry");
  // The catch-up pushes our own message before the sent answer: not delivered.
  cn2.push(msg("dm:alice:bob", 1, { from: "alice", device: "d1", id: s1.id }));
  cn2.push({ type: "sent", id: s1.id, chat: "dm:alice:bob", seq: 1, ts: 5 });
  const sent = await p;
  assert.deepEqual(sent, { id: s1.id, chat: "dm:alice:bob", seq: 1, ts: 5 });
  assert.deepEqual(got, []);
  assert.ok(c.stats().retries >= 1);
  c.close();
});

test("retryable errors honour retry_after_ms; permanent ones fail", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  const p = c.send("g:x", "hi");
  const s1 = await cn.next((f) => f.type === "send");
  const t0 = Date.now();
  cn.push({ type: "error", id: s1.id, code: "rate_limited", message: "slow", retryable: true, retry_after_ms: 60 });
  const n = cn.sent.length;
  const s2 = await cn.next((f) => f.type === "send", n);
  assert.ok(Date.now() - t0 >= 55, `retried after ${Date.now() - t0} ms, want >= 60`);
  assert.equal(s2.id, s1.id);
  cn.push({ type: "error", id: s1.id, code: "not_member", message: "no", retryable: false });
  await assert.rejects(p, (e) => e instanceof ParleyError && e.code === "not_member");
  c.close();
});

test("goaway reconnects to the given url after the hint", async () => {
  const srv = new FakeServer();
  const states = [];
  const { c } = newClient(srv, { backoff: { min: 5, max: 1000 } });
  c.on("state", (s) => states.push(s.kind));
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await cn.next((f) => f.type === "sync");
  const t0 = Date.now();
  cn.push({ type: "goaway", retry_after_ms: 40, url: "ws://other:9/ws" });
  const cn2 = await srv.conn(1);
  assert.ok(Date.now() - t0 >= 35, `reconnected after ${Date.now() - t0} ms, want >= 40`);
  assert.equal(new URL(cn2.url).host, "other:9");
  assert.equal(c.currentUrl(), "ws://other:9/ws");
  assert.equal(c.stats().goaways, 1);
  assert.ok(states.includes("reconnecting"));
  c.close();
});

test("a gap from the start is asked as the page below it, not after 0", async () => {
  const srv = new FakeServer();
  const { c, got } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await cn.next((f) => f.type === "sync");
  cn.push(msg("c", 3));
  const h = await cn.next((f) => f.type === "history");
  // after 0 would mean the newest page: the first page is asked with before.
  assert.equal(h.before, 3);
  assert.equal(h.after, undefined);
  assert.equal(h.limit, 2);
  cn.push({ type: "history", id: h.id, chat: "c", messages: [msg("c", 1), msg("c", 2)].map(({ type, ...m }) => m), more: false });
  await sleep(10);
  assert.deepEqual(got, ["c#1:m1", "c#2:m2", "c#3:m3"]);
  assert.equal(c.stats().gapsFilled, 1);
  c.close();
});

test("a gap is filled from history", async () => {
  const srv = new FakeServer();
  const { c, got } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await cn.next((f) => f.type === "sync");
  cn.push(msg("c", 1));
  cn.push(msg("c", 4));
  assert.deepEqual(got, ["c#1:m1"]);
  const h = await cn.next((f) => f.type === "history");
  assert.equal(h.after, 1);
  assert.equal(h.limit, 2);
  cn.push({ type: "history", id: h.id, chat: "c", messages: [msg("c", 2), msg("c", 3)].map(({ type, ...m }) => m), more: false });
  await sleep(10);
  assert.deepEqual(got, ["c#1:m1", "c#2:m2", "c#3:m3", "c#4:m4"]);
  assert.equal(c.stats().gapsFilled, 1);
  c.close();
});

test("a refused session stops the client", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv);
  const started = c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await started;
  cn.serverClose(4005, "auth failed");
  await sleep(60);
  assert.equal(srv.conns.length, 1, "no reconnect after 4005");
  assert.equal(c.state().kind, "closed");
  await assert.rejects(c.send("g:x", "hi"));
});

test("requests fail with a timeout when unanswered and not retried", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv, { sendRetry: false, requestTimeoutMs: 50 });
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  await assert.rejects(c.chats(), (e) => e.name === "TimeoutError");
  c.close();
});

test("pipelined sends keep their order across a rate_limited retry", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  // Made one after another without waiting: that is their order.
  const ps = ["a", "b", "c"].map((body) => c.send("g:x", body));
  const stored = [];
  let from = 0;
  let refused = false;
  while (stored.length < 3) {
    const f = await cn.next((f) => f.type === "send", from);
    from = cn.sent.indexOf(f) + 1;
    if (f.body === "b" && !refused) {
      refused = true; // b's first attempt is refused: c must not overtake it
      cn.push({ type: "error", id: f.id, code: "rate_limited", message: "slow", retryable: true, retry_after_ms: 30 });
      continue;
    }
    stored.push(f.body);
    cn.push({ type: "sent", id: f.id, chat: "g:x", seq: stored.length, ts: 1 });
  }
  const sent = await Promise.all(ps);
  assert.deepEqual(stored, ["a", "b", "c"]);
  assert.deepEqual(sent.map((s) => s.seq), [1, 2, 3]);
  c.close();
});

test("another device's message with the id of a send in flight is delivered (ids are per device)", async () => {
  const srv = new FakeServer();
  const { c, got } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello("alice");
  const p = c.send("g:x", "mine");
  const s1 = await cn.next((f) => f.type === "send");
  cn.push(msg("g:x", 1, { from: "alice", device: "d2", id: s1.id, body: "from d2" }));
  cn.push({ type: "sent", id: s1.id, chat: "g:x", seq: 2, ts: 5 });
  await p;
  for (let i = 0; i < 50 && got.length === 0; i++) await sleep(5);
  assert.deepEqual(got, ["g:x#1:from d2"]);
  c.close();
});

test("a send made while reconnecting waits behind one still retrying", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello("alice");
  const p1 = c.sendTo("bob", "1");
  const s1 = await cn.next((f) => f.type === "send");
  cn.push({ type: "error", id: s1.id, code: "rate_limited", message: "slow", retryable: true, retry_after_ms: 50 });
  cn.serverClose(1006);
  const p2 = c.sendTo("bob", "2"); // while the connection is down
  const cn2 = await srv.conn(1);
  cn2.hello("alice");
  const first = await cn2.next((f) => f.type === "send");
  assert.equal(first.body, "1", "the retried send goes first");
  cn2.push({ type: "sent", id: first.id, chat: "dm:alice:bob", seq: 1, ts: 1 });
  const second = await cn2.next((f) => f.type === "send" && f.id !== first.id);
  assert.equal(second.body, "2");
  cn2.push({ type: "sent", id: second.id, chat: "dm:alice:bob", seq: 2, ts: 1 });
  assert.deepEqual((await Promise.all([p1, p2])).map((s) => s.seq), [1, 2]);
  c.close();
});

test("settings reads and changes hide_last_seen", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  const answer = async (hide) => {
    const f = await cn.next((f) => f.type === "settings" && !f.answered);
    f.answered = true;
    cn.push({ type: "settings", id: f.id, hide_last_seen: hide ?? f.hide_last_seen ?? false });
    return f;
  };
  const read = c.settings();
  const f1 = await answer(false);
  assert.equal(f1.hide_last_seen, undefined);
  assert.deepEqual(await read, { hideLastSeen: false });
  const set = c.setHideLastSeen(true);
  const f2 = await answer();
  assert.equal(f2.hide_last_seen, true);
  assert.deepEqual(await set, { hideLastSeen: true });
  c.close();
});

test("group roles: setRole sends group_role, groupMembers reads admins and creator", async () => {
  const srv = new FakeServer();
  const { c } = newClient(srv);
  void c.start();
  const cn = await srv.conn(0);
  cn.hello();
  const set = c.setRole("g:x", "bob", "admin");
  const f = await cn.next((f) => f.type === "group_role");
  assert.deepEqual({ chat: f.chat, user: f.user, role: f.role }, { chat: "g:x", user: "bob", role: "admin" });
  cn.push({ type: "ok", id: f.id, chat: "g:x", seq: 7 });
  assert.equal(await set, 7);
  const get = c.groupMembers("g:x");
  const m = await cn.next((f) => f.type === "members");
  cn.push({ type: "members", id: m.id, chat: "g:x", members: ["alice", "bob"], admins: ["alice", "bob"], creator: "alice" });
  assert.deepEqual(await get, { members: ["alice", "bob"], admins: ["alice", "bob"], creator: "alice" });
  c.close();
});
