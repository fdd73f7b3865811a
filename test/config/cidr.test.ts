import { anyContains, cidrContains, parseCidr, parseClientAddress } from '../../src/config/cidr';

const client = (a: string) => {
  const c = parseClientAddress(a);
  if (!c) throw new Error(`test client ${a} did not parse`);
  return c;
};
const contains = (cidr: string, address: string): boolean => cidrContains(parseCidr(cidr)!, client(address));

describe('parseCidr', () => {
  test.each<[string, 4 | 6, number[], number, string]>([
    ['10.0.0.0/8', 4, [0x0a000000], 8, '10.0.0.0/8'],
    ['10.0.0.15', 4, [0x0a00000f], 32, '10.0.0.15/32'],
    ['10.0.0.15/32', 4, [0x0a00000f], 32, '10.0.0.15/32'],
    ['0.0.0.0/0', 4, [0], 0, '0.0.0.0/0'],
    ['255.255.255.255/32', 4, [0xffffffff], 32, '255.255.255.255/32'],
    ['10.1.2.3/16', 4, [0x0a010000], 16, '10.1.0.0/16'], // host bits are masked off
    ['192.168.77.200/25', 4, [0xc0a84d80], 25, '192.168.77.128/25'],
    ['fd00:8::/64', 6, [0xfd000008, 0, 0, 0], 64, 'fd00:8::/64'],
    ['FD00:0008:0000:0000:0000:0000:0000:0000/64', 6, [0xfd000008, 0, 0, 0], 64, 'fd00:8::/64'],
    ['::1', 6, [0, 0, 0, 1], 128, '::1/128'],
    ['::/0', 6, [0, 0, 0, 0], 0, '::/0'],
    ['2001:db8::1/128', 6, [0x20010db8, 0, 0, 1], 128, '2001:db8::1/128'],
    ['2001:db8:1:2:3:4:5:6/48', 6, [0x20010db8, 0x00010000, 0, 0], 48, '2001:db8:1::/48'],
    ['2001:db8:0:0:1:0:0:1', 6, [0x20010db8, 0, 0x00010000, 1], 128, '2001:db8::1:0:0:1/128'], // longest zero run
    ['1:2:3:4:5:6:7:8/127', 6, [0x00010002, 0x00030004, 0x00050006, 0x00070008], 127, '1:2:3:4:5:6:7:8/127'],
    ['fe80::/10', 6, [0xfe800000, 0, 0, 0], 10, 'fe80::/10'],
    ['64:ff9b::10.0.0.1/128', 6, [0x0064ff9b, 0, 0, 0x0a000001], 128, '64:ff9b::a00:1/128'], // embedded dotted quad
    // IPv4-mapped blocks are the IPv4 blocks they carry, since mapped clients are read as IPv4.
    ['::ffff:10.0.0.0/104', 4, [0x0a000000], 8, '10.0.0.0/8'],
    ['::ffff:10.0.0.15', 4, [0x0a00000f], 32, '10.0.0.15/32'],
    ['::ffff:0:0/96', 4, [0], 0, '0.0.0.0/0'],
  ])('%s', (text, family, words, prefix, canonical) => {
    const c = parseCidr(text);
    expect(c).toEqual({ family, words, prefix, text: canonical });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c!.words)).toBe(true);
  });

  test.each([
    '', '/', '10.0.0.0/', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/1.5', '10.0.0.0/x', '10.0.0.0/8/8', '10.0.0.0 /8',
    '10.0.0', '10.0.0.256', '010.0.0.1', '10.0.0.0.0', '1.2.3.4/0008', 'fd00::/129', 'fd00:::1', 'fd00::1::1', '12345::',
    'fe80::1%eth0', 'fe80::1%eth0/64', 'g::1', '::ffff:10.0.0.300', 'localhost', 'example.com/24', ' 10.0.0.1', '10.0.0.1 ',
  ])('refuses %j', (text) => {
    expect(parseCidr(text)).toBeNull();
  });
});

describe('parseClientAddress', () => {
  test.each<[string, 4 | 6, number[], string]>([
    ['10.0.0.15', 4, [0x0a00000f], '10.0.0.15'],
    ['::ffff:10.0.0.15', 4, [0x0a00000f], '10.0.0.15'],
    ['::FFFF:10.0.0.15', 4, [0x0a00000f], '10.0.0.15'],
    ['::ffff:a00:f', 4, [0x0a00000f], '10.0.0.15'], // the hex spelling of a mapped address
    ['::1', 6, [0, 0, 0, 1], '::1'],
    ['fd00:8::1234', 6, [0xfd000008, 0, 0, 0x1234], 'fd00:8::1234'],
    ['fe80::1%eth0', 6, [0xfe800000, 0, 0, 1], 'fe80::1%eth0'], // zone ignored for matching
    ['::', 6, [0, 0, 0, 0], '::'],
  ])('%s', (address, family, words, text) => {
    expect(parseClientAddress(address)).toEqual({ family, words, text });
  });

  test.each(['', 'localhost', '10.0.0', '10.0.0.256', '::ffff:10.0.0.256', ':::', 'garbage', '1.2.3.4:80'])('refuses %j', (a) => {
    expect(parseClientAddress(a)).toBeNull();
  });
});

describe('cidrContains', () => {
  test.each<[string, string, boolean]>([
    ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '11.0.0.0', false],
    ['10.0.0.0/8', '9.255.255.255', false],
    ['10.0.0.15', '10.0.0.15', true],
    ['10.0.0.15/32', '10.0.0.14', false],
    ['0.0.0.0/0', '203.0.113.9', true],
    ['0.0.0.0/0', '::1', false], // families never cross
    ['10.1.2.3/16', '10.1.200.1', true], // host bits in the rule are ignored
    ['192.168.77.128/25', '192.168.77.127', false],
    ['192.168.77.128/25', '192.168.77.128', true],
    ['10.0.0.0/8', '::ffff:10.9.8.7', true], // mapped client matches an IPv4 rule
    ['::ffff:10.0.0.0/104', '10.1.1.1', true], // mapped rule matches an IPv4 client
    ['::ffff:10.0.0.0/104', '::ffff:10.1.1.1', true],
    ['::ffff:10.0.0.0/104', '11.1.1.1', false],
    ['fd00:8::/64', 'fd00:8::1234', true],
    ['fd00:8::/64', 'fd00:8:0:1::1', false],
    ['fd00:8::/64', '10.0.0.1', false],
    ['::/0', '2001:db8::1', true],
    ['::/0', '10.0.0.1', false], // IPv4 (and mapped) clients are IPv4: ::/0 does not hold them
    ['::1/128', '::1', true],
    ['::1/128', '::2', false],
    ['2001:db8::/33', '2001:db8:7fff::1', true], // prefix not on a 32-bit word boundary
    ['2001:db8::/33', '2001:db8:8000::1', false],
    ['2001:db8::/127', '2001:db8::1', true],
    ['2001:db8::/127', '2001:db8::2', false],
    ['1:2:3:4:5:6:7:8/128', '1:2:3:4:5:6:7:8', true],
    ['1:2:3:4:5:6:7:8/128', '1:2:3:4:5:6:7:9', false],
    ['fe80::/10', 'fe80::1%eth0', true],
  ])('%s contains %s: %s', (cidr, address, expected) => {
    expect(contains(cidr, address)).toBe(expected);
  });

  test('anyContains: any block of a list, none of an empty list', () => {
    const list = ['10.0.8.0/24', 'fd00:8::/64'].map((t) => parseCidr(t)!);
    expect(anyContains(list, client('10.0.8.9'))).toBe(true);
    expect(anyContains(list, client('fd00:8::9'))).toBe(true);
    expect(anyContains(list, client('10.0.9.9'))).toBe(false);
    expect(anyContains([], client('10.0.8.9'))).toBe(false);
  });
});
