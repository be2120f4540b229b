import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initiatorChapPassword } from '../../drivers/pure/chap.js';
import { purityHostName } from '../../drivers/pure/exports.js';
import type { VolumeDriver } from '../../drivers/kit/types.js';
import { PureEmulator } from '../emulators/pure/server.js';
import { connectorFor, makeDriver, newVolume } from './fixtures.js';

/**
 * PureISCSIDriver's connections straight against the emulator, checked against what Cinder's
 * driver does: the host found by `iqns='<iqn>' and is_local`, else created as
 * `<host>-<hex>-cinder` with the IQN (CHAP and personality patched on), `POST connections` for the
 * LUN, every iSCSI port of the ready controllers in the allowed CIDRs, and on disconnect the
 * connection deleted, then the host when it is Cinder's and unused.
 */
const array = new PureEmulator();
const drivers: VolumeDriver[] = [];
const GENERATED = /^[A-Za-z0-9-]+-[a-f0-9]{32}-cinder$/;

beforeAll(async () => {
  await array.start();
});
afterEach(async () => {
  array.clearFaults();
  await Promise.all(drivers.splice(0).map((driver) => driver.close()));
});
afterAll(async () => {
  await array.cleanup();
});

async function driverWith(extra: Record<string, unknown> = {}) {
  const made = await makeDriver(array, extra);
  drivers.push(made.driver);
  return made;
}

const hostsOf = (iqn: string) => [...array.hosts.values()].filter((host) => host.iqns.includes(iqn));

describe('Pure iSCSI connections', () => {
  it("connects as Cinder's PureISCSIDriver: a new host named <host>-<hex>-cinder with the IQN, LUN 1, every iSCSI portal, the wwn", async () => {
    const { driver } = await driverWith();
    expect(driver.exports?.requiredConnectorKeys).toEqual(['initiator']);
    const volume = newVolume();
    await driver.createVolume(volume);
    const connector = connectorFor('compute-a');
    expect(await driver.exports!.createExport(volume, connector)).toBeUndefined();
    const info = await driver.exports!.initializeConnection(volume, connector);

    const [host] = hostsOf(connector.initiator!);
    expect(host.name).toMatch(/^compute-a-[a-f0-9]{32}-cinder$/);
    expect(host.chap).toEqual({});
    const name = `volume-${volume.id}-cinder`;
    expect(array.connections).toContainEqual({ host: host.name, volume: name, lun: 1 });
    const portals = ['127.0.0.31:3260', '127.0.0.32:3260'];
    expect(info).toEqual({
      driver_volume_type: 'iscsi',
      data: {
        target_discovered: false,
        discard: true,
        addressing_mode: 'SAM2',
        wwn: `3624a9370${array.volumes.get(name)!.serial.toLowerCase()}`,
        target_iqn: array.targetIqn,
        target_portal: portals[0],
        target_lun: 1,
        target_iqns: [array.targetIqn, array.targetIqn],
        target_portals: portals,
        target_luns: [1, 1],
      },
    });
    expect(queriesOf('GET', '/api/2.26/hosts').map((query) => query.get('filter'))).toContain(`iqns='${connector.initiator}' and is_local`);
    expect(array.requests).toContain(`POST /api/2.26/hosts?names=${host.name}`);
    expect(array.requests).toContain(`POST /api/2.26/connections?host_names=${host.name}&volume_names=${name}`);

    await driver.exports!.terminateConnection(volume, connector, false);
    await driver.exports!.removeExport(volume);
    expect(array.connections.filter((c) => c.volume === name)).toEqual([]);
    expect(hostsOf(connector.initiator!)).toEqual([]); // Cinder's host, unused: removed
    await driver.deleteVolume(volume);
  });

  it('reuses the host for a second volume (LUN 2) and for a second connect of the same volume (same LUN); the host goes with its last connection', async () => {
    const { driver } = await driverWith();
    const [one, two] = [newVolume(), newVolume()];
    for (const volume of [one, two]) await driver.createVolume(volume);
    const connector = connectorFor('compute-b');
    const first = await driver.exports!.initializeConnection(one, connector);
    const second = await driver.exports!.initializeConnection(two, connector);
    const again = await driver.exports!.initializeConnection(one, connector);
    expect([first.data.target_lun, second.data.target_lun, again.data.target_lun]).toEqual([1, 2, 1]);
    const hosts = hostsOf(connector.initiator!);
    expect(hosts).toHaveLength(1);

    await driver.exports!.terminateConnection(one, connector, false);
    expect(array.hosts.has(hosts[0].name)).toBe(true); // still connected to the other volume
    await driver.exports!.terminateConnection(two, connector, false);
    expect(array.hosts.has(hosts[0].name)).toBe(false);
    await driver.exports!.terminateConnection(two, connector, false); // already gone: still a success
    for (const volume of [one, two]) await driver.deleteVolume(volume);
  });

  it('with use_chap_auth, sets CHAP on the new host (user: the connector host) and answers the same password for every volume of the initiator', async () => {
    const { driver, secrets, logged } = await driverWith({ use_chap_auth: true, pure_host_personality: 'esxi' });
    const [one, two] = [newVolume(), newVolume()];
    for (const volume of [one, two]) await driver.createVolume(volume);
    const connector = connectorFor('compute-chap');
    const first = await driver.exports!.initializeConnection(one, connector);
    const second = await driver.exports!.initializeConnection(two, connector);
    const password = initiatorChapPassword(array.apiToken, connector.initiator!);
    expect(password).toMatch(/^[2-9A-HJ-NP-Za-km-z]{16}$/);
    expect(first.data).toMatchObject({ auth_method: 'CHAP', auth_username: 'compute-chap', auth_password: password });
    expect(second.data).toMatchObject({ auth_username: 'compute-chap', auth_password: password });
    const [host] = hostsOf(connector.initiator!);
    expect(host).toMatchObject({ personality: 'esxi', chap: { host_user: 'compute-chap', host_password: password } });
    expect(array.requests.filter((line) => line.startsWith(`PATCH /api/2.26/hosts?names=${host.name}`))).toHaveLength(2); // personality, then CHAP
    // A secret: registered for masking, never in a log line, never shown back by the array.
    expect(secrets.redact(`pw ${password}`)).not.toContain(password);
    expect(logged.join('\n')).not.toContain(password);
    const shown = await readHosts();
    expect(shown).toContain(host.name);
    expect(shown).not.toContain(password);
    // Another initiator gets another password.
    expect(initiatorChapPassword(array.apiToken, 'iqn.2004-10.com.example:other')).not.toBe(password);
    for (const volume of [one, two]) {
      await driver.exports!.terminateConnection(volume, connector, false);
      await driver.deleteVolume(volume);
    }
  });

  it('refuses CHAP on a host Cinder did not make, and never removes such a host; without CHAP it is reused as it is', async () => {
    array.hosts.set('admin-made', { name: 'admin-made', iqns: ['iqn.2004-10.com.example:admin'], personality: null, chap: {} });
    const connector = { host: 'admin-box', initiator: 'iqn.2004-10.com.example:admin' };
    const volume = newVolume();
    const chap = await driverWith({ use_chap_auth: true });
    await chap.driver.createVolume(volume);
    await expect(chap.driver.exports!.initializeConnection(volume, connector)).rejects.toMatchObject({
      code: 'IN_USE',
      message: expect.stringMatching(/Unable to re-use a host that is not managed by Cinder with use_chap_auth=True: host admin-made/),
    });
    expect(array.connections.filter((c) => c.host === 'admin-made')).toEqual([]);
    const plain = await driverWith();
    const info = await plain.driver.exports!.initializeConnection(volume, connector);
    expect(info.data.target_lun).toBe(1);
    expect(array.hosts.size).toBeGreaterThan(0);
    await plain.driver.exports!.terminateConnection(volume, connector, false);
    expect(array.hosts.has('admin-made')).toBe(true);
    array.hosts.delete('admin-made');
    await plain.driver.deleteVolume(volume);
  });

  it("names hosts as Cinder: 23 characters of the host name, other characters than letters, digits and '-' made '-', the system uuid when given", () => {
    expect(purityHostName({ host: 'compute.example.org_with_a_long_name' })).toMatch(/^compute-example-org-wit-[a-f0-9]{32}-cinder$/);
    expect(purityHostName({ host: '--lead', 'system uuid': '4c4c4544-0038-5910-8057-b7c04f4d3232' })).toBe('lead-4c4c4544003859108057b7c04f4d3232-cinder');
    expect(purityHostName({ host: 'h' })).not.toBe(purityHostName({ host: 'h' })); // a random part each time without a system uuid
    expect(purityHostName({ host: 'x'.repeat(40) }).length).toBeLessThanOrEqual(63);
  });

  it('offers only the portals in pure_iscsi_cidr (or pure_iscsi_cidr_list), and connects nothing when none is left', async () => {
    const narrow = await driverWith({ pure_iscsi_cidr: '127.0.0.32/32' });
    const volume = newVolume();
    await narrow.driver.createVolume(volume);
    const connector = connectorFor('compute-cidr');
    const info = await narrow.driver.exports!.initializeConnection(volume, connector);
    expect(info.data).toMatchObject({ target_portal: '127.0.0.32:3260', target_portals: ['127.0.0.32:3260'] });
    await narrow.driver.exports!.terminateConnection(volume, connector, false);

    const listed = await driverWith({ pure_iscsi_cidr_list: '10.0.0.0/8, 127.0.0.31/32' });
    expect((await listed.driver.exports!.initializeConnection(volume, connector)).data.target_portals).toEqual(['127.0.0.31:3260']);
    await listed.driver.exports!.terminateConnection(volume, connector, false);

    const none = await driverWith({ pure_iscsi_cidr_list: ['10.0.0.0/8', 'fd00::/64'] });
    await expect(none.driver.exports!.initializeConnection(volume, connector)).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/no iSCSI portal of the array \(127\.0\.0\.31:3260, 127\.0\.0\.32:3260\) is in 10\.0\.0\.0\/8, fd00::\/64/),
    });
    expect(hostsOf(connector.initiator!)).toEqual([]);
    await none.driver.deleteVolume(volume);
  });

  it('tries again when another connect made the host meanwhile ("already in use"), and removes a host it made when the connection fails', async () => {
    const { driver } = await driverWith();
    const volume = newVolume();
    await driver.createVolume(volume);
    const connector = connectorFor('compute-race');
    array.inject({ method: 'POST', pathIncludes: '/hosts', status: 400, message: `The IQN ${connector.initiator} is already in use by host elsewhere.` });
    expect((await driver.exports!.initializeConnection(volume, connector)).data.target_lun).toBe(1);
    await driver.exports!.terminateConnection(volume, connector, false);

    array.inject({ method: 'POST', pathIncludes: '/connections', status: 400, message: 'Volume has been destroyed.' });
    await expect(driver.exports!.initializeConnection(volume, connector)).rejects.toMatchObject({ message: expect.stringMatching(/Volume has been destroyed/) });
    expect(hostsOf(connector.initiator!)).toEqual([]);
    await driver.deleteVolume(volume);
  });

  it('deleting a volume still connected to hosts disconnects them first (removing the hosts Cinder made), then destroys it', async () => {
    const { driver } = await driverWith();
    const volume = newVolume();
    await driver.createVolume(volume);
    const connector = connectorFor('compute-del');
    await driver.exports!.initializeConnection(volume, connector);
    const [host] = hostsOf(connector.initiator!);
    expect(host.name).toMatch(GENERATED);
    await driver.deleteVolume(volume);
    expect(array.volumes.get(`volume-${volume.id}-cinder`)?.destroyed).toBe(true);
    expect(array.hosts.has(host.name)).toBe(false);
  });
});

/** The queries of the requests made to `path` with `method`, decoded. */
function queriesOf(method: string, path: string): URLSearchParams[] {
  return array.requests.filter((line) => line.startsWith(`${method} ${path}?`)).map((line) => new URL(line.slice(method.length + 1), 'https://array').searchParams);
}

/** The hosts as any API client reads them, through a session of its own. */
async function readHosts(): Promise<string> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(array.certs.caPath) } });
  try {
    const base = `https://${array.address}/api/2.26`;
    const login = await request(`${base}/login`, { method: 'POST', headers: { 'api-token': array.apiToken }, dispatcher });
    await login.body.text();
    const hosts = await request(`${base}/hosts`, { headers: { 'x-auth-token': String(login.headers['x-auth-token']) }, dispatcher });
    return await hosts.body.text();
  } finally {
    await dispatcher.close();
  }
}
