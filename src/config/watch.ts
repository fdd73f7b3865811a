import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';

/** Bursts of change events (an editor's write-rename-chmod) within this window make one reload. */
const DEBOUNCE_MS = 200;

function digest(file: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return null;
  }
}

/**
 * Calls `onChange` when the content of `file` changes. Watches the file's directory as well as
 * the file itself: editors that save by writing a temp file and renaming it, and Kubernetes
 * ConfigMap volumes (which swap a `..data` symlink), replace the file's inode, which a watch on
 * the file alone would miss. Events are debounced, and a change that leaves the bytes as they
 * were (a touch, a chmod) does not fire. Returns a handle whose `close()` stops everything.
 */
export function watchFile(file: string, onChange: () => void): { close(): void } {
  const path = resolve(file);
  const dir = dirname(path);
  let last = digest(path);
  let timer: NodeJS.Timeout | null = null;
  let fileWatcher: FSWatcher | null = null;
  let closed = false;

  const check = (): void => {
    timer = null;
    if (closed) return;
    armFile();
    const now = digest(path);
    if (now === null || now === last) return;
    last = now;
    onChange();
  };
  const poke = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, DEBOUNCE_MS);
  };
  function armFile(): void {
    // Re-armed after every event: a rename leaves the old watch on a dead inode.
    fileWatcher?.close();
    fileWatcher = null;
    try {
      fileWatcher = watch(path, { persistent: false }, poke);
      fileWatcher.on('error', () => {});
    } catch {
      // The file is gone for a moment (mid-rename); the directory watch will see it return.
    }
  }
  // Any entry of the directory may be the one that matters (`..data`, a temp file renamed over
  // ours); the digest check above keeps unrelated changes from reloading.
  const dirWatcher = watch(dir, { persistent: false }, poke);
  dirWatcher.on('error', () => {});
  armFile();

  return {
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      fileWatcher?.close();
      dirWatcher.close();
    },
  };
}

/**
 * Watches a config file and every file it read (TLS certificates, keys, CAs): a change to any
 * calls `onChange`, which reloads. `follow` is called with each config put in force, so the set
 * of watched files follows the config (a new certificate path is watched, a dropped one is not).
 */
export class ConfigWatch {
  private readonly watchers = new Map<string, { close(): void }>();

  constructor(private readonly onChange: () => void) {}

  follow(config: { readonly file: string; readonly files: readonly string[] }): void {
    if (config.file === '<inline>') return this.close();
    const wanted = new Set([resolve(config.file), ...config.files]);
    for (const [file, w] of this.watchers) {
      if (wanted.has(file)) continue;
      w.close();
      this.watchers.delete(file);
    }
    for (const file of wanted) if (!this.watchers.has(file)) this.watchers.set(file, watchFile(file, this.onChange));
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
