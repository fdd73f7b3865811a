import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonLinesSink } from '../../src/events/sink';

describe('JsonLinesSink', () => {
  test('batches lines and flushes everything on close', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mapgate-sink-')), 'events.jsonl');
    const sink = new JsonLinesSink(file);
    await sink.ready();
    for (let i = 0; i < 5000; i++) sink.write({ i, s: `line ${i}` });
    await sink.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5000);
    expect(JSON.parse(lines[4999])).toEqual({ i: 4999, s: 'line 4999' });
    expect(sink.dropped).toBe(0);
  });

  test('shared mode writes pieces of at most PIPE_BUF bytes, each ending on a line boundary', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mapgate-sink-')), 'events.jsonl');
    const sink = new JsonLinesSink(file, true);
    await sink.ready();
    const writes: string[] = [];
    const stream = (sink as unknown as { stream: { write(c: string): boolean } }).stream;
    const write = stream.write.bind(stream);
    stream.write = (c: string): boolean => { writes.push(c); return write(c); };
    for (let i = 0; i < 200; i++) sink.write({ i, pad: 'x'.repeat(100) });
    await sink.close();
    expect(writes.length).toBeGreaterThan(1);
    for (const w of writes) {
      expect(Buffer.byteLength(w)).toBeLessThanOrEqual(4096);
      expect(w.endsWith('\n')).toBe(true);
    }
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(200);
  });

  test('an unopenable file rejects ready()', async () => {
    const sink = new JsonLinesSink('/nonexistent-dir/x/events.jsonl');
    await expect(sink.ready()).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
