import { MemoryVolumeStore } from '../../src/store/memory.js';
import { defineStoreBehaviours } from './behaviours.js';

defineStoreBehaviours('memory', () => new MemoryVolumeStore());
