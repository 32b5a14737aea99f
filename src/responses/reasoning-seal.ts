/**
 * `encrypted_content` of reasoning items: the reasoning text sealed with AES-256-GCM under the server's key,
 * the item id bound as associated data, so a stateless client (`store: false`, Codex) can send the item back
 * and the server restores the text for the prompt. A blob that was tampered with, sealed for another item or
 * under another key does not open. Format: base64 of version byte 1, 12-byte IV, 16-byte tag, ciphertext.
 * The key is created on first start in the data dir (`reasoning.key`, mode 0600).
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ApiError } from "../shared/errors.js";
import type { InputItem } from "./wire-types.js";

const VERSION = 1;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const REASONING_KEY_FILE = "reasoning.key";

/** Seals `text` for the reasoning item `itemId`. */
export function sealReasoning(key: Buffer, itemId: string, text: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(itemId, "utf8"));
  const ciphertext = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ciphertext]).toString("base64");
}

/** The text sealed for `itemId`, or undefined when the blob does not open (tampered, foreign, not ours). */
export function openReasoning(key: Buffer, itemId: string, blob: string): string | undefined {
  const bytes = Buffer.from(blob, "base64");
  if (bytes.length < 1 + IV_BYTES + TAG_BYTES || bytes[0] !== VERSION) return undefined;
  const iv = bytes.subarray(1, 1 + IV_BYTES);
  const tag = bytes.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, iv);
    decipher.setAAD(Buffer.from(itemId, "utf8"));
    decipher.setAuthTag(tag);
    const plain = Buffer.concat([
      decipher.update(bytes.subarray(1 + IV_BYTES + TAG_BYTES)),
      decipher.final(),
    ]);
    return plain.toString("utf8");
  } catch {
    return undefined;
  }
}

/** A fresh random key (tests; a server without a data dir). */
export function newReasoningKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/**
 * The server's key from `<dataDir>/reasoning.key`, created (mode 0600) on first start. A key file of the
 * wrong size is an error naming the file.
 */
export function loadOrCreateReasoningKey(dataDir: string): Buffer {
  const file = path.join(dataDir, REASONING_KEY_FILE);
  mkdirSync(dataDir, { recursive: true });
  try {
    writeFileSync(file, newReasoningKey(), { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  chmodSync(file, 0o600);
  const key = readFileSync(file);
  if (key.length !== KEY_BYTES)
    throw new Error(`${file} is not a reasoning key: it must hold exactly ${KEY_BYTES} bytes.`);
  return key;
}

/**
 * The request's input with the text of every sealed reasoning item restored (as its `reasoning_text`
 * content) for the prompt. A blob that does not open under this server's key for that item id (tampered,
 * from another server, or an item without its id) is a 400 naming `input[i]`.
 */
export function restoreSealedReasoning(input: readonly InputItem[], key: Buffer): InputItem[] {
  return input.map((item, index) => {
    if (item.type !== "reasoning" || item.encrypted_content === undefined || item.encrypted_content === null)
      return item;
    const text = item.id === undefined ? undefined : openReasoning(key, item.id, item.encrypted_content);
    if (text === undefined) {
      throw ApiError.invalid(
        `input[${index}] is a reasoning item whose encrypted_content this server cannot open: it was changed, sealed for another item id, or sealed by another server. Send the item exactly as it was returned, or leave encrypted_content out.`,
        `input[${index}].encrypted_content`,
        "invalid_encrypted_content",
      );
    }
    return { ...item, content: [{ type: "reasoning_text", text }] };
  });
}
