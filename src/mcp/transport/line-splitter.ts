/**
 * Splits a byte stream into newline-delimited frames, holding at most `maxFrameBytes` of any one
 * frame. A longer frame is not kept: its bytes are dropped up to the next newline and it comes
 * out as `oversized`, with its length and a little of its start and end (where a request id
 * usually sits), so that the caller can answer it and carry on with the next frame.
 *
 * Frames are pulled one at a time with next(), so the caller decides how fast to take them
 * (backpressure) while only the chunks already read wait here.
 */
export type Frame = { kind: 'line'; bytes: Buffer } | { kind: 'oversized'; bytes: number; head: Buffer; tail: Buffer };

/** How much of an oversized frame's start and end is kept for recovering its id. */
const EDGE_BYTES = 1024;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

export class LineSplitter {
  /** Chunks not scanned for a newline yet. */
  private unscanned: Buffer[] = [];
  private unscannedBytes = 0;
  /** The pieces of the frame being gathered (no newline seen yet). */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** Set while dropping the rest of a frame that went over the limit. */
  private discarding: { bytes: number; head: Buffer; tail: Buffer } | undefined;
  private ended = false;

  constructor(readonly maxFrameBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.unscanned.push(chunk);
    this.unscannedBytes += chunk.length;
  }

  /** No more input: a last frame without a trailing newline still comes out of next(). */
  end(): void {
    this.ended = true;
  }

  /** Bytes held that are not yet part of a frame handed out. */
  get bufferedBytes(): number {
    return this.unscannedBytes + this.partialBytes;
  }

  /** The next complete frame, or undefined until more input arrives. Blank lines are skipped. */
  next(): Frame | undefined {
    while (this.unscanned.length > 0) {
      const chunk = this.unscanned[0];
      const newline = chunk.indexOf(NEWLINE);
      if (newline === -1) {
        this.unscanned.shift();
        this.unscannedBytes -= chunk.length;
        this.gather(chunk);
        continue;
      }
      const rest = chunk.subarray(newline + 1);
      if (rest.length > 0) this.unscanned[0] = rest;
      else this.unscanned.shift();
      this.unscannedBytes -= newline + 1;
      this.gather(chunk.subarray(0, newline));
      const frame = this.completeFrame();
      if (frame) return frame;
    }
    if (this.ended && (this.partialBytes > 0 || this.discarding)) return this.completeFrame();
    return undefined;
  }

  private gather(piece: Buffer): void {
    if (this.discarding) {
      this.discarding.bytes += piece.length;
      this.discarding.tail = lastBytes([this.discarding.tail, piece]);
      return;
    }
    if (this.partialBytes + piece.length <= this.maxFrameBytes) {
      if (piece.length > 0) this.partial.push(piece);
      this.partialBytes += piece.length;
      return;
    }
    // Over the limit: keep only the edges, never the frame.
    const pieces = [...this.partial, piece];
    this.discarding = {
      bytes: this.partialBytes + piece.length,
      head: Buffer.from(Buffer.concat(pieces.slice(0, 2)).subarray(0, EDGE_BYTES)),
      tail: lastBytes(pieces),
    };
    this.partial = [];
    this.partialBytes = 0;
  }

  private completeFrame(): Frame | undefined {
    if (this.discarding) {
      const { bytes, head, tail } = this.discarding;
      this.discarding = undefined;
      return { kind: 'oversized', bytes, head, tail };
    }
    let bytes = this.partial.length === 1 ? this.partial[0] : Buffer.concat(this.partial, this.partialBytes);
    this.partial = [];
    this.partialBytes = 0;
    if (bytes.length > 0 && bytes[bytes.length - 1] === CARRIAGE_RETURN) bytes = bytes.subarray(0, -1);
    return bytes.length > 0 && !isBlank(bytes) ? { kind: 'line', bytes } : undefined;
  }
}

/** A copy of the last EDGE_BYTES of the pieces, so a kept tail does not pin a whole chunk. */
function lastBytes(pieces: Buffer[]): Buffer {
  const kept: Buffer[] = [];
  let length = 0;
  for (let i = pieces.length - 1; i >= 0 && length < EDGE_BYTES; i--) {
    kept.unshift(pieces[i]);
    length += pieces[i].length;
  }
  const joined = Buffer.concat(kept);
  return Buffer.from(joined.subarray(Math.max(0, joined.length - EDGE_BYTES)));
}

function isBlank(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte !== 0x20 && byte !== 0x09 && byte !== CARRIAGE_RETURN) return false;
  return true;
}
