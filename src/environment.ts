// The process's environment: the real one, with an optional .env file
// filling in what it leaves unset (main.ts reads it before anything loads,
// to know whether to start tracing; run.ts for boot).
import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { MailroomError } from './errors.js';

/**
 * Variables from .env fill in what the real environment leaves unset. A
 * missing ./.env is fine; a DOTENV_PATH that names no readable file stops
 * boot (exit 2): the operator meant a file, and it is not there.
 */
export function environment(): Record<string, string | undefined> {
  const named = process.env.DOTENV_PATH;
  const file = named ?? '.env';
  if (named === undefined && !existsSync(file)) return { ...process.env };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new MailroomError('ECONFIG', `invalid configuration:\n  DOTENV_PATH=${JSON.stringify(file)}: expected a readable file (${(err as Error).message})`);
  }
  return { ...parseEnv(text), ...process.env };
}
