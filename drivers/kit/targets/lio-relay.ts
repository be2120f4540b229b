import { StorageError } from '../../../src/base/errors.js';
import type { SecretRegistry } from '../../../src/base/secrets.js';
import { CommandTransportError, type CommandResult } from '../exec/runner.js';
import type { TargetHost } from './tgtd-relay.js';

/**
 * Carries configfs operations to the target's host, wherever that is (this host as root, through
 * the root helper, or over SSH), as one privileged perl process per batch: perl-base is on every
 * Debian host. Each operation is a line on stdin, its arguments hex-encoded: the CHAP password
 * travels on stdin only, never in the argv (which holds this script and the configfs root). The
 * relay refuses a path outside the root or with '.', '..' or '//' parts, opens attributes without
 * O_CREAT (configfs creates them; a misspelt one is ENOENT, as in the kernel), and answers a line
 * per operation: `ok <hex>`, `no <ERRNO>` for an errno the caller tolerates, or `err <ERRNO>
 * <hex message>`, after which it stops (exit 3).
 */
const RELAY = [
  'use strict; use Fcntl; use Errno; $SIG{PIPE} = "IGNORE"; $| = 1; my $root = shift;',
  'sub errname { my $n = (grep { $!{$_} } keys %!)[0]; return defined $n ? $n : "EIO" }',
  'sub inside { my $p = shift; return ($p eq $root || index($p, "$root/") == 0) && $p !~ m{/\\.\\.?(/|$)|//|[\\x00-\\x1f\\x7f]} }',
  'sub kind { my ($linkstat, @s) = @_; return "-" unless @s; return ($linkstat && -l _) ? "l" : -d _ ? "d" : -f _ ? "f" : -b _ ? "b" : "o" }',
  'sub walk { my ($dir, $rel, $depth, $out) = @_; opendir(my $dh, $dir) or return 0;',
  ' for my $e (sort grep { $_ ne "." && $_ ne ".." } readdir $dh) { my $p = "$dir/$e"; my $r = $rel eq "" ? $e : "$rel/$e"; my @s = lstat $p; my $k = kind(1, @s);',
  '  my $l = $k eq "l" ? readlink($p) : ""; push @$out, join(" ", $k, unpack("H*", $r), unpack("H*", defined $l ? $l : ""));',
  '  walk($p, $r, $depth - 1, $out) if $k eq "d" && $depth > 1 } closedir $dh; return 1 }',
  'while (my $line = <STDIN>) { chomp $line; next if $line eq ""; my ($op, $tolerate, @a) = split / /, $line; @a = map { pack "H*", $_ } @a;',
  ' my %ok = map { $_ => 1 } split /,/, $tolerate; my $out = ""; my $done;',
  ' my $outside = $op eq "stat" ? 0 : grep { !inside($_) } ($op eq "symlink" ? @a : $a[0]);',
  ' if ($outside || !defined $a[0]) { print "err EINVAL ", unpack("H*", "path outside the configfs root $root"), "\\n"; exit 3 }',
  ' if ($op eq "mkdir") { $done = mkdir $a[0] }',
  ' elsif ($op eq "rmdir") { $done = rmdir $a[0] }',
  ' elsif ($op eq "unlink") { $done = unlink $a[0] }',
  ' elsif ($op eq "symlink") { $done = symlink $a[0], $a[1] }',
  ' elsif ($op eq "write") { if (sysopen(my $fh, $a[0], O_WRONLY | O_TRUNC)) { my $n = syswrite($fh, $a[1]); $done = defined $n && $n == length $a[1]; $done = close($fh) && $done } }',
  ' elsif ($op eq "read") { if (open(my $fh, "<", $a[0])) { local $/; $out = <$fh>; $out = "" unless defined $out; $done = close $fh } }',
  ' elsif ($op eq "lstat" || $op eq "stat") { my @s = $op eq "stat" ? stat $a[0] : lstat $a[0]; $done = 1; $out = @s ? kind($op eq "lstat", @s) . " " . $s[7] : "-" }',
  ' elsif ($op eq "ls") { my @lines; $done = walk($a[0], "", $a[1] || 1, \\@lines); $out = join("\\n", @lines) }',
  ' else { print "err EINVAL ", unpack("H*", "unknown operation $op"), "\\n"; exit 3 }',
  ' if ($done) { print "ok ", unpack("H*", $out), "\\n"; next }',
  ' my $e = errname(); if ($ok{$e}) { print "no $e\\n"; next }',
  ' print "err $e ", unpack("H*", "$op $a[0]: $!"), "\\n"; exit 3 }',
].join('\n');

export type ConfigfsOp =
  | { op: 'mkdir' | 'rmdir' | 'unlink' | 'read' | 'lstat' | 'stat'; path: string; tolerate?: readonly string[] }
  | { op: 'write'; path: string; value: string; tolerate?: readonly string[] }
  | { op: 'symlink'; target: string; path: string; tolerate?: readonly string[] }
  | { op: 'ls'; path: string; depth: number; tolerate?: readonly string[] };

/** One operation's answer: its output, or the errno it was allowed to end with. */
export type ConfigfsReply = { ok: true; output: string } | { ok: false; errno: string };

/** What `ls` lists: a path relative to the listed directory, its kind (d, f, l, b, o) and a link's target. */
export interface ConfigfsEntry {
  path: string;
  kind: string;
  link: string;
}

export function parseListing(output: string): ConfigfsEntry[] {
  return output
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [kind = '', path = '', link = ''] = line.split(' ');
      return { kind, path: Buffer.from(path, 'hex').toString('latin1'), link: Buffer.from(link, 'hex').toString('latin1') };
    });
}

/** Raised when an operation failed with an errno the caller did not tolerate. */
export class ConfigfsOpError extends Error {
  constructor(
    readonly errno: string,
    readonly detail: string,
    readonly index: number,
  ) {
    super(detail);
    this.name = 'ConfigfsOpError';
  }
}

export class ConfigfsChannel {
  constructor(
    private readonly host: TargetHost,
    readonly root: string,
    private readonly backendName: string,
    private readonly secrets: SecretRegistry,
  ) {}

  /** Runs the operations in order; throws ConfigfsOpError at the first one that fails (the rest are not run). */
  async send(ops: readonly ConfigfsOp[], operation: string): Promise<ConfigfsReply[]> {
    if (ops.length === 0) return [];
    const input = ops.map((op) => `${encode(op)}\n`).join('');
    const result = await this.run([...(await this.host.privileged()), 'perl', '-e', RELAY, this.root], operation, input);
    const lines = result.stdout.split('\n').filter((line) => /^(ok|no|err) /.test(line));
    const replies: ConfigfsReply[] = [];
    for (const line of lines) {
      const [status, first = '', second = ''] = line.split(' ');
      if (status === 'ok') replies.push({ ok: true, output: Buffer.from(first, 'hex').toString('latin1') });
      else if (status === 'no') replies.push({ ok: false, errno: first });
      else throw new ConfigfsOpError(first, this.secrets.redact(Buffer.from(second, 'hex').toString('latin1')), replies.length);
    }
    if (result.exitCode !== 0 || replies.length !== ops.length) this.failed(result, operation);
    return replies;
  }

  private async run(argv: string[], operation: string, input: string): Promise<CommandResult> {
    try {
      return await this.host.runner.run(argv, { operation, input });
    } catch (error) {
      if (error instanceof CommandTransportError) throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.backendName}": ${this.secrets.redact(error.message)}`);
      throw error;
    }
  }

  private failed(result: CommandResult, operation: string): never {
    const output = this.secrets.redact(`${result.stderr}\n${result.stdout.replace(/^(ok|no) .*$/gm, '')}`.trim()).slice(0, 2000);
    const backend = `backend "${this.backendName}"`;
    const where = this.host.runner.target;
    if (result.exitCode === 127 || /perl: not found|No such file or directory/.test(output)) {
      throw new StorageError('BACKEND_UNAVAILABLE', `${backend}: ${operation}: perl is not installed on ${where}; the LIO target is configured through it (Debian: perl-base)`);
    }
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `${backend}: ${operation} failed on ${where} (exit ${result.exitCode}): ${output || 'the configfs relay stopped early without saying why'}`,
    );
  }
}

function hex(text: string): string {
  return Buffer.from(text, 'latin1').toString('hex');
}

function encode(op: ConfigfsOp): string {
  const tolerate = op.tolerate && op.tolerate.length > 0 ? op.tolerate.join(',') : '-';
  switch (op.op) {
    case 'write':
      return `write ${tolerate} ${hex(op.path)} ${hex(op.value)}`;
    case 'symlink':
      return `symlink ${tolerate} ${hex(op.target)} ${hex(op.path)}`;
    case 'ls':
      return `ls ${tolerate} ${hex(op.path)} ${hex(String(op.depth))}`;
    default:
      return `${op.op} ${tolerate} ${hex(op.path)}`;
  }
}
