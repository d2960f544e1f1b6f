// PostgreSQL 15 (Debian's) in an image from the host, running as user postgres (the server
// refuses root), its cluster made by initdb at the first start in the R/W layer. Before the
// handoff: `pgbench -i -s SCALE` (server-side generation, ~15 MB per scale unit) and a
// reference table no client touches. Through the handoff: pgbench (4 clients, bounded by
// transaction count) and a psql session holding an open transaction, committed afterwards.
// Checked afterwards, by the server's own queries: the reference table's row count and md5
// equal before and after; TPC-B's invariant (sum of account, teller, branch balances = sum
// of history deltas); one history row per transaction pgbench reports; the held row present.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import type { HostImageSpec } from '../../images/host-image.js';
import { run } from '../../util/exec.js';
import { nsenterArgs } from '../../lab/netns.js';
import type { LabState } from '../../lab/state.js';
import { spawnInClientNs } from './client-process.js';
import { APP_USER_FILES } from './python-apps.js';
import type { AppContext, AppDef, ClientOutcome } from './types.js';

const PG = '/usr/lib/postgresql/15';
const SCALE = 15;
const CLIENTS = 4;
const TX_PER_CLIENT = 2500;

const START_SH = `#!/bin/sh
set -e
D=/var/lib/postgresql/data
if [ ! -s $D/PG_VERSION ]; then
  ${PG}/bin/initdb -D $D --no-locale -E UTF8 -A trust -U postgres >/dev/null
  echo "listen_addresses = '*'" >> $D/postgresql.conf
  echo "host all all 0.0.0.0/0 trust" >> $D/pg_hba.conf
fi
exec ${PG}/bin/postgres -D $D -c shared_buffers=64MB -c max_wal_size=1GB -c unix_socket_directories=/tmp
`;

async function postgresImage(): Promise<HostImageSpec> {
  return {
    name: 'cloudlet-apps/postgres:15',
    binaries: [`${PG}/bin/postgres`, `${PG}/bin/initdb`],
    trees: [{ path: `${PG}/lib`, exclude: ['bitcode'] }, { path: '/usr/share/postgresql/15', exclude: ['man'] }, { path: '/usr/share/zoneinfo' }],
    files: [
      ...APP_USER_FILES.map((f) => ({ ...f, content: f.content.replace(/app/g, 'postgres').replace('/home/postgres', '/var/lib/postgresql') })),
      { path: '/app/start.sh', content: START_SH, mode: 0o755 },
    ],
    dirs: [{ path: '/var/lib/postgresql', mode: 0o1777 }],
    cmd: ['/app/start.sh'],
    config: { user: 'postgres', exposedPorts: ['5432/tcp'] },
  };
}

/** psql -At in the client namespace: one query, its output. */
async function psql(lab: LabState, address: string, sql: string): Promise<string> {
  const args = ['-h', address, '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql];
  const { stdout } = await run('nsenter', nsenterArgs(lab.client.namespace, `${PG}/bin/psql`, args), { timeoutMs: 600_000 });
  return stdout.trim();
}

const REF_CHECK = `SELECT count(*) || ' ' || md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM ref`;
const INVARIANT = `SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || (SELECT coalesce(sum(delta), 0) FROM pgbench_history) || ' ' || (SELECT count(*) FROM pgbench_history)`;

let refBefore = '';

async function prepare(ctx: AppContext): Promise<void> {
  ctx.progress(`pgbench -i -s ${SCALE} (server-side generation)`);
  await run(
    'nsenter',
    nsenterArgs(ctx.lab.client.namespace, `${PG}/bin/pgbench`, [
      '-h',
      ctx.address,
      '-U',
      'postgres',
      '-i',
      '-s',
      String(SCALE),
      '-I',
      'dtGvp',
      '-q',
      'postgres',
    ]),
    {
      timeoutMs: 900_000,
    },
  );
  await psql(ctx.lab, ctx.address, `CREATE TABLE ref AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g; CREATE TABLE held (id int)`);
  refBefore = await psql(ctx.lab, ctx.address, REF_CHECK);
  const size = await psql(ctx.lab, ctx.address, `SELECT pg_database_size('postgres')`);
  ctx.progress(`database ${(Number(size) / 1e6).toFixed(0)} MB; ref table ${refBefore}`);
}

async function startClient(ctx: AppContext) {
  const logDir = await mkdtemp(join(os.tmpdir(), 'cloudlet-apps-pgbench-'));
  const bench = spawnInClientNs(ctx.lab, `${PG}/bin/pgbench`, [
    '-h',
    ctx.address,
    '-U',
    'postgres',
    '-c',
    String(CLIENTS),
    '-j',
    '2',
    '-t',
    String(TX_PER_CLIENT),
    '-l',
    '--log-prefix',
    join(logDir, 'tx'),
    'postgres',
  ]);
  const held = spawnInClientNs(ctx.lab, `${PG}/bin/psql`, ['-h', ctx.address, '-U', 'postgres', '-d', 'postgres', '-At']);
  held.write("BEGIN; INSERT INTO held VALUES (42); SELECT 'open';\n");
  const stop = async (): Promise<ClientOutcome> => {
    held.write("COMMIT; SELECT 'committed';\n\\q\n");
    const h = await held.exited;
    const b = await bench.exited;
    const done: number[] = [];
    for (const f of await readdir(logDir)) {
      // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
      for (const line of (await readFile(join(logDir, f), 'utf8')).split('\n')) {
        const p = line.split(' ');
        if (p.length >= 6) done.push(Number(p[4]) * 1000 + Number(p[5]) / 1000);
      }
    }
    await rm(logDir, { recursive: true, force: true });
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(b.stdout)?.[1] ?? -1);
    const failedTx = Number(/number of failed transactions: (\d+)/.exec(b.stdout)?.[1] ?? -1);
    const heldCommitted = h.stdout.includes('committed') && !/ERROR|FATAL/.test(h.stderr);
    const refAfter = await psql(ctx.lab, ctx.address, REF_CHECK);
    const inv = (await psql(ctx.lab, ctx.address, INVARIANT)).split(' ').map(Number);
    const heldRows = Number(await psql(ctx.lab, ctx.address, 'SELECT count(*) FROM held WHERE id = 42'));
    const invariantOk = inv.length === 5 && inv[0] === inv[3] && inv[1] === inv[3] && inv[2] === inv[3];
    const historyOk = inv[4] === processed;
    const errors = [...b.stderr.split('\n').filter((l) => /error|abort|fatal/i.test(l)), ...h.stderr.split('\n').filter((l) => l.trim() !== '')].slice(0, 5);
    return {
      ops: processed < 0 ? 0 : processed,
      failedOps: (failedTx < 0 ? 0 : failedTx) + (b.code === 0 ? 0 : 1) + (heldCommitted ? 0 : 1) + (processed === CLIENTS * TX_PER_CLIENT ? 0 : 1),
      errors,
      done,
      bytes: 0,
      stateOk: refAfter === refBefore && invariantOk && historyOk && heldRows === 1,
      checks: {
        ref: { before: refBefore, after: refAfter },
        tpcbInvariant: { accounts: inv[0], tellers: inv[1], branches: inv[2], historyDelta: inv[3], ok: invariantOk },
        historyRows: inv[4],
        pgbench: { processed, failedTx, exit: b.code, expected: CLIENTS * TX_PER_CLIENT },
        heldTransaction: { committed: heldCommitted, rows: heldRows },
      },
    };
  };
  return { ready: Promise.resolve(), stop };
}

export const POSTGRES: AppDef = {
  name: 'postgres',
  description: `PostgreSQL 15 as user postgres, pgbench scale ${SCALE} in the R/W layer; client: pgbench ${CLIENTS} clients x ${TX_PER_CLIENT} transactions and a psql session holding a transaction open across the handoff`,
  port: 5432,
  image: postgresImage,
  prepare,
  startClient,
  startTimeoutMs: 120_000,
  downtimeVsCounter: 2,
};
