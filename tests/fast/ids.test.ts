/**
 * Ids come from a pooled random buffer (src/shared/ids.ts): each keeps OpenAI's shape, and ids drawn across
 * several refills of the pool never repeat.
 */
import { describe, expect, it } from "vitest";
import { newId } from "../../src/shared/ids.js";

describe("newId", () => {
  it("is the prefix and 48 hex characters, distinct over 5,000 ids (several pool refills)", () => {
    const ids = Array.from({ length: 5000 }, (_, index) => newId(index % 2 === 0 ? "msg" : "resp"));
    for (const id of ids) expect(id).toMatch(/^(msg|resp)_[0-9a-f]{48}$/);
    const bodies = new Set(ids.map((id) => id.slice(id.indexOf("_") + 1)));
    expect(bodies.size).toBe(ids.length);
  });
});
