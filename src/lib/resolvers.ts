// How an actor answers a caller without running the caller's code: the
// caller keeps a promise and hands the actor only its resolvers. Settling a
// promise runs nothing; the caller's continuation runs later, from the
// microtask queue, outside the actor's step, so a caller that throws
// cannot take the actor down.
import type { MailroomError } from '../errors.js';

export interface Resolvers<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: MailroomError) => void;
}

/** A promise and the resolvers that settle it (`reply`, handed to the actor). */
export function withResolvers<T>(): { reply: Resolvers<T>; answer: Promise<T> } {
  let reply!: Resolvers<T>;
  const answer = new Promise<T>((resolve, reject) => {
    reply = { resolve, reject };
  });
  return { reply, answer };
}
