// The dashboard page: cloudlets, their containers and overlays, migrations with their
// timeline and live progress, and a form to start a migration. Everything comes from this
// cloudlet's API with the deployment token; a 401 is said plainly at the top of the page.
import { ApiCallError, adoptFragmentToken, api, eventsUrl, getToken, setToken } from './api.js';
import { byId, fmtBytes, fmtMs, h } from './dom.js';
import { renderTimeline } from './timeline.js';
import type { CloudletView, ContainerSummary, MigrationReport, MigrationState, OverlaySummary, StartMigration } from './types.js';

const REFRESH_MS = 5000;
const STEPS: MigrationState[] = ['preparing', 'precopy', 'final', 'committing', 'done'];

let cloudlets: CloudletView[] = [];
let refreshTimer: number | null = null;
let authFailed = false;

// ---------------------------------------------------------------- banners

function showAuthError(err: ApiCallError): void {
  authFailed = true;
  const banner = byId('auth-error');
  const why = err.body.message ?? 'the token was refused';
  banner.replaceChildren(
    h('strong', {}, '401 Unauthorized: '),
    `${why}. `,
    getToken()
      ? 'The token this page holds is not the deployment token: enter the right one above.'
      : 'This page has no token: enter the deployment token above, or open the page as /dashboard/#token=TOKEN.',
  );
  banner.hidden = false;
  document.body.classList.add('unauthorized');
}

function clearAuthError(): void {
  authFailed = false;
  byId('auth-error').hidden = true;
  document.body.classList.remove('unauthorized');
}

function showError(text: string | null): void {
  const el = byId('error');
  el.textContent = text ?? '';
  el.hidden = text === null;
}

/** Routes an API failure to the right banner; returns true when it was a 401. */
function report(err: unknown): boolean {
  if (err instanceof ApiCallError && err.unauthorized) {
    showAuthError(err);
    return true;
  }
  showError(err instanceof Error ? err.message : String(err));
  return false;
}

// ---------------------------------------------------------------- cloudlets

function renderCloudlets(): void {
  const body = byId('cloudlets').querySelector('tbody')!;
  body.replaceChildren(
    ...cloudlets.map((c) => {
      const i = c.info;
      const engine = i ? (i.engine.reachable ? `${i.engine.version ?? '?'}${i.engine.experimental ? ' (experimental)' : ''}` : 'unreachable') : '-';
      const checkpoint = i ? (i.capabilities.checkpoint ? 'yes' : `no: ${i.capabilities.checkpointBlockers.join(', ')}`) : '-';
      return h(
        'tr',
        { 'data-cloudlet': c.name, class: c.ok ? 'up' : 'down' },
        h('td', {}, c.name, c.self ? h('span', { class: 'tag' }, 'this') : null),
        h('td', { class: 'health' }, c.ok ? `up (${c.latencyMs} ms)` : `down: ${c.error ?? 'no answer'}`),
        h('td', {}, i?.version ?? '-'),
        h('td', {}, engine),
        h('td', {}, i ? (i.criu.version ?? `none${i.criu.error ? `: ${i.criu.error}` : ''}`) : '-'),
        h('td', {}, checkpoint),
      );
    }),
  );
  const self = cloudlets.find((c) => c.self);
  if (self) {
    byId('node-name').textContent = self.name;
    document.title = `Cloudlet ${self.name}`;
  }
}

async function loadCloudlets(): Promise<void> {
  cloudlets = await api.get<CloudletView[]>('/v1/cloudlets');
  renderCloudlets();
}

// ---------------------------------------------------------------- containers and overlays

async function loadPerCloudlet(): Promise<void> {
  const containers = byId('containers');
  const overlays = byId('overlays');
  const results = await Promise.all(
    cloudlets.map(async (c) => {
      const name = encodeURIComponent(c.name);
      const [cs, os] = await Promise.allSettled([
        api.get<ContainerSummary[]>(`/v1/cloudlets/${name}/containers?all=true`),
        api.get<OverlaySummary[]>(`/v1/cloudlets/${name}/overlays`),
      ]);
      for (const r of [cs, os]) if (r.status === 'rejected' && r.reason instanceof ApiCallError && r.reason.unauthorized) throw r.reason;
      return { c, cs, os };
    }),
  );
  containers.replaceChildren(
    ...results.map(({ c, cs }) =>
      h(
        'div',
        { class: 'per-cloudlet', 'data-cloudlet': c.name },
        h('h3', {}, c.name),
        cs.status === 'rejected'
          ? h('p', { class: 'muted' }, `unavailable: ${(cs.reason as Error).message}`)
          : cs.value.length === 0
            ? h('p', { class: 'muted' }, 'no containers')
            : table(
                ['name', 'image', 'state', 'status', ''],
                cs.value.map((x) => [x.name, x.image, x.state, x.status, c.self && x.state === 'running' ? migrateButton(x.name) : '']),
              ),
      ),
    ),
  );
  overlays.replaceChildren(
    ...results.map(({ c, os }) =>
      h(
        'div',
        { class: 'per-cloudlet', 'data-cloudlet': c.name },
        h('h3', {}, c.name),
        os.status === 'rejected'
          ? h('p', { class: 'muted' }, `unavailable: ${(os.reason as Error).message}`)
          : os.value.length === 0
            ? h('p', { class: 'muted' }, 'no overlays')
            : table(
                ['id', 'app', 'base', 'codec', 'size', 'layers', 'synthesized'],
                os.value.map((o) => [
                  o.id,
                  o.appName ?? o.appImageId.slice(0, 19),
                  o.baseName ?? '-',
                  o.codec,
                  fmtBytes(o.fileBytes),
                  o.layers,
                  o.synthesized ? 'yes' : 'no',
                ]),
              ),
      ),
    ),
  );
  const self = results.find((r) => r.c.self);
  if (self && self.cs.status === 'fulfilled') fillForm(self.cs.value);
}

function table(headers: string[], rows: (string | number | Node)[][]): HTMLTableElement {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((v) => h('td', {}, v))))),
  );
}

function migrateButton(container: string): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'small' }, 'migrate...');
  b.addEventListener('click', () => {
    byId<HTMLSelectElement>('mig-container').value = container;
    byId('start-section').scrollIntoView({ behavior: 'smooth' });
  });
  return b;
}

// ---------------------------------------------------------------- the start form

function setOptions(select: HTMLSelectElement, values: string[], empty: string): void {
  const keep = select.value;
  select.replaceChildren(...(values.length ? values.map((v) => h('option', { value: v }, v)) : [h('option', { value: '' }, empty)]));
  if (values.includes(keep)) select.value = keep;
}

function fillForm(selfContainers: ContainerSummary[]): void {
  setOptions(
    byId<HTMLSelectElement>('mig-container'),
    selfContainers.filter((c) => c.state === 'running').map((c) => c.name),
    'no running container',
  );
  setOptions(
    byId<HTMLSelectElement>('mig-to'),
    cloudlets.filter((c) => !c.self).map((c) => c.name),
    'no peer',
  );
}

async function startMigration(ev: SubmitEvent): Promise<void> {
  ev.preventDefault();
  const result = byId('migrate-result');
  const container = byId<HTMLSelectElement>('mig-container').value;
  const to = byId<HTMLSelectElement>('mig-to').value;
  const rounds = byId<HTMLInputElement>('mig-rounds').value.trim();
  const codec = byId<HTMLSelectElement>('mig-codec').value as StartMigration['codec'];
  if (!container || !to) {
    result.textContent = 'choose a running container and a destination';
    return;
  }
  const body: StartMigration = { container, to, codec };
  if (rounds !== '') body.rounds = Number(rounds);
  const button = byId<HTMLButtonElement>('mig-start');
  button.disabled = true;
  result.textContent = `starting the migration of ${container} to ${to}...`;
  try {
    const started = await api.post<MigrationReport>('/v1/migrations', body);
    result.textContent = `started ${started.id}`;
    await follow(started.id);
    void loadMigrations().catch(report);
  } catch (err) {
    result.textContent = `not started: ${err instanceof Error ? err.message : String(err)}`;
    report(err);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- migrations

async function loadMigrations(): Promise<void> {
  const list = await api.get<MigrationReport[]>('/v1/migrations');
  list.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  const body = byId('migrations').querySelector('tbody')!;
  body.replaceChildren(
    ...list.map((m) => {
      const tr = h(
        'tr',
        { 'data-id': m.id, class: 'clickable' },
        h('td', {}, m.id),
        h('td', {}, m.container),
        h('td', {}, `${m.from} → ${m.to}`),
        h('td', {}, h('span', { class: `state state-${m.state}` }, m.state)),
        h('td', {}, m.rounds.length),
        h('td', {}, fmtMs(m.totalMs)),
        h('td', {}, fmtMs(m.downtimeMs)),
        h('td', {}, fmtBytes(m.bytesSent)),
        h('td', {}, new Date(m.startedAt).toLocaleString()),
      );
      tr.addEventListener('click', () => void follow(m.id).catch(report));
      return tr;
    }),
  );
  byId('migrations-empty').hidden = list.length > 0;
}

let following: { id: string; source: EventSource | null; poll: number | null; lastState: string | null } | null = null;

function stopFollowing(): void {
  if (!following) return;
  following.source?.close();
  if (following.poll !== null) clearInterval(following.poll);
  following = null;
}

function setLive(text: string): void {
  byId('mig-live').textContent = text;
}

/** Shows one migration and, while it runs, follows it with server-sent events. */
async function follow(id: string): Promise<void> {
  stopFollowing();
  const f: NonNullable<typeof following> = { id, source: null, poll: null, lastState: null };
  following = f;
  byId('mig-states').replaceChildren();
  const first = await api.get<MigrationReport>(`/v1/migrations/${encodeURIComponent(id)}`);
  if (following !== f) return;
  renderMigration(first);
  if (first.finishedAt) {
    setLive('finished');
    return;
  }
  const es = new EventSource(eventsUrl(id));
  f.source = es;
  setLive('connecting to live progress...');
  es.addEventListener('open', () => setLive('live (server-sent events)'));
  es.addEventListener('report', (e) => {
    if (following !== f) return;
    renderMigration(JSON.parse((e as MessageEvent<string>).data) as MigrationReport);
  });
  es.addEventListener('end', () => {
    es.close();
    if (following !== f) return;
    setLive('finished');
    void Promise.all([loadMigrations(), loadPerCloudlet()]).catch(report);
  });
  es.addEventListener('error', () => {
    if (following !== f || es.readyState !== EventSource.CLOSED) {
      if (following === f) setLive('connection lost, reconnecting...');
      return;
    }
    // The stream was refused (EventSource does not say why): ask the API, which tells a 401
    // apart, and follow by polling meanwhile.
    setLive('live stream refused; polling');
    f.poll = window.setInterval(() => {
      api
        .get<MigrationReport>(`/v1/migrations/${encodeURIComponent(id)}`)
        .then((r) => {
          if (following !== f) return;
          renderMigration(r);
          if (r.finishedAt) {
            setLive('finished');
            stopFollowing();
          }
        })
        .catch((err: unknown) => {
          if (report(err)) stopFollowing();
        });
    }, 2000);
  });
}

function renderMigration(m: MigrationReport): void {
  const section = byId('migration-detail');
  section.hidden = false;
  section.dataset.id = m.id;
  section.dataset.state = m.state;
  byId('mig-id').textContent = m.id;
  const state = byId('mig-state');
  state.textContent = m.state;
  state.className = `state state-${m.state}`;
  byId('mig-route').textContent = `${m.container}: ${m.from} → ${m.to}, policy ${m.policy}, codec ${m.codec}`;

  if (following && following.id === m.id && following.lastState !== m.state) {
    following.lastState = m.state;
    byId('mig-states').append(
      h('li', { 'data-state': m.state }, `${new Date().toLocaleTimeString()} ${m.state}${m.rounds.length ? ` (${m.rounds.length} round(s))` : ''}`),
    );
  }

  const current = STEPS.indexOf(m.state === 'restoring' ? 'final' : m.state);
  byId('mig-steps').replaceChildren(
    ...STEPS.map((s, i) => h('li', { class: m.state === s ? 'current' : current > i || m.state === 'done' ? 'past' : '' }, s)),
    ...(['rolling-back', 'rolled-back', 'failed'].includes(m.state) ? [h('li', { class: 'current bad' }, m.state)] : []),
  );

  byId('timeline').replaceChildren(renderTimeline(m));

  byId('rounds')
    .querySelector('tbody')!
    .replaceChildren(
      ...m.rounds.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, r.final ? `${r.index} (final)` : r.index),
          h('td', {}, fmtMs(r.dumpMs)),
          h('td', {}, fmtMs(r.hashMs)),
          h('td', {}, fmtMs(r.sendMs)),
          h('td', {}, fmtMs(r.stallMs)),
          h('td', {}, fmtMs(r.applyMs)),
          h('td', {}, `${r.pagesChanged}/${r.pagesScanned}`),
          h('td', {}, fmtBytes(r.rawBytes)),
          h('td', {}, fmtBytes(r.sentBytes)),
          h('td', {}, r.codec),
          h('td', {}, `${(r.bandwidthBps / 1e6).toFixed(1)} Mbit/s`),
        ),
      ),
    );

  const facts: [string, string][] = [
    ['total', fmtMs(m.totalMs)],
    ['downtime', fmtMs(m.downtimeMs)],
    ['restore', fmtMs(m.restoreMs)],
    ['commit', fmtMs(m.commitMs)],
    ['bytes sent', fmtBytes(m.bytesSent)],
    ['pre-copy rounds', String(m.precopyRounds)],
    ['stopped by', m.stopReason ?? '-'],
    ['decision', m.decision ?? '-'],
  ];
  if (m.serviceAddress) facts.push(['service address', `${m.serviceAddress} (routed in ${fmtMs(m.announceMs)})`]);
  if (m.imageShipped) facts.push(['image shipped', `${fmtBytes(m.imageShipped.bytes)}, ${m.imageShipped.layers} layer(s), ${fmtMs(m.imageShipped.ms)}`]);
  if (m.error) facts.push(['error', `${m.error.code}: ${m.error.message}`]);
  for (const w of m.warnings) facts.push(['warning', w]);
  byId('mig-summary').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// ---------------------------------------------------------------- refresh loop and token

async function refresh(): Promise<void> {
  try {
    await Promise.all([loadCloudlets().then(loadPerCloudlet), loadMigrations()]);
    clearAuthError();
    showError(null);
  } catch (err) {
    report(err);
  }
}

function schedule(): void {
  if (refreshTimer !== null) clearInterval(refreshTimer);
  // After a 401 the page waits for a new token instead of asking again and again.
  refreshTimer = window.setInterval(() => {
    if (!authFailed && document.visibilityState === 'visible') void refresh();
  }, REFRESH_MS);
}

function init(): void {
  adoptFragmentToken();
  const input = byId<HTMLInputElement>('token-input');
  byId<HTMLFormElement>('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken(input.value.trim() || null);
    input.value = '';
    clearAuthError();
    void refresh();
  });
  byId('token-forget').addEventListener('click', () => {
    setToken(null);
    stopFollowing();
    void refresh();
  });
  byId<HTMLFormElement>('migrate-form').addEventListener('submit', (ev) => void startMigration(ev));
  void refresh();
  schedule();
}

init();
