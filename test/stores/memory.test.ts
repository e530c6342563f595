import { memoryStore } from 'idem';
import { testStore } from 'idem/testing';

testStore({ name: 'memory', create: () => memoryStore() });
