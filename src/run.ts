// The process around the service: its environment (plus an optional .env
// file), boot, signals and exit codes. 0: stopped on SIGINT/SIGTERM; 1: a
// second signal, a failed shutdown, or a root actor that failed; 2: bad
// configuration. SIGHUP never ends it: it re-reads what can be re-read.
import { boot, type BootOptions, type Service } from './boot.js';
import { isMailroomError } from './errors.js';
import { environment } from './environment.js';
import { flushTracing } from './lib/tracing.js';

export async function run(options: BootOptions = {}): Promise<void> {
  let service: Service | undefined;
  let signalled = false;

  // Installed before boot: a signal while the pool dials (which can take the
  // connect and greeting timeouts) ends the process at once, nothing was taken yet.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (service === undefined) {
        process.stderr.write(`mailroom: ${signal} during boot, exiting\n`);
        process.exit(0);
      }
      if (signalled) {
        service.log.warn('second signal: exiting without waiting for the drain', { signal });
        process.exit(1);
      }
      signalled = true;
      service.log.info('signal received', { signal });
      service
        .shutdown()
        .then(() => flushTracing().catch(() => undefined))
        .then(
          () => process.exit(0),
          (err: unknown) => {
            service?.log.error('shutdown failed', { reason: (err as Error).message });
            process.exit(1);
          },
        );
    });
  }

  // SIGHUP ends a Node process by default; for a service it means "re-read
  // what can be re-read" (a terminal closing or a reload by the operator).
  process.on('SIGHUP', () => {
    if (service === undefined) process.stderr.write('mailroom: SIGHUP during boot, ignored\n');
    else service.reload();
  });

  try {
    service = await boot(environment(), options);
  } catch (err) {
    if (isMailroomError(err) && err.code === 'ECONFIG') {
      process.stderr.write(`mailroom: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const running = service;
  // Every call has been answered INTERNAL already; stop taking calls, let the
  // answers flush, and exit non-zero so that an orchestrator restarts us.
  void running.failed.then(async () => {
    await running.shutdown().catch(() => undefined);
    process.exit(1);
  });
}
