// Types for the parts of mailauth (pinned in package.json) that mail/dkim.ts
// uses: its body and header canonicalization and its signature formatting.
// mailauth ships types for its top-level API only.
declare module 'mailauth/lib/dkim/body/index.js' {
  interface BodyHasher {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  export function dkimBody(canonicalization: string, hashAlgorithm: string, maxBodyLength: number | false): BodyHasher;
}

declare module 'mailauth/lib/dkim/header/index.js' {
  import type { SigningHeaderLines } from 'mailauth/lib/tools.js';
  export interface SignatureTags {
    [tag: string]: string | number | undefined;
  }
  export function generateCanonicalizedHeader(
    type: 'DKIM',
    lines: SigningHeaderLines,
    options: { signingDomain: string; selector: string; algorithm: string; canonicalization: string; bodyHash: string; signTime: Date },
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: SignatureTags };
}

declare module 'mailauth/lib/tools.js' {
  import type { SignatureTags } from 'mailauth/lib/dkim/header/index.js';
  export interface ParsedHeader {
    key: string | null;
    casedKey: string | undefined;
    line: Buffer;
  }
  export interface SigningHeaderLines {
    keys: string;
    headers: ParsedHeader[];
  }
  export function parseHeaders(buf: Buffer): { parsed: ParsedHeader[]; original: Buffer };
  export function getSigningHeaderLines(parsed: ParsedHeader[], fieldNames: string): SigningHeaderLines;
  export function formatSignatureHeaderLine(type: 'DKIM', values: SignatureTags, folded: boolean): string;
}
