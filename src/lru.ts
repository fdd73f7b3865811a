import { LRUCache } from 'lru-cache';

/**
 * An LRU of at most `max` entries whose table is allocated on the first `set`. lru-cache
 * allocates its arrays for `max` entries up front (about 22 bytes each: 350 KiB for 16,384), so
 * every service's rate buckets and the SOCKS login tables would otherwise hold that from start,
 * whether any limit or login ever uses them or not. `clear()` gives the table back.
 */
export class LazyLru<K extends {}, V extends {}> {
  private lru: LRUCache<K, V> | null = null;

  constructor(private readonly max: number) {}

  /** The value, marked most recently used. */
  get(key: K): V | undefined { return this.lru?.get(key); }
  /** The value, recency unchanged. */
  peek(key: K): V | undefined { return this.lru?.peek(key); }
  set(key: K, value: V): void { (this.lru ??= new LRUCache<K, V>({ max: this.max })).set(key, value); }
  delete(key: K): void { this.lru?.delete(key); }
  clear(): void { this.lru = null; }
  get size(): number { return this.lru?.size ?? 0; }
}
