// The TypeScript half of the handoff flow: turns the Python node's draft
// into one crisp sentence.
import { llm, node } from "flw-worker";

interface Store {
  draft: string;
  by: string[];
  final?: string;
}

export const polish = node(async (shared: Store) => {
  const reply = await llm.chat(`Rewrite this paragraph as one crisp sentence:\n\n${shared.draft}`);
  shared.final = reply.content;
  shared.by = [...shared.by, "typescript"];
});
