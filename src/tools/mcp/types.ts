/**
 * What the Responses core and the MCP code share: an MCP server as a request names it, a tool a server
 * offers, a call's result, and the interface the tool loop calls (McpService implements it).
 */

/** An MCP tool of a request (`{"type": "mcp", ...}`), validated. */
export interface McpServerRequest {
  /** Where it came from, for errors: `tools[i]`. */
  param: string;
  serverLabel: string;
  /** A remote server; absent: a server of the operator's mcp.json, by label. */
  serverUrl?: string;
  /** Sent to the server (`headers`, and `authorization` as a Bearer token); never stored nor echoed. */
  headers: Record<string, string>;
  /** `allowed_tools`: tool names, and/or only tools annotated read-only. Absent: every tool. */
  allowedTools?: { names?: string[]; readOnly?: boolean };
  /** `require_approval`, normalised. */
  requireApproval: { default: "always" | "never"; always: string[]; never: string[] };
}

export interface McpToolInfo {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

/** A tool call's result: `output` (the text the model sees) or `error` (a failed call). */
export type McpCallResult = { output: string } | { error: string };

/** The MCP servers a response may use. */
export interface McpTools {
  listTools(server: McpServerRequest, signal?: AbortSignal): Promise<McpToolInfo[]>;
  callTool(
    server: McpServerRequest,
    name: string,
    args: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<McpCallResult>;
}
