// A set of listeners told the same value: the one shape behind every
// on…(listener) → unsubscribe of the stores.
export class Listeners<T> {
  private readonly set = new Set<(value: T) => void>();

  add(listener: (value: T) => void): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }

  tell(value: T): void {
    for (const listener of this.set) listener(value);
  }

  get size(): number {
    return this.set.size;
  }
}
