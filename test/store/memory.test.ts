import { MemoryVolumeStore } from '../../src/persistence/memory.js';
import { defineStoreBehaviours } from './behaviours.js';

defineStoreBehaviours('memory', () => new MemoryVolumeStore());
