/**
 * Versioned schema migrations for the SQLite response store. Each migration's position in the list is
 * its version (the first is version 1); applied versions are tracked in `PRAGMA user_version`. Append new
 * migrations at the end; never edit or reorder one that has shipped.
 */
import type Database from "better-sqlite3";

export interface Migration {
  description: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    description: "responses and their input items",
    sql: `
      CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        previous_response_id TEXT,
        model TEXT NOT NULL,
        status TEXT NOT NULL,
        response_json TEXT NOT NULL
      );
      CREATE INDEX responses_created_at ON responses (created_at);
      CREATE TABLE input_items (
        response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        item_json TEXT NOT NULL,
        PRIMARY KEY (response_id, position)
      );
    `,
  },
  {
    description: "item ids of each response's output, and an index on input item ids (item_reference)",
    sql: `
      CREATE TABLE output_items (
        response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        PRIMARY KEY (response_id, position)
      );
      INSERT INTO output_items (response_id, position, item_id)
        SELECT responses.id, output.key, json_extract(output.value, '$.id')
        FROM responses, json_each(responses.response_json, '$.output') AS output
        WHERE json_type(output.value, '$.id') = 'text';
      CREATE INDEX output_items_item_id ON output_items (item_id);
      CREATE INDEX input_items_item_id ON input_items (item_id);
    `,
  },
  {
    description: "an index of unfinished responses (swept to failed at startup, never pruned)",
    sql: `
      CREATE INDEX responses_unfinished ON responses (status) WHERE status IN ('queued', 'in_progress');
    `,
  },
  {
    description: "an index on previous_response_id (pruning never deletes a response another chains from)",
    sql: `
      CREATE INDEX responses_previous_response_id ON responses (previous_response_id);
    `,
  },
];

export const latestSchemaVersion = migrations.length;

/**
 * Brings the database up to the latest schema in one transaction. Throws, without touching the file,
 * when the file was written by a newer lmhost whose schema this code does not know.
 */
export function migrate(database: Database.Database, fileDescription: string): void {
  const apply = database.transaction(() => {
    const currentVersion = readSchemaVersion(database);
    if (currentVersion > latestSchemaVersion) {
      throw new Error(
        `Response store ${fileDescription} has schema version ${currentVersion}, but this lmhost only ` +
          `knows versions up to ${latestSchemaVersion}. Upgrade lmhost or point it at another store file.`,
      );
    }
    for (let version = currentVersion + 1; version <= latestSchemaVersion; version++) {
      const migration = migrations[version - 1];
      if (migration === undefined) throw new Error(`Missing migration for schema version ${version}.`);
      database.exec(migration.sql);
      database.pragma(`user_version = ${version}`);
    }
  });
  // IMMEDIATE: take the write lock before reading the version, so two processes cannot both migrate.
  apply.immediate();
}

export function readSchemaVersion(database: Database.Database): number {
  return database.pragma("user_version", { simple: true }) as number;
}
