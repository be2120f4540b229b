import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestClient, httpsOrigin } from '../../drivers/kit/rest/client.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls.js';

/** The shared REST client against a real HTTPS server on 127.0.0.1. */
describe('RestClient', () => {
  let certs: TestCertificates;
  let server: Server;
  let origin: string;
  let busyLeft = 0;
  const seenAuth: string[] = [];

  beforeAll(async () => {
    certs = makeTestCertificates();
    server = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
      seenAuth.push(req.headers.authorization ?? '');
      if (req.url?.startsWith('/api/busy') && busyLeft > 0) {
        busyLeft--;
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'system_is_busy' }));
        return;
      }
      if (req.url?.startsWith('/api/echo-headers')) {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `bad request, headers were ${JSON.stringify(req.headers)}` }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: req.url, method: req.method }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    certs.cleanup();
  });

  const client = (overrides: Partial<ConstructorParameters<typeof RestClient>[0]> = {}) =>
    new RestClient({
      backendName: 'array1',
      baseUrl: `${origin}/api`,
      username: 'admin',
      password: 'http-canary-pw',
      verifyTls: true,
      caPath: certs.caPath,
      timeoutMs: 5000,
      log: createLogger('test'),
      secrets: new SecretRegistry(),
      ...overrides,
    });

  it('verifies TLS against driver_ssl_cert_path and sends basic auth', async () => {
    const rest = client();
    const response = await rest.request('GET', '/types/volumes', { operation: 'list volumes', query: { name: 'a b' } });
    expect(response).toMatchObject({ status: 200, body: { path: '/api/types/volumes?name=a+b', method: 'GET' } });
    expect(seenAuth.at(-1)).toBe(`Basic ${Buffer.from('admin:http-canary-pw').toString('base64')}`);
    await rest.close();
  });

  it('refuses an unknown certificate by default and names the options to set', async () => {
    const rest = client({ caPath: undefined });
    await expect(rest.request('GET', '/x', { operation: 'get x' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/TLS certificate of https:\/\/127\.0\.0\.1:\d+ was refused .*driver_ssl_cert_path.*driver_ssl_cert_verify: false/),
    });
    await rest.close();
    const unverified = client({ caPath: undefined, verifyTls: false });
    expect((await unverified.request('GET', '/x', { operation: 'get x' })).status).toBe(200);
    await unverified.close();
  });

  it('retries only while the array says busy, then gives up with BACKEND_BUSY', async () => {
    const policy = { attempts: 3, intervalMs: 5, isBusy: (r: { body: unknown }) => (r.body as { message?: string })?.message === 'system_is_busy' };
    busyLeft = 2;
    const rest = client({ retry: policy });
    expect((await rest.request('POST', '/busy', { operation: 'create', body: { a: 1 } })).status).toBe(200);
    busyLeft = 5;
    await expect(rest.request('POST', '/busy', { operation: 'create volume-1' })).rejects.toMatchObject({
      code: 'BACKEND_BUSY',
      message: expect.stringMatching(/backend "array1": create volume-1: the array stayed busy after 3 attempts \(system_is_busy\)/),
    });
    expect(busyLeft).toBe(2);
    await rest.close();
  });

  it('never lets the password or the Authorization header into an error', async () => {
    const rest = client();
    const response = await rest.request('GET', '/echo-headers', { operation: 'get thing' });
    const error = rest.fail('get thing', response);
    expect(error.code).toBe('BACKEND_UNAVAILABLE');
    expect(error.message).toMatch(/^backend "array1": get thing failed: HTTP 500: /);
    expect(error.message).not.toContain('http-canary-pw');
    expect(error.message).not.toContain(Buffer.from('admin:http-canary-pw').toString('base64'));
    await rest.close();
  });

  it('reports an unreachable array by address', async () => {
    const rest = client({ baseUrl: 'https://127.0.0.1:9/api' });
    await expect(rest.request('GET', '/x', { operation: 'get cluster' })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/backend "array1": get cluster: cannot reach https:\/\/127\.0\.0\.1:9: ECONNREFUSED/),
    });
    await rest.close();
  });

  it('builds origins from san_ip with or without a port', () => {
    expect(httpsOrigin('10.0.0.1')).toBe('https://10.0.0.1:443');
    expect(httpsOrigin('10.0.0.1:8443')).toBe('https://10.0.0.1:8443');
    expect(httpsOrigin('array.example')).toBe('https://array.example:443');
    expect(httpsOrigin('fe80::1')).toBe('https://[fe80::1]:443');
    expect(httpsOrigin('[fe80::1]:8443')).toBe('https://[fe80::1]:8443');
  });
});

describe('httpsOrigin', () => {
  it('builds the origin from every san_ip form the config accepts', () => {
    expect(httpsOrigin('array.example:8443')).toBe('https://array.example:8443');
    expect(httpsOrigin('::1')).toBe('https://[::1]:443');
    expect(httpsOrigin('[::1]')).toBe('https://[::1]:443');
    expect(httpsOrigin('127.0.0.2', 8443)).toBe('https://127.0.0.2:8443');
  });

  it('refuses what the config refuses, naming san_ip and the accepted forms instead of a bare "Invalid URL"', () => {
    for (const value of ['https://127.0.0.2', '127.0.0.2:abc']) {
      expect(() => httpsOrigin(value), value).toThrow(/san_ip ".*" is not an array address; use a host name or IP address, optionally with a port/);
    }
    // Cinder's default san_ip is '' (not set): named as missing, with the forms it takes.
    expect(() => httpsOrigin('')).toThrow(/san_ip is not set: give the array's address \(a host name or IP address, optionally with a port/);
  });
});
