/**
 * `errorText`: a thrown value as one line for a person (`Name: message`),
 * for error replies and graph errors alike.
 */
/** `Name: message` for an `Error`, a description of anything else that was thrown. */
export declare function errorText(err: unknown): string;
