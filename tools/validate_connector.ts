import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { backendArgument, connectorArgument } from './schemas.js';

export default defineTool({
  name: 'validate_connector',
  toolset: 'connections',
  title: 'Check a host connector',
  description: "Checks a host's connector has what the backend needs (iSCSI: initiator). Use before connect_volume.",
  input: z.object({ backend: backendArgument, connector: connectorArgument }).strict(),
  output: z.object({
    backend: z.string(),
    valid: z.literal(true),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend, connector }, registry) {
    await registry.validateConnector(backend, connector);
    return { backend, valid: true as const };
  },
});
