/**
 * A validated Responses request as the core needs it: the control fields typed, the generation options
 * already in the engine's neutral terms, and the echo (the request-derived fields every Response object
 * of this request repeats). The API layer builds it from the wire body; the core never sees raw JSON.
 */
import type { EngineRequest } from "../engine/types.js";
import type { McpServerRequest } from "../tools/mcp/types.js";
import type { InputItem, ResponseEcho } from "./wire-types.js";
import type { ReasoningOutput } from "./reasoning-output.js";

/**
 * The wire name of a function the model may call, and the namespace tool it came from (if any). `custom`:
 * a custom (freeform) tool, whose calls are `custom_tool_call` items with the raw input.
 */
export interface FunctionName {
  name: string;
  namespace?: string;
  custom?: boolean;
}

/**
 * The name the engine sees for a function inside a namespace tool. OpenAI function names match
 * `^[a-zA-Z0-9_-]+$`, so a `.` can never be part of either half and the split back is unambiguous.
 */
export function qualifiedFunctionName(name: string, namespace?: string | null): string {
  return namespace === undefined || namespace === null || namespace === "" ? name : `${namespace}.${name}`;
}

/**
 * The name the engine sees for a tool of an MCP server: `label.tool` (the label keeps tools of two servers
 * apart; the loop keeps a map back to the server and the tool, so the name is never split).
 */
export function mcpFunctionName(serverLabel: string, toolName: string): string {
  return `${serverLabel}.${toolName}`;
}

export interface ResponseRequest {
  model: string;
  input: InputItem[];
  instructions: string | null;
  previousResponseId: string | null;
  store: boolean;
  background: boolean;
  stream: boolean;
  /** Sampling, response format, tools, tool choice, reasoning effort, truncation and ttl for the engine. */
  generation: Omit<EngineRequest, "model" | "items">;
  /** Engine tool name (see qualifiedFunctionName) → the function's wire name and namespace. */
  functionNames: ReadonlyMap<string, FunctionName>;
  /** MCP servers the tool loop offers to the model (tool-loop.ts). */
  mcpServers: McpServerRequest[];
  /** `tool_choice: {type: "mcp", server_label, name?}`: the first generation must call that server's tool. */
  mcpToolChoice?: { serverLabel: string; name?: string };
  /** `max_tool_calls`: MCP calls one response may run. */
  maxToolCalls?: number;
  echo: ResponseEcho;
  /** Summary and encrypted content of reasoning items (absent: neither). */
  reasoningOutput?: ReasoningOutput;
}
