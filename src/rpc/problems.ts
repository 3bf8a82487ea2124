// The problems of one request, reported together in one INVALID_ARGUMENT:
// the first MAX_PROBLEMS of them, the rest counted ("and 12 more"), so that
// the status always fits its trailer.
import { MailroomError } from '../errors.js';

export const MAX_PROBLEMS = 20;

export class Problems {
  private readonly list: string[] = [];
  private more = 0;

  add(problem: string): void {
    if (this.list.length < MAX_PROBLEMS) this.list.push(problem);
    else this.more++;
  }

  has(prefix: string): boolean {
    return this.list.some((p) => p.startsWith(prefix));
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  error(): MailroomError {
    const tail = this.more > 0 ? `; and ${this.more} more` : '';
    return new MailroomError('EINVALID', this.list.join('; ') + tail);
  }
}
