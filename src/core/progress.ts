/**
 * MCP progress notifications for whatever makes a tool call wait (a backend still initializing,
 * later long copies). The server binds a reporter to each call that carried a progressToken;
 * code deep in the core reports through `waitWithProgress` without knowing about MCP.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import type { CopyProgress } from '../../drivers/kit/types.js';
import { StorageError } from '../base/errors.js';
import type { AuditRecord } from '../store/store.js';

export type ProgressReporter = (update: { progress: number; total?: number; message: string }) => Promise<void> | void;

/**
 * The audit record of a call whose one outcome write may carry it (the server sets it for tools
 * that make one), in the same transaction: `written` says it was, so the server appends no other.
 */
export interface OutcomeAudit {
  readonly record: AuditRecord;
  written: boolean;
}

/** What a tool call carries down to its copies: where progress goes, the client's cancellation, the call's audit record. */
interface CallContext {
  report?: ProgressReporter;
  signal?: AbortSignal;
  audit?: OutcomeAudit;
}

const current = new AsyncLocalStorage<CallContext>();

/** How often a wait is reported while it lasts (the contract asks for at least every 2 s). */
export const PROGRESS_INTERVAL_MS = 1_500;
const FINAL_PROGRESS_GAP_MS = 20;

/**
 * Runs a tool call: `reporter` gets its progress (when the client asked), `signal` aborts when the
 * client cancels it, `audit` rides on its successful outcome write (see outcomeAudit).
 */
export function runWithProgress<T>(reporter: ProgressReporter | undefined, task: () => Promise<T>, signal?: AbortSignal, audit?: OutcomeAudit): Promise<T> {
  return reporter || signal || audit ? current.run({ report: reporter, signal, audit }, task) : task();
}

/**
 * The call's audit record for its successful outcome write, timed now; undefined when the call
 * has none or it was written already. The caller sets `written` once its write is.
 */
export function outcomeAudit(): OutcomeAudit | undefined {
  const audit = current.getStore()?.audit;
  if (!audit || audit.written) return undefined;
  (audit.record as { time: string }).time = new Date().toISOString();
  return audit;
}

/**
 * Awaits `work`, telling the caller's client (when it asked for progress) that it started, that it
 * is still waiting at regular intervals, and that it ended.
 */
export async function waitWithProgress<T>(message: string, work: Promise<T>): Promise<T> {
  const report = current.getStore()?.report;
  if (!report) return work;
  let step = 0;
  const send = (text: string) => Promise.resolve(report({ progress: ++step, message: text })).catch(() => undefined);
  const started = Date.now();
  void send(message);
  const timer = setInterval(() => void send(`${message} (${Math.round((Date.now() - started) / 1000)} s)`), PROGRESS_INTERVAL_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    // Awaited, so the last notification leaves before the call's answer; then a short pause,
    // because the SDK's client handles notifications a tick later than responses and drops
    // progress for a request already answered when both arrive in one read.
    await send(`${message}: done`);
    await new Promise((resolve) => setTimeout(resolve, FINAL_PROGRESS_GAP_MS));
  }
}

/**
 * Runs a long copy, telling the caller's client (when it asked) at the start, at least every
 * PROGRESS_INTERVAL_MS with the bytes copied so far, and at the end, as the contract asks. When the
 * client cancels the call, the copy's next progress report throws: the driver cleans up on the way out.
 */
export async function trackCopy<T>(message: string, work: (progress: CopyProgress) => Promise<T>): Promise<T> {
  const { report, signal } = current.getStore() ?? {};
  let done = 0;
  let total: number | undefined;
  const cancelled = () =>
    new StorageError(
      'BACKEND_BUSY',
      `${message}: cancelled by the client (notifications/cancelled) after ${done}${total !== undefined ? ` of ${total}` : ''} bytes; what was copied is removed`,
    );
  const progress: CopyProgress = Object.assign(
    (bytesDone: number, bytesTotal: number) => {
      done = Math.max(done, bytesDone); // progress never goes back, as MCP requires
      total = bytesTotal;
      if (signal?.aborted) throw cancelled();
    },
    { signal },
  );
  if (signal?.aborted) throw cancelled();
  if (!report) return work(progress);
  const send = (text: string) => Promise.resolve(report({ progress: done, ...(total !== undefined ? { total } : {}), message: text })).catch(() => undefined);
  void send(message);
  const timer = setInterval(() => void send(total ? `${message}: ${Math.floor((done / total) * 100)}%` : message), PROGRESS_INTERVAL_MS);
  try {
    return await work(progress);
  } finally {
    clearInterval(timer);
    await send(`${message}: done`);
    await new Promise((resolve) => setTimeout(resolve, FINAL_PROGRESS_GAP_MS));
  }
}
