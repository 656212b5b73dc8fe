// The Parley web app: plain TypeScript + DOM on top of the SDK. It signs in
// with a development token (standalone mode), lists chats with unread
// counts and presence dots, shows 1-on-1 and group conversations with
// history paged in as you scroll up, sent/delivered ticks, and a
// reconnecting banner. Positions are persisted per (user, device) in
// localStorage so a reload resumes without downloading everything again; a
// new device gets the full history pushed by the server.
import { ParleyClient, newRequestId, type ChatInfo, type Message, type Receipt, type State, type UserPresence } from "../sdk/index.js";

interface Session {
  user: string;
  device: string;
  token: string;
  expiresAt: number;
  // minted: the token came from the page's #token= fragment (a fleet
  // without development tokens); it cannot be renewed here.
  minted?: boolean;
}

// tokenSession reads a token minted elsewhere (`parley token`) from the
// page's #token= fragment (never sent to a server); null when absent or
// unreadable. The server verifies the token; this only reads its claims.
function tokenSession(): Session | null {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return null;
  try {
    const b64 = token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/");
    const c = JSON.parse(atob(b64)) as { sub?: string; dev?: string; exp?: number };
    if (!c.sub || typeof c.exp !== "number") return null;
    history.replaceState(null, "", location.pathname + location.search); // keep it out of the address bar
    return { user: c.sub, device: c.dev || defaultDevice(), token, expiresAt: c.exp * 1000, minted: true };
  } catch {
    return null;
  }
}

interface Pending {
  id: string;
  body: string;
  ts: number;
  failed: boolean;
}

interface ChatView {
  id: string;
  kind: string;
  name: string;
  members: string[];
  lastSeq: number;
  readSeq: number;
  delivered: number; // highest seq some device of another member acked
  msgs: Map<number, Message>;
  pending: Map<string, Pending>;
  more: boolean; // older messages exist before the oldest loaded
  historyLoaded: boolean; // the newest page was fetched
  loading: boolean;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const sessionKey = "parley.session";

let me: Session | null = null;
let client: ParleyClient | null = null;
const chats = new Map<string, ChatView>();
const presence = new Map<string, boolean>();
/** user -> last seen (Unix ms) of an offline peer who shows it; absent otherwise. */
const lastSeen = new Map<string, number>();

function notePresence(p: UserPresence): void {
  presence.set(p.user, p.online);
  if (!p.online && p.lastSeen > 0) lastSeen.set(p.user, p.lastSeen);
  else lastSeen.delete(p.user);
}
let openId = "";

// --- configuration ---

async function wsURL(): Promise<string> {
  const q = params.get("ws");
  if (q) return q;
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) {
      const c = (await r.json()) as { ws?: string };
      if (c.ws) return c.ws;
    }
  } catch {
    /* no config.json */
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.hostname || "127.0.0.1"}:8080/ws`;
}

const apiBase = params.get("api") ?? location.origin;

async function devToken(user: string, device: string): Promise<Session> {
  const u = `${apiBase}/v1/dev/token?user=${encodeURIComponent(user)}&device=${encodeURIComponent(device)}`;
  const r = await fetch(u, { method: "POST" });
  const body = (await r.json().catch(() => ({}))) as { token?: string; expires_at?: number; error?: { message?: string } };
  if (!r.ok || !body.token) throw new Error(body.error?.message ?? `HTTP ${r.status}`);
  return { user, device, token: body.token, expiresAt: body.expires_at ?? Date.now() + 3600e3 };
}

function defaultDevice(): string {
  let d = localStorage.getItem("parley.device");
  if (!d) {
    d = "web-" + Math.random().toString(16).slice(2, 8);
    localStorage.setItem("parley.device", d);
  }
  return d;
}

const posKey = () => `parley.pos.${me?.user}.${me?.device}`;
let posTimer = 0;
function savePositions(): void {
  if (posTimer) return;
  posTimer = window.setTimeout(() => {
    posTimer = 0;
    if (client && me) localStorage.setItem(posKey(), JSON.stringify(client.positions()));
  }, 200);
}

// --- chats ---

function directPeer(id: string): string {
  const [a, b] = id.slice(3).split(":");
  return a === me?.user ? (b ?? "") : (a ?? "");
}

function chatView(id: string, info?: Partial<ChatInfo>): ChatView {
  let c = chats.get(id);
  if (!c) {
    const direct = id.startsWith("dm:");
    c = {
      id, kind: info?.kind ?? (direct ? "direct" : "group"), name: "", members: [], lastSeq: 0, readSeq: 0, delivered: 0,
      msgs: new Map(), pending: new Map(), more: false, historyLoaded: false, loading: false,
    };
    chats.set(id, c);
  }
  if (info) {
    if (info.kind) c.kind = info.kind;
    if (info.name) c.name = info.name;
    if (info.members) c.members = info.members;
    c.lastSeq = Math.max(c.lastSeq, info.last_seq ?? 0);
    c.readSeq = Math.max(c.readSeq, info.read_seq ?? 0);
  }
  if (c.kind === "direct") c.name = directPeer(id);
  return c;
}

const unread = (c: ChatView) => Math.max(0, c.lastSeq - c.readSeq);

let refreshing: Promise<void> | null = null;
function refreshChats(): Promise<void> {
  if (!client) return Promise.resolve();
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const list = await client!.chats();
        for (const info of list) chatView(info.chat, info);
        // The newest message of each chat not loaded yet, for the previews.
        const bare = [...chats.values()].filter((c) => c.msgs.size === 0 && c.lastSeq > 0).slice(0, 30);
        await Promise.all(bare.map(async (c) => {
          const page = await client!.history(c.id, { limit: 1 });
          for (const m of page.messages) addMessage(m);
          c.more = page.messages.length > 0 && page.messages[0]!.seq > 1;
        }));
        const peers = [...chats.values()].filter((c) => c.kind === "direct").map((c) => c.name).filter(Boolean);
        if (peers.length > 0) {
          for (const p of await client!.presence(peers.slice(0, 256))) notePresence(p);
        }
      } catch (e) {
        console.warn("cannot refresh chats", e);
      } finally {
        refreshing = null;
      }
      render();
    })();
  }
  return refreshing;
}

function addMessage(m: Message): void {
  const c = chatView(m.chat);
  const known = c.msgs.has(m.seq);
  c.msgs.set(m.seq, m);
  c.lastSeq = Math.max(c.lastSeq, m.seq);
  if (m.from === me?.user) {
    c.pending.delete(m.id);
    c.readSeq = Math.max(c.readSeq, m.seq);
  }
  if (!known && m.kind === "system") void refreshChats();
}

let readTimer = 0;
function markOpenRead(): void {
  const c = chats.get(openId);
  if (!c || document.visibilityState !== "visible" || !client) return;
  if (c.readSeq >= c.lastSeq) return;
  c.readSeq = c.lastSeq;
  window.clearTimeout(readTimer);
  readTimer = window.setTimeout(() => void client?.markRead(c.id, c.readSeq).catch(() => {}), 150);
}

async function loadOlder(c: ChatView): Promise<void> {
  if (!client || c.loading) return;
  if (c.historyLoaded && !c.more) return;
  c.loading = true;
  try {
    const oldest = c.msgs.size > 0 ? Math.min(...c.msgs.keys()) : 0;
    const before = c.historyLoaded || c.msgs.size > 0 ? oldest : 0;
    if (c.historyLoaded && before <= 1) {
      c.more = false;
      return;
    }
    const page = await client.history(c.id, before ? { before, limit: 50 } : { limit: 50 });
    for (const m of page.messages) addMessage(m);
    c.more = page.more;
    c.historyLoaded = true;
  } catch (e) {
    console.warn("cannot load history", e);
  } finally {
    c.loading = false;
  }
  if (c.id === openId) renderMessages(true);
}

// --- rendering ---

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls = "", text = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
}

function lastText(c: ChatView): string {
  const seqs = [...c.msgs.keys()];
  if (seqs.length === 0) return c.kind === "group" && c.members.length > 0 ? `${c.members.length} members` : "";
  const m = c.msgs.get(Math.max(...seqs))!;
  return m.kind === "system" ? systemText(m) : `${m.from === me?.user ? "You" : m.from}: ${m.body}`;
}

function renderList(): void {
  const ul = $("chat-list");
  ul.replaceChildren();
  const sorted = [...chats.values()].sort((a, b) => lastTs(b) - lastTs(a) || a.id.localeCompare(b.id));
  for (const c of sorted) {
    const li = el("li", c.id === openId ? "active" : "");
    li.dataset.testid = "chat-item";
    li.dataset.chat = c.id;
    li.dataset.name = c.name;
    const dot = el("span", "dot" + (c.kind === "group" ? " group" : presence.get(c.name) ? " online" : ""));
    dot.dataset.testid = "presence";
    dot.dataset.online = String(c.kind === "direct" && Boolean(presence.get(c.name)));
    dot.title = c.kind === "group" ? "group" : presence.get(c.name) ? "online" : "offline";
    const text = el("span", "text");
    text.append(el("span", "name", c.name || c.id), el("span", "preview", lastText(c)));
    li.append(dot, text);
    const n = c.id === openId ? 0 : unread(c);
    if (n > 0) {
      const b = el("span", "badge", String(n));
      b.dataset.testid = "unread";
      li.append(b);
    }
    li.onclick = () => openChat(c.id);
    ul.append(li);
  }
}

function lastTs(c: ChatView): number {
  let ts = 0;
  for (const m of c.msgs.values()) ts = Math.max(ts, m.ts);
  for (const p of c.pending.values()) ts = Math.max(ts, p.ts);
  return ts || c.lastSeq;
}

function systemText(m: Message): string {
  try {
    const e = JSON.parse(m.body) as { event?: string; by?: string; user?: string; name?: string; members?: string[]; role?: string; promoted?: string };
    switch (e.event) {
      case "created":
        return `${e.by ?? m.from} created the group “${e.name ?? ""}”`;
      case "member_added":
        return `${e.by ?? ""} added ${e.user ?? ""}`;
      case "member_removed":
        return `${e.by ?? ""} removed ${e.user ?? ""}`;
      case "member_left":
        return e.promoted ? `${e.user ?? ""} left; ${e.promoted} is now admin` : `${e.user ?? ""} left`;
      case "role_changed":
        return `${e.by ?? ""} made ${e.user ?? ""} ${e.role ?? ""}`;
    }
  } catch {
    /* not JSON */
  }
  return m.body;
}

const timeFmt = (ts: number) => (ts ? new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");

function renderMessages(keepPosition = false): void {
  const box = $("messages");
  const c = chats.get(openId);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
  const fromBottom = box.scrollHeight - box.scrollTop;
  box.replaceChildren();
  if (!c) return;
  if (c.loading || c.more) box.append(el("div", "more", c.loading ? "Loading…" : "Scroll up for older messages"));
  const seqs = [...c.msgs.keys()].sort((a, b) => a - b);
  for (const s of seqs) {
    const m = c.msgs.get(s)!;
    if (m.kind === "system") {
      const d = el("div", "msg system", systemText(m));
      d.dataset.testid = "msg";
      d.dataset.seq = String(m.seq);
      d.dataset.kind = "system";
      box.append(d);
      continue;
    }
    const mine = m.from === me?.user;
    box.append(bubble(m.body, m.from, m.ts, mine, mine ? (c.delivered >= m.seq ? "delivered" : "sent") : "", m.seq, c.kind === "group"));
  }
  for (const p of c.pending.values()) box.append(bubble(p.body, me?.user ?? "", p.ts, true, p.failed ? "failed" : "sending", 0, false));
  if (keepPosition && !atBottom) box.scrollTop = box.scrollHeight - fromBottom;
  else box.scrollTop = box.scrollHeight;
}

function bubble(body: string, from: string, ts: number, mine: boolean, status: string, seq: number, showFrom: boolean): HTMLElement {
  const d = el("div", "msg" + (mine ? " mine" : ""));
  d.dataset.testid = "msg";
  d.dataset.from = from;
  if (seq) d.dataset.seq = String(seq);
  if (status) d.dataset.status = status;
  if (showFrom && !mine) d.append(el("div", "from", from));
  const b = el("div", "body", body);
  b.dataset.testid = "msg-body";
  d.append(b);
  const meta = el("div", "meta", timeFmt(ts));
  if (mine) {
    const tick = el("span", "tick", { sending: "🕓", sent: "✓", delivered: "✓✓", failed: "!" }[status] ?? "");
    tick.dataset.testid = "tick";
    tick.title = status;
    meta.append(tick);
  }
  d.append(meta);
  return d;
}

function renderHeader(): void {
  const c = chats.get(openId);
  $("composer").hidden = !c;
  if (!c) return;
  $("conv-title").textContent = c.name || c.id;
  const seen = lastSeen.get(c.name);
  $("conv-sub").textContent =
    c.kind === "group" ? c.members.join(", ") : presence.get(c.name) ? "online"
      : seen ? `last seen ${new Date(seen).toLocaleString()}` : "offline";
}

let renderQueued = false;
function render(): void {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderList();
    renderHeader();
    renderMessages(true);
  });
}

function openChat(id: string): void {
  openId = id;
  const c = chatView(id);
  markOpenRead();
  renderList();
  renderHeader();
  renderMessages();
  if (!c.historyLoaded) void loadOlder(c);
  if (c.kind === "group" && c.members.length === 0 && client) {
    void client.members(id).then((ms) => {
      c.members = ms;
      render();
    }).catch(() => {});
  }
  $<HTMLInputElement>("composer-input").focus();
}

function showBanner(s: State): void {
  const b = $("banner");
  if (s.kind === "reconnecting") {
    b.textContent = "Reconnecting…";
    b.hidden = false;
  } else if (s.kind === "connecting") {
    b.textContent = "Connecting…";
    b.hidden = false;
  } else if (s.kind === "closed") {
    b.textContent = s.error ? "Disconnected: sign in again" : "Disconnected";
    b.hidden = false;
  } else {
    b.hidden = true;
  }
  document.body.dataset.state = s.kind + (s.synced ? "-synced" : "");
}

// --- session ---

async function start(s: Session): Promise<void> {
  me = s;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("me").textContent = `${s.user} · ${s.device}`;
  let resume: Record<string, number> = {};
  try {
    resume = JSON.parse(localStorage.getItem(posKey()) ?? "{}") as Record<string, number>;
  } catch {
    resume = {};
  }
  const url = await wsURL();
  client = new ParleyClient({
    url, device: s.device, resume,
    tokenProvider: async () => {
      if (me && !me.minted && me.expiresAt - Date.now() < 60e3) {
        me = await devToken(me.user, me.device);
        localStorage.setItem(sessionKey, JSON.stringify(me));
      }
      return me!.token;
    },
  });
  // For debugging and the browser tests: every (chat, seq) handed over.
  const delivered: string[] = [];
  (window as unknown as { parley: unknown }).parley = { client, chats, delivered };
  client.on("message", (m) => {
    delivered.push(`${m.chat}#${m.seq}`);
    const known = chats.has(m.chat);
    addMessage(m);
    if (m.chat === openId) markOpenRead();
    if (!known) void refreshChats();
    savePositions();
    render();
  });
  client.on("receipt", (r: Receipt) => {
    if (r.user === me?.user) return;
    const c = chatView(r.chat);
    if (r.seq > c.delivered) {
      c.delivered = r.seq;
      render();
    }
  });
  client.on("presence", (p) => {
    notePresence(p);
    render();
  });
  client.on("state", (st) => {
    showBanner(st);
    if (st.kind === "connected" && st.synced) {
      void refreshChats();
      if (!settingsLoaded) void loadSettings();
    }
  });
  showBanner({ kind: "connecting" });
  client.start().catch((e: unknown) => console.warn("client stopped", e));
}

let settingsLoaded = false;

/** Shows the user's settings in the sidebar header's checkbox, then lets it change them. */
async function loadSettings(): Promise<void> {
  const box = $<HTMLInputElement>("hide-last-seen");
  try {
    const st = await client!.settings();
    settingsLoaded = true;
    box.checked = st.hideLastSeen;
    box.disabled = false;
    box.dataset.saved = String(st.hideLastSeen);
  } catch (e) {
    console.warn("cannot read settings", e);
  }
}

$<HTMLInputElement>("hide-last-seen").onchange = async () => {
  const box = $<HTMLInputElement>("hide-last-seen");
  if (!client) return;
  box.disabled = true;
  try {
    const st = await client.setHideLastSeen(box.checked);
    box.checked = st.hideLastSeen;
    box.dataset.saved = String(st.hideLastSeen);
  } catch (e) {
    console.warn("cannot change settings", e);
    box.checked = box.dataset.saved === "true";
  } finally {
    box.disabled = false;
  }
};

function signOut(): void {
  client?.close();
  client = null;
  me = null;
  chats.clear();
  openId = "";
  localStorage.removeItem(sessionKey);
  location.reload();
}

async function sendText(body: string): Promise<void> {
  const c = chats.get(openId);
  if (!c || !client || !me) return;
  const id = newRequestId();
  const p: Pending = { id, body, ts: Date.now(), failed: false };
  c.pending.set(id, p);
  render();
  try {
    const dest = c.kind === "direct" ? c.name : c.id;
    const sent = await client.sendWithId(id, dest, body);
    c.pending.delete(id);
    addMessage({ chat: sent.chat, seq: sent.seq, from: me.user, device: me.device, id, ts: sent.ts, kind: "text", body });
    c.lastSeq = Math.max(c.lastSeq, sent.seq);
    c.readSeq = Math.max(c.readSeq, sent.seq);
    void client.markRead(c.id, c.readSeq).catch(() => {});
    savePositions();
  } catch (e) {
    p.failed = true;
    console.warn("cannot send", e);
  }
  render();
}

// --- wiring ---

$<HTMLFormElement>("signin-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const user = $<HTMLInputElement>("signin-user").value.trim();
  const device = $<HTMLInputElement>("signin-device").value.trim() || defaultDevice();
  $("signin-error").textContent = "";
  try {
    const s = await devToken(user, device);
    localStorage.setItem(sessionKey, JSON.stringify(s));
    await start(s);
  } catch (e) {
    $("signin-error").textContent = `Cannot sign in: ${(e as Error).message}`;
  }
};

$<HTMLFormElement>("new-chat").onsubmit = (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>("new-chat-user");
  const peer = input.value.trim();
  if (!peer || !me || peer === me.user) return;
  input.value = "";
  const id = "dm:" + [me.user, peer].sort().join(":");
  chatView(id, { kind: "direct", members: [me.user, peer].sort() });
  void client?.presence([peer]).then((ps) => {
    for (const p of ps) notePresence(p);
    render();
  }).catch(() => {});
  openChat(id);
};

$<HTMLFormElement>("new-group").onsubmit = async (ev) => {
  ev.preventDefault();
  if (!client) return;
  const name = $<HTMLInputElement>("new-group-name").value.trim();
  const members = $<HTMLInputElement>("new-group-members").value.split(/[\s,]+/).filter(Boolean);
  try {
    const id = await client.createGroup(name, members);
    $<HTMLInputElement>("new-group-name").value = "";
    $<HTMLInputElement>("new-group-members").value = "";
    $<HTMLDetailsElement>("new-group-box").open = false;
    chatView(id, { kind: "group", name, members: [me!.user, ...members] });
    await refreshChats();
    openChat(id);
  } catch (e) {
    alert(`Cannot create group: ${(e as Error).message}`);
  }
};

$<HTMLFormElement>("composer").onsubmit = (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>("composer-input");
  const body = input.value;
  if (!body.trim()) return;
  input.value = "";
  void sendText(body);
};

$("messages").addEventListener("scroll", () => {
  const c = chats.get(openId);
  if (c && $("messages").scrollTop < 40 && c.more && !c.loading) void loadOlder(c);
});

document.addEventListener("visibilitychange", () => {
  markOpenRead();
  render();
});
$("signout").onclick = signOut;

const saved = localStorage.getItem(sessionKey);
let session: Session | null = null;
try {
  session = saved ? (JSON.parse(saved) as Session) : null;
} catch {
  session = null;
}
const forcedUser = params.get("user");
const minted = tokenSession();
if (minted) {
  localStorage.setItem(sessionKey, JSON.stringify(minted));
  void start(minted);
} else if (session?.minted && session.expiresAt <= Date.now()) {
  // A token handed over in #token= cannot be renewed here: sign in again.
  localStorage.removeItem(sessionKey);
  $("signin").hidden = false;
  $("signin-error").textContent = "Your token expired: open the page with a new #token= or sign in.";
} else if (session && (!forcedUser || forcedUser === session.user)) {
  void start(session);
} else {
  $("signin").hidden = false;
  if (forcedUser) $<HTMLInputElement>("signin-user").value = forcedUser;
  $<HTMLInputElement>("signin-user").focus();
}
