import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsonLine, JsonLinesSink } from '../../src/events/sink';

describe('jsonLine', () => {
  test.each([
    [{ event: 'ClientConnect', id: 'ab-1', service: 'imap', listener: '[::1]:1143', client: '[::ffff:10.0.0.1]:5000', user: null, destination: 'mail.corp.example:143', tls: true, time: '2026-11-22T01:02:03.004Z' }],
    [{ event: 'ClientDisconnect', bytesFromClient: 0, bytesToClient: 123456789012, durationMs: 1.5, reason: 'connect-failed', error: 'ECONNREFUSED', destinationIndex: null }],
    [{ s: 'quote " and backslash \\ and newline \n and tab \t', u: 'ünïcødé ☃', ctl: '\u0001', empty: '' }],
    [{ nan: NaN, inf: Infinity, neg: -0, nested: { a: [1, 'x'] }, skipped: undefined }],
    [{ key: 'a/b+c@d%e', 'odd "key"': 1 }],
  ])('matches JSON.stringify for %j', (record) => {
    expect(jsonLine(record)).toBe(JSON.stringify(record) + '\n');
    expect(JSON.parse(jsonLine(record))).toEqual(JSON.parse(JSON.stringify(record)));
  });
});

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
