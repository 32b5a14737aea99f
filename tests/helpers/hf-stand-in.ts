/**
 * A Hugging Face stand-in on loopback for `lmhost get` tests, reached through HF_ENDPOINT. It speaks
 * the parts of the Hub that lmhost and node-llama-cpp's downloader (ipull) use:
 *
 *   GET  /api/models/{user}/{repo}/tree/{branch}?recursive=true   file list with sizes (lmhost)
 *   GET  /api/models/{user}/{repo}                                repo info with `siblings`, `gated`
 *   HEAD /{user}/{repo}/resolve/{branch}/{path}                   lmhost's probe; ipull's info request
 *   GET  /{user}/{repo}/resolve/{branch}/{path}?download=true     is a GET without Range
 *        → 302 to /cdn/{user}/{repo}/{path} (the Hub redirects to its CDN), with X-Linked-Size and
 *          X-Linked-Etag; 401 `X-Error-Code: GatedRepo` on a gated repo without the right Bearer
 *          token; 404 with `X-Error-Code: RepoNotFound` / `EntryNotFound`
 *   GET  /cdn/… with `Range: bytes=a-b` → 206 + Content-Range (ipull downloads in 5 MiB chunks, up to
 *        three connections per file); without Range → 200; HEAD; ETag, Accept-Ranges, Content-Length
 *   GET  /v2/{user}/{repo}/manifests/{tag}                         node-llama-cpp's own `hf:user/repo:quant`
 *                                                                  resolution (llama.cpp's manifest)
 *
 * Every request is recorded (method, path, Range, Authorization). `shapeBody` lets a test cut a
 * ranged body short: drop the connection after N bytes, or hold it open (a stalled download), or flip
 * one of its bytes.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface StandInRepository {
  files: Record<string, Buffer>;
  /** Downloads need `Authorization: Bearer <token>` (the listing stays public, as on the Hub). */
  gatedToken?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  range?: string;
  authorization?: string;
}

/**
 * What to do with one ranged body: send `afterBytes` bytes, then drop the connection or hold it open; or
 * send it whole with the byte at `afterBytes` flipped (a transfer that corrupts without a visible error).
 */
export type BodyShape = { afterBytes: number; then: "drop" | "hold" | "corrupt" } | undefined;

export interface HfStandIn {
  /** The endpoint, for HF_ENDPOINT (with a trailing slash). */
  url: string;
  requests: RecordedRequest[];
  /** Called for each ranged GET of a file body; `count` is how many ranged GETs of that file came before. */
  shapeBody?: (request: { path: string; start: number; end: number; count: number }) => BodyShape;
  close(): Promise<void>;
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function startHfStandIn(repositories: Record<string, StandInRepository>): Promise<HfStandIn> {
  const held = new Set<ServerResponse>();
  const rangedCounts = new Map<string, number>();
  const standIn: HfStandIn = {
    url: "",
    requests: [],
    close: async () => {
      for (const response of held) response.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const url = new URL(request.url ?? "/", "http://stand-in");
    const segments = url.pathname
      .split("/")
      .filter((segment) => segment !== "")
      .map(decodeURIComponent);
    standIn.requests.push({
      method: request.method ?? "GET",
      path: url.pathname,
      ...(request.headers.range === undefined ? {} : { range: request.headers.range }),
      ...(request.headers.authorization === undefined
        ? {}
        : { authorization: request.headers.authorization }),
    });
    const notFound = (code: string, message: string) => {
      response.writeHead(404, { "content-type": "application/json", "x-error-code": code });
      response.end(JSON.stringify({ error: message }));
    };
    const repositoryOf = (user?: string, repo?: string) =>
      user === undefined || repo === undefined ? undefined : repositories[`${user}/${repo}`];

    // GET /api/models/{user}/{repo}[/tree/{branch}]
    if (segments[0] === "api" && segments[1] === "models") {
      const [, , user, repo, tree, branch] = segments;
      const repository = repositoryOf(user, repo);
      if (repository === undefined) return notFound("RepoNotFound", "Repository not found");
      if (tree === "tree") {
        if (branch !== "main") return notFound("RevisionNotFound", "Revision not found");
        const listing = Object.entries(repository.files).map(([path, data]) => ({
          type: "file",
          oid: sha256(data).slice(0, 40),
          size: data.length,
          path,
          lfs: { oid: sha256(data), size: data.length, pointerSize: 134 },
        }));
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify(listing));
        return;
      }
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id: `${user}/${repo}`,
          modelId: `${user}/${repo}`,
          gated: repository.gatedToken === undefined ? false : "manual",
          siblings: Object.keys(repository.files).map((rfilename) => ({ rfilename })),
        }),
      );
      return;
    }

    // GET /v2/{user}/{repo}/manifests/{tag}
    if (segments[0] === "v2" && segments[3] === "manifests") {
      const repository = repositoryOf(segments[1], segments[2]);
      const tag = (segments[4] ?? "latest").toUpperCase();
      const names = Object.keys(repository?.files ?? {}).filter((name) => name.endsWith(".gguf"));
      const match =
        tag === "LATEST"
          ? (names.find((name) => /Q4_K_M/i.test(name)) ?? names[0])
          : names.find((name) => name.toUpperCase().includes(tag));
      if (repository === undefined || match === undefined)
        return notFound("RepoNotFound", "Manifest not found");
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ ggufFile: { rfilename: match, size: repository.files[match]?.length } }));
      return;
    }

    // /{user}/{repo}/resolve/{branch}/{path}
    if (segments[2] === "resolve") {
      const [user, repo, , branch, ...rest] = segments;
      const repository = repositoryOf(user, repo);
      if (repository === undefined) return notFound("RepoNotFound", "Repository not found");
      if (branch !== "main") return notFound("RevisionNotFound", "Revision not found");
      const filePath = rest.join("/");
      const data = repository.files[filePath];
      if (data === undefined) return notFound("EntryNotFound", "Entry not found");
      if (
        repository.gatedToken !== undefined &&
        request.headers.authorization !== `Bearer ${repository.gatedToken}`
      ) {
        response.writeHead(401, { "content-type": "application/json", "x-error-code": "GatedRepo" });
        response.end(
          JSON.stringify({ error: "Access to this model is restricted. You must be authenticated." }),
        );
        return;
      }
      response.writeHead(302, {
        location: `/cdn/${encodeURIComponent(user as string)}/${encodeURIComponent(repo as string)}/${rest.map(encodeURIComponent).join("/")}`,
        "x-linked-size": String(data.length),
        "x-linked-etag": `"${sha256(data)}"`,
        etag: `"${sha256(data).slice(0, 40)}"`,
      });
      response.end();
      return;
    }

    // /cdn/{user}/{repo}/{path}: the file itself
    if (segments[0] === "cdn") {
      const [, user, repo, ...rest] = segments;
      const data = repositoryOf(user, repo)?.files[rest.join("/")];
      if (data === undefined) return notFound("EntryNotFound", "Entry not found");
      const headers = {
        "accept-ranges": "bytes",
        etag: `"${sha256(data)}"`,
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(rest.at(-1) ?? "")}; filename="${rest.at(-1) ?? ""}";`,
      };
      const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? "");
      if (request.method === "HEAD") {
        response.writeHead(200, { ...headers, "content-length": String(data.length) });
        response.end();
        return;
      }
      if (range === null) {
        response.writeHead(200, { ...headers, "content-length": String(data.length) });
        response.end(data);
        return;
      }
      const start = Number(range[1]);
      const end = range[2] === "" ? data.length - 1 : Math.min(Number(range[2]), data.length - 1);
      if (start > end || start >= data.length) {
        response.writeHead(416, { "content-range": `bytes */${data.length}` });
        response.end();
        return;
      }
      const body = data.subarray(start, end + 1);
      response.writeHead(206, {
        ...headers,
        "content-length": String(body.length),
        "content-range": `bytes ${start}-${end}/${data.length}`,
      });
      const count = rangedCounts.get(url.pathname) ?? 0;
      rangedCounts.set(url.pathname, count + 1);
      const shape = standIn.shapeBody?.({ path: url.pathname, start, end, count });
      if (shape === undefined) {
        response.end(body);
        return;
      }
      if (shape.then === "corrupt") {
        const corrupted = Buffer.from(body);
        const at = Math.min(shape.afterBytes, corrupted.length - 1);
        corrupted[at] = (corrupted[at] ?? 0) ^ 0xff;
        response.end(corrupted);
        return;
      }
      response.write(body.subarray(0, shape.afterBytes), () => {
        if (shape.then === "drop") response.socket?.destroy();
        else held.add(response);
      });
      return;
    }

    notFound("EntryNotFound", `no route ${url.pathname}`);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return standIn;
}

/**
 * The fake repositories the `get` tests use, built from the bundled tiny models (each quantization a
 * different model, so a file's sha256 tells which one was fetched).
 */
export function testRepositories(models: {
  stories: Buffer;
  storiesChatml: Buffer;
  randomLlama: Buffer;
}): Record<string, StandInRepository> {
  // 5 MiB is ipull's chunk size: a file over two chunks can be interrupted after a finished chunk.
  const padded = Buffer.concat([models.storiesChatml, Buffer.alloc(11 * 1024 * 1024)]);
  return {
    "lmhost-test/stories-GGUF": {
      files: {
        "README.md": Buffer.from("# stories\n"),
        "stories-Q4_K_M.gguf": models.storiesChatml,
        "stories-Q8_0.gguf": models.stories,
        "stories-F16.gguf": models.randomLlama,
      },
    },
    "lmhost-test/noq4-GGUF": {
      files: { "tiny-F16.gguf": models.randomLlama, "tiny-Q8_0.gguf": models.stories },
    },
    "lmhost-test/gated-GGUF": {
      files: { "gated-Q4_K_M.gguf": models.stories },
      gatedToken: "hf_test_token",
    },
    "lmhost-test/broken-GGUF": {
      files: { "broken-Q4_K_M.gguf": Buffer.from("<!doctype html><title>Not a model</title>".repeat(100)) },
    },
    "lmhost-test/big-GGUF": { files: { "big-Q4_K_M.gguf": padded } },
    // Split parts in a quantization folder, as large repos publish them. Each part is a whole copy of
    // stories260K (no tool here writes real gguf-split parts); every part has a valid GGUF header.
    "lmhost-test/split-GGUF": {
      files: {
        "Q8_0/split-Q8_0-00001-of-00002.gguf": models.stories,
        "Q8_0/split-Q8_0-00002-of-00002.gguf": models.storiesChatml,
        "split-F16.gguf": models.randomLlama,
      },
    },
  };
}
