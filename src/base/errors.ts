/**
 * The stable error codes of the contract (section 5). Every failure that reaches a client is a
 * StorageError; its message starts with the code so agents can branch on it.
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'OUT_OF_CAPACITY',
  'BACKEND_UNAVAILABLE',
  'BACKEND_BUSY',
  'READ_ONLY',
  'IN_USE',
  'UNSUPPORTED',
  'INTERNAL',
  // A token limited to some backends (global.http_tokens[].backends) called on another.
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class StorageError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageError';
    this.code = code;
  }

  /** The one-line form clients see: "CODE: message". */
  toClientText(): string {
    return `${this.code}: ${this.message}`;
  }
}

export function isStorageError(error: unknown): error is StorageError {
  return error instanceof StorageError;
}

/** A short description of any thrown value, for logs (never for clients without redaction). */
/** The `code` a thrown error carries (Node's errno names, SQLite's codes, PostgreSQL's SQLSTATE), if it is a string. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
