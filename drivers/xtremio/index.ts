import { StorageError } from '../../src/errors.js';
import { defineDriver } from '../types.js';

// Placeholder until the xtremio driver lands; the driver's own issue replaces this file.
export default defineDriver({
  summary: 'xtremio driver (not built yet)',
  options: {},
  create() {
    throw new StorageError('BACKEND_UNAVAILABLE', 'the xtremio driver is not built yet');
  },
});
