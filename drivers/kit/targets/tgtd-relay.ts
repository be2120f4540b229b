import { StorageError } from '../../../src/base/errors.js';
import { CommandTransportError, type CommandResult, type CommandRunner } from '../exec/runner.js';
import type { SecretRegistry } from '../../../src/base/secrets.js';
import type { VolumeRef } from '../types.js';
import { TGTD_SOCKET, decodeReply, encodeRequest, type TgtReply, type TgtRequest } from './tgtd-protocol.js';

export interface TargetHost {
  runner: CommandRunner;
  /** The root helper prefix for tgt's commands on that host ([] when they run as root). */
  privileged(): Promise<string[]>;
  /** Makes the backing device present before tgt opens it (LVM activates the LV). */
  prepareBacking?(volume: VolumeRef): Promise<void>;
}

/**
 * Carries tgtd requests to the target's host, wherever that is (this host as root, through the
 * root helper, or over SSH): a few lines of perl (always there with tgt, whose tgt-admin is perl)
 * read hex-encoded requests on stdin, one a line, pass each to tgtd's socket and print each reply
 * hex-encoded. The argv holds only this script and the socket path; CHAP passwords travel on
 * stdin and in the socket. It stops after the first reply that is an error.
 */
const RELAY = [
  'use strict; use IO::Socket::UNIX; $SIG{PIPE} = "IGNORE"; my $path = shift;',
  'while (my $hex = <STDIN>) { $hex =~ s/\\s+//g; next if $hex eq "";',
  ' my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or do { my $denied = $!{EACCES} || $!{EPERM}; print STDERR "can\'t connect to tgt daemon at $path: $!\\n"; exit($denied ? 5 : 3) };',
  ' my $req = pack("H*", $hex); my $off = 0;',
  ' while ($off < length $req) { my $n = syswrite($s, $req, length($req) - $off, $off); defined $n or do { print STDERR "failed to send request to tgt daemon: $!\\n"; exit 4 }; $off += $n }',
  ' my $rsp = ""; my $want = 8;',
  ' while (length $rsp < $want) { my $n = sysread($s, $rsp, 65536, length $rsp); defined $n or do { print STDERR "failed to read the reply of tgt daemon: $!\\n"; exit 4 }; last if !$n;',
  '  $want = unpack("x4 V", $rsp) if $want == 8 && length $rsp >= 8 }',
  ' close $s; print unpack("H*", $rsp), "\\n"; exit 0 if length $rsp < 8 || unpack("V", $rsp) }',
].join('\n');

/** What messages about the target host say. */
export interface TgtdPlace {
  backendName: string;
  /** Where tgtd should listen, for the "start tgtd" hint. */
  portal: string;
}

export class TgtdChannel {
  constructor(
    private readonly host: TargetHost,
    private readonly place: TgtdPlace,
    private readonly secrets: SecretRegistry,
  ) {}

  /**
   * Sends the requests in order, each on its own connection as tgtadm does. Answers one reply per
   * request sent: all of them, or up to and including the first error (the rest are not sent).
   */
  async send(requests: readonly TgtRequest[]): Promise<TgtReply[]> {
    if (requests.length === 0) return [];
    // Encoding checks every request: one refused request leaves the whole batch unsent.
    const input = requests.map((request) => `${encodeRequest(request).toString('hex')}\n`).join('');
    const operation = requests.length === 1 ? requests[0].operation : `${requests[0].operation} (and ${requests.length - 1} more tgtd requests)`;
    const result = await this.run([...(await this.host.privileged()), 'perl', '-e', RELAY, TGTD_SOCKET], operation, input);
    // One line per reply; an empty one is a connection tgtd closed without answering.
    const lines = result.stdout
      .split('\n')
      .slice(0, -1)
      .filter((line) => /^[0-9a-f]*$/.test(line));
    if (result.exitCode !== 0) this.failed(result, requests[lines.length]?.operation ?? operation);
    const replies: TgtReply[] = [];
    for (const [index, line] of lines.entries()) {
      const reply = decodeReply(Buffer.from(line, 'hex'));
      if (!reply) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.place.backendName}": ${requests[index].operation}: tgtd on ${this.host.runner.target} closed the connection without a full answer; it answers root only (set the global root_helper where the server is not root)`,
        );
      }
      replies.push(reply);
    }
    if (replies.length === 0 || (replies.length < requests.length && replies.at(-1)!.code === 0)) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.place.backendName}": ${operation}: the relay to tgtd on ${this.host.runner.target} stopped early without saying why`,
      );
    }
    return replies;
  }

  /** One request whose error is an answer, not a failure. */
  async ask(request: TgtRequest): Promise<TgtReply> {
    return (await this.send([request]))[0];
  }

  private async run(argv: string[], operation: string, input: string): Promise<CommandResult> {
    try {
      return await this.host.runner.run(argv, { operation, input });
    } catch (error) {
      if (error instanceof CommandTransportError) throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.place.backendName}": ${this.secrets.redact(error.message)}`);
      throw error;
    }
  }

  private failed(result: CommandResult, operation: string): never {
    const output = this.secrets.redact(`${result.stderr}\n${result.stdout.replace(/^[0-9a-f]+$/gm, '')}`.trim()).slice(0, 2000);
    const backend = `backend "${this.place.backendName}"`;
    const where = this.host.runner.target;
    if (result.exitCode === 5 || /sudo: .*(password|terminal) is required|sudo: .*not allowed|is not in the sudoers/.test(output)) {
      throw new StorageError(
        'UNSUPPORTED',
        `${backend}: ${operation}: tgtd on ${where} answers root only (${firstLine(output)}); run the server as root there, or set the global root_helper (e.g. "sudo -n") and let it run perl without a password`,
      );
    }
    if (result.exitCode === 3) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `${backend}: ${operation}: tgtd is not running on ${where} (${firstLine(output)}); start tgtd (control port 0) listening on ${this.place.portal}`,
      );
    }
    if (result.exitCode === 127 || /command not found|perl: not found|No such file or directory/.test(output)) {
      throw new StorageError('BACKEND_UNAVAILABLE', `${backend}: ${operation}: perl is not installed on ${where}; tgt's own tools need it (Debian: apt-get install tgt)`);
    }
    throw new StorageError('BACKEND_UNAVAILABLE', `${backend}: ${operation} failed on ${where} (exit ${result.exitCode}): ${output}`);
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? '';
}
