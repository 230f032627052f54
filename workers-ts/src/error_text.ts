/**
 * `errorText`: a thrown value as one line for a person (`Name: message`),
 * for error replies and graph errors alike.
 */

/** `Name: message` for an `Error`, a description of anything else that was thrown. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message ? `${err.name}: ${err.message}` : err.name;
  let text: string;
  try {
    text = typeof err === "string" ? err : JSON.stringify(err) ?? String(err);
  } catch {
    text = String(err);
  }
  return `a non-Error value was thrown: ${text}`;
}
