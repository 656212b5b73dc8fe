// The deterministic core of exactly-once, in-order delivery (a port of
// client/order.go). Per chat it tracks the position: the highest seq handed
// to the app (or sent by this client) with every lower seq handed too. It
// drops seqs at or below the position, holds messages that arrive after a
// gap and releases them once the gap fills. Time comes in as a parameter.
import type { Message } from "./types.js";

interface Pending {
  msg: Message;
  skip: boolean;
}

interface ChatOrder {
  last: number;
  pending: Map<number, Pending>;
  gapSince: number; // ms; 0 if no gap
  filling: boolean;
}

/** A gap due for a history fetch: the missing seqs are after < seq < before. */
export interface Gap {
  chat: string;
  after: number;
  before: number;
}

export interface AddResult {
  ready: Message[];
  dup: boolean;
  gapOpened: boolean;
}

export class Orderer {
  private readonly chats = new Map<string, ChatOrder>();

  /** resume: chat -> position; fromNow: an unknown chat starts just before the first seq seen. */
  constructor(resume: Record<string, number> = {}, private readonly fromNow = false) {
    for (const [id, seq] of Object.entries(resume)) this.chats.set(id, { last: seq, pending: new Map(), gapSince: 0, filling: false });
  }

  private chat(id: string, firstSeq: number): ChatOrder {
    let co = this.chats.get(id);
    if (!co) {
      co = { last: this.fromNow ? firstSeq - 1 : 0, pending: new Map(), gapSince: 0, filling: false };
      this.chats.set(id, co);
    }
    return co;
  }

  /**
   * Takes one arrival. skip marks a message that advances the position
   * without being delivered (this client's own sends).
   */
  add(m: Message, skip: boolean, now: number): AddResult {
    const co = this.chat(m.chat, m.seq);
    if (m.seq <= co.last) return { ready: [], dup: true, gapOpened: false };
    if (m.seq > co.last + 1) {
      if (co.pending.has(m.seq)) return { ready: [], dup: true, gapOpened: false };
      co.pending.set(m.seq, { msg: m, skip });
      let gapOpened = false;
      if (co.gapSince === 0) {
        co.gapSince = now || 1;
        gapOpened = true;
      }
      return { ready: [], dup: false, gapOpened };
    }
    co.last = m.seq;
    const ready = skip ? [] : [m];
    return { ready: this.release(co, ready), dup: false, gapOpened: false };
  }

  private release(co: ChatOrder, ready: Message[]): Message[] {
    for (;;) {
      const p = co.pending.get(co.last + 1);
      if (!p) break;
      co.pending.delete(co.last + 1);
      co.last++;
      if (!p.skip) ready.push(p.msg);
    }
    if (co.pending.size === 0) co.gapSince = 0;
    return ready;
  }

  /** Gives up on chat's gap: jumps to just before the lowest held seq. */
  skipGap(chat: string): { ready: Message[]; skipped: number } {
    const co = this.chats.get(chat);
    if (!co || co.pending.size === 0) return { ready: [], skipped: 0 };
    const lowest = Math.min(...co.pending.keys());
    const skipped = lowest - 1 - co.last;
    co.last = lowest - 1;
    return { ready: this.release(co, []), skipped };
  }

  /** Returns the gaps older than waitMs not being fetched yet (marking them), and when the next one is due (0 if none). */
  due(now: number, waitMs: number): { gaps: Gap[]; next: number } {
    const gaps: Gap[] = [];
    let next = 0;
    for (const [id, co] of this.chats) {
      if (co.gapSince === 0 || co.filling) continue;
      const at = co.gapSince + waitMs;
      if (now >= at) {
        co.filling = true;
        gaps.push({ chat: id, after: co.last, before: Math.min(...co.pending.keys()) });
        continue;
      }
      if (next === 0 || at < next) next = at;
    }
    return { gaps, next };
  }

  /** Marks the end of a history fetch for chat. */
  filled(chat: string): void {
    const co = this.chats.get(chat);
    if (co) co.filling = false;
  }

  /** Restarts the wait of chat's gap at now (after a fetch failed for a passing reason). */
  retryGap(chat: string, now: number): void {
    const co = this.chats.get(chat);
    if (co && co.pending.size > 0) co.gapSince = now || 1;
  }

  /** The highest contiguous seq of chat (0 if unknown). */
  cursor(chat: string): number {
    return this.chats.get(chat)?.last ?? 0;
  }
}
