/**
 * `lmhost mcp ls`: the MCP servers of `<data-dir>/mcp.json` and the tools each offers (no server needed:
 * each one is started or connected to, listed, and closed).
 */
import type { Command } from "commander";
import { resolveConfig } from "../config.js";
import { McpService, readMcpConfig } from "../tools/mcp/service.js";
import { formatTable } from "./table.js";

export function registerMcpCommand(program: Command): void {
  const mcp = program.command("mcp").description("MCP servers configured in <data-dir>/mcp.json");
  mcp
    .command("ls")
    .description("list the servers of mcp.json and their tools")
    .option("--data-dir <dir>", "data dir holding mcp.json (default ~/.lmhost; env LMHOST_DATA_DIR)")
    .option("--json", "print JSON instead of a table")
    .action(async (flags: { dataDir?: string; json?: boolean }) => {
      const config = resolveConfig(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir });
      const servers = readMcpConfig(config.dataDir);
      if (servers.size === 0) {
        process.stdout.write(`no MCP servers in ${config.dataDir}/mcp.json\n`);
        return;
      }
      const service = new McpService({
        allowRemote: false,
        allowedHosts: [],
        localServers: servers,
        callTimeoutSeconds: config.mcpCallTimeoutSeconds,
      });
      const rows: { label: string; kind: string; tools: string[]; error?: string }[] = [];
      try {
        for (const [label, target] of servers) {
          const kind = target.kind === "stdio" ? `stdio: ${target.command}` : `url: ${target.url}`;
          try {
            const tools = await service.listTools({
              param: label,
              serverLabel: label,
              headers: {},
              requireApproval: { default: "always", always: [], never: [] },
            });
            rows.push({ label, kind, tools: tools.map((tool) => tool.name) });
          } catch (error) {
            rows.push({ label, kind, tools: [], error: (error as Error).message });
          }
        }
      } finally {
        await service.close();
      }
      if (flags.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
        return;
      }
      process.stdout.write(
        formatTable(
          ["LABEL", "SERVER", "TOOLS"],
          rows.map((row) => [
            row.label,
            row.kind,
            row.error !== undefined ? `error: ${row.error}` : row.tools.join(", "),
          ]),
        ),
      );
    });
}
