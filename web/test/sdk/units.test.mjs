// Unit tests of the pure parts of the SDK: frame decoding, backoff, orderer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeServerFrame, ProtocolError, jitter, goawayDelay, Orderer } from "../../dist/sdk/parley.js";

test("decodeServerFrame rejects bad frames", () => {
  const cases = [
    ["empty", ""],
    ["not json", "{"],
    ["array", "[]"],
    ["no type", "{}"],
    ["hello without user", `{"type":"hello"}`],
    ["msg without seq", `{"type":"msg","chat":"c"}`],
    ["sent without id", `{"type":"sent","chat":"c","seq":1}`],
    ["receipt without user", `{"type":"receipt","chat":"c","seq":1}`],
    ["goaway bad url", `{"type":"goaway","retry_after_ms":1,"url":"http://x"}`],
    ["negative retry", `{"type":"goaway","retry_after_ms":-1}`],
    ["error without code", `{"type":"error","id":"1"}`],
    ["history without seq", `{"type":"history","id":"1","chat":"c","messages":[{"body":"x"}]}`],
    ["ok without id", `{"type":"ok"}`],
    ["seq not a number", `{"type":"msg","chat":"c","seq":"1"}`],
  ];
  for (const [name, text] of cases) {
    assert.throws(() => decodeServerFrame(text), ProtocolError, name);
  }
});

test("decodeServerFrame accepts good frames and ignores unknown fields", () => {
  const f = decodeServerFrame(`{"type":"history","id":"1","chat":"c","messages":[{"seq":2,"body":"x"}],"more":true,"new_field":1}`);
  assert.equal(f.messages[0].chat, "c");
  assert.equal(f.more, true);
  assert.equal(decodeServerFrame(`{"type":"goaway","retry_after_ms":5,"url":"wss://h/ws"}`).url, "wss://h/ws");
  assert.equal(decodeServerFrame(`{"type":"msg","chat":"c","seq":3,"from":"bob","body":"hi"}`).seq, 3);
});

test("jitter is full jitter with a cap", () => {
  const b = { min: 250, max: 30000 };
  const cases = [
    [0, 250], [1, 500], [2, 1000], [7, 30000], [50, 30000],
  ];
  for (const [n, ceil] of cases) {
    assert.equal(jitter(b, n, () => 0), 0, `attempt ${n} low`);
    const hi = jitter(b, n, () => 0.999999999);
    assert.equal(hi, ceil, `attempt ${n}: got ${hi}, want ${ceil}`);
  }
  assert.equal(jitter({ min: 0, max: 0 }, 3), 0);
});

test("goawayDelay adds up to half the hint and honours the cap", () => {
  const b = { min: 250, max: 30000 };
  assert.equal(goawayDelay(b, 1000, () => 0), 1000);
  assert.equal(goawayDelay(b, 1000, () => 0.9999999), 1500);
  assert.equal(goawayDelay(b, 100, () => 0.9999999), 350);
  assert.equal(goawayDelay(b, 60000, () => 0), 30000);
});

const m = (chat, seq) => ({ chat, seq, from: "bob", device: "d", id: "", ts: 0, kind: "text", body: `m${seq}` });

test("orderer drops duplicates and holds gaps", () => {
  const o = new Orderer();
  const seqs = (r) => r.ready.map((x) => x.seq);
  assert.deepEqual(seqs(o.add(m("c", 1), false, 1)), [1]);
  assert.equal(o.add(m("c", 1), false, 2).dup, true);
  const r3 = o.add(m("c", 3), false, 3);
  assert.deepEqual(seqs(r3), []);
  assert.equal(r3.gapOpened, true);
  assert.equal(o.add(m("c", 3), false, 4).dup, true);
  assert.deepEqual(seqs(o.add(m("c", 2), false, 5)), [2, 3]);
  assert.equal(o.cursor("c"), 3);
  // own send (skip) advances without delivering
  assert.deepEqual(seqs(o.add(m("c", 4), true, 6)), []);
  assert.equal(o.cursor("c"), 4);
});

test("orderer reports due gaps and skips them", () => {
  const o = new Orderer({ c: 5 });
  assert.equal(o.add(m("c", 5), false, 1).dup, true);
  o.add(m("c", 8), false, 100);
  o.add(m("c", 9), false, 101);
  assert.deepEqual(o.due(200, 500), { gaps: [], next: 600 });
  const d = o.due(600, 500);
  assert.deepEqual(d.gaps, [{ chat: "c", after: 5, before: 8 }]);
  assert.deepEqual(o.due(700, 500).gaps, []); // being filled
  o.filled("c");
  const s = o.skipGap("c");
  assert.equal(s.skipped, 2);
  assert.deepEqual(s.ready.map((x) => x.seq), [8, 9]);
  assert.equal(o.cursor("c"), 9);
});

test("orderer fromNow starts at the first seq seen", () => {
  const o = new Orderer({}, true);
  assert.deepEqual(o.add(m("c", 40), false, 1).ready.map((x) => x.seq), [40]);
  assert.equal(o.cursor("c"), 40);
});
