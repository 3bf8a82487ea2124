// One winston root logger; components take children with their ids. A
// line that repeats is written at most once a second (lib/repeats.ts).
import { activeIds } from './lib/tracing.js';
import winston from 'winston';
import { RepeatLimiter } from './lib/repeats.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'pretty';

export type { Logger } from 'winston';

// Defence in depth: these never belong in a log line, whoever passes them.
const SECRET_KEYS = new Set(['password', 'app_password', 'otpcode', 'otp', 'secret', 'body', 'html', 'text', 'raw']);

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (SECRET_KEYS.has(key.toLowerCase())) info[key] = '[redacted]';
  }
  return info;
});

export interface LoggerOptions {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly silent?: boolean;
  /** write here instead of stderr (tests read what would have been logged) */
  readonly stream?: NodeJS.WritableStream;
}

/** Levels whose repeats are held back. */
const LIMITED: ReadonlySet<string> = new Set(['error', 'warn', 'info', 'http']);

/** Marks a summary line of the limiter's own, which it lets through. */
const SUMMARY = Symbol('summary');

export function createLogger(options: LoggerOptions): winston.Logger {
  let write: ((entry: winston.LogEntry) => void) | undefined;
  const limiter = new RepeatLimiter(({ level, message, component, held, seconds }) =>
    write?.({ level, message: `… ${held.toLocaleString('en')} more in the last ${seconds} s: ${message}`, repeated: held, ...(component !== undefined ? { component } : {}), [SUMMARY]: true }),
  );
  // Debug lines are asked for when diagnosing, one per job: they are all written.
  // With tracing on, a line written while a span is active names it (lib/tracing.ts).
  const traced = winston.format((info) => {
    const ids = activeIds();
    return ids === undefined ? info : Object.assign(info, ids);
  });
  const repeats = winston.format((info) => ((info as Record<symbol, unknown>)[SUMMARY] === true || !LIMITED.has(info.level) || limiter.allow(info) ? info : false));
  const format =
    options.format === 'json'
      ? winston.format.combine(repeats(), redact(), traced(), winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json())
      : winston.format.combine(
          repeats(),
          redact(),
          winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
          winston.format.colorize(),
          winston.format.printf(({ level, message, timestamp, component, cid, ...rest }) => {
            const who = [component, cid].filter(Boolean).join('/');
            const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
            return `${String(timestamp)} ${level} ${who ? `[${who}] ` : ''}${String(message)}${extra}`;
          }),
        );
  const logger = winston.createLogger({
    level: options.level,
    format,
    silent: options.silent ?? false,
    transports: [
      options.stream !== undefined
        ? new winston.transports.Stream({ stream: options.stream })
        : // stderr keeps stdout free for a client piping the service's output.
          new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] }),
    ],
  });
  // winston checks the level only in the transport, after the entry went
  // through its streams and every format (redact, timestamp, JSON): a debug
  // call at LOG_LEVEL=warn cost as much as a written line, several per mail.
  // The level is fixed at boot, so disabled levels become no-ops here; child
  // loggers inherit them from this instance.
  const off = (): winston.Logger => logger;
  for (const level of Object.keys(logger.levels)) {
    if (options.silent === true || !logger.isLevelEnabled(level)) (logger as unknown as Record<string, unknown>)[level] = off;
  }
  write = (entry) => logger.log(entry);
  return logger;
}
