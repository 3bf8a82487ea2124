// The independent checkers the tests run: Debian's Python (its email
// package; python3-dkim) through the small scripts in test/python/. The
// machine's default python3 may be another one without dkim, so it is
// /usr/bin/python3 by path.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PYTHON = '/usr/bin/python3';
const script = (name: string): string => fileURLToPath(new URL(`../../test/python/${name}`, import.meta.url));

function run(args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args[0]} exited ${code}: ${err}`))));
    child.stdin.end(input, 'utf8');
  });
}

export interface PyPart {
  readonly type: string;
  readonly disposition: string | null;
  readonly filename: string | null;
  readonly cid: string | null;
  readonly cte: string | null;
  readonly defects: string[];
  readonly parts?: PyPart[];
  readonly sha256?: string;
  readonly size?: number;
  readonly text?: string;
}

export interface PyMessage {
  readonly headers: [string, string][];
  readonly tree: PyPart;
}

/** The message as Python's email package reads it. */
export async function pythonParse(raw: string): Promise<PyMessage> {
  return JSON.parse(await run([script('mime-tree.py')], raw)) as PyMessage;
}

/** Every defect Python's parser found anywhere in the tree. */
export function defects(part: PyPart): string[] {
  return [...part.defects, ...(part.parts ?? []).flatMap(defects)];
}

/** The tree's shape: "multipart/mixed(multipart/alternative(text/plain,text/html),application/pdf)". */
export function shape(part: PyPart): string {
  return part.parts === undefined ? part.type : `${part.type}(${part.parts.map(shape).join(',')})`;
}

export function leaves(part: PyPart): PyPart[] {
  return part.parts === undefined ? [part] : part.parts.flatMap(leaves);
}

/** dkimpy's verdict on each DKIM-Signature, with `record` as the TXT record of selector._domainkey.domain. */
export async function pythonDkimVerify(raw: string, selector: string, domain: string, record: string): Promise<{ signatures: number; verified: boolean[] }> {
  return JSON.parse(await run([script('dkim-verify.py'), selector, domain, record], raw)) as { signatures: number; verified: boolean[] };
}
