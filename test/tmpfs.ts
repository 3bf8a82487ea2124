// A real, small filesystem that fills: a tmpfs mounted for one test (the
// tests run as root; where mount is not allowed the test says so and skips),
// and a filler file that takes what room is left.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  readonly dir: string;
  /** takes all but `leaveBytes` of the free space; returns a function that gives it back */
  fill(leaveBytes?: number): () => void;
  free(): number;
}

/** Mounts a tmpfs of `size` (e.g. '2m'), unmounted after the test; undefined (and the test skipped) where mount is not allowed. */
export function mountTmpfs(t: { skip(reason: string): void; after(fn: () => void): void }, size: string): Tmpfs | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch (err) {
    t.skip(`cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]}): this test needs root`);
    return undefined;
  }
  t.after(() => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });
  const free = (): number => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  let fillers = 0;
  return {
    dir,
    free,
    fill(leaveBytes = 0) {
      const path = join(dir, `filler-${++fillers}`);
      // Written in pieces: a tmpfs refuses the write that does not fit, and what fitted stays.
      const piece = Buffer.alloc(64 * 1024);
      let left = Math.max(0, free() - leaveBytes);
      writeFileSync(path, '');
      try {
        while (left > 0) {
          const chunk = piece.subarray(0, Math.min(piece.length, left));
          writeFileSync(path, chunk, { flag: 'a' });
          left -= chunk.length;
        }
      } catch {
        // full
      }
      return () => rmSync(path, { force: true });
    },
  };
}
