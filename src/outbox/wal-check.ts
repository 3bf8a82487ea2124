// Reads the outbox's write-ahead log before SQLite opens it, because SQLite
// forgives too much: a WAL whose header does not check out is ignored
// whole, and a frame that fails its checksum ends the log there, silently,
// with every commit after it. Either way messages that were answered QUEUED
// would be gone without a word. A torn tail (frames of a commit the crash
// interrupted, nothing valid after them) is what a crash leaves and is not
// damage: those commits were never acknowledged.
//
// The format (sqlite.org/fileformat2.html#walformat): a 32-byte header
// (magic, version, page size, checkpoint sequence, two salts, a checksum of
// the first 24 bytes), then frames of a 24-byte header (page number, the
// database size on a commit frame, the salts, a running checksum) and a
// page. Each frame's checksum runs on from the one before it.
import { closeSync, openSync, readSync, statSync } from 'node:fs';

const MAGIC_LE = 0x377f0682;
const MAGIC_BE = 0x377f0683;
const VERSION = 3007000;
const HEADER = 32;
const FRAME_HEADER = 24;

export type WalVerdict =
  | { readonly ok: true; readonly frames: number }
  | { readonly ok: false; readonly problem: string; readonly dropped: string };

/** The running checksum SQLite uses, over whole 8-byte steps of `data`, from `seed`. */
function checksum(data: Buffer, start: number, end: number, bigEndian: boolean, seed: readonly [number, number]): [number, number] {
  let s0 = seed[0];
  let s1 = seed[1];
  for (let i = start; i < end; i += 8) {
    const x0 = bigEndian ? data.readUInt32BE(i) : data.readUInt32LE(i);
    const x1 = bigEndian ? data.readUInt32BE(i + 4) : data.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  return [s0, s1];
}

/** The page size the database's own header names (offset 16; 1 means 65536); undefined for a file too short to say. */
function databasePageSize(db: Buffer | undefined): number | undefined {
  if (db === undefined || db.length < 100) return undefined;
  const n = db.readUInt16BE(16);
  return n === 1 ? 65_536 : n;
}

/**
 * Judges a WAL from its bytes and the first 100 bytes of its database (to
 * check the page size; undefined when there is no database yet).
 */
export function judgeWal(wal: Buffer, dbHeader: Buffer | undefined): WalVerdict {
  if (wal.length === 0) return { ok: true, frames: 0 };
  if (wal.length < HEADER) return { ok: false, problem: `the WAL is ${wal.length} bytes, shorter than its header`, dropped: 'the whole WAL' };
  const magic = wal.readUInt32BE(0);
  const bigEndian = magic === MAGIC_BE;
  const pageSize = wal.readUInt32BE(8);
  const expectedPage = databasePageSize(dbHeader);
  const header = checksum(wal, 0, 24, bigEndian, [0, 0]);
  const headerOk =
    (magic === MAGIC_LE || magic === MAGIC_BE) &&
    wal.readUInt32BE(4) === VERSION &&
    pageSize >= 512 &&
    pageSize <= 65_536 &&
    (pageSize & (pageSize - 1)) === 0 &&
    header[0] === wal.readUInt32BE(24) &&
    header[1] === wal.readUInt32BE(28);
  if (!headerOk) return { ok: false, problem: 'the WAL header is damaged (magic, version, page size or checksum)', dropped: 'the whole WAL' };
  if (expectedPage !== undefined && expectedPage !== pageSize) {
    return { ok: false, problem: `the WAL header does not match the database (page size ${pageSize}, the database's ${expectedPage})`, dropped: 'the whole WAL' };
  }
  const salt1 = wal.readUInt32BE(16);
  const salt2 = wal.readUInt32BE(20);
  const frameSize = FRAME_HEADER + pageSize;
  const count = Math.floor((wal.length - HEADER) / frameSize);
  /** a frame whose checksum runs on from `seed` and whose salts are this WAL's */
  const valid = (i: number, seed: readonly [number, number]): boolean => {
    const at = HEADER + i * frameSize;
    if (wal.readUInt32BE(at + 8) !== salt1 || wal.readUInt32BE(at + 12) !== salt2) return false;
    const head = checksum(wal, at, at + 8, bigEndian, seed);
    const sum = checksum(wal, at + FRAME_HEADER, at + frameSize, bigEndian, head);
    return sum[0] === wal.readUInt32BE(at + 16) && sum[1] === wal.readUInt32BE(at + 20);
  };
  const stored = (i: number): [number, number] => {
    const at = HEADER + i * frameSize;
    return [wal.readUInt32BE(at + 16), wal.readUInt32BE(at + 20)];
  };
  let seed: readonly [number, number] = header;
  let good = 0;
  while (good < count && valid(good, seed)) seed = stored(good++);
  if (good === count) return { ok: true, frames: good };
  // The chain breaks at `good`. Frames after it that check out against the
  // stored checksum of the frame before them belong to this log: the break
  // is damage, not a torn tail.
  for (let j = good + 1; j < count; j++) {
    if (valid(j, stored(j - 1))) {
      let commits = 0;
      for (let k = good; k < count; k++) if (wal.readUInt32BE(HEADER + k * frameSize + 4) !== 0) commits++;
      return {
        ok: false,
        problem: `WAL frame ${good + 1} of ${count} fails its checksum, and valid frames follow it`,
        dropped: `frames ${good + 1} to ${count} of the WAL (${commits} commit${commits === 1 ? '' : 's'})`,
      };
    }
  }
  return { ok: true, frames: good };
}

/** Judges the WAL beside the database at `path` (`path`-wal); a missing WAL is a clean one. */
export function checkWal(path: string): WalVerdict {
  const walPath = `${path}-wal`;
  let size: number;
  try {
    size = statSync(walPath).size;
  } catch {
    return { ok: true, frames: 0 };
  }
  const read = (file: string, length: number): Buffer | undefined => {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      return undefined;
    }
    try {
      const buffer = Buffer.alloc(length);
      const n = readSync(fd, buffer, 0, length, 0);
      return buffer.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  };
  return judgeWal(read(walPath, size) ?? Buffer.alloc(0), read(path, 100));
}
