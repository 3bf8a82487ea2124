// A real Postfix for tests (test/postfix-peer.sh). There is one Postfix per
// machine, so a test that reconfigures it holds a lock for as long as it
// uses it: two test runs at once take turns instead of rewriting each
// other's transport map. A lock whose holder died is taken over.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sleep } from './helpers.js';

const SCRIPT = fileURLToPath(new URL('../../test/postfix-peer.sh', import.meta.url));
const LOCK = '/tmp/mailroom-postfix.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function lock(timeoutMs: number): Promise<() => void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(`${LOCK}/pid`, String(process.pid));
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch {
      const holder = Number(readFileSync(`${LOCK}/pid`, { encoding: 'utf8', flag: 'a+' }) || '0');
      if (holder > 0 && !alive(holder)) rmSync(LOCK, { recursive: true, force: true });
      if (Date.now() > end) throw new Error(`Postfix is held by process ${holder} for more than ${timeoutMs} ms`);
      await sleep(100);
    }
  }
}

export interface PostfixPeer {
  readonly port: number;
  stop(): Promise<void>;
}

/** Starts Postfix on `port`, bouncing @nouser.test and relaying bounces.example.test to `bouncePort`; stop() frees it for the next test. */
export async function startPostfix(port: number, bouncePort: number): Promise<PostfixPeer> {
  const unlock = await lock(180_000);
  try {
    execFileSync('bash', [SCRIPT, 'start', String(port), String(bouncePort)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    unlock();
    throw err;
  }
  return {
    port,
    stop: async () => {
      execFileSync('bash', [SCRIPT, 'stop'], { stdio: 'ignore' });
      unlock();
    },
  };
}
