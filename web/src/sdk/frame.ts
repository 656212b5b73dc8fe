// Decoding of server frames (docs/protocol.md, "Server → client frames").
import { ProtocolError, ParleyError, retryableCode, type Message, type UserPresence, type ChatInfo } from "./types.js";

/** Any server frame; which fields are set depends on type. */
export interface ServerFrame {
  type: string;
  id?: string;
  protocol?: number;
  user?: string;
  device?: string;
  session?: string;
  heartbeat_ms?: number;
  chat?: string;
  seq?: number;
  ts?: number;
  from?: string;
  kind?: string;
  body?: string;
  status?: string;
  messages?: Message[];
  more?: boolean;
  chats?: ChatInfo[];
  members?: string[];
  admins?: string[];
  creator?: string;
  users?: { user: string; online: boolean; last_seen?: number }[];
  code?: string;
  message?: string;
  retryable?: boolean;
  retry_after_ms?: number;
  url?: string;
  hide_last_seen?: boolean;
}

const isStr = (v: unknown): v is string => typeof v === "string";
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/**
 * Parses and checks one server frame. It never throws anything but a
 * ProtocolError. Unknown fields are ignored so newer servers can add some.
 */
export function decodeServerFrame(text: string): ServerFrame {
  if (text.trim() === "") throw new ProtocolError("empty frame");
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ProtocolError(`cannot decode server frame: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new ProtocolError("frame is not an object");
  const f = v as ServerFrame;
  const bad = (what: string): never => {
    throw new ProtocolError(`cannot decode ${String(f.type)} frame: ${what}`);
  };
  if (!isStr(f.type) || f.type === "") bad("missing type");
  for (const k of ["seq", "ts", "heartbeat_ms", "retry_after_ms", "protocol"] as const) {
    if (f[k] !== undefined && (!isNum(f[k]) || f[k] < 0)) bad(`bad ${k}`);
  }
  switch (f.type) {
    case "hello":
      if (!isStr(f.user) || f.user === "") bad("missing user");
      break;
    case "msg":
      if (!isStr(f.chat) || f.chat === "" || !f.seq) bad("missing chat or seq");
      break;
    case "sent":
      if (!f.id || !f.chat || !f.seq) bad("missing id, chat or seq");
      break;
    case "receipt":
      if (!f.chat || !f.user || !f.seq) bad("missing chat, user or seq");
      break;
    case "goaway":
      if (f.url) {
        let ok = false;
        try {
          const u = new URL(f.url);
          ok = (u.protocol === "ws:" || u.protocol === "wss:") && u.host !== "";
        } catch {
          ok = false;
        }
        if (!ok) bad("url must be a ws:// or wss:// url");
      }
      break;
    case "error":
      if (!f.code) bad("missing code");
      break;
    case "history":
      if (f.messages !== undefined && !Array.isArray(f.messages)) bad("messages is not an array");
      for (const m of f.messages ?? []) {
        if (m === null || typeof m !== "object" || !isNum(m.seq) || m.seq <= 0) bad("history message without seq");
        if (!m.chat) m.chat = f.chat ?? "";
      }
      break;
    case "ok":
    case "chats":
    case "members":
      if (!f.id) bad("missing id");
      break;
    case "settings":
      if (!f.id) bad("missing id");
      if (typeof f.hide_last_seen !== "boolean") bad("hide_last_seen is not a boolean");
      break;
  }
  return f;
}

/** The message carried by a msg frame. */
export function frameMessage(f: ServerFrame): Message {
  return {
    chat: f.chat ?? "", seq: f.seq ?? 0, from: f.from ?? "", device: f.device ?? "",
    id: f.id ?? "", ts: f.ts ?? 0, kind: f.kind ?? "text", body: f.body ?? "",
  };
}

/** A history entry normalised to a Message. */
export function wireMessage(m: Partial<Message>, chat: string): Message {
  return {
    chat: m.chat || chat, seq: m.seq ?? 0, from: m.from ?? "", device: m.device ?? "",
    id: m.id ?? "", ts: m.ts ?? 0, kind: m.kind ?? "text", body: m.body ?? "",
  };
}

/** The error of an error frame. */
export function frameError(f: ServerFrame): ParleyError {
  const code = f.code ?? "internal";
  return new ParleyError(code, f.message ?? "", Boolean(f.retryable) || retryableCode(code), f.retry_after_ms ?? 0);
}

/** The presence list of a presence frame. */
export function framePresence(f: ServerFrame): UserPresence[] {
  return (f.users ?? []).map((u) => ({ user: u.user, online: Boolean(u.online), lastSeen: u.last_seen ?? 0 }));
}
