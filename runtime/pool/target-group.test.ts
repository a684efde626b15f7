import { ProbeResult, Target, TargetDescription, TargetGroup, TargetProber } from './target-group';

// ---------- test doubles ----------

/** What each target answers to a probe, set by the test: writable, read-only, down, or a topology hint. */
class Topology {
  readonly answers = new Map<string, ProbeResult | 'down'>();
  readonly closedProbers: string[] = [];
  probes = 0;

  set(port: number, answer: ProbeResult | 'down'): void {
    this.answers.set(`h:${port}`, answer);
  }

  prober(target: Target): TargetProber {
    const key = `${target.host}:${target.port}`;
    return {
      probe: async () => {
        this.probes++;
        const answer = this.answers.get(key) ?? 'down';
        if (answer === 'down') throw new Error('connect ECONNREFUSED');
        return answer;
      },
      close: () => this.closedProbers.push(key),
    };
  }
}

const t = (port: number, extra: Partial<TargetDescription> = {}): TargetDescription => ({ host: 'h', port, ...extra });

function group(topology: Topology, targets: TargetDescription[]): { group: TargetGroup; changes: (string | null)[] } {
  const changes: (string | null)[] = [];
  const g = new TargetGroup(targets, {
    createProber: (target) => topology.prober(target),
    intervalMs: 1000,
    fastIntervalMs: 10,
    probeTimeoutMs: 500,
    onWriterChanged: (writer) => changes.push(writer ? String(writer.port) : null),
  });
  return { group: g, changes };
}

async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition never held');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const groups: TargetGroup[] = [];
afterEach(() => {
  for (const g of groups.splice(0)) g.stop();
});

function started(topology: Topology, targets: TargetDescription[]): { group: TargetGroup; changes: (string | null)[] } {
  const made = group(topology, targets);
  groups.push(made.group);
  made.group.start();
  return made;
}

// ---------- tests ----------

test('a writable target becomes the writer; a stale former writer coming back is not taken', async () => {
  const topology = new Topology();
  topology.set(1, { writable: true });
  topology.set(2, { writable: false });
  const { group: g, changes } = started(topology, [t(1), t(2)]);
  await until(() => g.writer?.port === 1);
  topology.set(1, 'down');
  topology.set(2, { writable: true });
  await until(() => g.writer?.port === 2);
  topology.set(1, { writable: true });
  await new Promise((r) => setTimeout(r, 100));
  expect(g.writer?.port).toBe(2);
  expect(changes).toEqual(['1', '2']);
});

test('an RDS writer hint is never taken without the probe, and is preferred among writable targets', async () => {
  const topology = new Topology();
  topology.set(1, { writable: false });
  topology.set(2, { writable: false });
  const { group: g, changes } = started(topology, [t(1, { writerHint: true }), t(2)]);
  await until(() => topology.probes >= 6);
  // RDS says 1 is the writer, but it does not report itself writable: no writer (fencing).
  expect(g.writer).toBeNull();
  topology.set(2, { writable: true });
  await until(() => g.writer?.port === 2);
  // A failover: the listing now names 1, and 1 is writable too. The hint wins over stickiness,
  // and the group probes at once instead of waiting for the next tick.
  topology.set(1, { writable: true });
  g.setTargets([t(1, { writerHint: true }), t(2)]);
  await until(() => g.writer?.port === 1, 300);
  expect(changes).toEqual(['2', '1']);
  // A stale listing naming a former writer again does not move the writer back.
  g.setTargets([t(1), t(2, { writerHint: true })]);
  await new Promise((r) => setTimeout(r, 100));
  expect(g.writer?.port).toBe(1);
});

test("a topology view's writer id names the target by instance identifier or endpoint prefix", async () => {
  const topology = new Topology();
  // Both answer writable (as a stale writer could); the topology view names the writer.
  topology.answers.set('db-1.abc.us-east-1.rds.amazonaws.com:1', { writable: true, topologyWriterId: 'db-2' });
  topology.set(2, { writable: true, topologyWriterId: 'db-2' });
  const byId = group(topology, [{ host: 'db-1.abc.us-east-1.rds.amazonaws.com', port: 1 }, t(2, { instanceId: 'db-2' })]);
  groups.push(byId.group);
  byId.group.start();
  await until(() => byId.group.writer !== null);
  expect(byId.group.writer?.port).toBe(2);

  topology.answers.set('db-1.abc.us-east-1.rds.amazonaws.com:1', { writable: true, topologyWriterId: 'db-1' });
  topology.set(2, { writable: true, topologyWriterId: 'db-1' });
  const byHost = group(topology, [t(2, { instanceId: 'db-2' }), { host: 'db-1.abc.us-east-1.rds.amazonaws.com', port: 1 }]);
  groups.push(byHost.group);
  byHost.group.start();
  await until(() => byHost.group.writer !== null);
  expect(byHost.group.writer?.port).toBe(1);
});

test('added targets are probed, removed ones closed; a removed writer is dropped like a lost one', async () => {
  const topology = new Topology();
  topology.set(1, { writable: true });
  topology.set(2, { writable: false });
  const { group: g, changes } = started(topology, [t(1)]);
  await until(() => g.writer?.port === 1);
  const writerObject = g.writer;
  g.setTargets([t(1), t(2)]);
  await until(() => g.health().some((h) => h.target.port === 2 && h.role === 'READ_ONLY'));
  // The writer keeps its identity across listings (connections compare targets by identity).
  expect(g.writer).toBe(writerObject);
  g.setTargets([t(2)]);
  expect(g.writer).toBeNull();
  expect(changes).toEqual(['1', null]);
  expect(topology.closedProbers).toContain('h:1');
  expect(g.health().map((h) => h.target.port)).toEqual([2]);
  topology.set(2, { writable: true });
  await until(() => g.writer?.port === 2);
});

test('a target the RDS API reports as not serving is UNAVAILABLE with the reason, even if it answers writable', async () => {
  const topology = new Topology();
  topology.set(1, { writable: true });
  topology.set(2, { writable: false });
  const { group: g } = started(topology, [t(1), t(2)]);
  await until(() => g.writer?.port === 1);
  g.setTargets([t(1, { unavailable: { reason: 'UNREACHABLE', description: 'DB instance db-1 is rebooting' } }), t(2)]);
  expect(g.writer).toBeNull();
  expect(g.health()[0]).toEqual({ target: { host: 'h', port: 1 }, role: 'UNKNOWN', state: 'UNAVAILABLE', reason: 'UNREACHABLE', description: 'DB instance db-1 is rebooting' });
  await new Promise((r) => setTimeout(r, 100));
  expect(g.writer).toBeNull();
  expect(g.health()[0]?.state).toBe('UNAVAILABLE');
  topology.set(2, { writable: true });
  await until(() => g.writer?.port === 2);
});

test('waitForWriter resolves when the first listing brings a writer to an empty group', async () => {
  const topology = new Topology();
  topology.set(7, { writable: true });
  const { group: g } = started(topology, []);
  const waiting = g.waitForWriter();
  g.setTargets([t(7)]);
  expect((await waiting).port).toBe(7);
});

test('a hint that never comes true speeds probing up for a while only', async () => {
  const topology = new Topology();
  topology.set(1, { writable: true });
  topology.set(2, { writable: false });
  let clock = 0;
  const g = new TargetGroup([t(1), t(2, { writerHint: true })], {
    createProber: (target) => topology.prober(target),
    intervalMs: 1000,
    fastIntervalMs: 10,
    probeTimeoutMs: 500,
    onWriterChanged: () => undefined,
    now: () => clock,
  });
  groups.push(g);
  g.start();
  await until(() => g.writer?.port === 1);
  const before = topology.probes;
  await new Promise((r) => setTimeout(r, 200));
  // Target 2 is named the writer but stays read-only: fast probing while a failover may be under way…
  expect(topology.probes - before).toBeGreaterThan(10);
  clock += 31_000;
  await new Promise((r) => setTimeout(r, 50));
  const settled = topology.probes;
  await new Promise((r) => setTimeout(r, 300));
  // …then back to the normal interval, with the writer unchanged.
  expect(topology.probes - settled).toBeLessThanOrEqual(2);
  expect(g.writer?.port).toBe(1);
});
