import {
  canonicalAddress, findEpsvPort, findPasvAddress, formatEprtArg, formatHostPort, parseCommand, parseEprtArg, parsePortArg,
  ReplyReader, sameAddress, splice,
} from '../../src/protocols/ftp/commands';
import { LineSplitter, lineEnd, lineText, MAX_LINE_BYTES } from '../../src/protocols/ftp/lines';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const texts = (lines: Buffer[]): string[] => lines.map((l) => l.toString('latin1'));

describe('LineSplitter', () => {
  test('several lines in one read come out one by one, each with its terminator', () => {
    const out: Buffer[] = [];
    expect(new LineSplitter().push(b('220 hi\r\nUSER a\r\n331 ok\n'), out)).toBe(true);
    expect(texts(out)).toEqual(['220 hi\r\n', 'USER a\r\n', '331 ok\n']);
  });

  test('a line split across reads, even inside its CRLF, is joined; the unfinished rest waits', () => {
    const s = new LineSplitter();
    const out: Buffer[] = [];
    for (const piece of ['22', '7 Entering Passive Mode (127,0,', '0,2,4,1)\r', '\n230', ' next']) expect(s.push(b(piece), out)).toBe(true);
    expect(texts(out)).toEqual(['227 Entering Passive Mode (127,0,0,2,4,1)\r\n']);
    expect(s.rest()?.toString()).toBe('230 next');
    expect(s.rest()).toBeNull();
  });

  test('every byte split: the same lines as in one read', () => {
    const text = 'a\r\nbb\ncc\r\n\r\nd';
    const s = new LineSplitter();
    const out: Buffer[] = [];
    for (const ch of text) s.push(b(ch), out);
    expect(texts(out)).toEqual(['a\r\n', 'bb\n', 'cc\r\n', '\r\n']);
    expect(s.rest()?.toString()).toBe('d');
  });

  test('a line of exactly the bound passes; one byte more fails, whether or not its LF has come', () => {
    const max = 'x'.repeat(MAX_LINE_BYTES - 2) + '\r\n';
    const out: Buffer[] = [];
    expect(new LineSplitter().push(b(max), out)).toBe(true);
    expect(out[0].length).toBe(MAX_LINE_BYTES);
    expect(new LineSplitter().push(b('x' + max), [])).toBe(false);
    // No LF yet, but already too long to end within the bound: refused before it grows further.
    const s = new LineSplitter();
    expect(s.push(b('x'.repeat(MAX_LINE_BYTES - 1)), [])).toBe(true);
    expect(s.push(b('x'), [])).toBe(false);
  });

  test('the bound is per line: many short lines in a large read are fine', () => {
    const out: Buffer[] = [];
    expect(new LineSplitter(16).push(b('NOOP\r\n'.repeat(1000)), out)).toBe(true);
    expect(out).toHaveLength(1000);
  });

  test('lineText strips CRLF or LF and keeps every other byte; lineEnd says which', () => {
    expect(lineText(b('227 x\r\n'))).toBe('227 x');
    expect(lineText(b('227 x\n'))).toBe('227 x');
    expect(lineText(b('caf\xe9'))).toBe('caf\xe9');
    expect([lineEnd(b('a\r\n')), lineEnd(b('a\n')), lineEnd(b('a'))]).toEqual(['\r\n', '\n', '']);
  });
});

describe('parseCommand', () => {
  test.each([
    ['PORT 127,0,0,1,4,1\r\n', 'PORT', '127,0,0,1,4,1'],
    ['eprt |1|127.0.0.1|1025|\n', 'EPRT', '|1|127.0.0.1|1025|'],
    ['PASV\r\n', 'PASV', ''],
    ['RETR a file with spaces\r\n', 'RETR', 'a file with spaces'],
    ['\xff\xf4\xff\xf2ABOR\r\n', 'ABOR', ''],
    ['\xf2ABOR\r\n', 'ABOR', ''],
  ])('%j → %s %j', (line, verb, arg) => {
    expect(parseCommand(b(line))).toEqual({ verb, arg });
  });
});

describe('ReplyReader', () => {
  test('single-line replies end at once; garbage is no reply', () => {
    const r = new ReplyReader();
    expect(r.final('227 Entering Passive Mode (1,2,3,4,5,6)')).toBe('227');
    expect(r.final('200')).toBe('200');
    expect(r.final('hello')).toBeNull();
    expect(r.final('22 short')).toBeNull();
  });

  test('a multi-line reply ends only at its own code followed by a space', () => {
    const r = new ReplyReader();
    expect(r.final('227-Entering Passive Mode (9,9,9,9,9,9)')).toBeNull();
    expect(r.inside).toBe(true);
    expect(r.final(' continuation')).toBeNull();
    expect(r.final('229 (|||1234|) is text inside another reply')).toBeNull();
    expect(r.final('227-still going')).toBeNull();
    expect(r.final('227 Entering Passive Mode (1,2,3,4,5,6)')).toBe('227');
    expect(r.inside).toBe(false);
    expect(r.final('211-Features:')).toBeNull();
    expect(r.final(' EPSV')).toBeNull();
    expect(r.final('211 End')).toBe('211');
  });
});

describe('addresses', () => {
  test('canonicalAddress unwraps IPv4-mapped IPv6 and spells IPv6 one way', () => {
    expect(canonicalAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(canonicalAddress('0:0:0:0:0:0:0:1')).toBe('::1');
    expect(canonicalAddress('2001:DB8:0:0::1')).toBe('2001:db8::1');
    expect(canonicalAddress('10.0.0.1')).toBe('10.0.0.1');
    expect(canonicalAddress('example.com')).toBeNull();
    expect(canonicalAddress(undefined)).toBeNull();
  });

  test('sameAddress', () => {
    expect(sameAddress('::ffff:10.0.0.1', '10.0.0.1')).toBe(true);
    expect(sameAddress('::1', '0::1')).toBe(true);
    expect(sameAddress('10.0.0.1', '10.0.0.2')).toBe(false);
    expect(sameAddress(undefined, undefined)).toBe(false);
  });
});

describe('PORT and 227', () => {
  test.each([
    ['127,0,0,3,4,1', { host: '127.0.0.3', port: 1025 }],
    [' 10,1,2,3,255,255 ', { host: '10.1.2.3', port: 65535 }],
    ['127,0,0,256,4,1', null],
    ['127,0,0,1,4', null],
    ['127,0,0,1,4,1,2', null],
    ['a,b,c,d,e,f', null],
    ['', null],
  ])('parsePortArg(%j)', (arg, want) => {
    expect(parsePortArg(arg)).toEqual(want);
  });

  test('formatHostPort', () => {
    expect(formatHostPort('127.0.0.1', 1025)).toBe('127,0,0,1,4,1');
    expect(formatHostPort('10.0.0.1', 65535)).toBe('10,0,0,1,255,255');
  });

  test.each([
    ['227 Entering Passive Mode (127,0,0,2,195,80).', { host: '127.0.0.2', port: 50000 }, 27],
    ['227 =127,0,0,2,195,80', { host: '127.0.0.2', port: 50000 }, 5],
    ['227 Entering Passive Mode 127,0,0,2,195,80', { host: '127.0.0.2', port: 50000 }, 26],
    ['227 Entering Passive Mode (1127,0,0,2,195,80)', null, 0],
    ['227 Entering Passive Mode (127,0,0,2,195,800)', null, 0],
    ['227 Entering Passive Mode (127,0,0,2,195)', null, 0],
    ['227 Entering Passive Mode', null, 0],
  ])('findPasvAddress(%j)', (text, value, start) => {
    const found = findPasvAddress(text);
    if (value === null) return expect(found).toBeNull();
    expect(found?.value).toEqual(value);
    expect(found?.start).toBe(start);
  });

  test('splice replaces the address and keeps the server\'s text around it', () => {
    const text = '227 Entering Passive Mode (127,0,0,2,195,80).';
    expect(splice(text, findPasvAddress(text)!, formatHostPort('127.0.0.1', 1025))).toBe('227 Entering Passive Mode (127,0,0,1,4,1).');
  });
});

describe('EPRT and 229', () => {
  test.each([
    ['|1|127.0.0.3|1025|', { family: 4, host: '127.0.0.3', port: 1025 }],
    ['|2|::1|65535|', { family: 6, host: '::1', port: 65535 }],
    ['!2!2001:db8::7!5282!', { family: 6, host: '2001:db8::7', port: 5282 }],
    ['|3|foo|1025|', 'unsupported-family'],
    ['|1|::1|1025|', null],
    ['|2|127.0.0.1|1025|', null],
    ['|2|fe80::1%eth0|1025|', null],
    ['|1|127.0.0.1|0|', null],
    ['|1|127.0.0.1|65536|', null],
    ['|1|127.0.0.1|1025', null],
    ['|1|127.0.0.1|1025|extra|', null],
    ['', null],
  ])('parseEprtArg(%j)', (arg, want) => {
    expect(parseEprtArg(arg)).toEqual(want);
  });

  test('formatEprtArg picks the family from the address', () => {
    expect(formatEprtArg('127.0.0.1', 1025)).toBe('|1|127.0.0.1|1025|');
    expect(formatEprtArg('::1', 1025)).toBe('|2|::1|1025|');
  });

  test.each([
    ['229 Entering Extended Passive Mode (|||50000|)', 50000, 39],
    ['229 Entering Extended Passive Mode (!!!6446!)', 6446, 39],
    ['229 (|||1|)', 1, 8],
    ['229 Entering Extended Passive Mode (|||0|)', null, 0],
    ['229 Entering Extended Passive Mode (|||70000|)', null, 0],
    ['229 Entering Extended Passive Mode (||50000|)', null, 0],
    ['229 Entering Extended Passive Mode (|!|50000|)', null, 0],
    ['229 Entering Extended Passive Mode (1115000001)', null, 0],
  ])('findEpsvPort(%j)', (text, port, start) => {
    const found = findEpsvPort(text);
    if (port === null) return expect(found).toBeNull();
    expect(found?.value).toBe(port);
    expect(found?.start).toBe(start);
    expect(splice(text, found!, '1025')).toBe(text.replace(String(port), '1025'));
  });
});
