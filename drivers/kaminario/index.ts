import { StorageError } from '../../src/errors.js';
import { defineDriver } from '../types.js';

// Placeholder until the kaminario driver lands; the driver's own issue replaces this file.
export default defineDriver({
  summary: 'kaminario driver (not built yet)',
  options: {},
  create() {
    throw new StorageError('BACKEND_UNAVAILABLE', 'the kaminario driver is not built yet');
  },
});
