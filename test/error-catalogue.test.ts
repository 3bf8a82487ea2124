// Keeps the error catalogue honest: every code has a gRPC status, the
// transient flags match the documented policy, the API page's table matches the
// code, and what reaches a caller carries the documented metadata.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ERROR_CATALOGUE, MailroomError, toMailroomError, type ErrorCode } from '../src/errors.js';
import { STATUS_BY_CODE, toServiceError } from '../src/rpc/status.js';

const API = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
const CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

test('every code has exactly one gRPC status, never OK or UNKNOWN', () => {
  assert.deepEqual(Object.keys(STATUS_BY_CODE).sort(), [...CODES].sort());
  for (const code of CODES) {
    const status = STATUS_BY_CODE[code];
    assert.ok(grpc.status[status] !== undefined, `${code}: ${status} is a gRPC status`);
    assert.notEqual(status, grpc.status.OK, code);
    assert.notEqual(status, grpc.status.UNKNOWN, code);
    assert.ok(ERROR_CATALOGUE[code].summary.length > 0, `${code} has a summary`);
  }
});

test('transient means "may work on another connection or later": always UNAVAILABLE', () => {
  const transient = CODES.filter((c) => ERROR_CATALOGUE[c].transient).sort();
  assert.deepEqual(transient, ['EAUTH', 'ECONNECTION', 'ESMTP_TRANSIENT', 'ESTALE', 'ETIMEDOUT', 'ETLS']);
  for (const code of transient) assert.equal(STATUS_BY_CODE[code], grpc.status.UNAVAILABLE, code);
  for (const code of CODES) assert.equal(new MailroomError(code, 'x').transient, ERROR_CATALOGUE[code].transient, code);
});

test('the mapping DESIGN.md promises', () => {
  const expect: Partial<Record<ErrorCode, grpc.status>> = {
    EINVALID: grpc.status.INVALID_ARGUMENT,
    ERECIPIENT: grpc.status.INVALID_ARGUMENT,
    ESMTP_PERMANENT: grpc.status.FAILED_PRECONDITION,
    EQUEUEFULL: grpc.status.RESOURCE_EXHAUSTED,
    ERATELIMIT: grpc.status.RESOURCE_EXHAUSTED,
    EDEADLINE: grpc.status.DEADLINE_EXCEEDED,
    EUNAVAILABLE: grpc.status.UNAVAILABLE,
    ESHUTDOWN: grpc.status.UNAVAILABLE,
    EINTERNAL: grpc.status.INTERNAL,
  };
  for (const [code, status] of Object.entries(expect)) assert.equal(STATUS_BY_CODE[code as ErrorCode], status, code);
});

test("docs/api.md's error table lists every code with its status and transient flag", () => {
  const rows = new Map<string, [status: string, transient: string]>();
  for (const m of API.matchAll(/^\| `(E[A-Z_]+)` \| `([A-Z_]+)` \| (yes|no) \|/gm)) rows.set(m[1] as string, [m[2] as string, m[3] as string]);
  assert.deepEqual([...rows.keys()].sort(), [...CODES].sort(), 'docs/api.md lists exactly the catalogue');
  for (const code of CODES) {
    assert.deepEqual(rows.get(code), [grpc.status[STATUS_BY_CODE[code]], ERROR_CATALOGUE[code].transient ? 'yes' : 'no'], code);
  }
});

test('metadata: mailroom-error always, retry-after and smtp codes when known', () => {
  const full = toServiceError(
    new MailroomError('ERECIPIENT', 'SMTP rcpt refused: 550 5.1.1 no such user', { smtp: { code: 550, enhanced: '5.1.1', text: 'no such user' } }),
  );
  assert.equal(full.code, grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(full.metadata?.getMap(), { 'mailroom-error': 'ERECIPIENT', 'smtp-code': '550', 'smtp-enhanced-code': '5.1.1' });
  assert.match(full.details ?? '', /550 5\.1\.1 no such user/);

  const busy = toServiceError(new MailroomError('EQUEUEFULL', 'the send queue is full', { retryAfterSeconds: 1 }));
  assert.equal(busy.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.deepEqual(busy.metadata?.getMap(), { 'mailroom-error': 'EQUEUEFULL', 'retry-after': '1' });
  assert.match(busy.details ?? '', /retry after 1 s/);

  const terse = toServiceError(new MailroomError('ESMTP_PERMANENT', 'refused', { smtp: { code: 554, enhanced: undefined, text: 'no' } }));
  assert.match(terse.details ?? '', /\(SMTP 554 no\)$/, 'the SMTP reply reaches the caller even when the message lacks it');
});

test('an unknown error becomes INTERNAL with a generic message: our faults stay in the log', () => {
  const err = toServiceError(new TypeError('cannot read properties of undefined (reading "secret")'));
  assert.equal(err.code, grpc.status.INTERNAL);
  assert.equal(err.details, ERROR_CATALOGUE.EINTERNAL.summary);
  assert.deepEqual(err.metadata?.getMap(), { 'mailroom-error': 'EINTERNAL' });
  const cause = new Error('boom');
  assert.equal(toMailroomError(cause).cause, cause, 'the original is kept as cause for the log');
});
