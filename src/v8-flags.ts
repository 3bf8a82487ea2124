// V8 settings the service runs with, whatever command starts it. Imported
// first by main.ts, so that they hold before any traffic.
//
// TRAP: V8's allocation-site pretenuring misfires on this workload. When a
// scavenge happens to find most objects of one allocation site alive (a
// burst, the pool dialling at boot), V8 decides that site makes long-lived
// objects and from then on allocates them straight in old space. Here such
// sites make per-call objects (xstate's action arguments and events, among
// others), and an old-space object keeps whatever young object it points to
// alive through every scavenge until the next full GC: the job, its message,
// the gRPC call. Measured on the SendMail benchmark at C=15: ~110 MB promoted
// per 20,000 mails, scavenges of 2-5 ms every ~40 ms and a full GC (8-16 ms
// pause) every ~2 s; with pretenuring off, 14 MB, one full GC, and 10-20%
// less CPU per mail. Nothing here lives long enough to gain from it.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-allocation-site-pretenuring');
