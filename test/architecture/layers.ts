import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/**
 * The layers the folder tree shows, lowest first, and the rule between them: a module imports only
 * from its own layer or a lower one. Drivers are a world of their own: a driver imports only the
 * kit and its own folder; the core reaches drivers only through the catalog.
 */
export const LAYERS: ReadonlyArray<{ name: string; folders: string[] }> = [
  { name: 'base', folders: ['src/base'] },
  { name: 'kit', folders: ['drivers/kit'] },
  { name: 'drivers', folders: ['drivers'] },
  { name: 'model', folders: ['src/model'] },
  { name: 'config', folders: ['src/config'] },
  { name: 'store', folders: ['src/store'] },
  { name: 'serialization', folders: ['src/serialization'] },
  { name: 'core', folders: ['src/core'] },
  { name: 'tools', folders: ['tools'] },
  { name: 'mcp', folders: ['src/mcp'] },
  { name: 'cli', folders: ['src/cli'] },
];

export interface ModuleImport {
  from: string;
  to: string;
  /** `import type` only: no arrow at run time, but still a dependency of the design. */
  typeOnly: boolean;
}

export interface LayerReport {
  files: string[];
  imports: ModuleImport[];
  violations: string[];
  cycles: string[][];
}

const PRODUCT_ROOTS = ['src', 'drivers', 'tools'];

function walk(root: string, dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return walk(root, path);
    return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(import|export)\s+(type\s+)?[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

export function productFiles(root: string): string[] {
  return PRODUCT_ROOTS.flatMap((dir) => walk(root, dir)).sort();
}

export function importsOf(root: string, file: string): ModuleImport[] {
  const text = readFileSync(join(root, file), 'utf8');
  const found: ModuleImport[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const spec = match[3] ?? match[4];
    const target = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
    found.push({ from: file, to: target, typeOnly: match[2] !== undefined });
  }
  return found;
}

export function layerOf(file: string): string {
  // The most specific folder wins: drivers/kit before drivers.
  let best: { name: string; length: number } | undefined;
  for (const layer of LAYERS) {
    for (const folder of layer.folders) {
      if ((file === folder || file.startsWith(`${folder}/`)) && (!best || folder.length > best.length)) best = { name: layer.name, length: folder.length };
    }
  }
  return best?.name ?? 'loose';
}

const rank = (layer: string) => LAYERS.findIndex((entry) => entry.name === layer);

/** Why `edge` breaks the layering, or undefined when it keeps it. */
export function violation(edge: ModuleImport): string | undefined {
  const from = layerOf(edge.from);
  const to = layerOf(edge.to);
  if (from === 'loose' || to === 'loose') return `${edge.from} -> ${edge.to}: every module belongs to a layer folder`;
  if (from === 'drivers') {
    const own = edge.from.split('/').slice(0, 2).join('/');
    if (edge.from === 'drivers/catalog.ts') return to === 'drivers' || to === 'kit' ? undefined : `${edge.from} -> ${edge.to}: the catalog names drivers and nothing else`;
    if (to === 'kit' || edge.to.startsWith(`${own}/`)) return undefined;
    return `${edge.from} -> ${edge.to}: a driver imports only the kit and its own folder`;
  }
  if (to === 'drivers' && edge.to !== 'drivers/catalog.ts') return `${edge.from} -> ${edge.to}: the core reaches drivers only through drivers/catalog.ts`;
  if (from === 'kit' && to !== 'kit' && to !== 'base') return `${edge.from} -> ${edge.to}: the kit stands on base alone`;
  if (rank(to) > rank(from)) return `${edge.from} (${from}) -> ${edge.to} (${to}): an arrow from a lower layer to a higher one`;
  return undefined;
}

/** Import cycles between modules (run-time imports only), each as the list of files around it. */
export function cycles(imports: ModuleImport[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const edge of imports) if (!edge.typeOnly) graph.set(edge.from, [...(graph.get(edge.from) ?? []), edge.to]);
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push(stack.slice(stack.indexOf(next)));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

export function checkLayers(root: string): LayerReport {
  const files = productFiles(root);
  const imports = files.flatMap((file) => importsOf(root, file)).filter((edge) => PRODUCT_ROOTS.some((dir) => edge.to.startsWith(`${dir}/`)));
  const violations = imports.map(violation).filter((text): text is string => text !== undefined);
  return { files, imports, violations, cycles: cycles(imports) };
}

export function lineCount(root: string, file: string): number {
  return readFileSync(join(root, file), 'utf8').split('\n').length;
}

export function relativeTo(root: string, path: string): string {
  return relative(root, path);
}
