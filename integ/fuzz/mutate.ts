/**
 * Engine-independent mutation of byte strings, and text that parsers trip over
 * (invalid UTF-8, embedded NULs, huge strings).
 */
import { Random } from './random';

/** Byte sequences that are not valid UTF-8 in interesting ways. */
const INVALID_UTF8: readonly Buffer[] = [
  Buffer.from([0xff]),
  Buffer.from([0xc3, 0x28]), // bad continuation
  Buffer.from([0xc0, 0x80]), // overlong NUL
  Buffer.from([0xed, 0xa0, 0x80]), // lone surrogate
  Buffer.from([0xf4, 0x90, 0x80, 0x80]), // above U+10FFFF
  Buffer.from([0xe2, 0x82]), // truncated sequence
  Buffer.from([0x80, 0x80, 0x80]),
  Buffer.from([0xfe, 0xfe, 0xff, 0xff]),
];

/** Text for names, parameters and SQL: valid, odd, or broken. */
export function fuzzText(random: Random, corpus: readonly string[] = []): Buffer {
  switch (random.int(corpus.length > 0 ? 8 : 6)) {
    case 0:
      return Buffer.alloc(0);
    case 1:
      return Buffer.from(randomAscii(random, random.size(64)), 'latin1');
    case 2:
      return Buffer.concat([Buffer.from(randomAscii(random, random.int(8)), 'latin1'), random.pick(INVALID_UTF8), Buffer.from(randomAscii(random, random.int(8)), 'latin1')]);
    case 3:
      return random.bytes(random.size(256));
    case 4:
      return Buffer.from(`x\0${randomAscii(random, 4)}`, 'latin1'); // embedded NUL
    case 5:
      return Buffer.alloc(random.pick([255, 256, 1024, 65535, 70_000]), random.pick([0x41, 0x27, 0x5c, 0x00]));
    default: {
      const text = Buffer.from(random.pick(corpus), 'utf8');
      return random.chance(0.25) ? mutateBytes(random, text) : text;
    }
  }
}

export function randomAscii(random: Random, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += String.fromCharCode(random.range(0x20, 0x7e));
  return out;
}

/** One random structural mutation of a buffer: flips, edits, truncation, insertion, duplication. */
export function mutateBytes(random: Random, input: Buffer): Buffer {
  if (input.length === 0) return random.bytes(random.size(16));
  const out = Buffer.from(input);
  switch (random.int(7)) {
    case 0: {
      for (let flips = random.range(1, 4); flips > 0; flips--) {
        const at = random.int(out.length);
        out[at] = out[at]! ^ (1 << random.int(8));
      }
      return out;
    }
    case 1: {
      out[random.int(out.length)] = random.pick([0x00, 0xff, 0x7f, 0x80, random.next() & 0xff]);
      return out;
    }
    case 2:
      return out.subarray(0, random.int(out.length));
    case 3: {
      const at = random.int(out.length + 1);
      return Buffer.concat([out.subarray(0, at), random.bytes(random.size(32)), out.subarray(at)]);
    }
    case 4: {
      const from = random.int(out.length);
      const to = Math.min(out.length, from + random.size(32));
      return Buffer.concat([out.subarray(0, to), out.subarray(from, to), out.subarray(to)]);
    }
    case 5: {
      const from = random.int(out.length);
      return Buffer.concat([out.subarray(0, from), out.subarray(Math.min(out.length, from + random.range(1, 16)))]);
    }
    default: {
      // An interesting 32-bit value written over a random aligned-ish position (lengths, counts, ids).
      if (out.length < 4) return out;
      const at = random.int(out.length - 3);
      out.writeUInt32BE(interestingUint32(random), at);
      return out;
    }
  }
}

/** Values at or around the edges of signed/unsigned integer ranges. */
export function interestingUint32(random: Random): number {
  return random.pick([0, 1, 2, 3, 4, 5, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffff, 0x1000000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, random.next()]) >>> 0;
}

export function interestingInt16(random: Random): number {
  return random.pick([0, 1, 2, 3, 0x7fff, -1, -2, -32768, 100, 1000, random.range(-32768, 32767)]);
}

/** Splices the head of one input to the tail of another. */
export function splice(random: Random, left: Buffer, right: Buffer): Buffer {
  return Buffer.concat([left.subarray(0, random.int(left.length + 1)), right.subarray(random.int(right.length + 1))]);
}
