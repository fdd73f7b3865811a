import { encodeProxyHeader, parseProxyHeader, V2_SIGNATURE } from '../../src/front/proxy-header';

const v1 = (line: string): Buffer => Buffer.from(line, 'latin1');

/** A v2 header: signature, version/command, family/transport, length, then `body`. */
function v2(verCmd: number, famProto: number, body: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([verCmd, famProto]), len, body]);
}

function inet4(src: number[], dst: number[], sport: number, dport: number, extra = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(12);
  b.set(src, 0);
  b.set(dst, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return Buffer.concat([b, extra]);
}

describe('PROXY protocol v1', () => {
  test.each([
    ['PROXY TCP4 10.0.0.5 10.0.0.1 51000 143\r\n', { address: '10.0.0.5', port: 51000 }, { address: '10.0.0.1', port: 143 }],
    ['PROXY TCP6 fd00::5 fd00::1 65535 0\r\n', { address: 'fd00::5', port: 65535 }, { address: 'fd00::1', port: 0 }],
  ])('%j', (line, source, destination) => {
    const r = parseProxyHeader(Buffer.concat([v1(line), Buffer.from('payload')]));
    expect(r).toEqual({ state: 'done', length: line.length, header: { version: 1, command: 'proxy', source, destination } });
  });

  test('UNKNOWN keeps the socket address (local), the rest of its line skipped', () => {
    const line = 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n';
    expect(parseProxyHeader(v1(`${line}x`))).toEqual({ state: 'done', length: line.length, header: { version: 1, command: 'local', source: null, destination: null } });
  });

  test('incomplete: every prefix of a header asks for more', () => {
    const line = v1('PROXY TCP4 10.0.0.5 10.0.0.1 51000 143\r\n');
    for (let n = 1; n < line.length; n++) expect(parseProxyHeader(line.subarray(0, n))).toEqual({ state: 'more' });
  });

  test.each([
    ['PROXY TCP4 10.0.0.5 10.0.0.1 51000 143\n', 'a bare LF is not the end of the line (and no CRLF within 107 bytes)'],
    ['PROXY TCP4 10.0.0.5 10.0.0.1 051000 143\r\n', 'leading zero in a port'],
    ['PROXY TCP4 10.0.0.5 10.0.0.1 65536 143\r\n', 'port out of range'],
    ['PROXY TCP4 fd00::5 10.0.0.1 1 2\r\n', 'IPv6 address under TCP4'],
    ['PROXY TCP6 10.0.0.5 10.0.0.1 1 2\r\n', 'IPv4 address under TCP6'],
    ['PROXY TCP4 10.0.0.5 10.0.0.1 1\r\n', 'a field missing'],
    ['PROXY UDP4 10.0.0.5 10.0.0.1 1 2\r\n', 'not TCP'],
    ['PROXY TCP4  10.0.0.5 10.0.0.1 1 2\r\n', 'two spaces'],
  ])('%j is refused (%s)', (line) => {
    const padded = line.endsWith('\n') && !line.endsWith('\r\n') ? Buffer.concat([v1(line), Buffer.alloc(107, 'a')]) : v1(line);
    expect(parseProxyHeader(padded).state).toBe('invalid');
  });

  test('a line longer than 107 bytes is refused, whatever follows', () => {
    const long = v1(`PROXY TCP6 ${'f'.repeat(100)}`);
    expect(parseProxyHeader(long)).toEqual({ state: 'invalid', why: 'v1 header longer than 107 bytes' });
    // The spec's worst case is exactly 107 bytes, CRLF included.
    const max = v1('PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n');
    expect(max.length).toBe(107);
    expect(parseProxyHeader(max).state).toBe('done');
  });

  test('anything that is not a header is refused at its first byte that cannot start one', () => {
    expect(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ state: 'invalid', why: 'no PROXY protocol header' });
    expect(parseProxyHeader(Buffer.from('PROX')).state).toBe('more');
    expect(parseProxyHeader(Buffer.from('PROXz')).state).toBe('invalid');
    expect(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01])).state).toBe('invalid');
  });
});

describe('PROXY protocol v2', () => {
  test('PROXY over IPv4, TLVs skipped by the length', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]);
    const header = v2(0x21, 0x11, inet4([10, 0, 0, 5], [10, 0, 0, 1], 51000, 143, tlv));
    const r = parseProxyHeader(Buffer.concat([header, Buffer.from('data')]));
    expect(r).toEqual({ state: 'done', length: header.length, header: { version: 2, command: 'proxy', source: { address: '10.0.0.5', port: 51000 }, destination: { address: '10.0.0.1', port: 143 } } });
  });

  test('PROXY over IPv6, mapped and plain addresses spelled as Node spells them', () => {
    const body = Buffer.alloc(36);
    body.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5], 0);
    body.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 16);
    body.writeUInt16BE(1234, 32);
    body.writeUInt16BE(443, 34);
    const r = parseProxyHeader(v2(0x21, 0x21, body));
    expect(r).toMatchObject({ state: 'done', header: { source: { address: '::ffff:10.0.0.5', port: 1234 }, destination: { address: 'fd00::1', port: 443 } } });
  });

  test('LOCAL (health checks), AF_UNSPEC and AF_UNIX keep the socket address', () => {
    expect(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0)))).toMatchObject({ state: 'done', length: 16, header: { command: 'local' } });
    expect(parseProxyHeader(v2(0x20, 0x11, inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)))).toMatchObject({ state: 'done', length: 28, header: { command: 'local', source: null } });
    expect(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0)))).toMatchObject({ state: 'done', header: { command: 'local' } });
    expect(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216)))).toMatchObject({ state: 'done', length: 232, header: { command: 'local' } });
  });

  test('incomplete until the length says it is whole', () => {
    const header = v2(0x21, 0x11, inet4([10, 0, 0, 5], [10, 0, 0, 1], 1, 2));
    for (let n = 1; n < header.length; n++) expect(parseProxyHeader(header.subarray(0, n))).toEqual({ state: 'more' });
  });

  test.each([
    [v2(0x11, 0x11, inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), 'version 1 in a v2 signature'],
    [v2(0x22, 0x11, inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), 'command 2'],
    [v2(0x21, 0x12, inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), 'datagram'],
    [v2(0x21, 0x11, Buffer.alloc(8)), 'too short for IPv4'],
    [v2(0x21, 0x21, Buffer.alloc(20)), 'too short for IPv6'],
    [v2(0x21, 0x41, Buffer.alloc(12)), 'unknown family'],
  ])('refused: %#', (header) => {
    expect(parseProxyHeader(header).state).toBe('invalid');
  });
});

describe('encodeProxyHeader', () => {
  test('v1 and v2 round-trip through the parser, IPv4 and IPv6', () => {
    for (const version of [1, 2] as const) {
      for (const [src, dst] of [[{ address: '10.0.0.5', port: 51000 }, { address: '10.0.0.1', port: 143 }], [{ address: 'fd00::5', port: 1 }, { address: '2001:db8::1', port: 65535 }]]) {
        const r = parseProxyHeader(encodeProxyHeader(version, src, dst));
        expect(r).toMatchObject({ state: 'done', header: { version, command: 'proxy', source: src, destination: dst } });
      }
    }
  });

  test('an IPv4 client of an IPv6 listener is sent IPv4-mapped, as HAProxy does', () => {
    expect(encodeProxyHeader(1, { address: '10.0.0.5', port: 1 }, { address: '::1', port: 2 }).toString()).toBe('PROXY TCP6 ::ffff:10.0.0.5 ::1 1 2\r\n');
    expect(parseProxyHeader(encodeProxyHeader(2, { address: '10.0.0.5', port: 1 }, { address: '::1', port: 2 }))).toMatchObject({ header: { source: { address: '::ffff:10.0.0.5' }, destination: { address: '::1' } } });
  });

  test('a link-local zone is left out: neither format can carry it', () => {
    expect(encodeProxyHeader(1, { address: 'fe80::5%eth1', port: 1 }, { address: 'fe80::1%eth1', port: 2 }).toString()).toBe('PROXY TCP6 fe80::5 fe80::1 1 2\r\n');
    expect(parseProxyHeader(encodeProxyHeader(2, { address: 'fe80::5%eth1', port: 1 }, { address: 'fe80::1%eth1', port: 2 }))).toMatchObject({ header: { source: { address: 'fe80::5' }, destination: { address: 'fe80::1' } } });
  });

  test('the exact bytes of a v2 IPv4 header', () => {
    expect(encodeProxyHeader(2, { address: '10.0.0.5', port: 0x1234 }, { address: '10.0.0.1', port: 0x8f }).toString('hex'))
      .toBe('0d0a0d0a000d0a515549540a' + '21' + '11' + '000c' + '0a000005' + '0a000001' + '1234' + '008f');
  });
});
