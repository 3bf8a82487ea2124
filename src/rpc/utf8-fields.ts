// proto3 strings must be UTF-8, but the decoder turns bytes that are not
// into replacement characters (or worse) without a word: a subject with a
// stray Latin-1 byte would go out as U+FFFD. Before a request is decoded,
// this walks its wire format and names the first string field whose bytes
// are not UTF-8, so that the caller hears which one (INVALID_ARGUMENT).
import { isUtf8 } from 'node:buffer';
import type { PackageDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

interface FieldShape {
  readonly name: string;
  readonly repeated: boolean;
  /** a string's bytes are checked; a message's fields are walked */
  readonly kind: 'string' | 'message' | 'other';
  readonly typeName: string;
}

type Shapes = ReadonlyMap<string, ReadonlyMap<number, FieldShape>>;

interface DescriptorField {
  readonly name: string;
  readonly number: number;
  readonly label: string;
  readonly type: string;
  readonly typeName: string;
}

function shapesOf(definition: PackageDefinition): Shapes {
  const shapes = new Map<string, Map<number, FieldShape>>();
  for (const [name, entry] of Object.entries(definition)) {
    if (!('format' in entry)) continue;
    const fields = ((entry as MessageTypeDefinition<unknown, unknown>).type as { field?: DescriptorField[] }).field ?? [];
    shapes.set(
      name,
      new Map(
        fields.map((f) => [
          f.number,
          { name: f.name, repeated: f.label === 'LABEL_REPEATED', kind: f.type === 'TYPE_STRING' ? 'string' : f.type === 'TYPE_MESSAGE' ? 'message' : 'other', typeName: f.typeName.replace(/^\./, '') },
        ]),
      ),
    );
  }
  return shapes;
}

class Reader {
  at = 0;
  constructor(readonly bytes: Buffer, readonly end: number) {}

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.at >= this.end) throw new Error('truncated');
      const b = this.bytes[this.at++] as number;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw new Error('varint too long');
  }
}

/** The path of the first string field of `type` in `bytes[from, to)` that is not UTF-8; undefined when all are (or the bytes do not parse: the decoder says why). */
function firstBad(shapes: Shapes, type: string, bytes: Buffer, from: number, to: number, prefix: string): string | undefined {
  const fields = shapes.get(type);
  const r = new Reader(bytes, to);
  r.at = from;
  const seen = new Map<number, number>();
  try {
    while (r.at < to) {
      const tag = r.varint();
      const wire = tag & 7;
      const number = Math.floor(tag / 8);
      if (wire === 0) r.varint();
      else if (wire === 1) r.at += 8;
      else if (wire === 5) r.at += 4;
      else if (wire === 2) {
        const length = r.varint();
        const start = r.at;
        r.at += length;
        if (r.at > to) return undefined;
        const field = fields?.get(number);
        if (field === undefined || field.kind === 'other') continue;
        const index = seen.get(number) ?? 0;
        seen.set(number, index + 1);
        const path = `${prefix}${field.name}${field.repeated ? `[${index}]` : ''}`;
        if (field.kind === 'string') {
          if (!isUtf8(bytes.subarray(start, start + length))) return path;
        } else {
          const inner = firstBad(shapes, field.typeName, bytes, start, start + length, `${path}.`);
          if (inner !== undefined) return inner;
        }
      } else return undefined;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** For each method path of `definition`'s services, a check of its request's bytes: the first string field that is not UTF-8. */
export function utf8Checks(definition: PackageDefinition): Map<string, (bytes: Buffer) => string | undefined> {
  const shapes = shapesOf(definition);
  const checks = new Map<string, (bytes: Buffer) => string | undefined>();
  for (const entry of Object.values(definition)) {
    if ('format' in entry) continue;
    for (const method of Object.values(entry)) {
      // '/mail.MailService/SendMail' and a request type named SendEmailRequest: mail.SendEmailRequest
      const service = method.path.split('/')[1] ?? '';
      const pkg = service.slice(0, service.lastIndexOf('.'));
      const name = `${pkg}.${(method.requestType.type as { name?: string }).name ?? ''}`;
      checks.set(method.path, (bytes) => firstBad(shapes, name, bytes, 0, bytes.length, ''));
    }
  }
  return checks;
}
