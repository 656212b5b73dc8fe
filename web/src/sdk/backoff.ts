// Backoff with full jitter, as in the Go SDK (client.jitter, goawayDelay).
import type { Backoff } from "./types.js";

/** A random source returning [0, 1); injectable for tests. */
export type Rand = () => number;

/** The full-jitter delay before attempt n (0-based): uniform in [0, min(max, min*2^n)]. */
export function jitter(b: Backoff, n: number, rand: Rand = Math.random): number {
  let d = b.min;
  for (let i = 0; i < n && d < b.max; i++) d *= 2;
  d = Math.min(d, b.max);
  if (d <= 0) return 0;
  return Math.floor(rand() * (d + 1));
}

/**
 * The wait before reconnecting after a goaway: the server's hint plus a
 * random spread of up to half of it (at least up to b.min), capped at b.max.
 */
export function goawayDelay(b: Backoff, afterMs: number, rand: Rand = Math.random): number {
  const spread = Math.max(Math.floor(afterMs / 2), b.min);
  const d = afterMs + (spread > 0 ? Math.floor(rand() * (spread + 1)) : 0);
  return Math.min(d, b.max);
}
