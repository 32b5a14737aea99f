/**
 * encrypted_content sealing: AES-256-GCM with the item id as associated data; tampered, foreign-key and
 * other-item blobs do not open; the key file is created once with mode 0600; sealed input items get their
 * text back and a bad one is a 400 naming input[i]. Also the summary text per mode.
 */
import { mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { reasoningSummaryText } from "../../src/responses/reasoning-output.js";
import {
  REASONING_KEY_FILE,
  loadOrCreateReasoningKey,
  newReasoningKey,
  openReasoning,
  restoreSealedReasoning,
  sealReasoning,
} from "../../src/responses/reasoning-seal.js";
import { ApiError } from "../../src/shared/errors.js";

describe("reasoning seal", () => {
  const key = newReasoningKey();

  it("opens what it sealed, only for the same item id and key, never after a change", () => {
    const blob = sealReasoning(key, "rs_1", "I think, therefore.");
    expect(blob).not.toContain("think");
    expect(openReasoning(key, "rs_1", blob)).toBe("I think, therefore.");
    expect(openReasoning(key, "rs_2", blob)).toBeUndefined();
    expect(openReasoning(newReasoningKey(), "rs_1", blob)).toBeUndefined();
    const bytes = Buffer.from(blob, "base64");
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
    expect(openReasoning(key, "rs_1", bytes.toString("base64"))).toBeUndefined();
    expect(openReasoning(key, "rs_1", "not a blob")).toBeUndefined();
    expect(sealReasoning(key, "rs_1", "same")).not.toBe(sealReasoning(key, "rs_1", "same"));
  });

  it("creates the key file once, mode 0600, and refuses a file of the wrong size", () => {
    const dataDir = path.join(mkdtempSync(path.join(tmpdir(), "lmhost-key-")), "data");
    const created = loadOrCreateReasoningKey(dataDir);
    expect(created.length).toBe(32);
    expect(statSync(path.join(dataDir, REASONING_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(loadOrCreateReasoningKey(dataDir).equals(created)).toBe(true);
    writeFileSync(path.join(dataDir, REASONING_KEY_FILE), "short");
    expect(() => loadOrCreateReasoningKey(dataDir)).toThrow(/reasoning\.key is not a reasoning key/);
  });

  it("restores sealed input items and names input[i] for one that does not open", () => {
    const sealed = sealReasoning(key, "rs_a", "thought");
    const input = [
      { type: "message" as const, role: "user" as const, content: "Hi" },
      { type: "reasoning" as const, id: "rs_a", summary: [], encrypted_content: sealed },
    ];
    expect(restoreSealedReasoning(input, key)[1]).toEqual({
      ...input[1],
      content: [{ type: "reasoning_text", text: "thought" }],
    });
    const bad = [input[0]!, { ...input[1]!, id: "rs_b" }];
    try {
      restoreSealedReasoning(bad, key);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ApiError);
      expect((error as ApiError).status).toBe(400);
      expect((error as ApiError).param).toBe("input[1].encrypted_content");
    }
  });
});

describe("reasoningSummaryText", () => {
  it("auto and detailed give the trimmed text; concise its first paragraph", () => {
    const text = "\nFirst idea.\nStill first.\n\nSecond idea.\n";
    expect(reasoningSummaryText(text, "auto")).toBe("First idea.\nStill first.\n\nSecond idea.");
    expect(reasoningSummaryText(text, "detailed")).toBe("First idea.\nStill first.\n\nSecond idea.");
    expect(reasoningSummaryText(text, "concise")).toBe("First idea.\nStill first.");
    expect(reasoningSummaryText("  ", "concise")).toBe("");
  });
});
