// The service as a process of its own (`node dist/src/main.js`, as npm start
// runs it), for what only a process shows: signals, exit codes, protected
// mode. Its JSON log lines are collected; the port comes from 'listening'.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { spawnService } from './helpers.js';

export interface ServiceProcess {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** every log line so far, parsed (a line that is not JSON as { raw }) */
  readonly logs: Record<string, unknown>[];
}

/** Starts the process with exactly `env` (PORT=0 on loopback, JSON logs at info unless given) and waits for its 'listening' line. */
export async function startProcess(env: Record<string, string>, options: { script?: string; timeoutMs?: number } = {}): Promise<ServiceProcess> {
  const proc = spawnService({ PORT: '0', HOST: '127.0.0.1', LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env }, options.script === undefined ? {} : { script: options.script });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const logs: Record<string, unknown>[] = [];
  const timeoutMs = options.timeoutMs ?? 5000;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the service did not start within ${timeoutMs} ms: ${JSON.stringify(logs)}`)), timeoutMs);
    void exited.then(({ code }) => reject(new Error(`the service exited at boot with ${code}: ${JSON.stringify(logs)}`)));
    createInterface({ input: proc.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.message === 'listening') {
          clearTimeout(timer);
          resolve(Number(entry.port));
        }
      } catch {
        logs.push({ raw: line });
      }
    });
  });
  return { proc, port, exited, logs };
}
