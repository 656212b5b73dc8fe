// End-to-end tests of the web app in Debian's chromium, driven by
// playwright-core against a running `parley standalone` (started by
// scripts/web-test.sh). Environment:
//   PARLEY_HTTP  the logic tier's HTTP address serving web/dist (http://127.0.0.1:PORT)
//   PARLEY_WS    the WebSocket endpoint (ws://127.0.0.1:PORT/ws), passed to the page as ?ws=
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//   SCREENSHOTS  directory for screenshots (default: none taken)
// Prints one line per test and finally "N passed, N failed"; exits 1 on failure.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const HTTP = process.env.PARLEY_HTTP ?? "http://127.0.0.1:8081";
const WS = process.env.PARLEY_WS ?? "ws://127.0.0.1:8080/ws";
const SHOTS = process.env.SCREENSHOTS ?? "";
// Against a fresh store (PARLEY_FRESH=1, as scripts/web-test.sh runs it) the
// users are plain alice, bob, carol; otherwise ids get a per-run suffix.
const run = process.env.PARLEY_FRESH === "1" ? "" : Date.now().toString(36);
const uid = (name) => (run ? `${name}-${run}` : name);
const T = 15000; // per expectation

// playwright-core gives every launch a fresh temporary --user-data-dir (it
// refuses the flag in args); browser contexts inside are isolated from each
// other like separate browser profiles.
const b = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  timeout: 30000,
});

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Polls fn until it returns a truthy value or throws after timeout. */
async function eventually(what, fn, timeout = T) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const appURL = (extra = "") => `${HTTP}/?ws=${encodeURIComponent(WS)}${extra}`;

/** A signed-in user in a browser context of its own. */
async function signIn(name, device = "") {
  const ctx = await b.newContext({ viewport: { width: 900, height: 560 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log(`  [${name}] page error: ${e.message}`));
  await page.goto(appURL());
  await page.fill("[data-testid=signin-user]", name);
  if (device) await page.fill("[data-testid=signin-device]", device);
  await page.click("[data-testid=signin-submit]");
  await page.waitForSelector("body[data-state=connected-synced]", { timeout: T });
  return { ctx, page, name };
}

async function openChatWith(page, peer) {
  await page.fill("[data-testid=new-chat-user]", peer);
  await page.click("[data-testid=new-chat-submit]");
  await page.waitForSelector(`[data-testid=conv-title]:has-text("${peer}")`, { timeout: T });
}

async function openChatNamed(page, name) {
  const item = page.locator(`[data-testid=chat-item][data-name="${name}"]`);
  await item.waitFor({ timeout: T });
  await item.click();
  await page.waitForSelector(`[data-testid=conv-title]:has-text("${name}")`, { timeout: T });
}

async function send(page, text) {
  await page.fill("[data-testid=composer-input]", text);
  await page.click("[data-testid=composer-send]");
}

/** The text bodies shown in the open conversation, in order. */
const bodies = (page) => page.$$eval("[data-testid=msg]:not([data-kind=system]) [data-testid=msg-body]", (els) => els.map((e) => e.textContent));

async function seeBodies(page, want, what) {
  await eventually(what, async () => {
    const got = await bodies(page);
    return want.every((w) => got.includes(w));
  });
  return bodies(page);
}

async function status(page, text) {
  return page.$eval(`[data-testid=msg]:has([data-testid=msg-body]:text-is("${text}"))`, (e) => e.dataset.status ?? "");
}

/** Checks the SDK handed every (chat, seq) to the app once and in seq order. */
async function handedOnceInOrder(page) {
  const log = await page.evaluate(() => window.parley.delivered);
  const last = new Map();
  for (const e of log) {
    const [chat, seq] = [e.slice(0, e.lastIndexOf("#")), Number(e.slice(e.lastIndexOf("#") + 1))];
    assert(seq > (last.get(chat) ?? 0), `hand-off out of order or twice: ${e} after ${chat}#${last.get(chat)} in ${JSON.stringify(log)}`);
    last.set(chat, seq);
  }
  return log;
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

let alice, bob, carol;

test("1-on-1 chat both ways", async () => {
  alice = await signIn(uid("alice"), "web1");
  bob = await signIn(uid("bob"), "web1");
  await openChatWith(alice.page, bob.name);
  await send(alice.page, "hi bob");
  // bob sees the chat appear with an unread badge; alice's presence stays
  // hidden from him until he answers (a first message is a request)
  const item = bob.page.locator(`[data-testid=chat-item][data-name="${alice.name}"]`);
  await item.waitFor({ timeout: T });
  await eventually("bob's unread badge", async () => (await item.locator("[data-testid=unread]").textContent()) === "1");
  assert((await item.locator("[data-testid=presence]").getAttribute("data-online")) === "false", "alice's presence shown to bob before he answered");
  await item.click();
  await seeBodies(bob.page, ["hi bob"], "bob sees hi bob");
  await send(bob.page, "hi alice");
  await seeBodies(alice.page, ["hi bob", "hi alice"], "alice sees the reply");
  await eventually("alice online for bob once both have written", async () => (await item.locator("[data-testid=presence]").getAttribute("data-online")) === "true");
  await eventually("bob online for alice once both have written", async () =>
    (await alice.page.locator(`[data-testid=chat-item][data-name="${bob.name}"] [data-testid=presence]`).getAttribute("data-online")) === "true");
  await eventually("alice's message delivered", async () => (await status(alice.page, "hi bob")) === "delivered");
});

test("offline peer catches up in order exactly once; ticks go sent -> delivered", async () => {
  // bob goes offline: his page is closed (the context and its storage stay)
  await bob.page.close();
  await eventually("bob offline for alice", async () =>
    (await alice.page.locator(`[data-testid=chat-item][data-name="${bob.name}"] [data-testid=presence]`).getAttribute("data-online")) === "false");
  await eventually("bob's last seen shown to alice", async () => (await alice.page.textContent("#conv-sub")).startsWith("last seen "));
  const texts = ["one", "two", "three"];
  for (const t of texts) await send(alice.page, t);
  for (const t of texts) {
    await eventually(`"${t}" sent`, async () => (await status(alice.page, t)) === "sent");
  }
  assert((await status(alice.page, "three")) === "sent", "not delivered while bob is offline");
  if (SHOTS) await alice.page.screenshot({ path: join(SHOTS, "web-sent.png") });
  // bob comes back
  bob.page = await bob.ctx.newPage();
  await bob.page.goto(appURL());
  await bob.page.waitForSelector("body[data-state=connected-synced]", { timeout: T });
  await openChatNamed(bob.page, alice.name);
  const got = await seeBodies(bob.page, texts, "bob sees the three messages");
  const tail = got.filter((x) => ["hi bob", "hi alice", ...texts].includes(x));
  assert(JSON.stringify(tail.slice(-3)) === JSON.stringify(texts), `order: got ${JSON.stringify(got)}`);
  for (const t of texts) assert(got.filter((x) => x === t).length === 1, `"${t}" shown ${got.filter((x) => x === t).length} times: ${JSON.stringify(got)}`);
  await handedOnceInOrder(bob.page);
  for (const t of texts) {
    await eventually(`"${t}" delivered`, async () => (await status(alice.page, t)) === "delivered");
  }
});

test("reconnecting banner and seamless resume", async () => {
  // Bob's WebSocket is cut and refused for a while: the banner shows, then
  // the client reconnects by itself and gets what it missed once.
  let blocked = true;
  await bob.page.routeWebSocket(/\/ws/, (ws) => {
    if (blocked) {
      ws.close({ code: 1011, reason: "blocked by test" });
      return;
    }
    ws.connectToServer();
  });
  // The route applies to new sockets: drop the live one (a network cut).
  await bob.page.evaluate(() => window.parley.client.conn?.ws.close(4000, "test drop"));
  await bob.page.waitForSelector("[data-testid=banner]:has-text('Reconnecting')", { timeout: T });
  await send(alice.page, "while you were away");
  await eventually("sent while bob is away", async () => (await status(alice.page, "while you were away")) === "sent");
  blocked = false;
  await bob.page.waitForSelector("[data-testid=banner]", { state: "hidden", timeout: 40000 });
  const got = await seeBodies(bob.page, ["while you were away"], "bob resumes");
  assert(got.filter((x) => x === "while you were away").length === 1, `shown more than once: ${JSON.stringify(got)}`);
  await handedOnceInOrder(bob.page);
  await eventually("delivered after resume", async () => (await status(alice.page, "while you were away")) === "delivered");
});

test("hiding last seen: the peer sees offline without a time, and the setting stays", async () => {
  const box = bob.page.locator("[data-testid=hide-last-seen]");
  await eventually("bob's settings loaded", async () => (await box.getAttribute("data-saved")) === "false");
  await box.check();
  await eventually("bob's hide last seen saved", async () => (await box.getAttribute("data-saved")) === "true");
  await bob.page.close();
  await eventually("bob offline for alice", async () =>
    (await alice.page.locator(`[data-testid=chat-item][data-name="${bob.name}"] [data-testid=presence]`).getAttribute("data-online")) === "false");
  await eventually("no last seen of bob for alice", async () => (await alice.page.textContent("#conv-sub")) === "offline");
  bob.page = await bob.ctx.newPage();
  await bob.page.goto(appURL());
  await bob.page.waitForSelector("body[data-state=connected-synced]", { timeout: T });
  const again = bob.page.locator("[data-testid=hide-last-seen]");
  await eventually("the setting is kept", async () => (await again.getAttribute("data-saved")) === "true" && (await again.isChecked()));
  await again.uncheck();
  await eventually("bob shows his last seen again", async () => (await again.getAttribute("data-saved")) === "false");
});

test("three-member group: everyone sees everyone", async () => {
  carol = await signIn(uid("carol"), "web1");
  const group = run ? `trio-${run}` : "trio";
  await alice.page.click("#new-group-box summary");
  await alice.page.fill("[data-testid=new-group-name]", group);
  await alice.page.fill("[data-testid=new-group-members]", `${bob.name}, ${carol.name}`);
  await alice.page.click("[data-testid=new-group-submit]");
  await alice.page.waitForSelector(`[data-testid=conv-title]:has-text("${group}")`, { timeout: T });
  await send(alice.page, "hello group from alice");
  await openChatNamed(bob.page, group);
  await send(bob.page, "bob here");
  await openChatNamed(carol.page, group);
  await send(carol.page, "carol too");
  const all = ["hello group from alice", "bob here", "carol too"];
  for (const u of [alice, bob, carol]) {
    const got = await seeBodies(u.page, all, `${u.name} sees all group messages`);
    assert(JSON.stringify(got) === JSON.stringify(all), `${u.name}: got ${JSON.stringify(got)}`);
  }
  await eventually("group message delivered", async () => (await status(alice.page, "hello group from alice")) === "delivered");
  if (SHOTS) await alice.page.screenshot({ path: join(SHOTS, "web-group.png") });
});

test("a new device syncs its history", async () => {
  const laptop = await signIn(bob.name, "laptop");
  await openChatNamed(laptop.page, alice.name);
  const want = ["hi bob", "hi alice", "one", "two", "three", "while you were away"];
  const got = await seeBodies(laptop.page, want, "the new device sees the history");
  assert(JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}`);
  const own = await laptop.page.$eval(`[data-testid=msg]:has([data-testid=msg-body]:text-is("hi alice"))`, (e) => e.classList.contains("mine"));
  assert(own, "bob's own message from the other device is shown as his");
  const log = await handedOnceInOrder(laptop.page);
  const dm = log.filter((e) => e.startsWith("dm:")).length;
  assert(dm >= want.length, `the server pushed ${dm} messages to the new device, want ${want.length}`);
  await laptop.ctx.close();
});

test("history pages in as you scroll up", async () => {
  const dave = await signIn(uid("dave"), "web1");
  // 70 messages through the SDK in the page (faster than typing them)
  await dave.page.evaluate(async (peer) => {
    const c = window.parley.client;
    for (let i = 1; i <= 70; i++) await c.sendTo(peer, `n${i}`);
  }, alice.name);
  await alice.page.reload();
  await alice.page.waitForSelector("body[data-state=connected-synced]", { timeout: T });
  await openChatNamed(alice.page, dave.name);
  await seeBodies(alice.page, ["n70"], "newest message");
  await eventually("older page loaded on scroll", async () => {
    await alice.page.$eval("[data-testid=messages]", (e) => (e.scrollTop = 0));
    const got = await bodies(alice.page);
    return got.includes("n1");
  });
  const got = await bodies(alice.page);
  assert(got.length === 70 && got[0] === "n1" && got[69] === "n70", `got ${got.length} messages, first ${got[0]}, last ${got[69]}`);
  await dave.ctx.close();
});

test("a token in the page's #token= fragment signs in without the sign-in form", async () => {
  // A fleet has no development tokens; here standalone mints one to hand over.
  const r = await fetch(`${HTTP}/v1/dev/token?user=${encodeURIComponent(uid("dora"))}&device=tab1`, { method: "POST" });
  const { token } = await r.json();
  const ctx = await b.newContext({ viewport: { width: 900, height: 560 } });
  const page = await ctx.newPage();
  await page.goto(appURL() + `#token=${token}`);
  await page.waitForSelector("body[data-state=connected-synced]", { timeout: T });
  const me = await page.locator("#me").textContent();
  assert(me === `${uid("dora")} · tab1`, `got me ${me}, want ${uid("dora")} · tab1`);
  assert(!page.url().includes("token="), `the token stayed in the address bar: ${page.url()}`);
  await ctx.close();
});

test("screenshots", async () => {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await openChatNamed(alice.page, bob.name);
  // carol writes to alice: an unread badge in alice's list
  await carol.page.evaluate(async (peer) => {
    await window.parley.client.sendTo(peer, "lunch at noon?");
    await window.parley.client.sendTo(peer, "the usual place");
  }, alice.name);
  const badge = alice.page.locator(`[data-testid=chat-item][data-name="${carol.name}"] [data-testid=unread]`);
  await eventually("unread badge for carol's messages", async () => (await badge.textContent()) === "2");
  await alice.page.screenshot({ path: join(SHOTS, "web-chat.png") });
  const p = await alice.ctx.newPage();
  await p.setViewportSize({ width: 420, height: 400 });
  await p.goto(`${HTTP}/?ws=${encodeURIComponent(WS)}&user=erin`);
  await p.screenshot({ path: join(SHOTS, "web-signin.png") });
  await p.close();
});

let passed = 0;
let failed = 0;
for (const t of tests) {
  const t0 = Date.now();
  try {
    await t.fn();
    passed++;
    console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${t.name} (${Date.now() - t0} ms): ${e.message}`);
  }
}
await b.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
