/**
 * The tool loop: what runs between the engine and the event writer when a request has MCP tools.
 *
 * Without MCP tools it is the engine's part stream, unchanged. With them, one response may hold several
 * generations:
 * 1. each MCP server's tools are listed (an `mcp_list_tools` item) unless the conversation already holds a
 *    listing for that label; only tools `allowed_tools` permits are offered to the model, as functions
 *    named `label.tool`;
 * 2. calls the client approved (`mcp_approval_response` items answering `mcp_approval_request`s of the
 *    conversation) run first; denied ones are told to the model as results that say so;
 * 3. the model generates; a call of an MCP tool that needs approval ends the response with an
 *    `mcp_approval_request` item, any other MCP call runs at once (an `mcp_call` item, open while it runs)
 *    and the model continues with its result, until it answers, calls a client function, reaches
 *    `max_tool_calls` (then MCP tools are no longer offered) or MAX_TOOL_ROUNDS generations.
 * Usage adds up over the generations. A failing server never fails the response: a listing that fails is
 * an `mcp_list_tools` item with `error`, a call that fails an `mcp_call` with `error`.
 */
import type {
  ConversationItem,
  EnginePart,
  EngineRequest,
  FunctionToolDefinition,
  Usage,
} from "../engine/types.js";
import type { McpCallResult, McpServerRequest, McpToolInfo, McpTools } from "../tools/mcp/types.js";
import { ApiError, assertNever } from "../shared/errors.js";
import { mcpFunctionName, type ResponseRequest } from "./request-params.js";
import type {
  ConversationWireItem,
  McpApprovalRequestItem,
  McpListedTool,
  McpListToolsItem,
} from "./wire-types.js";

/** What the tool loop reports besides the engine's parts; the event writer turns them into MCP items. */
export type McpPart =
  | { type: "mcp-list-tools-start"; serverLabel: string }
  | { type: "mcp-list-tools-end"; tools: McpListedTool[]; error: string | undefined }
  | { type: "mcp-call-start"; serverLabel: string; name: string; approvalRequestId: string | undefined }
  | { type: "mcp-call-delta"; argumentsDelta: string }
  | { type: "mcp-call-arguments"; arguments: string }
  | { type: "mcp-call-end"; result: McpCallResult }
  | { type: "mcp-approval-request"; serverLabel: string; name: string; arguments: string };

export type ResponsePart = EnginePart | McpPart;

export type { McpTools };

/** Generations one response may run while MCP calls feed results back. */
export const MAX_TOOL_ROUNDS = 10;

export interface ToolLoopInput {
  request: ResponseRequest;
  engineRequest: EngineRequest;
  /** The conversation as wire items (the chain, then this request's input). */
  history: readonly ConversationWireItem[];
  /** This request's own input items: only their approval responses are acted on (earlier turns' ran then). */
  inputItems: readonly ConversationWireItem[];
}

interface OfferedTool {
  server: McpServerRequest;
  tool: McpToolInfo;
  needsApproval: boolean;
}

const addUsage = (total: Usage, usage: Usage): Usage => ({
  inputTokens: total.inputTokens + usage.inputTokens,
  cachedInputTokens: total.cachedInputTokens + usage.cachedInputTokens,
  outputTokens: total.outputTokens + usage.outputTokens,
  reasoningTokens: total.reasoningTokens + usage.reasoningTokens,
});

function toListedTool(tool: McpToolInfo): McpListedTool {
  return {
    name: tool.name,
    description: tool.description ?? null,
    input_schema: tool.inputSchema,
    annotations: tool.annotations ?? null,
  };
}

function fromListedTool(tool: McpListedTool): McpToolInfo {
  return {
    name: tool.name,
    ...(tool.description === null ? {} : { description: tool.description }),
    inputSchema: tool.input_schema,
    ...(tool.annotations === null ? {} : { annotations: tool.annotations }),
  };
}

/** Whether `allowed_tools` lets the model use `tool`. */
export function isToolAllowed(server: McpServerRequest, tool: McpToolInfo): boolean {
  const allowed = server.allowedTools;
  if (allowed === undefined) return true;
  if (allowed.names !== undefined && !allowed.names.includes(tool.name)) return false;
  if (allowed.readOnly === true && tool.annotations?.readOnlyHint !== true) return false;
  return true;
}

/** `require_approval`: "never" lists, then "always" lists, then the default ("always" unless "never"). */
export function needsApproval(server: McpServerRequest, toolName: string): boolean {
  const rule = server.requireApproval;
  if (rule.never.includes(toolName)) return false;
  if (rule.always.includes(toolName)) return true;
  return rule.default === "always";
}

/** Checks the approval responses of this input: each must answer a request of the conversation. */
export function checkApprovalResponses(
  history: readonly ConversationWireItem[],
  inputItems: readonly ConversationWireItem[],
): void {
  const requests = new Set(
    history.flatMap((item) => (item.type === "mcp_approval_request" ? [item.id] : [])),
  );
  inputItems.forEach((item, index) => {
    if (item.type === "mcp_approval_response" && !requests.has(item.approval_request_id)) {
      throw ApiError.invalid(
        `No mcp_approval_request with id '${item.approval_request_id}' in this conversation: send the response that asked for approval as previous_response_id, or include its mcp_approval_request item in input.`,
        `input[${index}].approval_request_id`,
      );
    }
  });
}

/** The parts of one response: the engine's alone, or the MCP tool loop around it. */
export async function* generateResponseParts(
  engine: { generate(request: EngineRequest, signal: AbortSignal): AsyncIterable<EnginePart> },
  mcp: McpTools | undefined,
  input: ToolLoopInput,
  signal: AbortSignal,
): AsyncGenerator<ResponsePart, void, undefined> {
  const servers = input.request.mcpServers;
  if (servers.length === 0 || mcp === undefined) {
    yield* engine.generate(input.engineRequest, signal);
    return;
  }
  const tools: McpTools = mcp;

  // 1. The tools of each server: from an earlier listing of the conversation, or listed now.
  const offered = new Map<string, OfferedTool>();
  for (const server of servers) {
    const earlier = input.history.findLast(
      (item): item is McpListToolsItem =>
        item.type === "mcp_list_tools" && item.server_label === server.serverLabel && item.error === null,
    );
    let listed: McpToolInfo[] = [];
    if (earlier !== undefined) {
      listed = earlier.tools.map(fromListedTool);
    } else {
      yield { type: "mcp-list-tools-start", serverLabel: server.serverLabel };
      try {
        listed = await tools.listTools(server, signal);
        yield { type: "mcp-list-tools-end", tools: listed.map(toListedTool), error: undefined };
      } catch (error) {
        yield { type: "mcp-list-tools-end", tools: [], error: (error as Error).message };
      }
    }
    for (const tool of listed) {
      if (!isToolAllowed(server, tool)) continue;
      offered.set(mcpFunctionName(server.serverLabel, tool.name), {
        server,
        tool,
        needsApproval: needsApproval(server, tool.name),
      });
    }
  }

  const items: ConversationItem[] = [...input.engineRequest.items];
  let callsMade = 0;
  const maxCalls = input.request.maxToolCalls ?? Number.POSITIVE_INFINITY;

  const limitReached = (): McpCallResult => ({
    error: `Not run: this response reached max_tool_calls (${maxCalls}).`,
  });

  /** Calls the tool; a failure (bad arguments, a server error) is an error result, never a throw. */
  async function callOnce(entry: OfferedTool, callArguments: string): Promise<McpCallResult> {
    callsMade += 1;
    try {
      const parsed = callArguments.trim() === "" ? {} : (JSON.parse(callArguments) as unknown);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
        throw new Error("the arguments are not a JSON object");
      return await tools.callTool(entry.server, entry.tool.name, parsed as Record<string, unknown>, signal);
    } catch (error) {
      return { error: `MCP server '${entry.server.serverLabel}': ${(error as Error).message}` };
    }
  }

  /** Runs one MCP call as an mcp_call item and adds it with its result to the conversation. */
  async function* runCall(
    entry: OfferedTool,
    callArguments: string,
    approvalRequestId: string | undefined,
    started: boolean,
  ): AsyncGenerator<ResponsePart, void, undefined> {
    if (!started) {
      yield {
        type: "mcp-call-start",
        serverLabel: entry.server.serverLabel,
        name: entry.tool.name,
        approvalRequestId,
      };
    }
    yield { type: "mcp-call-arguments", arguments: callArguments };
    const result = callsMade >= maxCalls ? limitReached() : await callOnce(entry, callArguments);
    yield { type: "mcp-call-end", result };
    const name = mcpFunctionName(entry.server.serverLabel, entry.tool.name);
    const callId = `mcp_call_${items.length}`;
    items.push({ type: "function-call", callId, name, arguments: callArguments });
    items.push({
      type: "function-result",
      callId,
      name,
      output: "error" in result ? `Error: ${result.error}` : result.output,
    });
  }

  // 2. Calls the client answered in this request: approved ones run now, denied ones are told to the model.
  const requests = new Map<string, McpApprovalRequestItem>();
  const answered = new Set<string>();
  for (const item of input.history) {
    if (item.type === "mcp_approval_request") requests.set(item.id, item);
    if (item.type === "mcp_call" && item.approval_request_id !== null) answered.add(item.approval_request_id);
  }
  let ranApproved = false;
  for (const item of input.inputItems) {
    if (item.type !== "mcp_approval_response" || answered.has(item.approval_request_id)) continue;
    answered.add(item.approval_request_id);
    const request = requests.get(item.approval_request_id);
    if (request === undefined) continue;
    const name = mcpFunctionName(request.server_label, request.name);
    const entry = offered.get(name);
    if (item.approve && entry !== undefined) {
      yield* runCall(entry, request.arguments, request.id, false);
      ranApproved = true;
    } else {
      const callId = `mcp_denied_${items.length}`;
      items.push({ type: "function-call", callId, name, arguments: request.arguments });
      items.push({
        type: "function-result",
        callId,
        name,
        output: item.approve
          ? `The tool ${request.name} of ${request.server_label} is not available any more; the call did not run.`
          : `The user denied this call${item.reason === null ? "" : `: ${item.reason}`}. It did not run.`,
      });
    }
  }

  // 3. Generations, each continued with the results of the MCP calls it made.
  const clientTools = input.engineRequest.tools ?? [];
  let toolChoice = ranApproved ? undefined : input.request.mcpToolChoice;
  let usage: Usage = { inputTokens: 0, cachedInputTokens: 0, outputTokens: 0, reasoningTokens: 0 };
  for (let round = 0; ; round++) {
    const mcpDefinitions: FunctionToolDefinition[] =
      callsMade >= maxCalls || round >= MAX_TOOL_ROUNDS - 1
        ? []
        : [...offered].flatMap(([name, entry]) => {
            if (toolChoice?.serverLabel !== undefined && entry.server.serverLabel !== toolChoice.serverLabel)
              return [];
            return [
              {
                name,
                ...(entry.tool.description !== undefined ? { description: entry.tool.description } : {}),
                parameters: entry.tool.inputSchema,
              },
            ];
          });
    const forced =
      toolChoice === undefined || mcpDefinitions.length === 0
        ? undefined
        : toolChoice.name === undefined
          ? ("required" as const)
          : { name: mcpFunctionName(toolChoice.serverLabel, toolChoice.name) };
    const request: EngineRequest = {
      ...input.engineRequest,
      // A copy: this loop appends to `items` after the generation, never under the engine's feet.
      items: [...items],
      tools: forced === undefined ? [...clientTools, ...mcpDefinitions] : mcpDefinitions,
      // Once a call has run (an earlier round's, or an approved one's), the response is under way: its
      // next generation must not be refused.
      ...(round > 0 || ranApproved ? { continuation: true } : {}),
    };
    if (forced !== undefined) request.toolChoice = forced;
    if ((request.tools ?? []).length === 0) {
      delete request.tools;
      if (request.toolChoice !== "none") delete request.toolChoice;
    }

    const roundStart = items.length;
    let text = "";
    let reasoning = "";
    let clientCall = false;
    let approvalAsked = false;
    let ranCall = false;
    let finish: Extract<EnginePart, { type: "finish" }> | undefined;
    /** The MCP call being generated: its tool, and whether it streams as an mcp_call item. */
    let pending: { entry: OfferedTool; streamed: boolean } | undefined;

    for await (const part of engine.generate(request, signal)) {
      switch (part.type) {
        case "tool-call-start": {
          const entry = offered.get(part.name);
          if (entry === undefined) {
            clientCall = true;
            yield part;
            break;
          }
          pending = { entry, streamed: !entry.needsApproval };
          if (pending.streamed) {
            yield {
              type: "mcp-call-start",
              serverLabel: entry.server.serverLabel,
              name: entry.tool.name,
              approvalRequestId: undefined,
            };
          }
          break;
        }
        case "tool-call-delta":
          if (pending === undefined) yield part;
          else if (pending.streamed) yield { type: "mcp-call-delta", argumentsDelta: part.argumentsDelta };
          break;
        case "tool-call-end": {
          const entry = offered.get(part.name);
          if (entry === undefined) {
            clientCall = true;
            yield part;
            break;
          }
          if (entry.needsApproval) {
            approvalAsked = true;
            yield {
              type: "mcp-approval-request",
              serverLabel: entry.server.serverLabel,
              name: entry.tool.name,
              arguments: part.arguments,
            };
          } else {
            yield* runCall(entry, part.arguments, undefined, pending?.streamed === true);
            ranCall = true;
          }
          pending = undefined;
          break;
        }
        case "text-delta":
          text += part.text;
          yield part;
          break;
        case "reasoning-delta":
          reasoning += part.text;
          yield part;
          break;
        case "finish":
          finish = part;
          break;
        case "prompt-progress":
        case "reasoning-start":
        case "reasoning-end":
          yield part;
          break;
        default:
          assertNever(part, "engine part");
      }
    }
    if (finish === undefined) throw new Error("The engine ended its part stream without a finish part.");
    usage = addUsage(usage, finish.usage);
    const again =
      ranCall &&
      !clientCall &&
      !approvalAsked &&
      finish.reason === "tool-calls" &&
      round < MAX_TOOL_ROUNDS - 1;
    if (!again) {
      yield { type: "finish", reason: finish.reason, usage };
      return;
    }
    // What the model wrote before its calls stays in the conversation for the next generation.
    const before: ConversationItem[] = [];
    if (reasoning !== "") before.push({ type: "reasoning", text: reasoning });
    if (text !== "") before.push({ type: "message", role: "assistant", text });
    items.splice(roundStart, 0, ...before);
    toolChoice = undefined;
  }
}
