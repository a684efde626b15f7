import { StatementRegistry } from './statements';

describe('StatementRegistry', () => {
  it('gives one server name per distinct text and parameter types', () => {
    const registry = new StatementRegistry();
    const first = registry.nameFor(Buffer.from('SELECT $1\0\0\x01\0\0\0\x17'));
    expect(registry.nameFor(Buffer.from('SELECT $1\0\0\x01\0\0\0\x17'))).toBe(first);
    expect(registry.nameFor(Buffer.from('SELECT $1\0\0\x01\0\0\0\x19'))).not.toBe(first);
    expect(registry.size).toBe(2);
  });

  it('holds at most 16 MiB of statement text, however many distinct big statements arrive', () => {
    const registry = new StatementRegistry();
    const names = new Set<string>();
    for (let i = 0; i < 400; i++) names.add(registry.nameFor(Buffer.from(`SELECT ${i} /* ${'x'.repeat(64 * 1024)} */\0\0\0`)));
    // Every statement still got its own name; only deduplication stopped at the bound.
    expect(names.size).toBe(400);
    expect(registry.bytes).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(registry.size).toBeLessThan(400);
  });
});
