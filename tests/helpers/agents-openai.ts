/**
 * The `openai` package as @openai/agents-openai resolves it. lmhost's own tests use openai v6; the Agents
 * SDK needs v7, which npm installs beside it, so this is the client the SDK is built against.
 */
import { createRequire } from "node:module";
import type { setDefaultOpenAIClient } from "@openai/agents";

export type AgentsOpenAIClient = Parameters<typeof setDefaultOpenAIClient>[0];

interface AgentsOpenAIModule {
  OpenAI: new (options: {
    baseURL: string;
    apiKey: string;
    maxRetries: number;
    fetch: (url: string | URL | Request, init?: RequestInit) => Promise<Response>;
  }) => AgentsOpenAIClient;
}

const requireFromHere = createRequire(import.meta.url);
/** Where @openai/agents-openai resolves its own dependencies from. */
export const requireFromAgents = createRequire(requireFromHere.resolve("@openai/agents-openai"));
export const agentsOpenAI = requireFromAgents("openai") as AgentsOpenAIModule;

/** An Agents SDK client whose requests go to `handle` (e.g. an app's `request`) instead of the network. */
export function agentsClientFor(handle: (url: string, init?: RequestInit) => Response | Promise<Response>) {
  return new agentsOpenAI.OpenAI({
    baseURL: "http://lmhost.test/v1",
    apiKey: "unused",
    maxRetries: 0,
    fetch: (url, init) => Promise.resolve(handle(String(url), init)),
  });
}
