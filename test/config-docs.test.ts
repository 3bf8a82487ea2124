// Keeps the configuration documentation honest: every variable src/config.ts
// reads is in config/mailroom.env.example and in the configuration reference
// (docs/configuration.md), and the example's commented-out values are the
// real defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { loadConfig } from '../src/config.js';

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const SOURCE = read('src/config.ts');
const EXAMPLE = read('config/mailroom.env.example');
const REFERENCE = read('docs/configuration.md');

/** Every name config.ts passes to a reader method or to seconds(). */
const VARIABLES = [...new Set([...SOURCE.matchAll(/(?:\br\.\w+(?:<[^>]*>)?|\bseconds)\('([A-Z][A-Z0-9_]*)'/g)].map((m) => m[1] as string))];

test('config.ts is read the way this test expects (a sanity check of the pattern)', () => {
  assert.ok(VARIABLES.length >= 40, `found ${VARIABLES.length}`);
  for (const name of ['PORT', 'WORKERS', 'EMAIL_HOST', 'APP_PASSWORD', 'SHUTDOWN_TIMEOUT_SECONDS']) assert.ok(VARIABLES.includes(name), name);
});

test('every variable is in config/mailroom.env.example', () => {
  const missing = VARIABLES.filter((name) => !new RegExp(`^# ${name}=`, 'm').test(EXAMPLE));
  assert.deepEqual(missing, []);
});

test('every variable is in the configuration reference, docs/configuration.md', () => {
  const missing = VARIABLES.filter((name) => !new RegExp(`^\\| [^|]*\`${name}\``, 'm').test(REFERENCE));
  assert.deepEqual(missing, []);
});

test('uncommented, the example gives the real defaults', () => {
  const values = parseEnv(EXAMPLE.replace(/^# ([A-Z][A-Z0-9_]*=)/gm, '$1'));
  // Illustrations rather than defaults: a relay, its CA and credentials, callers' files, a metrics port, a DKIM key, a bounce domain and port.
  for (const name of ['EMAIL_HOST', 'EMAIL_CA_FILE', 'EMAIL', 'APP_PASSWORD', 'EMAIL_FROM', 'EMAIL_HELO_NAME', 'AUTH_TOKENS_FILE', 'GRPC_TLS_CERT_FILE', 'GRPC_TLS_KEY_FILE', 'GRPC_TLS_CLIENT_CA_FILE', 'METRICS_PORT', 'REDIS_URL', 'REDIS_PREFIX', 'REDIS_TIMEOUT_MS', 'REDIS_SENTINELS', 'REDIS_SENTINEL_NAME', 'OUTBOX_REDIS_MIN_REPLICAS', 'INSPECT_PORT', 'INSPECT_BUFFER', 'INSPECT_SHOW_ADDRESSES', 'INSPECT_STATELY_URL', 'DKIM_DOMAIN', 'DKIM_SELECTOR', 'DKIM_PRIVATE_KEY_FILE', 'BOUNCE_DOMAIN', 'BOUNCE_PORT']) delete values[name];
  const fromExample = loadConfig(values);
  const defaults = loadConfig({});
  // A .env line break is \n; the built-in default spells it \r\n. Both are sent as CRLF.
  const crlf = (s: string): string => s.replace(/\r?\n/g, '\r\n');
  assert.deepEqual({ ...fromExample, otp: { ...fromExample.otp, templates: { ...fromExample.otp.templates, text: crlf(fromExample.otp.templates.text) } } }, defaults);
});
