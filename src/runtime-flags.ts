// The V8 flags the service runs with. They go on the command line (npm
// start, npm test, the bench, any image's entry point), not into
// v8.setFlagsFromString at run time, so that every way of starting the
// service runs the same engine; boot warns when one is missing.
//
// --no-allocation-site-pretenuring. TRAP: V8's allocation-site pretenuring
// misfires on this workload. When a scavenge happens to find most objects of
// one allocation site alive (a burst, the pool dialling at boot), V8 decides
// that site makes long-lived objects and from then on allocates them straight
// in old space. Here such sites make per-call objects (xstate's action
// arguments and events, among others), and an old-space object keeps
// whatever young object it points to alive through every scavenge until the
// next full GC: the job, its message, the gRPC call. Measured on the
// SendMail benchmark at C=15: ~110 MB promoted per 20,000 mails, scavenges of
// 2-5 ms every ~40 ms and a full GC (8-16 ms pause) every ~2 s; with
// pretenuring off, 14 MB, one full GC, and 10-20% less CPU per mail.
// Nothing here lives long enough to gain from it.
export const V8_FLAGS: readonly string[] = ['--no-allocation-site-pretenuring'];

/** The flags this process was started without (command line or NODE_OPTIONS). */
export function missingV8Flags(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)]);
  return V8_FLAGS.filter((flag) => !given.has(flag));
}
