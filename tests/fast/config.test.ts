/** Configuration precedence (config.json < environment < flags), validation and CLI flag mapping. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { flagsToConfig } from "../../src/cli/serve.js";
import { allowedHostList, corsOriginList, modelsDirOf, resolveConfig } from "../../src/config.js";
import { startedByNpm } from "../../src/cli/parent-watch.js";
import { expandCpuList } from "../../src/shared/cpu-affinity.js";

function dataDirWith(config: unknown): string {
  const dataDir = mkdtempSync(path.join(tmpdir(), "lmhost-config-"));
  writeFileSync(path.join(dataDir, "config.json"), JSON.stringify(config));
  return dataDir;
}

describe("resolveConfig", () => {
  it("has the documented defaults", () => {
    const config = resolveConfig({ dataDir: mkdtempSync(path.join(tmpdir(), "lmhost-empty-")) }, {});
    expect(config).toMatchObject({
      host: "127.0.0.1",
      port: 1234,
      maxQueue: 64,
      ttlSeconds: 3600,
      maxLoaded: 1,
      cors: false,
      bodyLimitBytes: 20 * 1024 * 1024,
      logLevel: "info",
    });
    expect(config.apiKey).toBeUndefined();
    // Unset: the server takes 4 sequences, and the loader fewer when memory is short.
    expect(config.parallel).toBeUndefined();
    expect(modelsDirOf(config)).toBe(path.join(config.dataDir, "models"));
  });

  it("lets flags override the environment, and the environment override config.json", () => {
    const dataDir = dataDirWith({ port: 1111, parallel: 2, apiKey: "from-file", modelsDir: "/file/models" });
    const fileOnly = resolveConfig({ dataDir }, {});
    expect(fileOnly).toMatchObject({
      port: 1111,
      parallel: 2,
      apiKey: "from-file",
      modelsDir: "/file/models",
    });
    const environment = { LMHOST_PORT: "2222", LMHOST_API_KEY: "from-env", LMHOST_MODELS_DIR: "/env/models" };
    const withEnvironment = resolveConfig({ dataDir }, environment);
    expect(withEnvironment).toMatchObject({
      port: 2222,
      parallel: 2,
      apiKey: "from-env",
      modelsDir: "/env/models",
    });
    const withFlags = resolveConfig(
      flagsToConfig({ dataDir, port: "3333", apiKey: "from-flag", parallel: "8" }),
      environment,
    );
    expect(withFlags).toMatchObject({
      port: 3333,
      parallel: 8,
      apiKey: "from-flag",
      modelsDir: "/env/models",
    });
  });

  it("maps only the flags that were given", () => {
    expect(flagsToConfig({})).toEqual({});
    expect(flagsToConfig({ ttl: "30", maxLoaded: "2", model: ["a.gguf", "b.gguf"], cors: true })).toEqual({
      ttlSeconds: 30,
      maxLoaded: 2,
      models: ["a.gguf", "b.gguf"],
      cors: true,
    });
    expect(flagsToConfig({ pinCpu: true })).toEqual({ pinCpu: true });
    expect(flagsToConfig({ cors: "http://localhost:5173", allowedHosts: "lmhost.lan" })).toEqual({
      cors: "http://localhost:5173",
      allowedHosts: "lmhost.lan",
    });
  });

  it("reads reasoning budgets (server-wide and per model) and the reasoning summary option", () => {
    const dataDir = dataDirWith({
      reasoningBudgets: { low: 8, xhigh: null },
      modelOverrides: { a: { reasoningBudgets: { high: 32 } } },
    });
    const config = resolveConfig({ dataDir }, {});
    expect(config.reasoningBudgets).toEqual({ low: 8, xhigh: null });
    expect(config.modelOverrides["a"]?.reasoningBudgets).toEqual({ high: 32 });
    expect(config.reasoningSummary).toBe("reasoning");
    expect(flagsToConfig({ reasoningSummary: "none" })).toEqual({ reasoningSummary: "none" });
    expect(
      resolveConfig({ dataDir, ...flagsToConfig({ reasoningSummary: "none" }) }, {}).reasoningSummary,
    ).toBe("none");
  });

  it("names the bad setting", () => {
    expect(() => resolveConfig({ dataDir: dataDirWith({}), port: 70000 }, {})).toThrow(/port/);
    expect(() => resolveConfig(flagsToConfig({ parallel: "zero" }), {})).toThrow(/parallel/);
    // A flag name instead of the config key is an error, not silently ignored.
    expect(() => resolveConfig({ dataDir: dataDirWith({ ttl: 600 }) }, {})).toThrow(/config\.json.*ttl/);
    expect(() =>
      resolveConfig({ dataDir: dataDirWith({ modelOverrides: { a: { template: "x" } } }) }, {}),
    ).toThrow(/modelOverrides\.a/);
    expect(() => resolveConfig({ dataDir: dataDirWith({ reasoningBudgets: { low: -1 } }) }, {})).toThrow(
      /reasoningBudgets\.low/,
    );
    expect(() =>
      resolveConfig(
        { dataDir: dataDirWith({ modelOverrides: { a: { reasoningBudgets: { huge: 1 } } } }) },
        {},
      ),
    ).toThrow(/modelOverrides\.a\.reasoningBudgets/);
    expect(() => resolveConfig(flagsToConfig({ reasoningSummary: "short" }), {})).toThrow(/reasoningSummary/);
    const broken = mkdtempSync(path.join(tmpdir(), "lmhost-broken-"));
    writeFileSync(path.join(broken, "config.json"), "{nope");
    expect(() => resolveConfig({ dataDir: broken }, {})).toThrow(/config\.json/);
  });
});

describe("API key sources", () => {
  const emptyDataDir = () => mkdtempSync(path.join(tmpdir(), "lmhost-empty-"));

  it("refuses an empty or blank key from any source, naming it (was: auth silently off)", () => {
    expect(() => resolveConfig(flagsToConfig({ dataDir: emptyDataDir(), apiKey: "" }), {})).toThrow(
      /API key from --api-key is empty/,
    );
    // The empty flag no longer overrides a good key from the environment either.
    expect(() =>
      resolveConfig(flagsToConfig({ dataDir: emptyDataDir(), apiKey: "" }), { LMHOST_API_KEY: "good" }),
    ).toThrow(/--api-key/);
    expect(() => resolveConfig({ dataDir: emptyDataDir() }, { LMHOST_API_KEY: "  " })).toThrow(
      /API key from LMHOST_API_KEY is empty/,
    );
    expect(() => resolveConfig({ dataDir: emptyDataDir() }, { LMHOST_API_KEY: "" })).toThrow(
      /LMHOST_API_KEY/,
    );
    expect(() => resolveConfig({ dataDir: dataDirWith({ apiKey: "" }) }, {})).toThrow(
      /config\.json: apiKey: the API key is empty/,
    );
    expect(() => resolveConfig({ dataDir: emptyDataDir(), apiKey: " key" }, {})).toThrow(/whitespace/);
    expect(resolveConfig({ dataDir: emptyDataDir() }, {}).apiKey).toBeUndefined();
  });
});

describe("cors and allowedHosts", () => {
  it("keeps the old boolean cors as every origin, and normalises lists", () => {
    expect(corsOriginList(true)).toEqual(["*"]);
    expect(corsOriginList(false)).toEqual([]);
    expect(corsOriginList("*")).toEqual(["*"]);
    expect(corsOriginList("http://LocalHost:5173/, https://app.example:443")).toEqual([
      "http://localhost:5173",
      "https://app.example",
    ]);
    expect(corsOriginList(["http://localhost:*"])).toEqual(["http://localhost:*"]);
    const dataDir = dataDirWith({ cors: true });
    expect(corsOriginList(resolveConfig({ dataDir }, {}).cors)).toEqual(["*"]);
    const fromFlag = resolveConfig(flagsToConfig({ dataDir, cors: "http://localhost:5173" }), {});
    expect(corsOriginList(fromFlag.cors)).toEqual(["http://localhost:5173"]);
  });

  it("names a bad origin or host", () => {
    for (const bad of ["localhost:5173", "http://localhost:5173/app", "example.com", "http://a:1:*"]) {
      expect(() => corsOriginList(bad), bad).toThrow(/is not an origin/);
    }
    expect(() => resolveConfig({ dataDir: dataDirWith({ cors: "app.example" }) }, {})).toThrow(
      /config\.json: cors: 'app\.example' is not an origin/,
    );
    expect(allowedHostList("LMHost.lan, .Example.com,[::1]")).toEqual([
      "lmhost.lan",
      ".example.com",
      "[::1]",
    ]);
    for (const bad of ["http://lmhost.lan", "lmhost.lan:1234", "a/b"]) {
      expect(() => allowedHostList(bad), bad).toThrow(/is not a host name/);
    }
    expect(() => resolveConfig(flagsToConfig({ allowedHosts: "x:1" }), {})).toThrow(/allowedHosts/);
  });
});

describe("startedByNpm", () => {
  it("is true under npx, npm exec and npm start, false for a plain node or global start", () => {
    expect(
      startedByNpm({ npm_command: "exec", npm_execpath: "/usr/lib/node_modules/npm/bin/npm-cli.js" }),
    ).toBe(true);
    expect(startedByNpm({ npm_command: "start" })).toBe(true);
    expect(startedByNpm({ PATH: "/usr/bin" })).toBe(false);
  });
});

describe("expandCpuList", () => {
  it.each([
    ["0", [0]],
    ["0-3", [0, 1, 2, 3]],
    ["0-1,4,6-7", [0, 1, 4, 6, 7]],
    ["", []],
  ])("expands %j", (list, expected) => {
    expect(expandCpuList(list)).toEqual(expected);
  });
});
