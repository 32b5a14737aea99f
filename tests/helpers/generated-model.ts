/**
 * A model written by bench/make-model.ts into a temporary folder for one test file, with a CPU llama to load
 * it, and node-llama-cpp's estimate of a context on it as lmhost's loader asks for one.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll } from "vitest";
import { makeModel, type ModelShape } from "../../bench/make-model.js";

export interface GeneratedModel {
  readonly llama: Llama;
  readonly modelPath: string;
  /** node-llama-cpp's CPU memory estimate for each `[contextSize, sequences]` (flash attention off). */
  estimates(...contexts: [number, number][]): Promise<number[]>;
}

/** Writes `shape` before the file's tests and deletes it after; read the fields inside tests only. */
export function useGeneratedModel(shape: ModelShape, prefix: string): GeneratedModel {
  let dir: string | undefined;
  let llama: Llama | undefined;
  let modelPath: string | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    modelPath = await makeModel(shape, { dir });
    llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  });
  afterAll(async () => {
    await llama?.dispose();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  const generated: GeneratedModel = {
    get llama() {
      if (llama === undefined) throw new Error("the generated model is ready only inside tests");
      return llama;
    },
    get modelPath() {
      if (modelPath === undefined) throw new Error("the generated model is ready only inside tests");
      return modelPath;
    },
    async estimates(...contexts) {
      const model = await generated.llama.loadModel({ modelPath: generated.modelPath });
      try {
        const bytes: number[] = [];
        for (const [contextSize, sequences] of contexts) {
          const estimate = await model.fileInsights.estimateContextResourceRequirementsV2({
            contextSize,
            modelGpuLayers: 0,
            sequences,
            flashAttention: false,
          });
          bytes.push(estimate.cpuRam);
        }
        return bytes;
      } finally {
        await model.dispose();
      }
    },
  };
  return generated;
}
