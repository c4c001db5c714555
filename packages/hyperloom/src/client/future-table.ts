/**
 * The client's tables of futures by task id: a `Map<number, V>` for the client's own ids
 * (non-negative integers handed out in order, a plan's ids consecutive), kept in pages of
 * {@link PAGE} slots indexed directly. A gather of 100,000 futures does about ten lookups,
 * insertions and deletions per future; in hash maps of that size they cost about 1 µs per future
 * (issue #26), here a few array accesses. A page is dropped when its last entry goes, so memory
 * follows the live ids, not every id ever used.
 */

/** Slots per page (ids `p * PAGE` to `(p + 1) * PAGE - 1`). */
const PAGE = 4096;
const SHIFT = 12;

interface Page<V> {
  slots: Array<V | undefined>;
  /** Slots in use. */
  used: number;
}

/** A map from task ids (integers >= 0) to `V` (never `undefined`). */
export class FutureTable<V> {
  private pages: Array<Page<V> | undefined> = [];
  private count = 0;

  /** Entries in the table. */
  get size(): number {
    return this.count;
  }

  get(id: number): V | undefined {
    return this.pages[id >>> SHIFT]?.slots[id & (PAGE - 1)];
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Sets `id` (a non-negative integer below 2^31) to `v`. */
  set(id: number, v: V): this {
    const p = id >>> SHIFT;
    let page = this.pages[p];
    if (page === undefined) {
      while (this.pages.length < p) this.pages.push(undefined);
      page = { slots: new Array<V | undefined>(PAGE).fill(undefined), used: 0 };
      this.pages[p] = page;
    }
    const i = id & (PAGE - 1);
    if (page.slots[i] === undefined) {
      page.used++;
      this.count++;
    }
    page.slots[i] = v;
    return this;
  }

  /** Removes `id`; true when it was there. */
  delete(id: number): boolean {
    const p = id >>> SHIFT;
    const page = this.pages[p];
    if (page === undefined) return false;
    const i = id & (PAGE - 1);
    if (page.slots[i] === undefined) return false;
    page.slots[i] = undefined;
    this.count--;
    if (--page.used === 0) this.pages[p] = undefined;
    return true;
  }

  clear(): void {
    this.pages = [];
    this.count = 0;
  }

  /** The entries in id order (a snapshot is not taken: do not change the table while iterating). */
  *entries(): IterableIterator<[number, V]> {
    for (let p = 0; p < this.pages.length; p++) {
      const page = this.pages[p];
      if (page === undefined) continue;
      for (let i = 0; i < PAGE; i++) {
        const v = page.slots[i];
        if (v !== undefined) yield [(p << SHIFT) | i, v];
      }
    }
  }

  *keys(): IterableIterator<number> {
    for (const [id] of this.entries()) yield id;
  }

  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): IterableIterator<[number, V]> {
    return this.entries();
  }
}
