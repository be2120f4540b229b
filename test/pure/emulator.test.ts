import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PureEmulator } from '../emulators/pure/server.js';

/**
 * The emulator itself, over HTTPS, as any REST 2.x client meets it: versions without a session,
 * login, 401s, name rules, destroyed objects keeping their names, LUNs from 1, the refusals
 * Cinder matches, paging, and the faults tests inject.
 */
const array = new PureEmulator({ pageSize: 2 });
let agent: Agent;
let token = '';

beforeAll(async () => {
  await array.start();
  agent = new Agent({ connect: { ca: readFileSync(array.certs.caPath) } });
});
afterAll(async () => {
  await agent.close();
  await array.cleanup();
});

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, headers: Record<string, string> = { 'x-auth-token': token }) {
  const response = await request(`https://${array.address}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher: agent,
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

const v = '/api/2.26';
const refusal = (message: RegExp | string) => ({ errors: [expect.objectContaining({ message: typeof message === 'string' ? message : expect.stringMatching(message) })] });

describe('FlashArray REST 2.x emulator', () => {
  it('lists its versions without a session, logs in with the API token, and answers 401 without a live session', async () => {
    expect(await call('GET', '/api/api_version', undefined, {})).toMatchObject({ status: 200, body: { version: ['1.19', '2.0', '2.1', '2.2', '2.4', '2.26'] } });
    expect((await call('GET', `${v}/volumes`, undefined, {})).status).toBe(401);
    expect((await call('POST', `${v}/login`, undefined, { 'api-token': 'wrong' })).status).toBe(401);
    const login = await call('POST', `${v}/login`, undefined, { 'api-token': array.apiToken });
    expect(login.status).toBe(200);
    token = String(login.headers['x-auth-token']);
    expect((await call('GET', `${v}/volumes`)).status).toBe(200);
    array.endSessions();
    expect(await call('GET', `${v}/volumes`)).toMatchObject({ status: 401, body: refusal(/session/) });
    token = String((await call('POST', `${v}/login`, undefined, { 'api-token': array.apiToken })).headers['x-auth-token']);
    expect((await call('GET', '/api/1.19/volumes')).status).toBe(404); // REST 1.x is not spoken here
  });

  it('keeps to the name rules: 1 to 63 letters, digits and "-", starting with a letter or digit', async () => {
    for (const name of ['-lead', 'under_score', 'a'.repeat(64), 'dot.ted']) {
      expect(await call('POST', `${v}/volumes?names=${name}`, { provisioned: 1048576 })).toMatchObject({ status: 400, body: refusal(/name must be 1 to 63 characters/) });
    }
    expect((await call('POST', `${v}/volumes?names=${'a'.repeat(63)}`, { provisioned: 1048576 })).status).toBe(200);
    expect(await call('POST', `${v}/volumes?names=odd-size`, { provisioned: 1000 })).toMatchObject({ status: 400, body: refusal(/multiple of 512/) });
  });

  it('keeps a destroyed volume (and its snapshots) with its name until eradicated; eradicating needs destroying first', async () => {
    expect((await call('POST', `${v}/volumes?names=keeper`, { provisioned: 1073741824 })).body.items[0]).toMatchObject({ name: 'keeper', provisioned: 1073741824, destroyed: false });
    expect((await call('POST', `${v}/volume-snapshots?source_names=keeper`, { suffix: 's1' })).body.items[0]).toMatchObject({ name: 'keeper.s1', source: { name: 'keeper' } });
    expect(await call('POST', `${v}/volume-snapshots?source_names=keeper`, { suffix: 's1' })).toMatchObject({ status: 400, body: refusal(/already exists/) });
    expect(await call('DELETE', `${v}/volumes?names=keeper`)).toMatchObject({ status: 400, body: refusal(/must be destroyed/) });
    expect((await call('PATCH', `${v}/volumes?names=keeper`, { destroyed: true })).body.items[0]).toMatchObject({ destroyed: true });
    expect(array.snapshots.get('keeper.s1')?.destroyed).toBe(true);
    expect(await call('POST', `${v}/volumes?names=keeper`, { provisioned: 1048576 })).toMatchObject({ status: 400, body: refusal('Volume already exists.') });
    expect(await call('PATCH', `${v}/volumes?names=keeper`, { provisioned: 2147483648 })).toMatchObject({ status: 400, body: refusal(/has been destroyed/) });
    expect((await call('GET', `${v}/volumes?names=keeper&destroyed=true`)).body.items).toHaveLength(1);
    expect((await call('GET', `${v}/volumes?destroyed=false`)).body.items.map((item: { name: string }) => item.name)).not.toContain('keeper');
    expect((await call('DELETE', `${v}/volumes?names=keeper`)).status).toBe(200);
    expect(array.snapshots.has('keeper.s1')).toBe(false);
    expect(await call('PATCH', `${v}/volumes?names=keeper`, { destroyed: true })).toMatchObject({ status: 400, body: refusal('Volume does not exist.') });
    expect((await call('POST', `${v}/volumes?names=keeper`, { provisioned: 1048576 })).status).toBe(200);
  });

  it('gives a host LUNs from 1, refuses a second connection and deleting a connected host with the texts Cinder matches', async () => {
    for (const name of ['lun-a', 'lun-b']) await call('POST', `${v}/volumes?names=${name}`, { provisioned: 1048576 });
    expect((await call('POST', `${v}/hosts?names=h1`, { iqns: ['iqn.2024-01.org.example:h1'] })).status).toBe(200);
    expect(await call('POST', `${v}/hosts?names=h2`, { iqns: ['iqn.2024-01.org.example:h1'] })).toMatchObject({ status: 400, body: refusal(/already in use/) });
    expect(await call('PATCH', `${v}/hosts?names=h1`, { chap: { host_user: 'u', host_password: 'short' } })).toMatchObject({ status: 400, body: refusal(/between 12 and 255/) });
    const first = await call('POST', `${v}/connections?host_names=h1&volume_names=lun-a`);
    const second = await call('POST', `${v}/connections?host_names=h1&volume_names=lun-b`);
    expect([first.body.items[0].lun, second.body.items[0].lun]).toEqual([1, 2]);
    expect(first.body.items[0]).toMatchObject({ host: { name: 'h1' }, volume: { name: 'lun-a' } });
    expect(await call('POST', `${v}/connections?host_names=h1&volume_names=lun-a`)).toMatchObject({ status: 400, body: refusal(/already exists/) });
    expect(await call('POST', `${v}/connections?host_names=nobody&volume_names=lun-a`)).toMatchObject({ status: 400, body: refusal('Host does not exist.') });
    expect(await call('DELETE', `${v}/hosts?names=h1`)).toMatchObject({ status: 400, body: refusal('Host cannot be deleted due to existing connections.') });
    const filtered = await call('GET', `${v}/hosts?filter=${encodeURIComponent("iqns='iqn.2024-01.org.example:h1' and is_local")}`);
    expect(filtered.body.items.map((host: { name: string }) => host.name)).toEqual(['h1']);
    expect((await call('GET', `${v}/hosts?filter=${encodeURIComponent("iqns='iqn.2024-01.org.example:h1' and not is_local")}`)).body.items).toEqual([]);
    await call('DELETE', `${v}/connections?host_names=h1&volume_names=lun-a`);
    expect(await call('DELETE', `${v}/connections?host_names=h1&volume_names=lun-a`)).toMatchObject({ status: 400, body: refusal(/does not exist/) });
    expect((await call('POST', `${v}/connections?host_names=h1&volume_names=lun-a`)).body.items[0].lun).toBe(1); // the lowest free LUN again
  });

  it('pages lists with continuation_token, more_items_remaining, and total_item_count when asked', async () => {
    const first = await call('GET', `${v}/volumes?total_item_count=true`);
    const total = first.body.total_item_count as number;
    expect(total).toBe(array.volumes.size);
    expect(first.body).toMatchObject({ more_items_remaining: true, continuation_token: expect.any(String) });
    expect(first.body.items).toHaveLength(2);
    const seen = [...first.body.items];
    let page = first.body;
    while (page.more_items_remaining) {
      page = (await call('GET', `${v}/volumes?continuation_token=${page.continuation_token}`)).body;
      expect(page.total_item_count).toBeNull();
      seen.push(...page.items);
    }
    expect(page.continuation_token).toBeNull();
    expect(seen.map((item: { name: string }) => item.name).sort()).toEqual([...array.volumes.keys()].sort());
  });

  it("answers a fault on the Nth matching call only, acting first when asked; reports the space and the ready controllers' ports", async () => {
    array.inject({ method: 'GET', pathIncludes: '/arrays/space', status: 503, message: 'Service unavailable.', nth: 2 });
    expect((await call('GET', `${v}/arrays/space`)).status).toBe(200);
    expect(await call('GET', `${v}/arrays/space`)).toMatchObject({ status: 503, body: refusal('Service unavailable.') });
    const space = (await call('GET', `${v}/arrays/space`)).body.items[0];
    expect(space).toMatchObject({ capacity: array.capacityBytes, space: { total_physical: array.usedBytes(), total_reduction: 4.2 } });
    array.inject({ method: 'POST', pathIncludes: '/volumes', status: 500, afterActing: true });
    expect((await call('POST', `${v}/volumes?names=made-anyway`, { provisioned: 1048576 })).status).toBe(500);
    expect(array.volumes.has('made-anyway')).toBe(true);
    const ports = await call('GET', `${v}/ports?filter=${encodeURIComponent("name='CT0.*'")}`);
    expect(ports.body.items.map((port: { name: string }) => port.name)).toEqual(['CT0.ETH4', 'CT0.FC0']);
    expect((await call('GET', `${v}/controllers?filter=${encodeURIComponent("status='ready'")}`)).body.items.map((c: { name: string }) => c.name)).toEqual(['CT0', 'CT1']);
  });
});
