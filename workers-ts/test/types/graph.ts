// Type tests of the graph DSL: `tsc --noEmit` (npm run check) fails when they break.
import {
  type Action,
  AsyncParallelBatchFlow,
  BatchFlow,
  BatchNode,
  type Context,
  Flow,
  FunctionNode,
  Node,
  NodeError,
  type Params,
  type Shared,
  currentContext,
  flow,
  node,
  parallel,
} from "../../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_ok: T): void {}

// The README example compiles as written.
export const decide = node((s) => ((s.notes?.length ?? 0) < 2 ? "search" : "answer"));
export const search = node((s) => { (s.notes ??= []).push(`note ${s.notes.length}`); });
export const answer = node((s) => { s.answer = s.notes.join(" / "); });
decide.on("search", search);
decide.on("answer", answer);
search.next(decide);
export const agent = flow({ start: decide });

expectType<Equal<typeof decide, FunctionNode<Shared>>>(true);
expectType<Equal<typeof agent, Flow<Shared>>>(true);
expectType<Equal<ReturnType<typeof agent.run>, Promise<string | undefined>>>(true);

// A store type of one's own.
interface Store {
  query: string;
  hits?: string[];
}
export const find = node<Store>(async (s, ctx) => {
  expectType<Equal<typeof ctx, Context>>(true);
  s.hits = [s.query];
  return s.hits.length > 0 ? "found" : undefined;
});
export const typed = flow({ start: find, maxSteps: 10 });
expectType<Equal<typeof typed, Flow<Store>>>(true);
void typed.run({ query: "q" });
// @ts-expect-error: the store must fit the flow's type
void typed.run({ nothing: 1 });

// The object form, with a fallback.
export const withFallback = node<Store>({
  name: "with.fallback",
  retries: 2,
  backoff: 100,
  timeout: 5000,
  run: (s) => { s.hits = []; },
  fallback: (s, error) => {
    expectType<Equal<typeof error, NodeError>>(true);
    s.hits = [error.kind];
    return "recovered";
  },
});

// @ts-expect-error: a node returns an action or nothing
node(() => 42);

// `next` and `on` return the target.
const chained = decide.next(search).on("x", answer);
expectType<Equal<typeof chained, FunctionNode<Shared>>>(true);

// Class nodes.
class Summarize extends Node<Shared, string, string> {
  override prep(shared: Shared): string {
    return String(shared.text);
  }
  override async exec(text: string): Promise<string> {
    await currentContext()?.progress(this.curRetry, this.maxRetries);
    return text.slice(0, 10);
  }
  override post(shared: Shared, _text: string, summary: string): Action {
    shared.summary = summary;
    return "done";
  }
  override execFallback(_text: string, error: Error): string {
    return error.message;
  }
}
export const summarize = new Summarize({ maxRetries: 3, wait: 1000, retries: 1 });

class Lengths extends BatchNode<Shared, string, number> {
  override prep(shared: Shared): string[] {
    return shared.files as string[];
  }
  override exec(file: string): number {
    return file.length;
  }
  override post(shared: Shared, files: string[], lengths: number[]): void {
    shared.lengths = Object.fromEntries(files.map((f, i) => [f, lengths[i]]));
  }
}
export const lengths = new Lengths({ limit: 8 });
summarize.on("done", lengths).next(parallel([decide, answer], { limit: 2 }));
export const pipeline = flow({ start: summarize, name: "pipeline", deadline: 60_000 });

// Batch flows: prep returns parameter sets, nodes read them in this.params.
class Summary extends Node<Shared, string, string> {
  override prep(shared: Shared): string {
    expectType<Equal<typeof this.params, Params>>(true);
    return String(shared.files[this.params.file]);
  }
}
interface FileSet {
  file: string;
}
class EachFile extends BatchFlow<Shared, FileSet> {
  override prep(shared: Shared): FileSet[] {
    return Object.keys(shared.files).map((file) => ({ file }));
  }
  override post(_shared: Shared, sets: FileSet[]): Action {
    return sets.length > 0 ? "some" : "none";
  }
}
export const eachFile = new EachFile({ start: new Summary(), name: "each_file" });
expectType<Equal<ReturnType<typeof eachFile.run>, Promise<string | undefined>>>(true);
export const overlapping = new AsyncParallelBatchFlow({ start: new Summary(), limit: 4 });
expectType<Equal<typeof overlapping.concurrent, boolean>>(true);
class BadSets extends BatchFlow {
  // @ts-expect-error: prep returns an array of parameter objects
  override prep(): string {
    return "no";
  }
}
void BadSets;
