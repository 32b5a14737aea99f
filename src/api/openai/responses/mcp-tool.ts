/**
 * An MCP tool of a `POST /v1/responses` body (`{"type": "mcp", ...}`) checked against what the server
 * allows and turned into the tool loop's McpServerRequest: remote servers only with --allow-remote-mcp,
 * labels without a URL only from mcp.json, credentials folded into headers and checked without ever being
 * quoted in an error (they are never echoed or stored either).
 */
import type { McpServerRequest } from "../../../tools/mcp/types.js";
import { ApiError } from "../../../shared/errors.js";
import type { ParsedTool } from "./request-schema.js";

/** What the server allows of MCP tools (`--allow-remote-mcp`, the labels of `<data-dir>/mcp.json`). */
export interface McpPolicy {
  allowRemote: boolean;
  localServers: ReadonlySet<string>;
}

export type ParsedMcpTool = Extract<ParsedTool, { type: "mcp" }>;

/** An MCP tool of the request → the loop's server request, checked against the server's policy. */
export function toMcpServer(
  tool: ParsedMcpTool,
  param: string,
  policy: McpPolicy | undefined,
): McpServerRequest {
  if (tool.connector_id !== undefined && tool.connector_id !== null) {
    throw ApiError.invalid(
      "OpenAI's MCP connectors are not available on lmhost; give a server_url.",
      `${param}.connector_id`,
      "unsupported_parameter",
    );
  }
  const url = tool.server_url ?? undefined;
  if (url === undefined) {
    if (policy === undefined || !policy.localServers.has(tool.server_label)) {
      const known = [...(policy?.localServers ?? [])];
      throw ApiError.invalid(
        `MCP tool '${tool.server_label}' has no server_url and is not a server of lmhost's mcp.json${known.length > 0 ? ` (configured: ${known.join(", ")})` : " (none is configured)"}.`,
        `${param}.server_url`,
      );
    }
  } else {
    if (policy?.allowRemote !== true) {
      throw ApiError.invalid(
        'Remote MCP servers are off on this server: start lmhost with --allow-remote-mcp (or "allowRemoteMcp": true in config.json) to let requests use them.',
        param,
        "mcp_not_enabled",
      );
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw ApiError.invalid(`'${url}' is not a URL.`, `${param}.server_url`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      throw ApiError.invalid("server_url must be an http or https URL.", `${param}.server_url`);
    // The URL is echoed and stored: credentials belong in `authorization` or `headers`, which are not.
    if (parsed.username !== "" || parsed.password !== "")
      throw ApiError.invalid(
        "server_url may not carry a user name or password; send credentials as authorization or headers.",
        `${param}.server_url`,
      );
  }
  const headers: Record<string, string> = { ...(tool.headers ?? {}) };
  if (tool.authorization !== undefined && tool.authorization !== null)
    headers.Authorization = `Bearer ${tool.authorization}`;
  // A bad header would fail later with an error that quotes its value (a secret): refuse it here, unquoted.
  for (const [name, value] of Object.entries(headers)) {
    const field =
      name === "Authorization" && tool.authorization != null
        ? `${param}.authorization`
        : `${param}.headers.${name}`;
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      throw ApiError.invalid(`'${field}' is not a valid HTTP header name.`, field);
    if (/[\r\n\0]/.test(value) || /[^\t\x20-\x7e\x80-\xff]/.test(value))
      throw ApiError.invalid(
        `The value of '${field}' is not a valid HTTP header value (it is not shown here).`,
        field,
      );
  }
  const allowed = tool.allowed_tools ?? undefined;
  const allowedTools =
    allowed === undefined
      ? undefined
      : Array.isArray(allowed)
        ? { names: allowed }
        : {
            ...(allowed.tool_names === undefined || allowed.tool_names === null
              ? {}
              : { names: allowed.tool_names }),
            ...(allowed.read_only === undefined || allowed.read_only === null
              ? {}
              : { readOnly: allowed.read_only }),
          };
  const approval = tool.require_approval ?? "always";
  const requireApproval =
    typeof approval === "string"
      ? { default: approval, always: [], never: [] }
      : {
          default: "always" as const,
          always: approval.always?.tool_names ?? [],
          never: approval.never?.tool_names ?? [],
        };
  return {
    param,
    serverLabel: tool.server_label,
    ...(url === undefined ? {} : { serverUrl: url }),
    headers,
    ...(allowedTools === undefined ? {} : { allowedTools }),
    requireApproval,
  };
}
