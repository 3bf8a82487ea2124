// The V8 flags the service runs with. They go on the command line (npm
// start, npm test, the bench, any image's entry point), not into
// v8.setFlagsFromString at run time, so that every way of starting the
// service runs the same engine; boot warns when one is missing.
//
// --no-allocation-site-pretenuring. TRAP: after a burst V8 decides that
// sites making per-call objects make long-lived ones and allocates them in
// old space, where they keep the job, its message and the gRPC call alive
// until the next full GC. Nothing here lives long enough to gain from
// pretenuring; the figures are in docs/decisions.md.
export const V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/** The flags this process was started without (command line or NODE_OPTIONS). */
export function missingV8Flags(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)]);
  return V8_FLAGS.filter((flag) => !given.has(flag));
}
