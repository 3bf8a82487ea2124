/**
 * Exponential backoff with jitter: attempt 1 waits about `base`, each further
 * attempt doubles, capped at `max`. Half the delay is fixed and half random
 * ("equal jitter"), so a pool that lost its relay neither hammers it nor
 * comes back in lockstep.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  return Math.round(exp / 2 + random() * (exp / 2));
}
