// The benchmark's TLS sink presents the same kind of throwaway CA as the tests.
import { makePki as make, type Pki } from '../test/pki.js';

export type BenchPki = Pki;

export function makePki(): BenchPki {
  return make('bench');
}
