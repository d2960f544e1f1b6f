// The dashboard end to end in headless Chromium (Debian's, driven by playwright-core; no
// browser is ever downloaded) against a real lab of two cloudlets: the page sees both
// cloudlets, starts a live migration from its form, follows it over server-sent events to
// done, draws one timeline row per round of the report, and says 401 when it has no token
// or a wrong one. Screenshots are kept under test-artifacts/ (git-ignored).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { useLab } from '../helpers/lab.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import type { MigrationReport } from '../../src/migration/types.js';

// Debian's chromium package; CLOUDLET_CHROMIUM only to check this test's own failure message.
const CHROMIUM = process.env.CLOUDLET_CHROMIUM ?? '/usr/bin/chromium';
// Flags without which Chromium keeps trying to reach Google's services from this closed network.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('dashboard in headless Chromium on the lab', { skip: !isRoot && 'needs root' }, () => {
  if (!existsSync(CHROMIUM)) {
    // Fail at once and say why, rather than bring a lab up for nothing or hang on a launch.
    test('Chromium is installed', () => {
      assert.fail(`${CHROMIUM} not found: install the Debian packages chromium and chromium-driver (scripts/setup.sh does)`);
    });
    return;
  }
  const lab = useLab('dash');
  let context: BrowserContext | null = null;
  let profile = '';
  const pageErrors: string[] = [];

  before(async () => {
    profile = mkdtempSync(join(tmpdir(), 'cloudlet-chromium-'));
    // A persistent context on a fresh, empty profile directory is Playwright's form of --user-data-dir.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
      viewport: { width: 1280, height: 900 },
    });
  });
  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  const cloudlet = (name: string) => {
    const c = lab.state().cloudlets.find((x) => x.name === name);
    assert.ok(c, `no cloudlet ${name}`);
    return c;
  };
  const newPage = async (): Promise<Page> => {
    assert.ok(context, 'browser not started');
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  };
  const screenshot = async (page: Page, name: string, t: { diagnostic(m: string): void }) => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, name);
    await page.screenshot({ path, fullPage: true });
    t.diagnostic(`screenshot: ${path}`);
    console.log(`dashboard screenshot: ${path}`);
  };

  test('sees both cloudlets, starts a migration from the form, follows it to done, draws its rounds', { timeout: 600_000 }, async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const c = await a.createContainer({
      name: 'dash-counter',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
    await sleep(1000);
    const { apiUrl } = cloudlet('a').daemon;
    const token = lab.state().token;
    const page = await newPage();
    try {
      await page.goto(`${apiUrl}/dashboard/#token=${encodeURIComponent(token)}`);
      // Both cloudlets, up, each with its engine and CRIU versions.
      for (const name of ['a', 'b']) {
        await page.waitForSelector(`#cloudlets tr[data-cloudlet="${name}"].up`);
      }
      const rows = await page.$$eval('#cloudlets tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
      t.diagnostic(`cloudlets: ${JSON.stringify(rows)}`);
      assert.equal(rows.length, 2);
      for (const r of rows) {
        assert.match(r[3]!, /^\d+\.\d+/, `engine version shown: ${r.join(' | ')}`);
        assert.match(r[4]!, /^\d+\.\d+/, `CRIU version shown: ${r.join(' | ')}`);
      }
      assert.ok(!page.url().includes(token), 'the token is taken out of the address bar');
      assert.equal(await page.locator('#auth-error').isVisible(), false);

      // The form: the running container of a, to b, exactly one pre-copy round.
      await page.waitForSelector('#mig-container option[value="dash-counter"]', { state: 'attached' });
      await page.waitForSelector('#mig-to option[value="b"]', { state: 'attached' });
      await page.selectOption('#mig-container', 'dash-counter');
      await page.selectOption('#mig-to', 'b');
      await page.fill('#mig-rounds', '1');
      await page.click('#mig-start');

      // Live progress until the migration ends (done, or a failure the page reports).
      const ended = ['done', 'failed', 'rolled-back'].map((st) => `#migration-detail[data-state="${st}"]`).join(', ');
      await page.locator(ended).waitFor({ timeout: 300_000 });
      const id = await page.getAttribute('#migration-detail', 'data-id');
      assert.ok(id, 'the page shows the migration it started');
      const summary = await page.textContent('#mig-summary');
      assert.equal(await page.getAttribute('#migration-detail', 'data-state'), 'done', `migration ${id}: ${summary}`);
      const states = await page.$$eval('#mig-states li', (lis) => lis.map((li) => li.getAttribute('data-state') ?? ''));
      t.diagnostic(`states seen live: ${states.join(' -> ')}`);
      assert.equal(states.at(-1), 'done');
      assert.ok(states.length >= 2, `progress was seen while it ran, not only the end: ${states.join(', ')}`);
      assert.match((await page.textContent('#mig-live')) ?? '', /finished/);

      // The chart has one row per round of the report.
      const res = await fetch(`${apiUrl}/v1/migrations/${id}`, { headers: { authorization: `Bearer ${token}` } });
      const report = (await res.json()) as MigrationReport;
      assert.equal(report.state, 'done');
      assert.equal(report.rounds.length, 2, 'one pre-copy round and the final one');
      assert.equal(await page.locator('#timeline svg g.round').count(), report.rounds.length);
      assert.equal(await page.locator('#timeline svg g.round.final').count(), 1);
      assert.equal(await page.getAttribute('#timeline svg', 'data-rounds'), String(report.rounds.length));
      assert.equal(await page.locator('#rounds tbody tr').count(), report.rounds.length);
      t.diagnostic(`migration ${id}: total ${report.totalMs} ms, downtime ${report.downtimeMs} ms, ${report.bytesSent} B`);

      // The list shows it too, and the service now runs on b.
      await page.waitForSelector(`#migrations tr[data-id="${id}"]`);
      assert.equal((await b.getContainer('dash-counter').inspect()).State.Running, true);
      await screenshot(page, 'dashboard-migration.png', t);
      assert.deepEqual(pageErrors, [], 'no script error on the page');
    } finally {
      await page.close();
      for (const d of [a, b]) {
        await d
          .getContainer('dash-counter')
          .remove({ force: true })
          .catch((err: { statusCode?: number }) => {
            if (err.statusCode !== 404) throw err;
          });
      }
    }
  });

  test('without the token, or with a wrong one, the page says 401', async (t) => {
    const { apiUrl } = cloudlet('a').daemon;
    // A new tab has its own, empty sessionStorage: no token.
    const page = await newPage();
    try {
      await page.goto(`${apiUrl}/dashboard/`);
      await page.waitForSelector('#auth-error', { state: 'visible' });
      const text = (await page.textContent('#auth-error')) ?? '';
      assert.match(text, /401 Unauthorized/);
      assert.match(text, /missing bearer token/);
      assert.match(text, /no token/);
      assert.equal(await page.locator('#cloudlets tbody tr').count(), 0, 'nothing shown without the token');
      await screenshot(page, 'dashboard-401.png', t);

      await page.goto(`${apiUrl}/dashboard/#token=not-the-deployment-token`);
      await page.reload();
      await page.waitForSelector('#auth-error', { state: 'visible' });
      const wrong = (await page.textContent('#auth-error')) ?? '';
      assert.match(wrong, /401 Unauthorized: invalid bearer token/);
      assert.match(wrong, /not the deployment token/);
    } finally {
      await page.close();
    }
  });
});
