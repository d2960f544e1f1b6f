// Scratch evidence run (not committed): holder service, per-request clients, handoffs, tcpdump.
import { spawn } from 'node:child_process';
import { readdir, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
const D = process.env.WT ?? '/work/wt-resets';
const { provisionHandoffService, removeService, startLabClient } = await import(`${D}/dist/src/bench/handoff.js`);
const { migrate } = await import(`${D}/dist/src/bench/handoff-provision.js`);
const { readLabState, labDir } = await import(`${D}/dist/src/lab/state.js`);
const out = process.env.OUT ?? '/tmp/rst/run';
await mkdir(out, { recursive: true });
const lab = readLabState(labDir());
const svc = await provisionHandoffService(lab, 'a', 'rst-svc', { netnsHolder: true });
console.log('service', svc.address);
const dumps = [];
const tcpd = [];
for (const ns of [lab.router.namespace, lab.cloudlets[0].namespace, lab.cloudlets[1].namespace]) {
  const p = spawn('nsenter', [`--net=/run/netns/${ns}`, 'tcpdump', '-i', 'any', '-nn', '-s', '128', '-w', join(out, `${ns}.pcap`), 'tcp port 8080'], { stdio: 'ignore' });
  tcpd.push(p);
}
// copy CRIU dump logs while they exist
let polling = true;
const seen = new Set();
async function walk(dir, depth) {
  if (depth > 8) return;
  let ents; try { ents = await readdir(dir, { withFileTypes: true }); } catch { return; }
  for (const e of ents) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, depth + 1);
    else if (e.name === 'dump.log' && !seen.has(p)) { try { await copyFile(p, join(out, `dump-${seen.size}.log`)); seen.add(p); } catch {} }
  }
}
const poller = (async () => { while (polling) { for (const c of lab.cloudlets) await walk(join(lab.dir, c.name), 0); await new Promise((r) => setTimeout(r, 40)); } })();
await new Promise((r) => setTimeout(r, 1000));
const N = Number(process.env.CLIENTS ?? 3);
const clients = [];
for (let i = 0; i < N; i++) clients.push(await startLabClient(svc.address, { durationMs: 120_000, intervalMs: Number(process.env.INTERVAL ?? 3), httpOnly: true, newConnectionPerRequest: true }));
await Promise.all(clients.map((c) => c.ready));
await new Promise((r) => setTimeout(r, 1500));
const reports = [];
const H = Number(process.env.HANDOFFS ?? 4);
let at = 'a';
for (let k = 0; k < H; k++) {
  const to = at === 'a' ? 'b' : 'a';
  const t0 = new Date().toISOString();
  const r = await migrate(lab, at, to, 'rst-svc');
  const t1 = new Date().toISOString();
  reports.push({ k, from: at, to, t0, t1, state: r.state, downtimeMs: r.downtimeMs, synGate: r.synGate, warnings: r.warnings, announceMs: r.announceMs, holdSetupMs: r.holdSetupMs, hold: r.hold, rounds: r.rounds?.map((x) => ({ i: x.index, final: x.final, dumpMs: x.dumpMs })), error: r.error });
  console.log(JSON.stringify(reports.at(-1)));
  if (r.state === 'done') at = to;
  await new Promise((r) => setTimeout(r, 1500));
}
const crs = await Promise.all(clients.map((c) => c.stop()));
polling = false; await poller;
for (const p of tcpd) p.kill('SIGINT');
await new Promise((r) => setTimeout(r, 500));
let errs = 0, sent = 0;
for (const [i, cr] of crs.entries()) {
  const s = cr.sessions.http;
  sent += s.sent; errs += s.errors.length;
  console.log(`client ${i}: sent ${s.sent} answered ${s.answered} lost ${s.lost} errors ${JSON.stringify(s.errors.map((e) => ({ at: e.at, code: e.code, msg: e.message.slice(0, 80) })))} gap ${JSON.stringify(s.largestGap)}`);
}
console.log(`TOTAL sent ${sent} errors ${errs}`);
await removeService(lab, 'rst-svc');
