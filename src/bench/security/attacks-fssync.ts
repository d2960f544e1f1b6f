// Attacks on filesystem sync: a hostile peer's batch whose capability dump (the xattrs set
// with setfattr as root after rsync) names a file outside the target - by absolute path, by
// `..`, or through a symlink the batch itself creates. Each batch is a real one (FsSyncSource
// on a real tree), its trailer rewritten, then applied with the real apply code to a real
// target in the temp dir; the stand-in files outside keep their bytes and xattrs.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { applyBatch } from '../../fssync/apply.js';
import { appendTrailer, readTrailer } from '../../fssync/batch-file.js';
import { FsSyncSource } from '../../fssync/index.js';
import type { Attack, Outcome } from './attack.js';
import type { Stage } from './setup.js';

/** security.capability = cap_net_raw+ep (what a peer would like to hand a host binary). */
const CAP_NET_RAW = '0x0100000200200000000000000000000000000000';

/** A real batch of a small tree (a file, and a symlink to `linkTo` when given). */
async function realBatch(work: string, linkTo?: string): Promise<string> {
  const src = join(work, 'src');
  await mkdir(src);
  await writeFile(join(src, 'f'), 'hello\n');
  if (linkTo) await symlink(linkTo, join(src, 'lnk'));
  const source = new FsSyncSource({ sourceDir: src, stateDir: join(work, 'state') });
  const batch = join(work, 'batch');
  try {
    await source.nextBatch(batch);
  } finally {
    await source.dispose();
  }
  return batch;
}

/** The same batch with `dump` as its capability dump (the rsync part unchanged). */
async function withCaps(batch: string, out: string, dump: string): Promise<void> {
  const trailer = await readTrailer(batch);
  const fh = await open(batch, 'r');
  try {
    const rsync = Buffer.alloc(trailer.rsyncBytes);
    await fh.read(rsync, 0, rsync.length, 0);
    await writeFile(out, rsync);
  } finally {
    await fh.close();
  }
  await appendTrailer(out, { ...trailer, caps: Buffer.from(dump, 'latin1').toString('base64') });
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function fssyncAttack(name: string, tried: string, opts: { dump: (s: Stage) => string; link?: boolean }): Attack {
  let target = '';
  return {
    name,
    tried,
    expect: { status: null, error: 'fssync_xattr_dump_unsafe' },
    run: async (s): Promise<Outcome> => {
      const work = await mkdtemp(join(s.dir, `fssync-${name}-`));
      const batch = await realBatch(work, opts.link ? s.host.outside : undefined);
      const hostile = join(work, 'hostile');
      await withCaps(batch, hostile, opts.dump(s));
      // The target is a sibling of the stand-ins' `outside`: `../outside/victim` reaches it.
      target = join(s.host.targets, name);
      await applyBatch(hostile, target);
      return { status: null, error: null, message: `batch applied to ${target}` };
    },
    // Refused before setfattr: the file in the target the dump also names got no capability.
    check: async () => {
      const f = join(target, 'f');
      if (!(await exists(f))) return null;
      const caps = execFileSync('getfattr', ['-h', '-d', '-e', 'hex', '-m', '^security\\.capability$', f], {
        stdio: ['ignore', 'pipe', 'ignore'],
      }).toString();
      return caps.includes('security.capability') ? `setfattr ran: ${f} got a capability` : null;
    },
  };
}

export const FSSYNC_ATTACKS: Attack[] = [
  fssyncAttack('xattr-absolute-path', "peer beta's capability dump names /etc/passwd (absolute path)", {
    dump: (s) => `# file: f\nsecurity.capability=${CAP_NET_RAW}\n\n# file: ${s.host.passwd}\nsecurity.capability=${CAP_NET_RAW}\n`,
  }),
  fssyncAttack('xattr-dotdot-path', "peer beta's capability dump names ../outside/victim", {
    dump: () => `# file: f\nsecurity.capability=${CAP_NET_RAW}\n\n# file: ../outside/victim\nsecurity.capability=${CAP_NET_RAW}\n`,
  }),
  fssyncAttack('xattr-symlink-path', "peer beta's batch makes lnk -> the target's outside neighbour, its dump names lnk/victim", {
    dump: () => `# file: f\nsecurity.capability=${CAP_NET_RAW}\n\n# file: lnk/victim\nsecurity.capability=${CAP_NET_RAW}\n`,
    link: true,
  }),
];
