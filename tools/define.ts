/**
 * What a tools/ file declares: schema, hints and handler side by side, as the SDK's registerTool
 * does. The server (src/server.ts) owns validation, read-only refusal and error shaping.
 */

import type { z } from 'zod';
import type { BackendRegistry } from '../src/core/registry.js';
import type { ToolsetName } from '../src/config/toolsets.js';

export interface ToolAnnotations {
  readOnlyHint: boolean;
  destructiveHint: boolean;
  idempotentHint: boolean;
  /** true when the tool may reach an array over the network; false when it answers from the metadata store alone. */
  openWorldHint: boolean;
}

/** A tool's answer: an object (a union of objects where a dry run answers otherwise). */
export type AnswerSchema = z.ZodType<Record<string, unknown>, Record<string, unknown>>;

export interface ToolDefinition<Input extends z.ZodObject = z.ZodObject, Output extends AnswerSchema = AnswerSchema> {
  name: string;
  /** The toolset that offers it (src/config/toolsets.ts); the server offers a tool only when its toolset is enabled. */
  toolset: ToolsetName;
  title: string;
  description: string;
  input: Input;
  output: Output;
  annotations: ToolAnnotations;
  /**
   * The call makes one mutation, whose successful outcome write (an update of its record) is the
   * call's success: that write carries the call's audit record, in one transaction.
   */
  auditedWithOutcome?: true;
  handler(args: z.output<Input>, registry: BackendRegistry): Promise<z.input<Output>>;
}

export function defineTool<Input extends z.ZodObject, Output extends AnswerSchema>(definition: ToolDefinition<Input, Output>): ToolDefinition<Input, Output> {
  return definition;
}

/** Hints for tools that only read, from the metadata store alone. */
export const READS_METADATA_STORE: ToolAnnotations = {
  readOnlyHint: true,
  destructiveHint: false,
  idempotentHint: true,
  openWorldHint: false,
};

/**
 * Hints for tools that only read but may ask an array: stats are cached, yet the first read, a
 * refresh and a backend's (re)initialization go over the network.
 */
export const READS_ARRAYS: ToolAnnotations = { ...READS_METADATA_STORE, openWorldHint: true };
