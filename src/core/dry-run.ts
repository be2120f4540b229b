/**
 * Dry runs (contract section 14): a mutating call with `dry_run: true` makes every check the real
 * call makes, reading only, and answers what it would do instead of doing it.
 */

/** What a dry run answers: `would` says what would be created, changed or deleted. */
export interface DryRunAnswer {
  dry_run: true;
  would: Record<string, unknown>;
}

export function dryRunAnswer(would: Record<string, unknown>): DryRunAnswer {
  return { dry_run: true, would };
}

export function isDryRun(value: unknown): value is DryRunAnswer {
  return typeof value === 'object' && value !== null && (value as { dry_run?: unknown }).dry_run === true;
}

/** The answer as a tool shows it: a dry run as it is, anything else through `view`. */
export function shown<R, V>(result: R | DryRunAnswer, view: (record: R) => V): V | DryRunAnswer {
  return isDryRun(result) ? result : view(result);
}
