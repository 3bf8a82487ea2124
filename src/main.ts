// Process entry: environment (plus an optional .env file), boot, signals.
import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { boot, type Service } from './boot.js';
import { isMailroomError } from './errors.js';

/** Variables from .env fill in what the real environment leaves unset. */
function environment(): Record<string, string | undefined> {
  const file = process.env.DOTENV_PATH ?? '.env';
  const fromFile = existsSync(file) ? parseEnv(readFileSync(file, 'utf8')) : {};
  return { ...fromFile, ...process.env };
}

// Handlers go in before boot: boot takes up to connect + greeting timeout, and
// a SIGTERM with no listener kills the process outright. A signal that comes
// during boot is acted on as soon as boot is done.
let service: Service | undefined;
let signalled: NodeJS.Signals | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (signalled !== undefined) {
      service?.log.warn('second signal: exiting without waiting for the drain', { signal });
      process.exit(1);
    }
    signalled = signal;
    if (service !== undefined) stop(service, signal);
  });
}

function stop(svc: Service, signal: NodeJS.Signals): void {
  svc.log.info('signal received', { signal });
  svc.shutdown().then(
    () => process.exit(0),
    (err: unknown) => {
      svc.log.error('shutdown failed', { reason: (err as Error).message });
      process.exit(1);
    },
  );
}

try {
  service = await boot(environment());
} catch (err) {
  if (isMailroomError(err) && err.code === 'ECONFIG') {
    process.stderr.write(`mailroom: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
if (signalled !== undefined) stop(service, signalled);
