/**
 * Turns a request body that fails its zod schema into one OpenAI-style 400 whose `param` is the exact
 * field path (`input[2].role`, `text.format.schema`, `metadata.key`). Unions are unwrapped to the branch
 * the client evidently meant (the one whose errors reach deepest), so a bad role inside an input item is
 * reported at that role, not as "input: invalid".
 */
import type { z } from "zod";
import { ApiError, assertNever } from "../../../shared/errors.js";

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

/**
 * "Did you mean" for fields of the Chat Completions and Anthropic Messages APIs sent to /v1/responses.
 * They stay 400s, as OpenAI answers them (400 unknown_parameter naming the field): accepting them would
 * make a body that fails on OpenAI pass here. The hint says what the Responses API calls them.
 */
export const responsesFieldHints: Readonly<Record<string, string>> = {
  messages:
    "Did you mean 'input'? /v1/responses takes the conversation as 'input' (a string, or a list of {role, content} messages); Chat Completions bodies go to /v1/chat/completions.",
  max_tokens: "Did you mean 'max_output_tokens'?",
  max_completion_tokens: "Did you mean 'max_output_tokens'?",
  response_format: 'Did you mean \'text.format\' (e.g. {"text": {"format": {"type": "json_schema", ...}}})?',
  functions: 'Did you mean \'tools\' (each {"type": "function", "name", "parameters"})?',
  function_call: "Did you mean 'tool_choice'?",
  reasoning_effort: "Did you mean 'reasoning' ({\"effort\": ...})?",
  system: "Did you mean 'instructions'?",
};

/**
 * Refuses anything but a JSON object whose top-level keys the schema knows, then validates it. `hints`: what
 * to say of an unknown field a client of another API would send (e.g. responsesFieldHints on /v1/responses);
 * other endpoints pass none, since those hints name Responses fields.
 */
export function parseRequestBody<Schema extends z.ZodObject>(
  schema: Schema,
  body: unknown,
  hints: Readonly<Record<string, string>> = {},
): z.output<Schema> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw ApiError.invalid("The request body must be a JSON object.", null, "invalid_json");
  }
  const known = new Set(Object.keys(schema.shape));
  const unknownKeys = Object.keys(body).filter((key) => !known.has(key));
  // A field of another API (Chat Completions, Anthropic Messages) is named first, with what to send instead.
  const unknownKey = unknownKeys.find((key) => Object.hasOwn(hints, key)) ?? unknownKeys[0];
  if (unknownKey !== undefined) {
    const hint = Object.hasOwn(hints, unknownKey) ? `. ${hints[unknownKey]}` : "";
    throw ApiError.invalid(
      `Unrecognized request argument supplied: ${unknownKey}${hint}`,
      unknownKey,
      "unknown_parameter",
    );
  }
  const parsed = schema.safeParse(body, { reportInput: true });
  if (parsed.success) return parsed.data;
  throw toValidationError(parsed.error.issues);
}

export function toValidationError(issues: readonly Issue[]): ApiError {
  const first = issues[0];
  if (first === undefined) return ApiError.invalid("The request is invalid.");
  const { issue, path } = mostSpecific(first, []);
  const param = formatParam(path);
  return ApiError.invalid(describeIssue(issue, param), param === "" ? null : param, codeOf(issue));
}

/** `["input", 2, "role"]` → `input[2].role`. */
export function formatParam(path: Path): string {
  let param = "";
  for (const segment of path) {
    if (typeof segment === "number") param += `[${segment}]`;
    else param += param === "" ? String(segment) : `.${String(segment)}`;
  }
  return param;
}

function depth(branch: readonly Issue[]): number {
  return Math.max(...branch.map((issue) => issue.path.length));
}

function mostSpecific(issue: Issue, base: Path): { issue: Issue; path: Path } {
  const path = [...base, ...issue.path];
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return { issue, path };
  const ranked = [...issue.errors]
    .filter((branch) => branch.length > 0)
    .sort((left, right) => {
      const byDepth = depth(right) - depth(left);
      if (byDepth !== 0) return byDepth;
      // At equal depth an "invalid value" says more than "wrong type".
      const typeOnly = (branch: readonly Issue[]) =>
        branch.every((entry) => entry.code === "invalid_type") ? 1 : 0;
      return typeOnly(left) - typeOnly(right);
    });
  const best = ranked[0];
  const second = ranked[1];
  const allTypeMismatches = issue.errors.every((branch) =>
    branch.every((entry) => entry.code === "invalid_type" && entry.path.length === 0),
  );
  if (best === undefined || best[0] === undefined || allTypeMismatches) return { issue, path };
  if (
    second !== undefined &&
    depth(second) === depth(best) &&
    depth(best) === 0 &&
    best.every((entry) => entry.code === "invalid_type")
  ) {
    return { issue, path };
  }
  return mostSpecific(best[0], path);
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  }
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${String(value)}`;
  return typeof value;
}

const expectedNames: Record<string, string> = {
  int: "an integer",
  number: "a number",
  string: "a string",
  boolean: "a boolean",
  object: "an object",
  array: "an array",
  record: "an object",
};

function describeIssue(issue: Issue, param: string): string {
  const name = param === "" ? "the request body" : `'${param}'`;
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case "invalid_type":
      if (input === undefined) return `Missing required parameter: ${name}.`;
      return `Invalid type for ${name}: expected ${expectedNames[issue.expected] ?? issue.expected}, but got ${describeValue(input)} instead.`;
    case "too_big":
    case "too_small": {
      const limit = issue.code === "too_big" ? issue.maximum : issue.minimum;
      const comparison =
        issue.code === "too_big" ? (issue.inclusive ? "<=" : "<") : issue.inclusive ? ">=" : ">";
      if (issue.origin === "string") {
        return `Invalid ${name}: the string must have ${comparison} ${String(limit)} characters.`;
      }
      if (issue.origin === "array" || issue.origin === "set") {
        return `Invalid ${name}: the array must have ${comparison} ${String(limit)} items.`;
      }
      return `Invalid ${name}: expected a value ${comparison} ${String(limit)}, but got ${String(input)} instead.`;
    }
    case "invalid_value":
      return `Invalid value for ${name}: ${JSON.stringify(input)}. Supported values are: ${issue.values.map((value) => JSON.stringify(value)).join(", ")}.`;
    case "invalid_union":
      if ("discriminator" in issue && issue.discriminator !== undefined) {
        const options = (issue as { options?: unknown[] }).options ?? [];
        const given =
          input !== null && typeof input === "object"
            ? (input as Record<string, unknown>)[issue.discriminator]
            : input;
        return given === undefined
          ? `Missing required parameter: ${name}.`
          : `Invalid value for ${name}: ${JSON.stringify(given)}. Expected one of: ${options.map((option) => JSON.stringify(option)).join(", ")}.`;
      }
      {
        const expected = issue.errors.flatMap((branch) =>
          branch.flatMap((entry) =>
            entry.code === "invalid_type" && entry.path.length === 0 ? [entry.expected] : [],
          ),
        );
        const accepted = [...new Set(expected)].map((type) => expectedNames[type] ?? type);
        if (input === undefined) return `Missing required parameter: ${name}.`;
        return accepted.length > 0
          ? `Invalid type for ${name}: expected ${accepted.join(" or ")}, but got ${describeValue(input)} instead.`
          : `Invalid ${name}: got ${describeValue(input)}, which matches none of the accepted forms.`;
      }
    case "invalid_format":
    case "custom":
    case "not_multiple_of":
    case "unrecognized_keys":
    case "invalid_key":
    case "invalid_element":
      return `Invalid ${name}: ${issue.message}.`;
    default:
      return assertNever(issue, "zod issue");
  }
}

function codeOf(issue: Issue): string | null {
  const input = (issue as { input?: unknown }).input;
  if (issue.code === "invalid_type") {
    return input === undefined ? "missing_required_parameter" : "invalid_type";
  }
  if (issue.code === "invalid_union") {
    if ("discriminator" in issue) return "invalid_value";
    return input === undefined ? "missing_required_parameter" : "invalid_type";
  }
  if (issue.code === "invalid_value") return "invalid_value";
  return null;
}
