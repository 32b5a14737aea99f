/**
 * The built-in demo model's listing rules (models/demo.ts) over fixed model sources: listed only while no
 * usable model exists unless --demo / --no-demo say otherwise, the start-up warnings, the `lmhost get` hint
 * in model_not_found, and the plain chat template it runs with (texts only, BOS and EOS stop a story).
 */
import { LlamaText, SpecialToken } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../../src/cli/main.js";
import { flagsToConfig } from "../../src/cli/serve.js";
import { resolveConfig } from "../../src/config.js";
import { PlainTextChatWrapper } from "../../src/engine/llama/plain-chat-wrapper.js";
import { DEMO_MODEL_ID, DemoModelSource, demoModelPath, withDemoModel } from "../../src/models/demo.js";
import { ModelManager } from "../../src/models/manager.js";
import type { ModelEntry, ModelLoader, ModelSource } from "../../src/models/types.js";
import { ApiError } from "../../src/shared/errors.js";
import { createLogger, silentLogger } from "../../src/shared/logger.js";
import { storiesChatmlModel } from "../helpers/paths.js";

const source = (entries: ModelEntry[]): ModelSource => ({ list: async () => entries });
const real: ModelEntry = { id: "qwen/qwen3", path: "/models/qwen3.gguf", sizeBytes: 1000, publisher: "qwen" };
const broken: ModelEntry = { ...real, id: "broken", error: "not a GGUF file" };

const ids = async (models: ModelSource) => (await models.list()).map((entry) => entry.id);

function capturingLogger() {
  const lines: string[] = [];
  return { lines, logger: createLogger("info", (line) => lines.push(line)) };
}

describe("the demo model source", () => {
  it("lists the bundled model as lmhost-demo, with its metadata and the plain template, when no model exists", async () => {
    const [demo] = await new DemoModelSource(source([])).list();
    expect(demoModelPath).toBe(storiesChatmlModel);
    expect(demo).toMatchObject({
      id: DEMO_MODEL_ID,
      path: storiesChatmlModel,
      publisher: "lmhost",
      architecture: "llama",
      contextLength: 2048,
      chatTemplate: "plain",
    });
    expect(demo?.error).toBeUndefined();
  });

  it("is not listed beside a usable model, is beside broken files only, and follows --demo / --no-demo", async () => {
    expect(await ids(new DemoModelSource(source([real])))).toEqual(["qwen/qwen3"]);
    expect(await ids(new DemoModelSource(source([broken])))).toEqual(["broken", DEMO_MODEL_ID]);
    expect(await ids(new DemoModelSource(source([real]), true))).toEqual(["qwen/qwen3", DEMO_MODEL_ID]);
    expect(await ids(new DemoModelSource(source([]), false))).toEqual([]);
  });

  it("decides on every listing: a model that arrives while the server runs replaces the demo", async () => {
    const entries: ModelEntry[] = [];
    const models = new DemoModelSource(source(entries));
    expect(await ids(models)).toEqual([DEMO_MODEL_ID]);
    entries.push(real);
    expect(await ids(models)).toEqual(["qwen/qwen3"]);
  });

  it("warns at start-up: the demo banner, or with --no-demo that nothing is served, naming `lmhost get`", async () => {
    const demo = capturingLogger();
    await withDemoModel(source([]), undefined, demo.logger);
    const banner = demo.lines.join("");
    expect(demo.lines.length).toBeGreaterThan(4);
    expect(demo.lines.every((line) => line.includes(" warn "))).toBe(true);
    expect(banner).toContain("DEMO MODEL: No model was found");
    expect(banner).toContain("lmhost get Qwen/Qwen3-0.6B-GGUF");

    const forced = capturingLogger();
    await withDemoModel(source([real]), true, forced.logger);
    expect(forced.lines.join("")).toContain("lmhost-demo is served because --demo was given");

    const none = capturingLogger();
    await withDemoModel(source([]), false, none.logger);
    expect(none.lines).toHaveLength(1);
    expect(none.lines[0]).toContain("No model is available");
    expect(none.lines[0]).toContain("lmhost get <user/repo>");

    const quiet = capturingLogger();
    await withDemoModel(source([real]), undefined, quiet.logger);
    expect(quiet.lines).toEqual([]);
  });
});

describe("--demo / --no-demo", () => {
  it("reach the config as true / false, and leave it unset (only when no model) without either", async () => {
    const parsed: unknown[] = [];
    for (const args of [[], ["--demo"], ["--no-demo"]]) {
      const program = buildProgram().exitOverride();
      program.commands
        .find((command) => command.name() === "serve")
        // serve takes model files as plain arguments first (`lmhost serve model.gguf`), then the flags.
        ?.action((_modelFiles: string[], flags: Parameters<typeof flagsToConfig>[0]) => {
          parsed.push(resolveConfig(flagsToConfig(flags), {}).demo);
        });
      await program.parseAsync(["node", "lmhost", "serve", "--data-dir", "/nonexistent-lmhost", ...args]);
    }
    expect(parsed).toEqual([undefined, true, false]);
  });
});

describe("model_not_found and the `lmhost get` hint", () => {
  const loader: ModelLoader<object> = { load: async () => ({}), unload: async () => undefined };
  const notFound = async (models: ModelSource): Promise<string> => {
    const manager = new ModelManager({
      source: models,
      loader,
      ttlSeconds: 60,
      maxLoaded: 1,
      logger: silentLogger,
    });
    try {
      await manager.get("gpt-4o");
    } catch (error) {
      expect(error).toBeInstanceOf(ApiError);
      expect(error).toMatchObject({ status: 404, code: "model_not_found" });
      return (error as ApiError).message;
    } finally {
      await manager.close();
    }
    throw new Error("expected model_not_found");
  };

  it("names `lmhost get` when no model or only the demo is served, not when real models are", async () => {
    expect(await notFound(source([]))).toContain("No models are available. Get a model with `lmhost get");
    expect(await notFound(new DemoModelSource(source([])))).toMatch(
      /Available models: lmhost-demo\. Get a model with `lmhost get <user\/repo>`/,
    );
    expect(await notFound(source([real]))).not.toContain("lmhost get");
  });
});

describe("the plain chat template", () => {
  const render = (history: Parameters<PlainTextChatWrapper["generateContextState"]>[0]["chatHistory"]) =>
    new PlainTextChatWrapper().generateContextState({ chatHistory: history });

  it("renders the texts alone after BOS: the model's turn continues the last text directly", () => {
    const state = render([
      { type: "system", text: "A story." },
      { type: "user", text: "Once upon a time" },
      { type: "model", response: [", there was a cat."] },
      { type: "user", text: "The end" },
      { type: "model", response: [] },
    ]);
    expect(state.contextText.toJSON()).toEqual(
      LlamaText([new SpecialToken("BOS"), "A story.\nOnce upon a time, there was a cat.\nThe end"]).toJSON(),
    );
  });

  it("stops on EOS and on BOS (a TinyStories model ends a story by starting the next one)", () => {
    const triggers = (render([{ type: "user", text: "Once upon a time" }]).stopGenerationTriggers ?? []).map(
      (trigger) => LlamaText(trigger).toJSON(),
    );
    expect(triggers).toEqual([
      LlamaText(new SpecialToken("EOS")).toJSON(),
      LlamaText(new SpecialToken("BOS")).toJSON(),
    ]);
  });
});
