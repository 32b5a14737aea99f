/**
 * What the user asked `lmhost get` (or `POST /api/v0/download`) for, parsed without any network:
 *
 *   user/repo                 a Hugging Face repository; the quantization is chosen from its files
 *   user/repo:Q8_0            a repository and a quantization
 *   user/repo/path/file.gguf  one file of a repository (`#branch` may follow)
 *   hf:…, hf://…, huggingface:…, hf.co/…, huggingface.co/…   the same, with a prefix
 *   https://huggingface.co/user/repo[/resolve|blob/<branch>/file.gguf]  (or the HF_ENDPOINT host)
 *   https://example.com/any/model.gguf                         any other URL: a direct download
 */
import { DownloadError } from "./errors.js";

export type ModelReference =
  | { kind: "repo"; user: string; repo: string; branch: string; quantization?: string }
  | { kind: "file"; user: string; repo: string; branch: string; path: string }
  | { kind: "url"; url: URL };

const DEFAULT_BRANCH = "main";
const HF_PREFIXES = ["hf://", "huggingface://", "hf:", "huggingface:", "hf.co/", "huggingface.co/"];
/** Hugging Face user and repository names: letters, digits, `-`, `_`, `.`. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Parses `text`; `huggingFaceHost` is the host of the Hugging Face endpoint in use (URLs on it, or on
 * huggingface.co / hf.co, are read as repositories and files). Throws DownloadError (400) naming the
 * problem.
 */
export function parseModelReference(text: string, huggingFaceHost = "huggingface.co"): ModelReference {
  const trimmed = text.trim();
  if (trimmed === "")
    throw new DownloadError("no model given: name a Hugging Face repo such as user/repo", 400);
  const prefix = HF_PREFIXES.find((candidate) => trimmed.toLowerCase().startsWith(candidate));
  if (prefix !== undefined) return parseRepositoryPath(trimmed.slice(prefix.length), text);
  if (/^https?:\/\//i.test(trimmed)) return parseUrl(trimmed, text, huggingFaceHost);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed))
    throw new DownloadError(`'${text}' is not an http(s) URL or a Hugging Face repo`, 400);
  return parseRepositoryPath(trimmed, text);
}

function parseUrl(text: string, original: string, huggingFaceHost: string): ModelReference {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new DownloadError(`'${original}' is not a valid URL`, 400);
  }
  const hosts = new Set([huggingFaceHost.toLowerCase(), "huggingface.co", "hf.co", "www.huggingface.co"]);
  if (!hosts.has(url.hostname.toLowerCase())) {
    if (!url.pathname.toLowerCase().endsWith(".gguf"))
      throw new DownloadError(`'${original}' does not name a .gguf file`, 400);
    return { kind: "url", url };
  }
  const parts = url.pathname
    .split("/")
    .filter((part) => part !== "")
    .map((part) => decodedSegment(part, original));
  const [user, repo, action, branch, ...rest] = parts;
  if (user !== undefined && repo !== undefined && action === undefined)
    return checkedRepository({ kind: "repo" as const, user, repo, branch: DEFAULT_BRANCH }, original);
  if (
    user !== undefined &&
    repo !== undefined &&
    action === "tree" &&
    branch !== undefined &&
    rest.length === 0
  )
    return checkedRepository({ kind: "repo" as const, user, repo, branch }, original);
  if (
    user !== undefined &&
    repo !== undefined &&
    (action === "resolve" || action === "blob") &&
    branch !== undefined &&
    rest.length > 0
  )
    return checkedFile({ kind: "file", user, repo, branch, path: rest.join("/") }, original);
  throw new DownloadError(
    `'${original}' is not a Hugging Face repository or file URL (https://huggingface.co/user/repo or …/resolve/main/file.gguf)`,
    400,
  );
}

function parseRepositoryPath(text: string, original: string): ModelReference {
  const hashIndex = text.indexOf("#");
  const branch = hashIndex >= 0 ? text.slice(hashIndex + 1) || DEFAULT_BRANCH : DEFAULT_BRANCH;
  const withoutBranch = hashIndex >= 0 ? text.slice(0, hashIndex) : text;
  const parts = withoutBranch.split("/").filter((part) => part !== "");
  const [user, repoAndTag, ...rest] = parts;
  if (user === undefined || repoAndTag === undefined)
    throw new DownloadError(
      `'${original}' is not a model reference: write user/repo, user/repo:Q4_K_M, user/repo/file.gguf or a URL`,
      400,
    );
  if (rest.length > 0)
    return checkedFile({ kind: "file", user, repo: repoAndTag, branch, path: rest.join("/") }, original);
  const colon = repoAndTag.indexOf(":");
  const repo = colon >= 0 ? repoAndTag.slice(0, colon) : repoAndTag;
  const quantization = colon >= 0 ? repoAndTag.slice(colon + 1).trim() : "";
  return checkedRepository(
    { kind: "repo" as const, user, repo, branch, ...(quantization === "" ? {} : { quantization }) },
    original,
  );
}

/** A URL path segment decoded; a malformed escape (`%E0`) is a 400 naming the reference, not a URIError. */
function decodedSegment(segment: string, original: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new DownloadError(`'${original}' has a malformed percent-escape`, 400);
  }
}

/**
 * A branch or revision: `main`, a commit hash, `refs/pr/1`; never a `.` or `..` segment, which would walk the
 * Hugging Face endpoint's URL (carrying the server's HF_TOKEN) to another path of that host.
 */
const BRANCH = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;

function checkedRepository<T extends { user: string; repo: string; branch?: string }>(
  reference: T,
  original: string,
): T {
  if (!NAME.test(reference.user) || !NAME.test(reference.repo))
    throw new DownloadError(
      `'${original}' is not a Hugging Face repo: user and repo names use letters, digits, '-', '_' and '.'`,
      400,
    );
  if (reference.branch !== undefined && !BRANCH.test(reference.branch))
    throw new DownloadError(
      `'${original}' names an invalid branch '${reference.branch}': letters, digits, '-', '_', '.' and '/' between names`,
      400,
    );
  return reference;
}

function checkedFile(reference: Extract<ModelReference, { kind: "file" }>, original: string): ModelReference {
  checkedRepository(reference, original);
  const segments = reference.path.split("/");
  if (segments.some((segment) => segment === "" || segment === "." || segment === ".."))
    throw new DownloadError(`'${original}' has an invalid file path`, 400);
  if (!reference.path.toLowerCase().endsWith(".gguf"))
    throw new DownloadError(`'${original}' does not name a .gguf file (lmhost runs GGUF models)`, 400);
  return reference;
}

/** `user/repo`, `user/repo:Q8_0`, `user/repo/file.gguf` or the URL, for messages. */
export function describeReference(reference: ModelReference): string {
  const branch = "branch" in reference && reference.branch !== DEFAULT_BRANCH ? `#${reference.branch}` : "";
  if (reference.kind === "url") return reference.url.href;
  if (reference.kind === "file") return `${reference.user}/${reference.repo}/${reference.path}${branch}`;
  return `${reference.user}/${reference.repo}${reference.quantization === undefined ? "" : `:${reference.quantization}`}${branch}`;
}
