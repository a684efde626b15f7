import { MessageAssembler } from './message-assembler';

describe('MessageAssembler', () => {
  it('assembles a message from pieces and hands it over whole', () => {
    const assembler = new MessageAssembler();
    const message = Buffer.from(Array.from({ length: 50_000 }, (_, i) => i % 251));
    assembler.begin(message.length);
    let offset = 0;
    for (const size of [3, 1, 16_380, 20_000, 13_616]) {
      expect(assembler.complete).toBe(false);
      offset += assembler.fill(message, offset, offset + size);
    }
    expect(assembler.complete).toBe(true);
    expect(assembler.finish().equals(message)).toBe(true);
    expect(assembler.active).toBe(false);
  });

  it('takes no more than the message still needs', () => {
    const assembler = new MessageAssembler();
    assembler.begin(10);
    expect(assembler.fill(Buffer.alloc(25, 7), 0, 25)).toBe(10);
    expect(assembler.missingBytes).toBe(0);
    expect(assembler.finish().length).toBe(10);
  });

  it('does not allocate the declared size before the bytes arrive', () => {
    const assembler = new MessageAssembler();
    const before = process.memoryUsage().arrayBuffers;
    const held: MessageAssembler[] = [];
    for (let i = 0; i < 100; i++) {
      const each = new MessageAssembler();
      each.begin(64 * 1024 * 1024);
      each.fill(Buffer.alloc(5), 0, 5);
      held.push(each);
    }
    // 100 × 64 MiB declared; far less than 1 GiB may be held for 5 bytes each.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(100 * 64 * 1024);
    expect(held.every((each) => each.filledBytes === 5)).toBe(true);
    assembler.begin(1);
    expect(assembler.active).toBe(true);
  });
});
