/** Ids in OpenAI's style: a prefix and 48 hex characters (`resp_…`, `msg_…`, `fc_…`, `rs_…`). */
import { randomBytes } from "node:crypto";

export type IdPrefix =
  "resp" | "msg" | "fc" | "call" | "rs" | "mcp" | "mcpl" | "mcpr" | "mcpa" | "ctc" | "req" | "item";

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomBytes(24).toString("hex")}`;
}
