import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestClient, continuationToken, nextLink, type RestAuth } from '../../drivers/kit/rest/client.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls.js';

const API_TOKEN = 'api-token-canary-0f3c';

/**
 * The kit's REST client under a token-and-session API shaped like Pure FlashArray REST 2.x: POST
 * /api/2.4/login with `api-token` answers `x-auth-token`, which every later call carries; lists
 * come in pages joined by continuation_token.
 */
describe('RestClient auth modes and paging', () => {
  let certs: TestCertificates;
  let server: Server;
  let origin: string;
  let sessions = new Set<string>();
  let logins = 0;
  let sessionCounter = 0;
  const seen: Array<{ url: string; headers: IncomingMessage['headers'] }> = [];

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

  beforeAll(async () => {
    certs = makeTestCertificates();
    server = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
      const url = new URL(req.url ?? '/', 'https://array');
      seen.push({ url: `${req.method} ${url.pathname}${url.search}`, headers: req.headers });
      if (url.pathname === '/api/2.4/login') {
        if (req.headers['api-token'] !== API_TOKEN) return send(res, 401, { message: 'bad api token' });
        logins++;
        const token = `session-${++sessionCounter}-secret`;
        sessions.add(token);
        return send(res, 200, { items: [{ username: 'pureuser' }] }, { 'x-auth-token': token });
      }
      if (url.pathname.startsWith('/api/2.4/')) {
        const token = req.headers['x-auth-token'];
        if (typeof token !== 'string' || !sessions.has(token)) return send(res, 401, { message: 'session expired' });
      }
      if (url.pathname === '/api/2.4/volumes') {
        // Seven volumes, three a page, then a last page of one.
        const start = Number(url.searchParams.get('continuation_token') ?? '0');
        const items = [0, 1, 2]
          .map((i) => start + i)
          .filter((i) => i < 7)
          .map((i) => ({ name: `vol${i}` }));
        const next = start + 3 < 7 ? String(start + 3) : null;
        return send(res, 200, { items, continuation_token: next, total_item_count: 7 }, { 'x-request-id': `req-${start}` });
      }
      if (url.pathname === '/api/2.4/endless') return send(res, 200, { items: [1], continuation_token: 'again' });
      if (url.pathname === '/api/2.4/hosts') {
        const page = Number(url.searchParams.get('page') ?? '1');
        const next = page < 3 ? `${origin}/api/2.4/hosts?page=${page + 1}` : page === 3 ? `/api/2.4/hosts?page=4` : undefined;
        return send(res, 200, { items: [`host${page}`], next });
      }
      if (url.pathname === '/api/2.4/elsewhere') return send(res, 200, { items: [], next: 'https://198.51.100.7/api/2.4/hosts' });
      if (url.pathname === '/api/token-only') {
        return send(res, req.headers.authorization === `Bearer ${API_TOKEN}` ? 200 : 401, { message: 'who are you' });
      }
      send(res, 404, { message: 'no such path' });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    certs.cleanup();
  });

  const session: RestAuth = { kind: 'session', login: { path: '/login', headers: { 'api-token': API_TOKEN } }, tokenHeader: 'x-auth-token' };
  const client = (auth: RestAuth, secrets = new SecretRegistry()) =>
    new RestClient({
      backendName: 'flash1',
      baseUrl: `${origin}/api/2.4`,
      auth,
      authHint: 'check the api token',
      verifyTls: true,
      caPath: certs.caPath,
      timeoutMs: 5000,
      log: createLogger('test'),
      secrets,
    });

  it('sends a header token on every request', async () => {
    const rest = new RestClient({
      backendName: 'flash1',
      baseUrl: `${origin}/api`,
      auth: { kind: 'header', header: 'Authorization', value: `Bearer ${API_TOKEN}` },
      verifyTls: true,
      caPath: certs.caPath,
      log: createLogger('test'),
      secrets: new SecretRegistry(),
    });
    expect((await rest.request('GET', '/token-only', { operation: 'get thing' })).status).toBe(200);
    expect((await rest.request('GET', '/token-only', { operation: 'get thing' })).status).toBe(200);
    await rest.close();
  });

  it('logs in once, sends the session token on every call, and exposes response headers', async () => {
    const before = logins;
    const rest = client(session);
    const answers = await Promise.all([1, 2, 3].map(() => rest.request('GET', '/volumes', { operation: 'list volumes' })));
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(answers[0].headers['x-request-id']).toBe('req-0');
    expect(answers[0].headers['content-type']).toBe('application/json');
    expect(logins - before).toBe(1);
    const login = seen.find((request) => request.url === 'POST /api/2.4/login')!;
    expect(login.headers['api-token']).toBe(API_TOKEN);
    expect(seen.at(-1)!.headers['x-auth-token']).toMatch(/^session-\d+-secret$/);
    expect(seen.at(-1)!.headers['api-token']).toBeUndefined();
    await rest.close();
  });

  it('logs in again once when the session ends (401), then retries the call', async () => {
    const rest = client(session);
    await rest.request('GET', '/volumes', { operation: 'list volumes' });
    const before = logins;
    sessions = new Set();
    const response = await rest.request('GET', '/volumes', { operation: 'list volumes' });
    expect(response.status).toBe(200);
    expect(logins - before).toBe(1);
    expect(seen.slice(-3).map((request) => request.url)).toEqual(['GET /api/2.4/volumes', 'POST /api/2.4/login', 'GET /api/2.4/volumes']);
    await rest.close();
  });

  it('a refused login fails with the hint, and no token leaks into the error', async () => {
    const secrets = new SecretRegistry();
    const rest = client({ ...session, login: { path: '/login', headers: { 'api-token': 'wrong-token-canary' } } }, secrets);
    const error = await rest.request('GET', '/volumes', { operation: 'list volumes' }).catch((caught: unknown) => caught as Error);
    expect(error).toMatchObject({ code: 'BACKEND_UNAVAILABLE', message: expect.stringMatching(/^backend "flash1": log in failed: HTTP 401: bad api token; check the api token$/) });
    expect(secrets.redact('x wrong-token-canary y')).not.toContain('wrong-token-canary');
    await rest.close();
  });

  it('a login answered without the token header says which header it wanted', async () => {
    const rest = client({ ...session, tokenHeader: 'x-other-token' });
    await expect(rest.request('GET', '/volumes', { operation: 'list volumes' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/log in: the array answered HTTP 200 without a session token \(x-other-token\)/),
    });
    await rest.close();
  });

  it('follows a continuation token to the last page', async () => {
    const rest = client(session);
    const names = await rest.collect('/volumes', { operation: 'list volumes', query: { filter: "name='vol*'" } }, continuationToken(), (response) =>
      (response.body as { items: Array<{ name: string }> }).items.map((item) => item.name),
    );
    expect(names).toEqual(['vol0', 'vol1', 'vol2', 'vol3', 'vol4', 'vol5', 'vol6']);
    expect(seen.slice(-3).map((request) => request.url)).toEqual([
      'GET /api/2.4/volumes?filter=name%3D%27vol*%27',
      'GET /api/2.4/volumes?filter=name%3D%27vol*%27&continuation_token=3',
      'GET /api/2.4/volumes?filter=name%3D%27vol*%27&continuation_token=6',
    ]);
    await rest.close();
  });

  it('follows next links, as URLs or paths on the array, and refuses one elsewhere', async () => {
    const rest = client(session);
    const hosts = await rest.collect('/hosts', { operation: 'list hosts' }, nextLink(), (response) => (response.body as { items: string[] }).items);
    expect(hosts).toEqual(['host1', 'host2', 'host3', 'host4']);
    await expect(rest.collect('/elsewhere', { operation: 'list hosts' }, nextLink(), () => [])).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/list hosts: the next page is on https:\/\/198\.51\.100\.7, not on https:\/\/127\.0\.0\.1:\d+/),
    });
    await rest.close();
  });

  it('stops at the page bound with an error instead of looping', async () => {
    const rest = client(session);
    await expect(rest.collect('/endless', { operation: 'list endless' }, continuationToken('continuation_token', 'continuation_token', 4), () => [])).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/list endless: the listing goes on past 4 pages/),
    });
    expect(seen.slice(-4).every((request) => request.url.startsWith('GET /api/2.4/endless'))).toBe(true);
    await rest.close();
  });

  it('a failed page ends the listing with that failure', async () => {
    const rest = client(session);
    await expect(rest.collect('/nothing', { operation: 'list nothing' }, continuationToken(), () => [])).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await rest.close();
  });
});
