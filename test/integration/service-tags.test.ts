import { parseConfig } from '../../src/config/load';
import { configProblems } from '../config/problems';
import { startEchoServer, startGateway } from '../helpers/net';

/** Services' tags and comments: in the config, `/status`, and `mapgate_service_info` (the only metric that carries a tag). */

const yaml = (echo: number, mailTags: string): string => `
admin: { listen: "127.0.0.1:0" }
services:
  - { name: mail, port: 0, bind: [127.0.0.1], tags: ${mailTags}, comment: "IMAP, branch A", destination: "127.0.0.1:${echo}" }
  - { name: plain, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${echo}" }
`;

/** Every `mapgate_service_info` series as `service/tag`, sorted. */
async function infoSeries(gw: Awaited<ReturnType<typeof startGateway>>): Promise<string[]> {
  const text = await gw.metrics.registry.metrics();
  return [...text.matchAll(/^mapgate_service_info\{service="([^"]*)",tag="([^"]*)"\} 1$/gm)].map((m) => `${m[1]}/${m[2]}`).sort();
}

describe('service tags and comments', () => {
  test('mapgate_service_info has one series per service and tag, follows reloads, and no other metric carries a tag', async () => {
    const echo = (await startEchoServer()).port;
    const gw = await startGateway(yaml(echo, '[branch-a, mail]'));
    expect(await infoSeries(gw)).toEqual(['mail/branch-a', 'mail/mail', 'plain/']);
    expect(gw.status().services.map((s) => [s.name, s.tags, s.comment])).toEqual([['mail', ['branch-a', 'mail'], 'IMAP, branch A'], ['plain', [], null]]);

    expect((await gw.reload(parseConfig(yaml(echo, '[branch-b]'), 'test.yaml'))).ok).toBe(true);
    expect(await infoSeries(gw)).toEqual(['mail/branch-b', 'plain/']);
    const text = await gw.metrics.registry.metrics();
    const tagged = text.split('\n').filter((l) => !l.startsWith('#') && l.includes('tag='));
    expect(tagged.every((l) => l.startsWith('mapgate_service_info{'))).toBe(true);
  });

  test.each([
    ['a tag with a space', 'tags: ["branch a"]', [
      "t.yaml:2:51: services[0].tags[0]: must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, not the string \"branch a\"",
    ]],
    ['a tag twice', 'tags: [mail, mail]', ['t.yaml:2:57: services[0].tags[1]: the same entry as services[0].tags[0]']],
    ['a comment that is a list', 'comment: [a]', ['t.yaml:2:53: services[0].comment: must be a string, not a list']],
  ])('%s is refused where it is', (_what, key, expected) => {
    expect(configProblems(`services:\n  - { name: a, port: 1, bind: [127.0.0.1], ${key}, destination: "x.example:1" }\n`, 't.yaml')).toEqual(expected);
  });
});
