/**
 * What an operator of a fleet scrapes (`/metrics`, Prometheus text format 0.0.4): counters,
 * gauges and histograms kept in this process, and gauges read at scrape time from the registry.
 * Also the per-step timings of operations (CINDERLIB_MCP_STEP_TIMINGS=FILE appends one JSON line
 * per operation), which say where an operation's time goes.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { appendFileSync } from 'node:fs';

type Labels = Record<string, string>;

/** Latency buckets, seconds: from a cached call (sub-millisecond) to an array copy (minutes). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  series: Map<string, { labels: Labels; value: number; buckets?: number[]; sum?: number }>;
  buckets?: number[];
}

const keyOf = (labels: Labels) =>
  Object.keys(labels)
    .sort()
    .map((key) => `${key}=${labels[key]}`)
    .join('\u0000');

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const pairs = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabel(value)}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
}

function numberText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

export class MetricsRegistry {
  private readonly families = new Map<string, Family>();
  /** Gauges computed at scrape time (backend up/down, pool capacity). */
  private readonly collectors = new Set<() => Array<{ name: string; help: string; labels: Labels; value: number }>>();

  private family(name: string, help: string, type: Family['type'], buckets?: number[]): Family {
    let family = this.families.get(name);
    if (!family) this.families.set(name, (family = { name, help, type, series: new Map(), buckets }));
    return family;
  }

  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    const family = this.family(name, help, 'counter');
    const key = keyOf(labels);
    const series = family.series.get(key);
    if (series) series.value += by;
    else family.series.set(key, { labels, value: by });
  }

  /** Adds `by` (negative to take away) to a gauge. */
  add(name: string, help: string, labels: Labels, by: number): void {
    const family = this.family(name, help, 'gauge');
    const key = keyOf(labels);
    const series = family.series.get(key);
    if (series) series.value += by;
    else family.series.set(key, { labels, value: by });
  }

  observe(name: string, help: string, labels: Labels, seconds: number, buckets = LATENCY_BUCKETS): void {
    const family = this.family(name, help, 'histogram', buckets);
    const key = keyOf(labels);
    let series = family.series.get(key);
    if (!series) family.series.set(key, (series = { labels, value: 0, buckets: buckets.map(() => 0), sum: 0 }));
    series.value++;
    series.sum! += seconds;
    for (let i = 0; i < buckets.length; i++) if (seconds <= buckets[i]) series.buckets![i]++;
  }

  /** Registers gauges read at scrape time; returns how to unregister them. */
  collect(collector: () => Array<{ name: string; help: string; labels: Labels; value: number }>): () => void {
    this.collectors.add(collector);
    return () => this.collectors.delete(collector);
  }

  /** Every family in the Prometheus text exposition format (version 0.0.4). */
  render(): string {
    const lines: string[] = [];
    const collected = new Map<string, { help: string; samples: Array<{ labels: Labels; value: number }> }>();
    for (const collector of this.collectors) {
      for (const sample of collector()) {
        let entry = collected.get(sample.name);
        if (!entry) collected.set(sample.name, (entry = { help: sample.help, samples: [] }));
        entry.samples.push(sample);
      }
    }
    for (const [name, { help, samples }] of collected) {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
      for (const sample of samples) lines.push(`${name}${labelText(sample.labels)} ${numberText(sample.value)}`);
    }
    for (const family of this.families.values()) {
      lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
      for (const series of family.series.values()) {
        if (family.type !== 'histogram') {
          lines.push(`${family.name}${labelText(series.labels)} ${numberText(series.value)}`);
          continue;
        }
        family.buckets!.forEach((bound, i) => lines.push(`${family.name}_bucket${labelText(series.labels, ['le', numberText(bound)])} ${series.buckets![i]}`));
        lines.push(`${family.name}_bucket${labelText(series.labels, ['le', '+Inf'])} ${series.value}`);
        lines.push(`${family.name}_sum${labelText(series.labels)} ${numberText(series.sum!)}`);
        lines.push(`${family.name}_count${labelText(series.labels)} ${series.value}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }
}

export const LOCK_WAIT_SECONDS = 'cinderlib_mcp_lock_wait_seconds';
export const LOCK_WAIT_HELP = 'Time an operation waited for a lock: lock="object" its volumes and snapshots (this server, then the cluster), lock="capacity" a pool capacity decision.';

/** This process's metrics: one server per process. */
export const metrics = new MetricsRegistry();

// ---- where an operation's time goes ----

interface Timeline {
  what: string;
  started: number;
  last: number;
  steps: Map<string, number>;
}

const timelines = new AsyncLocalStorage<Timeline>();
const timingsFile = process.env.CINDERLIB_MCP_STEP_TIMINGS;

/** Runs `task` as one operation whose steps `stepDone` times; with CINDERLIB_MCP_STEP_TIMINGS unset, just runs it. */
export function timedOperation<T>(what: string, task: () => Promise<T>): Promise<T> {
  if (!timingsFile) return task();
  const now = performance.now();
  const timeline: Timeline = { what, started: now, last: now, steps: new Map() };
  return timelines.run(timeline, async () => {
    try {
      return await task();
    } finally {
      const total = performance.now() - timeline.started;
      try {
        appendFileSync(timingsFile, `${JSON.stringify({ what: timeline.what, total_ms: round(total), steps: Object.fromEntries(timeline.steps) })}\n`);
      } catch {
        // timings are a diagnostic: never an operation's failure
      }
    }
  });
}

/** Marks the end of a step of the operation under way: the time since its previous mark is the step's. */
export function stepDone(step: string): void {
  if (!timingsFile) return;
  const timeline = timelines.getStore();
  if (!timeline) return;
  const now = performance.now();
  timeline.steps.set(step, round((timeline.steps.get(step) ?? 0) + now - timeline.last));
  timeline.last = now;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;
