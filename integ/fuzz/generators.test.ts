/**
 * The fuzz generators are reproducible from (seed, connection), and the stream models that
 * decide where a message ends agree with the proxy's framing rules.
 */
import { mysqlHandshakeInputs, mysqlPostLoginInput, MysqlClientStreamModel, packet } from './mysql';
import { PgFrontendStreamModel, pgPostLoginInput, pgPreStartupInputs, typed } from './pg';
import { Random, connectionRandom } from './random';

function sample(seed: number, index: number): string {
  const random = connectionRandom(seed, index);
  const inputs = [...pgPreStartupInputs(random, ['a']), ...mysqlHandshakeInputs(random, ['a'])];
  for (let i = 0; i < 50; i++) inputs.push(pgPostLoginInput(random), mysqlPostLoginInput(random));
  return Buffer.concat(inputs).toString('hex');
}

test('the same seed and connection number give the same inputs; others differ', () => {
  expect(sample(7, 3)).toBe(sample(7, 3));
  expect(sample(7, 3)).not.toBe(sample(7, 4));
  expect(sample(7, 3)).not.toBe(sample(8, 3));
});

test('Random stays in range', () => {
  const random = new Random(1);
  const seen = new Set<number>();
  for (let i = 0; i < 10_000; i++) seen.add(random.range(-3, 5));
  expect([...seen].sort((a, b) => a - b)).toEqual([-3, -2, -1, 0, 1, 2, 3, 4, 5]);
});

test('PostgreSQL model: boundaries, split headers, and what the proxy refuses', () => {
  const model = new PgFrontendStreamModel(1024);
  const query = typed(0x51, Buffer.from('SELECT 1\0'));
  model.feed(query.subarray(0, 3));
  expect(model.owed).toBe(2);
  model.feed(query.subarray(3, 7));
  expect(model.owed).toBe(query.length - 7);
  model.feed(query.subarray(7));
  expect([model.owed, model.ended]).toEqual([0, null]);

  const tooLarge = new PgFrontendStreamModel(1024);
  tooLarge.feed(Buffer.from([0x51, 0, 0, 4, 0]));
  expect(tooLarge.ended).toBe('too-large');
  const badType = new PgFrontendStreamModel(1024);
  badType.feed(typed(0x70, Buffer.alloc(0)));
  expect(badType.ended).toBe('bad-type');
  const badLength = new PgFrontendStreamModel(1024);
  badLength.feed(Buffer.from([0x51, 0, 0, 0, 3]));
  expect(badLength.ended).toBe('invalid-length');
});

test('MySQL model: packet boundaries and 16 MB continuations', () => {
  const model = new MysqlClientStreamModel(64 * 1024 * 1024);
  model.feed(packet(Buffer.from([0x03, 0x41]), 0));
  expect([model.owed, model.continues]).toEqual([0, false]);
  model.feed(Buffer.from([0xff, 0xff, 0xff, 0]));
  expect([model.owed, model.continues]).toEqual([0xffffff, true]);
  model.feed(Buffer.alloc(0xffffff));
  model.feed(packet(Buffer.alloc(0), 1));
  expect([model.owed, model.continues, model.ended]).toEqual([0, false, null]);
});
