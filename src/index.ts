export * from './core/errors.ts';
export type { ClaimRequest, ClaimResult, Store, StoreRecord } from './core/store.ts';
export { type MemoryStoreOptions, memoryStore } from './stores/memory/index.ts';
