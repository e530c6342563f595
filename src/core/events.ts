/**
 * Events the engine emits through `onEvent`, one per transition. They carry the hashed record
 * id, never the raw key, so they are safe to log.
 *
 * @module
 */

/** One engine event. */
export type IdemEvent =
  | { type: 'acquired' | 'takeover'; recordId: string; attempt: number }
  | { type: 'completed'; recordId: string; attempt: number; durationMs: number; error?: boolean }
  | { type: 'replayed'; recordId: string; attempt: number; shared: boolean; cached?: boolean }
  | { type: 'released' | 'mismatch' | 'in_progress' | 'wait' | 'lease_lost'; recordId: string }
  | { type: 'too_large'; recordId: string; bytes: number }
  | { type: 'store_error'; recordId: string; error: unknown };
