// Process entry. Started as `node --no-allocation-site-pretenuring
// dist/src/main.js` (npm start): see run.ts for signals and exit codes, and
// the README for why the V8 flag. With an OTLP endpoint configured, tracing
// starts first: its gRPC instrumentation must be in place before grpc-js is
// loaded, so nothing else is imported before it.
import { environment } from './environment.js';
import { isMailroomError } from './errors.js';
import { tracingWanted } from './lib/tracing.js';

let env: Record<string, string | undefined> | undefined;
try {
  env = environment();
} catch {
  // run() reads it again and says what is wrong (exit 2).
}
if (env !== undefined && tracingWanted(env)) {
  try {
    await (await import('./tracing-setup.js')).startTracing(env);
  } catch (err) {
    if (!isMailroomError(err) || err.code !== 'ECONFIG') throw err;
    process.stderr.write(`mailroom: ${err.message}\n`);
    process.exit(2);
  }
}
const { run } = await import('./run.js');
await run();
