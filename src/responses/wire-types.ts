/**
 * The Responses API wire shapes the core produces and consumes: validated input items, stored/output
 * items, the Response object and the stream events. Written by hand (not inferred from the zod request
 * schema) so that `responses/` does not depend on `api/`; the request schema's output is checked against
 * these types at compile time. Object shapes are `type` aliases so they fit the store's JSON item type.
 */

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type ItemStatus = "in_progress" | "completed" | "incomplete";
export type MessageRole = "user" | "assistant" | "system" | "developer";

// ---- Content parts ----------------------------------------------------------------------------------

export type InputTextPart = { type: "input_text"; text: string };
export type OutputTextPart = {
  type: "output_text";
  text: string;
  annotations: JsonValue[];
  logprobs: JsonValue[];
};
export type RefusalPart = { type: "refusal"; refusal: string };
export type SummaryTextPart = { type: "summary_text"; text: string };
export type ReasoningTextPart = { type: "reasoning_text"; text: string };
export type MessageContentPart = InputTextPart | OutputTextPart | RefusalPart;
/** A text part as a request may send it (output_text without annotations, in any role). */
export type MessageInputPart = { type: "input_text" | "output_text"; text: string } | RefusalPart;

// ---- Input items as a validated request carries them (ids optional, short forms normalised) ---------

export type MessageInputItem = {
  type: "message";
  id?: string | undefined;
  role: MessageRole;
  content: string | MessageInputPart[];
  phase?: "commentary" | "final_answer" | null | undefined;
};
export type ItemReferenceInputItem = { type: "item_reference"; id: string };
export type FunctionCallInputItem = {
  type: "function_call";
  id?: string | undefined;
  call_id: string;
  name: string;
  namespace?: string | undefined;
  arguments: string;
};
export type FunctionCallOutputInputItem = {
  type: "function_call_output";
  id?: string | null | undefined;
  call_id: string;
  output: string | InputTextPart[];
};
export type ReasoningInputItem = {
  type: "reasoning";
  id?: string | undefined;
  summary: SummaryTextPart[];
  content?: ReasoningTextPart[] | undefined;
  encrypted_content?: string | null | undefined;
};
export type CustomToolCallInputItem = {
  type: "custom_tool_call";
  id?: string | undefined;
  call_id: string;
  name: string;
  namespace?: string | undefined;
  input: string;
};
export type CustomToolCallOutputInputItem = {
  type: "custom_tool_call_output";
  id?: string | undefined;
  call_id: string;
  output: string | InputTextPart[];
};

export type McpApprovalResponseInputItem = {
  type: "mcp_approval_response";
  id?: string | null | undefined;
  approval_request_id: string;
  approve: boolean;
  reason?: string | null | undefined;
};
/** MCP items a stateless client re-sends from an earlier response's output. */
export type McpOutputInputItem = McpListToolsItem | McpCallItem | McpApprovalRequestItem;

export type InputItem =
  | MessageInputItem
  | McpApprovalResponseInputItem
  | McpOutputInputItem
  | ItemReferenceInputItem
  | FunctionCallInputItem
  | FunctionCallOutputInputItem
  | ReasoningInputItem
  | CustomToolCallInputItem
  | CustomToolCallOutputInputItem;

// ---- Items with ids, as stored, listed by input_items and returned in `output` ----------------------

export type MessageItem = {
  id: string;
  type: "message";
  role: MessageRole;
  status: ItemStatus;
  content: MessageContentPart[];
  phase?: "commentary" | "final_answer";
};
export type FunctionCallItem = {
  id: string;
  type: "function_call";
  status: ItemStatus;
  call_id: string;
  name: string;
  namespace?: string;
  arguments: string;
};
export type FunctionCallOutputItem = {
  id: string;
  type: "function_call_output";
  status: ItemStatus;
  call_id: string;
  output: string | InputTextPart[];
};
export type ReasoningItem = {
  id: string;
  type: "reasoning";
  status?: ItemStatus;
  summary: SummaryTextPart[];
  content?: ReasoningTextPart[];
  encrypted_content?: string | null;
};
export type CustomToolCallItem = {
  id: string;
  type: "custom_tool_call";
  status: ItemStatus;
  call_id: string;
  name: string;
  namespace?: string;
  input: string;
};
export type CustomToolCallOutputItem = {
  id: string;
  type: "custom_tool_call_output";
  status: ItemStatus;
  call_id: string;
  output: string | InputTextPart[];
};

/** Every item a conversation can hold (stored input items and output items alike). */
/** A tool an MCP server offers, as `mcp_list_tools` lists it. */
export type McpListedTool = {
  name: string;
  description: string | null;
  input_schema: Record<string, unknown>;
  annotations: Record<string, unknown> | null;
};
export type McpListToolsItem = {
  id: string;
  type: "mcp_list_tools";
  server_label: string;
  tools: McpListedTool[];
  error: string | null;
};
export type McpCallStatus = "in_progress" | "completed" | "incomplete" | "calling" | "failed";
export type McpCallItem = {
  id: string;
  type: "mcp_call";
  status: McpCallStatus;
  server_label: string;
  name: string;
  arguments: string;
  output: string | null;
  error: string | null;
  approval_request_id: string | null;
};
export type McpApprovalRequestItem = {
  id: string;
  type: "mcp_approval_request";
  server_label: string;
  name: string;
  arguments: string;
};
export type McpApprovalResponseItem = {
  id: string;
  type: "mcp_approval_response";
  approval_request_id: string;
  approve: boolean;
  reason: string | null;
};
export type McpItem = McpListToolsItem | McpCallItem | McpApprovalRequestItem | McpApprovalResponseItem;

export type ConversationWireItem =
  | McpItem
  | MessageItem
  | FunctionCallItem
  | FunctionCallOutputItem
  | ReasoningItem
  | CustomToolCallItem
  | CustomToolCallOutputItem;

/**
 * Items the model produces. The tools issue adds custom_tool_call and the MCP items (mcp_list_tools,
 * mcp_call, mcp_approval_request) here; the event writer then fails to compile until it handles them.
 */
export type OutputItem =
  | MessageItem
  | ReasoningItem
  | FunctionCallItem
  | CustomToolCallItem
  | McpListToolsItem
  | McpCallItem
  | McpApprovalRequestItem;

// ---- The Response object ---------------------------------------------------------------------------

export type ResponseStatus = "queued" | "in_progress" | "completed" | "incomplete" | "failed" | "cancelled";

/**
 * OpenAI's ResponseErrorCode values that a local server can produce. Only values of OpenAI's enum are
 * used, since typed clients may refuse others (a graceful shutdown is `server_error`, saying so).
 */
export type ResponseErrorCode = "server_error" | "rate_limit_exceeded" | "invalid_prompt";

export type ResponseError = { code: ResponseErrorCode; message: string };

export type ResponseUsage = {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number; cache_write_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
};

export type TextFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; name: string; schema: JsonObject; strict: boolean; description?: string };

/** The fields a Response repeats from its request (identical in every snapshot of one response). */
export type ResponseEcho = {
  instructions: string | null;
  model: string;
  tools: JsonObject[];
  tool_choice: JsonValue;
  parallel_tool_calls: boolean;
  temperature: number;
  top_p: number;
  presence_penalty: number;
  frequency_penalty: number;
  top_logprobs: number;
  max_output_tokens: number | null;
  max_tool_calls: number | null;
  previous_response_id: string | null;
  reasoning: { effort: string | null; summary: string | null };
  text: { format: TextFormat; verbosity: "low" | "medium" | "high" };
  truncation: "auto" | "disabled";
  store: boolean;
  background: boolean;
  metadata: Record<string, string>;
  user: string | null;
  safety_identifier: string | null;
  prompt_cache_key: string | null;
  prompt_cache_retention: "in_memory" | "24h" | null;
  service_tier: string;
  /** Reusable prompts, conversations and moderation are refused at validation, so always null. */
  prompt: null;
  conversation: null;
  moderation: null;
};

export type ResponseObject = {
  id: string;
  object: "response";
  created_at: number;
  completed_at: number | null;
  status: ResponseStatus;
  error: ResponseError | null;
  incomplete_details: { reason: "max_output_tokens" } | null;
  output: OutputItem[];
  usage: ResponseUsage | null;
} & ResponseEcho;

// ---- Stream events ---------------------------------------------------------------------------------

export type LifecycleEventType =
  | "response.created"
  | "response.queued"
  | "response.in_progress"
  | "response.completed"
  | "response.incomplete"
  | "response.failed";

type EventBody =
  | { type: LifecycleEventType; response: ResponseObject }
  | {
      type: "response.output_item.added" | "response.output_item.done";
      output_index: number;
      item: OutputItem;
    }
  | {
      type: "response.content_part.added" | "response.content_part.done";
      item_id: string;
      output_index: number;
      content_index: number;
      part: OutputTextPart | ReasoningTextPart;
    }
  | {
      type: "response.output_text.delta";
      item_id: string;
      output_index: number;
      content_index: number;
      delta: string;
      logprobs: JsonValue[];
    }
  | {
      type: "response.output_text.done";
      item_id: string;
      output_index: number;
      content_index: number;
      text: string;
      logprobs: JsonValue[];
    }
  | {
      type: "response.reasoning_text.delta";
      item_id: string;
      output_index: number;
      content_index: number;
      delta: string;
    }
  | {
      type: "response.reasoning_text.done";
      item_id: string;
      output_index: number;
      content_index: number;
      text: string;
    }
  | {
      type: "response.reasoning_summary_part.added" | "response.reasoning_summary_part.done";
      item_id: string;
      output_index: number;
      summary_index: number;
      part: SummaryTextPart;
    }
  | {
      type: "response.reasoning_summary_text.delta";
      item_id: string;
      output_index: number;
      summary_index: number;
      delta: string;
    }
  | {
      type: "response.reasoning_summary_text.done";
      item_id: string;
      output_index: number;
      summary_index: number;
      text: string;
    }
  | { type: "response.function_call_arguments.delta"; item_id: string; output_index: number; delta: string }
  | {
      type: "response.function_call_arguments.done";
      item_id: string;
      output_index: number;
      name: string;
      arguments: string;
    }
  | {
      type:
        | "response.mcp_list_tools.in_progress"
        | "response.mcp_list_tools.completed"
        | "response.mcp_list_tools.failed"
        | "response.mcp_call.in_progress"
        | "response.mcp_call.completed"
        | "response.mcp_call.failed";
      item_id: string;
      output_index: number;
    }
  | { type: "response.custom_tool_call_input.delta"; item_id: string; output_index: number; delta: string }
  | { type: "response.custom_tool_call_input.done"; item_id: string; output_index: number; input: string }
  | { type: "response.mcp_call_arguments.delta"; item_id: string; output_index: number; delta: string }
  | { type: "response.mcp_call_arguments.done"; item_id: string; output_index: number; arguments: string };

/** A stream event before the writer numbers it. */
export type UnnumberedStreamEvent = EventBody;
export type ResponseStreamEvent = EventBody & { sequence_number: number };
export type LifecycleEvent = Extract<ResponseStreamEvent, { response: ResponseObject }>;

const terminalEventTypes: ReadonlySet<string> = new Set([
  "response.completed",
  "response.incomplete",
  "response.failed",
]);

/** The last event of every response stream: the response reached a final status. */
export function isTerminalEvent(event: ResponseStreamEvent): event is LifecycleEvent {
  return terminalEventTypes.has(event.type);
}

export function isLifecycleEvent(event: ResponseStreamEvent): event is LifecycleEvent {
  return "response" in event;
}
