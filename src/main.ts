// Process entry. Started as `node --no-allocation-site-pretenuring
// dist/src/main.js` (npm start): see run.ts for signals and exit codes, and
// the README for why the V8 flag.
import { run } from './run.js';

await run();
