/**
 * A download that cannot be done, with the message a user reads and the HTTP status the API answers
 * with: 400 a bad reference, 401 a gated or private repo without a (good) token, 404 a repo, file or
 * quantization that does not exist, 422 a file that is not GGUF, 502 the remote end failed or is
 * unreachable.
 */
export class DownloadError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(message: string, status: number, code = defaultCode(status), options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DownloadError";
    this.status = status;
    this.code = code;
  }
}

function defaultCode(status: number): string {
  if (status === 400) return "invalid_model_reference";
  if (status === 401) return "unauthorized";
  if (status === 404) return "not_found";
  if (status === 422) return "invalid_gguf";
  return "download_failed";
}
