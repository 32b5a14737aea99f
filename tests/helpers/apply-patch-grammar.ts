/**
 * An independent recognizer for Codex's apply_patch Lark grammar (the one Codex sends as its freeform
 * `apply_patch` tool's format), written by hand line by line from the grammar, with no GBNF involved: the
 * tests use it to check that input lmhost generated under its converted grammar really is a patch Codex's
 * grammar accepts.
 *
 *   start: begin_patch hunk+ end_patch
 *   begin_patch: "*** Begin Patch" LF ; end_patch: "*** End Patch" LF?
 *   hunk: add_hunk | delete_hunk | update_hunk
 *   add_hunk: "*** Add File: " filename LF add_line+ ; delete_hunk: "*** Delete File: " filename LF
 *   update_hunk: "*** Update File: " filename LF change_move? change?
 *   filename: /(.+)/ ; add_line: "+" /(.*)/ LF
 *   change_move: "*** Move to: " filename LF ; change: (change_context | change_line)+ eof_line?
 *   change_context: ("@@" | "@@ " /(.+)/) LF ; change_line: ("+" | "-" | " ") /(.*)/ LF
 *   eof_line: "*** End of File" LF
 */

/** Codex's grammar as Codex 0.169 sends it (the tests' copy of the published format). */
export const codexApplyPatchGrammar = `start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
`;

/** Lark's `.`: any character but a line terminator (Python's re without DOTALL: only `\n`). */
const anyLine = /^[^\n]*$/;

/** Whether `text` is a sentence of Codex's apply_patch grammar. */
export function isApplyPatchSentence(text: string): boolean {
  if (!text.startsWith("*** Begin Patch\n")) return false;
  // Every line ends with LF except possibly the final "*** End Patch".
  const body = text.slice("*** Begin Patch\n".length);
  const lines = body.split("\n");
  // A trailing LF leaves an empty last element; the only line allowed without LF is "*** End Patch".
  const last = lines.pop();
  if (last === undefined) return false;
  if (last !== "" && last !== "*** End Patch") return false;
  if (last === "*** End Patch") lines.push(last);
  if (lines.at(-1) !== "*** End Patch") return false;
  lines.pop();
  if (!lines.every((line) => anyLine.test(line))) return false;
  let index = 0;
  let hunks = 0;
  const filename = (line: string | undefined, prefix: string): boolean =>
    line !== undefined && line.startsWith(prefix) && line.length > prefix.length;
  while (index < lines.length) {
    const line = lines[index];
    if (filename(line, "*** Add File: ")) {
      index += 1;
      let added = 0;
      while (lines[index]?.startsWith("+") === true) {
        index += 1;
        added += 1;
      }
      if (added === 0) return false;
    } else if (filename(line, "*** Delete File: ")) {
      index += 1;
    } else if (filename(line, "*** Update File: ")) {
      index += 1;
      if (filename(lines[index], "*** Move to: ")) index += 1;
      let changes = 0;
      for (;;) {
        const current = lines[index];
        if (current === undefined) break;
        const isContext = current === "@@" || (current.startsWith("@@ ") && current.length > 3);
        const isChange = current.startsWith("+") || current.startsWith("-") || current.startsWith(" ");
        if (!isContext && !isChange) break;
        index += 1;
        changes += 1;
      }
      if (changes > 0 && lines[index] === "*** End of File") index += 1;
    } else {
      return false;
    }
    hunks += 1;
  }
  return hunks > 0;
}

const markers = [
  "*** Begin Patch",
  "*** Add File: ",
  "*** Delete File: ",
  "*** Update File: ",
  "*** Move to: ",
  "*** End of File",
  "*** End Patch",
  "@@",
  "+",
];

/**
 * Whether `text` can be continued into a sentence of Codex's grammar (a generation cut at the token cap
 * that followed the grammar so far): some short completion of its last line, plus the end of the patch,
 * makes a sentence.
 */
export function isApplyPatchPrefix(text: string): boolean {
  const lastNewline = text.lastIndexOf("\n");
  const body = text.slice(0, lastNewline + 1);
  const last = text.slice(lastNewline + 1);
  const heads = [last];
  for (const marker of markers) {
    if (marker.startsWith(last)) heads.push(marker + (marker.endsWith(": ") ? "x" : ""));
  }
  for (const head of heads) {
    for (const tail of ["", "\n", "\n+\n", "\n@@\n"]) {
      for (const end of ["", "*** End Patch\n", "*** Add File: x\n+\n*** End Patch\n"]) {
        if (isApplyPatchSentence(body + head + tail + end)) return true;
      }
    }
  }
  return false;
}
