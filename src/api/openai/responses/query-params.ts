/**
 * Query-string parameters of the Responses routes (`limit`, `order`, `after`, `stream`,
 * `starting_after`): each bad value is a 400 naming the parameter.
 */
import { ApiError } from "../../../shared/errors.js";
import { INCLUDABLE } from "./request-schema.js";

export function parseBooleanQuery(value: string | undefined, name: string): boolean {
  if (value === undefined || value === "" || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw ApiError.invalid(`Invalid '${name}': expected true or false, got '${value}'.`, name);
}

export function parseIntegerQuery(
  value: string | undefined,
  name: string,
  limits: { min: number; max?: number; fallback: number },
): number {
  if (value === undefined || value === "") return limits.fallback;
  const number = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
  const tooBig = limits.max !== undefined && number > limits.max;
  if (!Number.isSafeInteger(number) || number < limits.min || tooBig) {
    const range = limits.max === undefined ? `>= ${limits.min}` : `between ${limits.min} and ${limits.max}`;
    throw ApiError.invalid(`Invalid '${name}': expected an integer ${range}, got '${value}'.`, name);
  }
  return number;
}

export function parseOrderQuery(value: string | undefined): "asc" | "desc" {
  if (value === undefined || value === "" || value === "desc") return "desc";
  if (value === "asc") return "asc";
  throw ApiError.invalid(`Invalid 'order': expected 'asc' or 'desc', got '${value}'.`, "order");
}

/** `include` (or `include[]`) values of a query: each one OpenAI lists, else a 400 naming `include[i]`. */
export function checkIncludeQuery(values: readonly string[]): void {
  values.forEach((value, index) => {
    if (!(INCLUDABLE as readonly string[]).includes(value)) {
      throw ApiError.invalid(
        `Invalid 'include[${index}]': expected one of ${INCLUDABLE.map((item) => `'${item}'`).join(", ")}, got '${value}'.`,
        `include[${index}]`,
      );
    }
  });
}
