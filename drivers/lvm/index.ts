import { StorageError } from '../../src/errors.js';
import { defineDriver } from '../types.js';

// Placeholder until the lvm driver lands; the driver's own issue replaces this file.
export default defineDriver({
  summary: 'lvm driver (not built yet)',
  options: {},
  create() {
    throw new StorageError('BACKEND_UNAVAILABLE', 'the lvm driver is not built yet');
  },
});
