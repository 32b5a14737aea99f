/**
 * The few Hugging Face calls lmhost makes itself, before node-llama-cpp downloads: the repository's
 * file list (`GET /api/models/{user}/{repo}/tree/{branch}?recursive=true`, to list quantizations with
 * their sizes) and a `HEAD` of the file's URL (to turn 401 / 403 / 404 / no network into clear errors
 * in a second, where the downloader would retry for minutes). The endpoint and the token are found the
 * way node-llama-cpp finds them, so both agree: endpoint `MODEL_ENDPOINT`, then `HF_ENDPOINT`, then
 * https://huggingface.co; token `--token`, then `HF_TOKEN`, then `$HF_HOME/token`
 * (`~/.cache/huggingface/token`, where `huggingface-cli login` writes it).
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { DownloadError } from "./errors.js";

export interface HuggingFaceAccess {
  /** With a trailing slash, e.g. `https://huggingface.co/`. */
  endpoint: string;
  token?: string | undefined;
  /** Only for messages: where the token came from (`--token`, `HF_TOKEN`, a file). */
  tokenSource?: string | undefined;
}

export interface RepositoryFile {
  /** Path inside the repository, e.g. `Qwen3-8B-Q4_K_M.gguf` or `Q8_0/model-00001-of-00002.gguf`. */
  path: string;
  sizeBytes: number;
  /** The file's SHA-256 (hex), as the listing gives it for LFS files (`lfs.oid`). */
  sha256?: string | undefined;
}

export function huggingFaceEndpoint(environment: NodeJS.ProcessEnv = process.env): string {
  for (const candidate of [environment.MODEL_ENDPOINT, environment.HF_ENDPOINT]) {
    if (candidate !== undefined && /^https?:\/\//i.test(candidate))
      return candidate.endsWith("/") ? candidate : `${candidate}/`;
  }
  return "https://huggingface.co/";
}

export async function resolveHuggingFaceAccess(
  token: string | undefined,
  environment: NodeJS.ProcessEnv = process.env,
): Promise<HuggingFaceAccess> {
  const endpoint = huggingFaceEndpoint(environment);
  if (token !== undefined && token !== "") return { endpoint, token, tokenSource: "--token" };
  if (environment.HF_TOKEN !== undefined && environment.HF_TOKEN !== "")
    return { endpoint, token: environment.HF_TOKEN, tokenSource: "HF_TOKEN" };
  const hfHome =
    environment.HF_HOME ??
    path.join(environment.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "huggingface");
  const tokenPath = environment.HF_TOKEN_PATH ?? path.join(hfHome, "token");
  try {
    const fileToken = (await readFile(tokenPath, "utf8")).trim();
    if (fileToken !== "") return { endpoint, token: fileToken, tokenSource: tokenPath };
  } catch {
    // no token file
  }
  return { endpoint };
}

function authorization(access: HuggingFaceAccess): Record<string, string> {
  return access.token === undefined ? {} : { authorization: `Bearer ${access.token}` };
}

/** The GGUF-relevant files of a repository (every file, with its size; LFS files with their real size). */
export async function listRepositoryFiles(
  access: HuggingFaceAccess,
  repository: { user: string; repo: string; branch: string },
  signal?: AbortSignal,
): Promise<RepositoryFile[]> {
  const name = `${repository.user}/${repository.repo}`;
  let url: string | undefined =
    `${access.endpoint}api/models/${encodeURIComponent(repository.user)}/${encodeURIComponent(repository.repo)}` +
    `/tree/${encodeURIComponent(repository.branch)}?recursive=true`;
  const files: RepositoryFile[] = [];
  // The listing is paginated (a `Link: <…>; rel="next"` header) past 1,000 entries.
  for (let page = 0; url !== undefined && page < 100; page++) {
    const response = await fetchOrExplain(
      url,
      { headers: authorization(access), ...(signal ? { signal } : {}) },
      access,
    );
    if (!response.ok) {
      await response.body?.cancel();
      throw repositoryError(response, name, access, repository.branch);
    }
    const entries = (await response.json()) as unknown;
    if (!Array.isArray(entries))
      throw new DownloadError(
        `${access.endpoint} answered the file list of ${name} with something that is not a list`,
        502,
      );
    for (const entry of entries as {
      type?: unknown;
      path?: unknown;
      size?: unknown;
      lfs?: { size?: unknown; oid?: unknown };
    }[]) {
      if (entry.type !== "file" || typeof entry.path !== "string") continue;
      const size = typeof entry.lfs?.size === "number" ? entry.lfs.size : entry.size;
      const oid = entry.lfs?.oid;
      files.push({
        path: entry.path,
        sizeBytes: typeof size === "number" ? size : 0,
        ...(typeof oid === "string" && /^[0-9a-f]{64}$/.test(oid) ? { sha256: oid } : {}),
      });
    }
    url = nextPage(response.headers.get("link"), url);
  }
  return files;
}

function nextPage(link: string | null, current: string): string | undefined {
  const match = link === null ? null : /<([^>]+)>\s*;\s*rel="?next"?/i.exec(link);
  return match?.[1] === undefined ? undefined : new URL(match[1], current).href;
}

/**
 * `HEAD`s a file's download URL (following redirects as the downloader will) so a gated repo, a
 * missing file or an unreachable host is a clear error now. Returns the size when the server says it.
 */
export async function probeDownload(
  url: string,
  what: string,
  access: HuggingFaceAccess | undefined,
  signal?: AbortSignal,
): Promise<{ sizeBytes?: number }> {
  const headers = access === undefined ? {} : authorization(access);
  const response = await fetchOrExplain(
    url,
    { method: "HEAD", headers, redirect: "follow", ...(signal ? { signal } : {}) },
    access,
  );
  if (response.ok) {
    const length = Number(response.headers.get("x-linked-size") ?? response.headers.get("content-length"));
    return Number.isFinite(length) && length > 0 ? { sizeBytes: length } : {};
  }
  // Servers that do not answer HEAD: the downloader finds out.
  if (response.status === 405 || response.status === 501) return {};
  if (response.status === 401 || response.status === 403)
    throw access === undefined
      ? new DownloadError(
          `${what}: the server refused the download (${response.status}); lmhost sends no credentials to hosts other than Hugging Face`,
          401,
          "unauthorized",
        )
      : accessError(response.status, what, access);
  if (response.status === 404) throw new DownloadError(`${what} was not found (404 from ${url})`, 404);
  throw new DownloadError(
    `${what}: the server answered ${response.status} ${response.statusText} (${url})`,
    502,
  );
}

async function fetchOrExplain(
  url: string,
  init: RequestInit,
  access: HuggingFaceAccess | undefined,
): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message ?? (error as Error).message;
    const host = new URL(url).host;
    const mirror =
      access !== undefined && access.endpoint !== "https://huggingface.co/"
        ? ` (HF_ENDPOINT is ${access.endpoint})`
        : "";
    throw new DownloadError(
      `cannot reach ${host}${mirror}: ${detail}; check the network connection`,
      502,
      "network_error",
      {
        cause: error,
      },
    );
  }
}

function repositoryError(
  response: Response,
  name: string,
  access: HuggingFaceAccess,
  branch: string,
): DownloadError {
  const errorCode = response.headers.get("x-error-code");
  if (errorCode === "GatedRepo" || (response.status === 403 && errorCode !== "RepoNotFound"))
    return accessError(response.status, name, access);
  if (errorCode === "RevisionNotFound") return new DownloadError(`${name} has no branch '${branch}'`, 404);
  if (response.status === 404 || response.status === 401) {
    const privateHint = access.token === undefined ? " (if it is private, set HF_TOKEN or pass --token)" : "";
    return new DownloadError(
      `no repository ${name} on ${access.endpoint}${privateHint}; check the name (e.g. bartowski/Qwen_Qwen3-8B-GGUF)`,
      404,
      "repository_not_found",
    );
  }
  return new DownloadError(
    `${access.endpoint} answered ${response.status} ${response.statusText} listing the files of ${name}`,
    502,
  );
}

function accessError(status: number, what: string, access: HuggingFaceAccess): DownloadError {
  if (access.token === undefined)
    return new DownloadError(
      `${what} is gated or private: accept its terms on Hugging Face, then set HF_TOKEN (or pass --token) to a token of yours (https://huggingface.co/settings/tokens)`,
      401,
      "gated_repository",
    );
  return new DownloadError(
    `${what} refused the token from ${access.tokenSource ?? "HF_TOKEN"} (${status}): check that the token is valid and that your account has accepted the repository's terms`,
    401,
    "gated_repository",
  );
}

/** The download URL of a file in a repository, as node-llama-cpp builds it. */
export function fileUrl(
  access: HuggingFaceAccess,
  reference: { user: string; repo: string; branch: string; path: string },
): string {
  const filePath = reference.path.split("/").map(encodeURIComponent).join("/");
  return `${access.endpoint}${encodeURIComponent(reference.user)}/${encodeURIComponent(reference.repo)}/resolve/${encodeURIComponent(reference.branch)}/${filePath}`;
}
