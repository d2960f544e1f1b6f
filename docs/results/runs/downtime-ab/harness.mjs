// A/B harness used for docs/results/downtime.md (kept as it ran; not part of the product).
// On the lab that is up (CLOUDLET_LAB_* as for `lab up`), it starts the busybox counter in a
// netns holder with a client (a connection per request every 20 ms), then for each cycle and
// each LABEL=DIST pair restarts both cloudlets' daemons from that build (a copy of dist/ with
// dist/native) and hands the counter off --runs times, alternating a -> b, b -> a; one JSON
// line per handoff (report figures and the final round's spans), then one per run with the
// client's gap. A label containing `nls` adds `network-lock skip` to both engines' CRIU
// restore configuration for its runs. --floor: the engine floor afterwards.
// usage: node harness.mjs A=/tmp/dist-A,B=/tmp/dist-B --runs 3 --cycles 2 [--floor]
import { openSync, closeSync } from 'node:fs';
const W = new URL('../../../../dist/src', import.meta.url).pathname.replace(/\/$/, '');
const m = await import(`${W}/bench/migrate.js`);
const st = await import(`${W}/lab/state.js`);
const ns = await import(`${W}/lab/netns.js`);
const ex = await import(`${W}/util/exec.js`);
const dm = await import(`${W}/lab/daemons.js`);
const ho = await import(`${W}/bench/handoff.js`);
const bi = await import(`${W}/images/base-images.js`);
const wl = await import(`${W}/workloads/stateful-service.js`);
const ef = await import(`${W}/bench/engine-floor.js`);
const lc = await import(`${W}/bench/lab-client.js`);
const en = await import(`${W}/lab/engines.js`);
const fs = await import('node:fs');
function netlockSkip(lab, on) {
  for (const cl of lab.cloudlets) {
    const f = en.engineCriuSettings(cl.engine).criuConfigFile;
    let t = fs.readFileSync(f, 'utf8').replace(/^network-lock skip\n/m, '');
    if (on) t += 'network-lock skip\n';
    fs.writeFileSync(f, t);
  }
}
const mr = await import(`${W}/bench/migrate-runs.js`);
const args = process.argv.slice(2);
const variants = args[0].split(',').map((s) => s.split('='));
const runs = Number(args[args.indexOf('--runs') + 1] ?? 4);
const cycles = args.includes('--cycles') ? Number(args[args.indexOf('--cycles') + 1]) : 1;
const floor = args.includes('--floor');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function swap(lab, dist) {
  for (const cl of lab.cloudlets) {
    try { process.kill(cl.daemon.pid, 'SIGTERM'); } catch {}
    for (let i = 0; i < 100; i++) { try { process.kill(cl.daemon.pid, 0); await sleep(50); } catch { break; } }
    const fd = openSync(cl.daemon.log, 'a');
    cl.daemon.pid = ex.spawnDetached('nsenter', ns.nsenterArgs(cl.namespace, process.execPath, [`${dist}/src/daemon/main.js`, '--config', cl.daemon.configPath]), { logFd: fd, env: dm.labDaemonEnv(process.env) });
    closeSync(fd);
  }
  st.writeLabState(lab);
  for (const cl of lab.cloudlets) await dm.waitForDaemon(cl);
}

const lab = st.readLabState();
const [ca, cb] = lab.cloudlets;
const name = 'bench-counter';
await ho.removeService(lab, name).catch(() => {});
const address = await m.pickBenchAddress(lab, ca);
await m.startWorkload(m.engineOf(lab, ca.name), { name, Image: bi.BUSYBOX_IMAGE, Cmd: ['sh', '-c', wl.BUSYBOX_COUNTER_HTTP_SCRIPT] }, 'holder', address);
await m.announceOn(ca, address);
await m.waitForService(m.engineOf(lab, ca.name), name);
let home = 0;
const client = await lc.startLabHttpProbe(address, { durationMs: 600_000, intervalMs: 20, httpPath: '/cgi-bin/req', newConnectionPerRequest: true, window: 1 });
await client.ready;
await sleep(2000);
const reports = [], labels = [];
try {
  for (let c = 0; c < cycles; c++) for (const [label, dist] of variants) {
    await swap(lab, dist);
    netlockSkip(lab, label.includes('nls'));
    await sleep(1000);
    for (let i = 0; i < runs; i++) {
      const [from, to] = home === 0 ? [ca, cb] : [cb, ca];
      const r = await m.migrate(lab, from.name, { container: name, to: to.name });
      home = 1 - home;
      await m.spareReady(m.engineOf(lab, to.name));
      reports.push(r); labels.push(label);
      const f = r.rounds.at(-1);
      const out = { label, run: i, dir: `${from.name}->${to.name}`, downtimeMs: r.downtimeMs, totalMs: r.totalMs, restoreMs: r.restoreMs, dumpMs: f.dumpMs, stallMs: f.stallMs, hashMs: f.hashMs, sendMs: f.sendMs, applyMs: f.applyMs, fsBatchMs: f.fsBatchMs, fsApplyMs: f.fsApplyMs, rebuildMs: f.rebuildMs, dest: f.destination, spans: r.spans ?? f.spans ?? null, load: (await import('node:os')).loadavg()[0] };
      console.log(JSON.stringify(out));
      await sleep(1500);
    }
  }
  const rep = await client.stop();
  const runsOut = mr.migrateRuns(rep, reports);
  runsOut.forEach((x, i) => console.log(JSON.stringify({ gap: labels[i], downtimeMs: x.downtimeMs, clientGapMs: x.clientGapMs, restoreMs: x.restoreMs })));
  if (floor) console.log(JSON.stringify({ floor: await ef.measureEngineFloor(lab.cloudlets[home], name, { restore: 'eager' }) }));
} finally {
  netlockSkip(lab, false);
  await m.removeWorkload(lab, name, address, () => {});
}
