import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load';
import { adminGet, connect, onTeardown, startEchoServer, startGateway } from '../helpers/net';
import { repoFile } from './tools';

// Manifests are free-form YAML; the assertions below are the type check.
type Obj = Record<string, any>;

const DIR = 'deploy/kubernetes';
const files = readdirSync(`${__dirname}/../../${DIR}`).filter((f) => f.endsWith('.yaml')).sort();
const manifests: Array<Obj & { file: string }> = [];
for (const f of files) {
  if (f === 'kustomization.yaml') continue;
  for (const doc of parseAllDocuments(repoFile(`${DIR}/${f}`))) {
    if (doc.errors.length > 0) throw new Error(`${f}: ${doc.errors[0].message}`);
    manifests.push({ ...(doc.toJS() as Obj), file: f });
  }
}
const byKind = (kind: string): Obj[] => manifests.filter((m) => m.kind === kind);
const only = (kind: string, name?: string): Obj => {
  const all = byKind(kind).filter((m) => name === undefined || m.metadata.name === name);
  if (all.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${all.length}`);
  return all[0];
};

const deployment = only('Deployment');
const pod = deployment.spec.template.spec;
const container = pod.containers.find((c: Obj) => c.name === 'mapgate');
const configMap = only('ConfigMap');
const mappingsText: string = configMap.data['mappings.yaml'];
const secret = only('Secret');
/** admin.token's file, as the config names it. */
const tokenPath: string = (parseYaml(mappingsText) as Obj).admin.token.file;
// The Secret volume as the kubelet makes it, one file per key, standing in for its mount path.
const secretDir = mkdtempSync(join(tmpdir(), 'mapgate-k8s-secret-'));
afterAll(() => rmSync(secretDir, { recursive: true, force: true }));
for (const [key, value] of Object.entries(secret.stringData as Record<string, string>)) writeFileSync(join(secretDir, key), value);
const secretMountPath: string = container.volumeMounts.find((m: Obj) => pod.volumes.some((v: Obj) => v.name === m.name && v.secret?.secretName === secret.metadata.name))?.mountPath ?? '(not mounted)';
const config = parseConfig(mappingsText.split(`${secretMountPath}/`).join(`${secretDir}/`), `${DIR}/configmap.yaml#mappings.yaml`);
const configPorts = config.services.flatMap((s) => [s.port, ...s.intercept]).sort((a, b) => a - b);
const labels: Record<string, string> = deployment.spec.template.metadata.labels;
const selects = (selector: Record<string, string>, target: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => target[k] === v);
/** A container port by name or number → its number. */
const containerPort = (p: string | number): number => {
  if (typeof p === 'number') return p;
  const found = container.ports.find((cp: Obj) => cp.name === p);
  if (!found) throw new Error(`no container port named ${p}`);
  return found.containerPort;
};

describe('Kubernetes manifests', () => {
  test('every manifest parses, is listed in kustomization.yaml, and has apiVersion, kind and name', () => {
    const kustomization = parseAllDocuments(repoFile(`${DIR}/kustomization.yaml`))[0].toJS() as Obj;
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== 'kustomization.yaml'));
    expect(manifests.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceMonitor']);
    for (const m of manifests) {
      expect(typeof m.apiVersion).toBe('string');
      expect(m.metadata.name).toMatch(/^[a-z0-9-]+$/);
    }
  });

  test("the ConfigMap's mappings.yaml is a valid config with admin on 0.0.0.0", () => {
    expect(config.services.length).toBeGreaterThan(0);
    expect(config.admin).toEqual({ host: '0.0.0.0', port: expect.any(Number), token: secret.stringData.token });
    // The reason and the warning are stated next to the setting.
    const adminBlock = mappingsText.slice(mappingsText.indexOf('admin:'), mappingsText.indexOf('listen: 0.0.0.0'));
    expect(adminBlock).toMatch(/probes/);
    expect(adminBlock).toMatch(/never expose/i);
  });

  test('the ConfigMap is mounted as a directory where the container reads its config', () => {
    const args: string[] = container.args;
    const configPath = args[args.indexOf('-c') + 1];
    expect(args[0]).toBe('run');
    const volume = pod.volumes.find((v: Obj) => v.configMap?.name === configMap.metadata.name);
    expect(volume).toBeDefined();
    const mount = container.volumeMounts.find((m: Obj) => m.name === volume.name);
    // A directory mount (no subPath), so updates arrive by the kubelet's ..data symlink swap.
    expect(mount.subPath).toBeUndefined();
    expect(mount.readOnly).toBe(true);
    expect(posix.dirname(configPath)).toBe(mount.mountPath);
    expect(Object.keys(configMap.data)).toContain(posix.basename(configPath));
    expect(volume.configMap.items).toBeUndefined();
  });

  test('the Service exposes exactly the ports the config maps, and never the admin port', () => {
    const svc = only('Service', 'mapgate');
    const ports = svc.spec.ports.map((p: Obj) => p.port).sort((a: number, b: number) => a - b);
    expect(ports).toEqual(configPorts);
    for (const p of svc.spec.ports) {
      expect(p.protocol ?? 'TCP').toBe('TCP');
      // Each Service port lands on the same port in the container, which the config listens on.
      expect(containerPort(p.targetPort ?? p.port)).toBe(p.port);
    }
    expect(ports).not.toContain(config.admin!.port);
    expect(selects(svc.spec.selector, labels)).toBe(true);
    // Container port names are IANA service names: at most 15 characters.
    for (const cp of container.ports) expect(cp.name.length).toBeLessThanOrEqual(15);
    expect(container.ports.map((cp: Obj) => cp.containerPort).sort((a: number, b: number) => a - b)).toEqual([...configPorts, config.admin!.port].sort((a, b) => a - b));
  });

  test('probes hit /readyz and /healthz on the admin port the config sets; preStop and grace fit shutdownGrace', () => {
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(containerPort(container.readinessProbe.httpGet.port)).toBe(config.admin!.port);
    expect(containerPort(container.livenessProbe.httpGet.port)).toBe(config.admin!.port);
    const preStop: string[] = container.lifecycle.preStop.exec.command;
    expect(preStop[0]).toBe('sleep');
    const sleepS = Number(preStop[1]);
    expect(sleepS).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(sleepS * 1000 + config.shutdownGraceMs);
    // The image's user (deploy/docker/Dockerfile) is the one the pod runs as.
    expect(repoFile('deploy/docker/Dockerfile')).toMatch(new RegExp(`useradd .*--uid ${pod.securityContext.runAsUser} `));
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(deployment.spec.replicas).toBeGreaterThan(1);
    expect(selects(deployment.spec.selector.matchLabels, labels)).toBe(true);
  });

  test('the admin server answers the probe paths: /readyz turns 503 while draining, /healthz stays 200', async () => {
    const echo = await startEchoServer();
    const gw = await startGateway(`admin: { listen: "127.0.0.1:0" }\nlog: { events: "off" }\nservices:\n  - { name: s, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${echo.port}" }\n`);
    expect(await adminGet(gw, container.readinessProbe.httpGet.path)).toEqual({ status: 200, body: 'ready\n' });
    expect((await adminGet(gw, container.livenessProbe.httpGet.path)).status).toBe(200);
    expect((await adminGet(gw, only('ServiceMonitor').spec.endpoints[0].path)).status).toBe(200);
    // An open connection keeps the gateway draining for the grace period.
    const c = await connect(gw.endpoints()[0].port);
    c.write('x');
    await new Promise((r) => c.once('data', r));
    const closing = gw.close(5000);
    onTeardown(() => closing);
    expect((await adminGet(gw, container.readinessProbe.httpGet.path)).status).toBe(503);
    expect((await adminGet(gw, container.livenessProbe.httpGet.path)).status).toBe(200);
    c.end();
  });

  test('the admin token Secret is mounted where the config reads admin.token, as a directory the pod user can read', () => {
    const volume = pod.volumes.find((v: Obj) => v.secret?.secretName === secret.metadata.name);
    expect(volume).toBeDefined();
    const mount = container.volumeMounts.find((m: Obj) => m.name === volume.name);
    expect(mount).toMatchObject({ mountPath: posix.dirname(tokenPath), readOnly: true });
    // No subPath and no items: a rotated Secret arrives by the kubelet's ..data swap, which reloads.
    expect(mount.subPath).toBeUndefined();
    expect(volume.secret.items).toBeUndefined();
    expect(Object.keys(secret.stringData)).toContain(posix.basename(tokenPath));
    expect(secret.data).toBeUndefined();
    // 0440, group fsGroup: the pod's user reads it through its group, nobody else can.
    expect(volume.secret.defaultMode).toBe(0o440);
    expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
    // A placeholder that loads (so the manifests apply as they are), flagged to be replaced.
    expect(config.admin!.token).toMatch(/^REPLACE-ME/);
    expect(repoFile(`${DIR}/secret.yaml`)).toMatch(/REPLACE THE PLACEHOLDER/);
  });

  test('the ServiceMonitor sends the Secret\'s token; /metrics wants it, the probe paths do not', async () => {
    const endpoint = only('ServiceMonitor').spec.endpoints[0];
    expect(endpoint.authorization).toEqual({ type: 'Bearer', credentials: { name: secret.metadata.name, key: posix.basename(tokenPath) } });
    const echo = await startEchoServer();
    const gw = await startGateway(`admin: { listen: "127.0.0.1:0", token: { file: ${join(secretDir, posix.basename(tokenPath))} } }\nlog: { events: "off" }\nservices:\n  - { name: s, port: 0, bind: [127.0.0.1], destination: "127.0.0.1:${echo.port}" }\n`);
    const a = gw.adminAddress()!;
    const get = async (path: string, token?: string): Promise<number> => (await fetch(`http://${a.host}:${a.port}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} })).status;
    expect(await get(endpoint.path)).toBe(401);
    expect(await get(endpoint.path, secret.stringData[endpoint.authorization.credentials.key])).toBe(200);
    expect(await get(container.readinessProbe.httpGet.path)).toBe(200);
    expect(await get(container.livenessProbe.httpGet.path)).toBe(200);
  });

  test('the PodDisruptionBudget and the ServiceMonitor select what they should', () => {
    const pdb = only('PodDisruptionBudget');
    expect(selects(pdb.spec.selector.matchLabels, labels)).toBe(true);
    expect(pdb.spec.maxUnavailable ?? deployment.spec.replicas - pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
    const sm = only('ServiceMonitor');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    const selected = byKind('Service').filter((s) => selects(sm.spec.selector.matchLabels, s.metadata.labels ?? {}));
    expect(selected.map((s) => s.metadata.name)).toEqual(['mapgate-admin']);
    const adminSvc = selected[0];
    const port = adminSvc.spec.ports.find((p: Obj) => p.name === sm.spec.endpoints[0].port);
    expect(containerPort(port.targetPort)).toBe(config.admin!.port);
    expect(adminSvc.spec.clusterIP).toBe('None');
    expect(selects(adminSvc.spec.selector, labels)).toBe(true);
    expect(sm.spec.endpoints[0].path).toBe('/metrics');
  });
});
