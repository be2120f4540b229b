import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { createMcpServer } from '../../src/mcp/server.js';
import { createLogger } from '../../src/base/log.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { answerBeforeSdk, readPrebuiltListing } from '../../src/mcp/startup-answers.js';
import { BoundedStdioTransport } from '../../src/mcp/transport/stdio.js';
import type { BackendRegistry } from '../../src/core/registry.js';
import type { Offer } from '../../src/mcp/offer.js';

/**
 * The answers given before the SDK loads must be the SDK server's own answers: same protocol
 * negotiation, same identity, same tools; and the SDK server, connected later, still learns who
 * the client is, without answering initialize a second time.
 */
function wire() {
  const input = new PassThrough();
  const output = new PassThrough();
  const frames: any[] = [];
  let text = '';
  output.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    let newline: number;
    while ((newline = text.indexOf('\n')) >= 0) {
      frames.push(JSON.parse(text.slice(0, newline)));
      text = text.slice(newline + 1);
    }
  });
  const send = (message: object) => input.write(JSON.stringify({ jsonrpc: '2.0', ...message }) + '\n');
  const answerTo = async (id: number) => {
    for (let i = 0; i < 200 && !frames.some((f) => f.id === id); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    return frames.filter((f) => f.id === id);
  };
  return { input, output, frames, send, answerTo };
}

const DEFAULT = ['backends', 'volumes', 'snapshots', 'connections'] as const;

function sdkServer(offer: Offer) {
  return createMcpServer({ registry: new Promise<BackendRegistry>(() => undefined), ...offer, listing, secrets: new SecretRegistry(), log: createLogger('test') });
}

const initialize = (id: number, protocolVersion: string) => ({
  id,
  method: 'initialize',
  params: { protocolVersion, capabilities: {}, clientInfo: { name: 'early-test-client', version: '9.9.9' } },
});

// The listing `npm run build` wrote (the tests run the TypeScript sources, not dist/).
const listing = readPrebuiltListing(new URL('../../dist/tool-listing.json', import.meta.url))!;

describe('start-up answers given before the SDK loads', () => {
  it("equal the SDK server's answers to initialize (every version, and one it does not speak) and tools/list", async () => {
    expect(listing).toBeDefined();
    const offers: Offer[] = [
      { toolsets: DEFAULT, readOnly: false },
      { toolsets: DEFAULT, readOnly: true },
      { toolsets: ['backends', 'volumes', 'snapshots', 'connections', 'discovery', 'adoption'], readOnly: false },
      { toolsets: ['backends', 'discovery'], readOnly: true },
    ];
    for (const offer of offers) {
      const { input, output, send, answerTo } = wire();
      const transport = new BoundedStdioTransport({ log: createLogger('test'), input, output });
      await sdkServer(offer).connect(transport);
      let id = 0;
      for (const version of [...SUPPORTED_PROTOCOL_VERSIONS, '1999-01-01']) {
        send(initialize(++id, version));
        const [answer] = await answerTo(id);
        expect(answerBeforeSdk(initialize(id, version), listing, offer)).toEqual(answer.result);
      }
      send({ id: ++id, method: 'tools/list' });
      const [tools] = await answerTo(id);
      expect(answerBeforeSdk({ method: 'tools/list' }, listing, offer)).toEqual(tools.result);
      send({ id: ++id, method: 'prompts/list' });
      const [prompts] = await answerTo(id);
      expect(answerBeforeSdk({ method: 'prompts/list' }, listing, offer)).toEqual(prompts.result);
    }
  });

  it('answer at once, hand initialize to the server that connects later, and send each answer once', async () => {
    const { input, output, frames, send, answerTo } = wire();
    let wanted = 0;
    const transport = new BoundedStdioTransport({
      log: createLogger('test'),
      input,
      output,
      earlyResponder: (request) => {
        const result = answerBeforeSdk(request, listing, { toolsets: DEFAULT, readOnly: false });
        return result && { result, alsoDeliver: request.method === 'initialize' };
      },
      onserverwanted: () => wanted++,
    });
    transport.listen();
    send(initialize(1, SUPPORTED_PROTOCOL_VERSIONS[0]));
    send({ method: 'notifications/initialized' });
    send({ id: 2, method: 'tools/list' });
    send({ id: 3, method: 'tools/call', params: { name: 'no_such_tool', arguments: {} } });
    expect((await answerTo(1))[0].result.serverInfo.name).toBe('cinderlib-mcp');
    expect((await answerTo(2))[0].result.tools.length).toBeGreaterThan(0);
    expect(frames.some((f) => f.id === 3)).toBe(false); // waits for the server
    expect(wanted).toBe(1);

    const server = sdkServer({ toolsets: DEFAULT, readOnly: false });
    await server.connect(transport);
    const [call] = await answerTo(3);
    expect(call.result.content[0].text).toMatch(/^NOT_FOUND: there is no tool "no_such_tool"/);
    expect(server.getClientVersion()).toEqual({ name: 'early-test-client', version: '9.9.9' });
    expect(frames.filter((f) => f.id === 1)).toHaveLength(1);
    expect(transport.callsInFlight).toBe(0);
  });
});
