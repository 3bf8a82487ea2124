// A value that must never be written out: the content of a code mail on its
// way from the OTP actor to the mail path travels in an event, and events
// are what inspectors and logs serialise. JSON and util.inspect see a
// placeholder; only `open()` gives the value.
import { inspect } from 'node:util';

export class Sealed<T> {
  readonly #value: T;

  constructor(value: T) {
    this.#value = value;
  }

  open(): T {
    return this.#value;
  }

  toJSON(): string {
    return '[sealed]';
  }

  [inspect.custom](): string {
    return 'Sealed [sealed]';
  }
}
