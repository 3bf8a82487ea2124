// OTP scenarios (SendCode, ValidateCode vs the no-op floor, 1M live codes,
// sweep stall). They need the OTP service; until it exists they are skipped.
import type { BenchPki } from './pki.js';
import type { Ratio, Row, Target } from './report.js';

export interface OtpContext {
  readonly quick: boolean;
  readonly reps: number;
  readonly n: { rpc: number; rpcWarm: number; mail: number; mailWarm: number };
  readonly pki: BenchPki;
  readonly profileDir: string | undefined;
  log(s: string): void;
  /** one repetition of the bare grpc-js floor; returns its row */
  runFloor(): Promise<Row>;
  row(id: string, label: string, mail: boolean): Row;
}

export async function otpScenarios(ctx: OtpContext): Promise<{ ratios: Ratio[]; targets: Target[]; extra: [string, string][] }> {
  for (let rep = 0; rep < ctx.reps; rep++) await ctx.runFloor();
  return { ratios: [], targets: [], extra: [['OTP scenarios', 'skipped: OtpService not available in this build']] };
}
