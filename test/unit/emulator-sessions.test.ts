import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestClient } from '../../drivers/kit/rest/client.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { HttpsEmulator, sendJson } from '../emulators/https-emulator.js';

/** The shared emulator scaffold speaks a token-and-session login, and the kit's client logs in to it. */
class SessionArray extends HttpsEmulator {
  protected handle(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (!this.authorized(req)) return sendJson(res, 401, { message: 'not logged in' });
    sendJson(res, 200, { items: [{ path: url.pathname }] });
  }
}

describe('HttpsEmulator sessions', () => {
  const array = new SessionArray('pureuser', '').useSessions({ path: '/api/2.4/login', apiTokenHeader: 'api-token', apiToken: 'emulator-api-token', sessionHeader: 'x-auth-token' });
  beforeAll(async () => {
    await array.start();
  });
  afterAll(async () => {
    await array.cleanup();
  });

  it('admits a session token obtained at login, and refuses it once sessions end until the client logs in again', async () => {
    const rest = new RestClient({
      backendName: 'flash1',
      baseUrl: `https://${array.address}/api/2.4`,
      auth: { kind: 'session', login: { path: '/login', headers: { 'api-token': 'emulator-api-token' } }, tokenHeader: 'x-auth-token' },
      verifyTls: true,
      caPath: array.certs.caPath,
      log: createLogger('test'),
      secrets: new SecretRegistry(),
    });
    expect((await rest.request('GET', '/volumes', { operation: 'list volumes' })).body).toEqual({ items: [{ path: '/api/2.4/volumes' }] });
    array.endSessions();
    expect((await rest.request('GET', '/hosts', { operation: 'list hosts' })).status).toBe(200);
    expect(array.logins).toBe(2);
    expect(array.requests).toEqual(['POST /api/2.4/login', 'GET /api/2.4/volumes', 'GET /api/2.4/hosts', 'POST /api/2.4/login', 'GET /api/2.4/hosts']);
    await rest.close();
  });

  it('answers 401 to a request without a session', async () => {
    const rest = new RestClient({ backendName: 'flash1', baseUrl: `https://${array.address}/api/2.4`, verifyTls: false, log: createLogger('test'), secrets: new SecretRegistry() });
    expect((await rest.request('GET', '/volumes', { operation: 'list volumes' })).status).toBe(401);
    await rest.close();
  });
});
