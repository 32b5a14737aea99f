/**
 * The event writer: a small state machine that turns the engine's part stream into Responses stream
 * events, one method per engine part. It is the only place that assigns ids, `output_index`,
 * `content_index` and `sequence_number`, and it keeps the live Response snapshot those events describe.
 * At most one output item is open at a time; finish, failure and cancellation close it, so every
 * `output_item.added` gets its `output_item.done` and every stream ends with a lifecycle event.
 *
 * Item kinds: assistant message (one `output_text` part), reasoning (one `reasoning_text` part),
 * function_call, custom_tool_call (a call of a custom tool, from the same engine parts as a function call:
 * the request's function names say which tools are custom), and the MCP items the tool loop (tool-loop.ts) reports: mcp_list_tools, mcp_call (open
 * while the server runs it) and mcp_approval_request.
 */
import type { FinishReason, Usage } from "../engine/types.js";
import { assertNever } from "../shared/errors.js";
import { newId } from "../shared/ids.js";
import type { FunctionName } from "./request-params.js";
import type { ResponsePart } from "./tool-loop.js";
import { reasoningSummaryText, type ReasoningSummaryMode } from "./reasoning-output.js";
import { toResponseUsage, unixSeconds } from "./response-object.js";
import type {
  CustomToolCallItem,
  FunctionCallItem,
  ItemStatus,
  McpApprovalRequestItem,
  McpCallItem,
  McpListToolsItem,
  OutputItem,
  LifecycleEventType,
  MessageItem,
  OutputTextPart,
  ReasoningItem,
  ReasoningTextPart,
  ResponseError,
  ResponseObject,
  ResponseStatus,
  ResponseStreamEvent,
  SummaryTextPart,
  UnnumberedStreamEvent,
} from "./wire-types.js";

type OpenItem =
  | { kind: "message"; outputIndex: number; item: MessageItem; part: OutputTextPart }
  | { kind: "reasoning"; outputIndex: number; item: ReasoningItem; part: ReasoningTextPart }
  | { kind: "function_call"; outputIndex: number; item: FunctionCallItem; argumentsDone: boolean }
  | { kind: "custom_tool_call"; outputIndex: number; item: CustomToolCallItem; inputDone: boolean }
  | { kind: "mcp_list_tools"; outputIndex: number; item: McpListToolsItem }
  | { kind: "mcp_call"; outputIndex: number; item: McpCallItem; argumentsDone: boolean };

/** How a finished generation ends: the response status and the status its open item closes with. */
export function outcomeOfFinish(reason: FinishReason): { status: ResponseStatus; itemStatus: ItemStatus } {
  switch (reason) {
    case "stop":
    case "tool-calls":
      return { status: "completed", itemStatus: "completed" };
    case "length":
      return { status: "incomplete", itemStatus: "incomplete" };
    case "cancelled":
      return { status: "cancelled", itemStatus: "incomplete" };
    default:
      return assertNever(reason, "finish reason");
  }
}

/**
 * The event that ends a stream in each final status. The specs define no `response.cancelled` stream
 * event, so a cancelled response ends with `response.incomplete` carrying `status: "cancelled"`.
 */
function terminalEventType(status: ResponseStatus): LifecycleEventType {
  switch (status) {
    case "completed":
      return "response.completed";
    case "incomplete":
    case "cancelled":
      return "response.incomplete";
    case "failed":
      return "response.failed";
    case "queued":
    case "in_progress":
      throw new Error(`'${status}' is not a final status.`);
    default:
      return assertNever(status, "response status");
  }
}

const finalStatuses: ReadonlySet<ResponseStatus> = new Set([
  "completed",
  "incomplete",
  "failed",
  "cancelled",
]);

/** What a reasoning item gets when it closes: a summary, and the sealed text (`encrypted_content`). */
export interface ReasoningItemOptions {
  summary?: ReasoningSummaryMode | undefined;
  /** Seals the reasoning text of the item with this id; set when the request includes encrypted content. */
  seal?: ((itemId: string, text: string) => string) | undefined;
}

export class ResponseEventWriter {
  readonly #response: ResponseObject;
  readonly #functionNames: ReadonlyMap<string, FunctionName>;
  #sequenceNumber = 0;
  #open: OpenItem | undefined;
  #pending: ResponseStreamEvent[] = [];

  readonly #reasoning: ReasoningItemOptions;

  constructor(
    initial: ResponseObject,
    functionNames: ReadonlyMap<string, FunctionName> = new Map(),
    reasoning: ReasoningItemOptions = {},
  ) {
    this.#response = structuredClone(initial);
    this.#functionNames = functionNames;
    this.#reasoning = reasoning;
  }

  get finished(): boolean {
    return finalStatuses.has(this.#response.status);
  }

  /** A copy of the response as the events so far describe it. */
  snapshot(): ResponseObject {
    return structuredClone(this.#response);
  }

  /** `response.created`, then `response.queued` for a response that waits to start. */
  created(): ResponseStreamEvent[] {
    this.#emitLifecycle("response.created");
    if (this.#response.status === "queued") this.#emitLifecycle("response.queued");
    return this.#flush();
  }

  /** `response.in_progress`: generation has started. */
  inProgress(): ResponseStreamEvent[] {
    this.#assertRunning();
    this.#response.status = "in_progress";
    this.#emitLifecycle("response.in_progress");
    return this.#flush();
  }

  write(part: ResponsePart): ResponseStreamEvent[] {
    this.#assertRunning();
    switch (part.type) {
      case "prompt-progress":
        break;
      case "text-delta":
        this.#appendText(part.text);
        break;
      case "reasoning-start":
        this.#openReasoning();
        break;
      case "reasoning-delta":
        this.#appendReasoning(part.text);
        break;
      case "reasoning-end":
        if (this.#open?.kind === "reasoning") this.#closeOpenItem("completed");
        break;
      case "tool-call-start":
        this.#openFunctionCall(part.callId, part.name);
        break;
      case "tool-call-delta":
        this.#appendArguments(part.callId, part.argumentsDelta);
        break;
      case "tool-call-end":
        this.#endFunctionCall(part.callId, part.name, part.arguments);
        break;
      case "finish":
        this.#finish(part.reason, part.usage);
        break;
      case "mcp-list-tools-start":
        this.#openListTools(part.serverLabel);
        break;
      case "mcp-list-tools-end":
        this.#endListTools(part.tools, part.error);
        break;
      case "mcp-call-start":
        this.#openMcpCall(part.serverLabel, part.name, part.approvalRequestId);
        break;
      case "mcp-call-delta":
        this.#appendMcpArguments(part.argumentsDelta);
        break;
      case "mcp-call-arguments":
        this.#mcpArgumentsDone(part.arguments);
        break;
      case "mcp-call-end":
        this.#endMcpCall(part.result);
        break;
      case "mcp-approval-request":
        this.#addApprovalRequest(part.serverLabel, part.name, part.arguments);
        break;
      default:
        assertNever(part, "response part");
    }
    return this.#flush();
  }

  /** Ends the response as failed (after the stream started): open items close as incomplete. */
  fail(error: ResponseError): ResponseStreamEvent[] {
    this.#assertRunning();
    this.#closeOpenItem("incomplete");
    this.#response.status = "failed";
    this.#response.error = error;
    this.#emitLifecycle(terminalEventType("failed"));
    return this.#flush();
  }

  /**
   * The run finished, but its final object could not be stored: replaces the terminal event just
   * returned (which must not be delivered) by `response.failed` with the same sequence_number, so the
   * stream never announces a response that a later GET or previous_response_id would not find. Items
   * keep the status they closed with; usage is kept.
   */
  failInsteadOf(terminal: ResponseStreamEvent, error: ResponseError): ResponseStreamEvent[] {
    if (!this.finished || terminal.sequence_number !== this.#sequenceNumber - 1) {
      throw new Error(
        `failInsteadOf: event ${terminal.sequence_number} is not the terminal event just returned.`,
      );
    }
    this.#sequenceNumber = terminal.sequence_number;
    this.#response.status = "failed";
    this.#response.error = error;
    this.#response.completed_at = null;
    this.#response.incomplete_details = null;
    this.#emitLifecycle(terminalEventType("failed"));
    return this.#flush();
  }

  /** Ends a response whose generation stopped without a finish part (its consumer went away). */
  cancel(): ResponseStreamEvent[] {
    this.#assertRunning();
    this.#closeOpenItem("incomplete");
    this.#response.status = "cancelled";
    this.#emitLifecycle(terminalEventType("cancelled"));
    return this.#flush();
  }

  // ---- one private method per item transition ----

  #appendText(text: string): void {
    if (text === "") return;
    if (this.#open?.kind !== "message") this.#openMessage();
    const open = this.#open;
    if (open?.kind !== "message") return;
    open.part.text += text;
    this.#emit({
      type: "response.output_text.delta",
      item_id: open.item.id,
      output_index: open.outputIndex,
      content_index: 0,
      delta: text,
      logprobs: [],
    });
  }

  #openMessage(): void {
    this.#closeOpenItem("completed");
    const item: MessageItem = {
      id: newId("msg"),
      type: "message",
      role: "assistant",
      status: "in_progress",
      content: [],
    };
    const outputIndex = this.#addItem(item);
    const part: OutputTextPart = { type: "output_text", text: "", annotations: [], logprobs: [] };
    item.content.push(part);
    this.#open = { kind: "message", outputIndex, item, part };
    this.#emit({
      type: "response.content_part.added",
      item_id: item.id,
      output_index: outputIndex,
      content_index: 0,
      part,
    });
  }

  #openReasoning(): void {
    this.#closeOpenItem("completed");
    const part: ReasoningTextPart = { type: "reasoning_text", text: "" };
    const item: ReasoningItem = {
      id: newId("rs"),
      type: "reasoning",
      status: "in_progress",
      summary: [],
      content: [],
    };
    const outputIndex = this.#addItem(item);
    item.content?.push(part);
    this.#open = { kind: "reasoning", outputIndex, item, part };
    this.#emit({
      type: "response.content_part.added",
      item_id: item.id,
      output_index: outputIndex,
      content_index: 0,
      part,
    });
  }

  #appendReasoning(text: string): void {
    if (text === "") return;
    if (this.#open?.kind !== "reasoning") this.#openReasoning();
    const open = this.#open;
    if (open?.kind !== "reasoning") return;
    open.part.text += text;
    this.#emit({
      type: "response.reasoning_text.delta",
      item_id: open.item.id,
      output_index: open.outputIndex,
      content_index: 0,
      delta: text,
    });
  }

  #openFunctionCall(callId: string, engineName: string): void {
    this.#closeOpenItem("completed");
    const wireName = this.#functionNames.get(engineName) ?? { name: engineName };
    if (wireName.custom === true) {
      const custom: CustomToolCallItem = {
        id: newId("ctc"),
        type: "custom_tool_call",
        status: "in_progress",
        call_id: callId,
        name: wireName.name,
        ...(wireName.namespace === undefined ? {} : { namespace: wireName.namespace }),
        input: "",
      };
      const outputIndex = this.#addItem(custom);
      this.#open = { kind: "custom_tool_call", outputIndex, item: custom, inputDone: false };
      return;
    }
    const item: FunctionCallItem = {
      id: newId("fc"),
      type: "function_call",
      status: "in_progress",
      call_id: callId,
      name: wireName.name,
      ...(wireName.namespace === undefined ? {} : { namespace: wireName.namespace }),
      arguments: "",
    };
    const outputIndex = this.#addItem(item);
    this.#open = { kind: "function_call", outputIndex, item, argumentsDone: false };
  }

  #appendArguments(callId: string, delta: string): void {
    const open = this.#open;
    if (open?.kind === "custom_tool_call" && open.item.call_id === callId) {
      if (delta === "") return;
      open.item.input += delta;
      this.#emit({
        type: "response.custom_tool_call_input.delta",
        item_id: open.item.id,
        output_index: open.outputIndex,
        delta,
      });
      return;
    }
    if (open?.kind !== "function_call" || open.item.call_id !== callId) {
      throw new Error(`Engine sent arguments for tool call '${callId}', which is not the open item.`);
    }
    if (delta === "") return;
    open.item.arguments += delta;
    this.#emit({
      type: "response.function_call_arguments.delta",
      item_id: open.item.id,
      output_index: open.outputIndex,
      delta,
    });
  }

  #endFunctionCall(callId: string, engineName: string, callArguments: string): void {
    const current = this.#open;
    if (
      (current?.kind !== "function_call" && current?.kind !== "custom_tool_call") ||
      current.item.call_id !== callId
    )
      this.#openFunctionCall(callId, engineName);
    const open = this.#open;
    if (open?.kind === "custom_tool_call") {
      open.item.input = callArguments;
      this.#emitInputDone(open);
    } else if (open?.kind === "function_call") {
      open.item.arguments = callArguments;
      this.#emitArgumentsDone(open);
    } else return;
    this.#closeOpenItem("completed");
  }

  #emitInputDone(open: Extract<OpenItem, { kind: "custom_tool_call" }>): void {
    open.inputDone = true;
    this.#emit({
      type: "response.custom_tool_call_input.done",
      item_id: open.item.id,
      output_index: open.outputIndex,
      input: open.item.input,
    });
  }

  #emitArgumentsDone(open: Extract<OpenItem, { kind: "function_call" }>): void {
    open.argumentsDone = true;
    this.#emit({
      type: "response.function_call_arguments.done",
      item_id: open.item.id,
      output_index: open.outputIndex,
      name: open.item.name,
      arguments: open.item.arguments,
    });
  }

  #openListTools(serverLabel: string): void {
    this.#closeOpenItem("completed");
    const item: McpListToolsItem = {
      id: newId("mcpl"),
      type: "mcp_list_tools",
      server_label: serverLabel,
      tools: [],
      error: null,
    };
    const outputIndex = this.#addItem(item);
    this.#open = { kind: "mcp_list_tools", outputIndex, item };
    this.#emit({ type: "response.mcp_list_tools.in_progress", item_id: item.id, output_index: outputIndex });
  }

  #endListTools(tools: McpListToolsItem["tools"], error: string | undefined): void {
    const open = this.#open;
    if (open?.kind !== "mcp_list_tools") throw new Error("mcp_list_tools ended without being open.");
    open.item.tools = tools;
    open.item.error = error ?? null;
    this.#emit({
      type: error === undefined ? "response.mcp_list_tools.completed" : "response.mcp_list_tools.failed",
      item_id: open.item.id,
      output_index: open.outputIndex,
    });
    this.#closeOpenItem("completed");
  }

  #openMcpCall(serverLabel: string, name: string, approvalRequestId: string | undefined): void {
    this.#closeOpenItem("completed");
    const item: McpCallItem = {
      id: newId("mcp"),
      type: "mcp_call",
      status: "in_progress",
      server_label: serverLabel,
      name,
      arguments: "",
      output: null,
      error: null,
      approval_request_id: approvalRequestId ?? null,
    };
    const outputIndex = this.#addItem(item);
    this.#open = { kind: "mcp_call", outputIndex, item, argumentsDone: false };
    this.#emit({ type: "response.mcp_call.in_progress", item_id: item.id, output_index: outputIndex });
  }

  #openMcpCallItem(): Extract<OpenItem, { kind: "mcp_call" }> {
    const open = this.#open;
    if (open?.kind !== "mcp_call") throw new Error("An mcp_call part arrived while no mcp_call is open.");
    return open;
  }

  #appendMcpArguments(delta: string): void {
    const open = this.#openMcpCallItem();
    if (delta === "") return;
    open.item.arguments += delta;
    this.#emit({
      type: "response.mcp_call_arguments.delta",
      item_id: open.item.id,
      output_index: open.outputIndex,
      delta,
    });
  }

  #mcpArgumentsDone(callArguments: string): void {
    const open = this.#openMcpCallItem();
    open.item.arguments = callArguments;
    open.argumentsDone = true;
    this.#emit({
      type: "response.mcp_call_arguments.done",
      item_id: open.item.id,
      output_index: open.outputIndex,
      arguments: callArguments,
    });
  }

  #endMcpCall(result: { output: string } | { error: string }): void {
    const open = this.#openMcpCallItem();
    if (!open.argumentsDone) this.#mcpArgumentsDone(open.item.arguments);
    const failed = "error" in result;
    if (failed) open.item.error = result.error;
    else open.item.output = result.output;
    this.#emit({
      type: failed ? "response.mcp_call.failed" : "response.mcp_call.completed",
      item_id: open.item.id,
      output_index: open.outputIndex,
    });
    this.#closeOpenItem(failed ? "failed" : "completed");
  }

  #addApprovalRequest(serverLabel: string, name: string, callArguments: string): void {
    this.#closeOpenItem("completed");
    const item: McpApprovalRequestItem = {
      id: newId("mcpr"),
      type: "mcp_approval_request",
      server_label: serverLabel,
      name,
      arguments: callArguments,
    };
    const outputIndex = this.#addItem(item);
    this.#emit({ type: "response.output_item.done", output_index: outputIndex, item });
  }

  #finish(reason: FinishReason, usage: Usage): void {
    const outcome = outcomeOfFinish(reason);
    this.#closeOpenItem(outcome.itemStatus);
    this.#response.status = outcome.status;
    this.#response.usage = toResponseUsage(usage);
    if (outcome.status === "incomplete") this.#response.incomplete_details = { reason: "max_output_tokens" };
    if (outcome.status === "completed") this.#response.completed_at = unixSeconds();
    this.#emitLifecycle(terminalEventType(outcome.status));
  }

  #closeOpenItem(status: ItemStatus | "failed"): void {
    const open = this.#open;
    if (open === undefined) return;
    this.#open = undefined;
    const location = { item_id: open.item.id, output_index: open.outputIndex, content_index: 0 };
    switch (open.kind) {
      case "message":
        this.#emit({ type: "response.output_text.done", ...location, text: open.part.text, logprobs: [] });
        this.#emit({ type: "response.content_part.done", ...location, part: open.part });
        break;
      case "reasoning":
        this.#emit({ type: "response.reasoning_text.done", ...location, text: open.part.text });
        this.#emit({ type: "response.content_part.done", ...location, part: open.part });
        this.#summarizeReasoning(open.item, open.outputIndex, open.part.text);
        if (this.#reasoning.seal !== undefined)
          open.item.encrypted_content = this.#reasoning.seal(open.item.id, open.part.text);
        break;
      case "function_call":
        if (!open.argumentsDone) this.#emitArgumentsDone(open);
        break;
      case "custom_tool_call":
        if (!open.inputDone) this.#emitInputDone(open);
        break;
      case "mcp_list_tools":
        break;
      case "mcp_call":
        if (!open.argumentsDone) this.#mcpArgumentsDone(open.item.arguments);
        break;
      default:
        assertNever(open, "open item");
    }
    if (open.kind === "mcp_call") open.item.status = status;
    else if (open.kind !== "mcp_list_tools") open.item.status = status === "failed" ? "incomplete" : status;
    this.#emit({ type: "response.output_item.done", output_index: open.outputIndex, item: open.item });
  }

  /**
   * The summary of a closing reasoning item (when asked for): one `summary_text` part holding the reasoning
   * text itself (see reasoning-output.ts), streamed as part added → text delta → text done → part done.
   */
  #summarizeReasoning(item: ReasoningItem, outputIndex: number, reasoningText: string): void {
    const mode = this.#reasoning.summary;
    if (mode === undefined) return;
    const text = reasoningSummaryText(reasoningText, mode);
    if (text === "") return;
    const location = { item_id: item.id, output_index: outputIndex, summary_index: 0 };
    this.#emit({
      type: "response.reasoning_summary_part.added",
      ...location,
      part: { type: "summary_text", text: "" },
    });
    this.#emit({ type: "response.reasoning_summary_text.delta", ...location, delta: text });
    this.#emit({ type: "response.reasoning_summary_text.done", ...location, text });
    const part: SummaryTextPart = { type: "summary_text", text };
    item.summary.push(part);
    this.#emit({ type: "response.reasoning_summary_part.done", ...location, part });
  }

  /** Appends an item to `output` (its position is its output_index) and announces it. */
  #addItem(item: OutputItem): number {
    const outputIndex = this.#response.output.push(item) - 1;
    this.#emit({ type: "response.output_item.added", output_index: outputIndex, item });
    return outputIndex;
  }

  #emitLifecycle(type: LifecycleEventType): void {
    this.#emit({ type, response: this.#response });
  }

  /**
   * The one place sequence numbers are assigned. Payloads are copied, so later changes to the live
   * snapshot never alter an event already handed out (buffered events are replayed much later).
   */
  #emit(body: UnnumberedStreamEvent): void {
    // Delta events are built fresh from primitives (and a new empty `logprobs`) at each call, so they
    // share nothing with the live snapshot: skipping the clone there saves a structuredClone per token.
    const { type, ...fields } = body.type.endsWith(".delta") ? body : structuredClone(body);
    this.#pending.push({ type, sequence_number: this.#sequenceNumber++, ...fields } as ResponseStreamEvent);
  }

  #flush(): ResponseStreamEvent[] {
    const events = this.#pending;
    this.#pending = [];
    return events;
  }

  #assertRunning(): void {
    if (this.finished) {
      throw new Error(`Response ${this.#response.id} already ended as ${this.#response.status}.`);
    }
  }
}
