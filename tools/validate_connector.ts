import { z } from 'zod';
import { READS_ARRAYS, defineTool } from './define.js';
import { backendArgument, connectorArgument } from './schemas.js';

export default defineTool({
  name: 'validate_connector',
  toolset: 'connections',
  title: 'Check a host connector',
  description:
    "Checks that a host's connector (os-brick's connector properties) has what the backend needs to connect volumes to that host (Cinder's validate_connector): iSCSI backends need initiator, the host's IQN. Answers valid: true, or INVALID_ARGUMENT naming the missing keys. Changes nothing; use it before connect_volume.",
  input: z.object({ backend: backendArgument, connector: connectorArgument }).strict(),
  output: z.object({
    backend: z.string().describe('The backend checked.'),
    valid: z.literal(true).describe('Always true: an invalid connector is an INVALID_ARGUMENT error instead.'),
  }),
  annotations: READS_ARRAYS,
  async handler({ backend, connector }, registry) {
    await registry.validateConnector(backend, connector);
    return { backend, valid: true as const };
  },
});
