/**
 * The response store: its interface, the embedded SQLite implementation and the in-memory twin.
 * Only this folder's sqlite/ subfolder imports better-sqlite3.
 */
export type {
  ItemPage,
  ListItemsOptions,
  PruneLimits,
  PruneOptions,
  ResponseStore,
  StoredItem,
  StoredResponse,
} from "./types.js";
export { UNFINISHED_STATUSES } from "./types.js";
export { MAX_CHAIN_DEPTH } from "./store-rules.js";
export { MemoryResponseStore } from "./memory/memory-store.js";
export { SqliteResponseStore } from "./sqlite/sqlite-store.js";
export { latestSchemaVersion } from "./sqlite/migrations.js";
