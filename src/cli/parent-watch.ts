/**
 * `npx lmhost serve` (npm exec) runs lmhost under `sh -c`, and npm does not pass SIGTERM on to it: the
 * shell dies and lmhost is left running, orphaned. When npm started lmhost, it therefore watches its
 * parent and stops (gracefully) once the parent is gone. A plain `node bin/lmhost.js` or a global install
 * is left alone, so `nohup lmhost serve &` survives the shell it was started from.
 */

/** Whether npm (npx, `npm exec`, `npm start`, `npm run`) started this process: npm sets these variables. */
export function startedByNpm(environment: NodeJS.ProcessEnv = process.env): boolean {
  return environment.npm_execpath !== undefined || environment.npm_command !== undefined;
}

/**
 * Calls `onParentGone` once when the parent process this process had at `parentAtStart` is gone (the
 * process is re-parented to init or a subreaper). The timer does not keep the process alive.
 */
export function watchParent(
  onParentGone: () => void,
  options: { parentAtStart?: number; intervalMilliseconds?: number } = {},
): () => void {
  const parentAtStart = options.parentAtStart ?? process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parentAtStart) return;
    clearInterval(timer);
    onParentGone();
  }, options.intervalMilliseconds ?? 500);
  timer.unref();
  return () => clearInterval(timer);
}
