// The measuring client of issue 5, as a library: `runClient(opts)` for a whole run, or
// `startClient(opts)` for a handle with `ready` (connected and answered once: start the
// migration now), `stop()` and `done` (the report). `cloudlet client` is a thin CLI over it.
export { runClient, startClient, CLIENT_DEFAULTS, type ClientHandle } from './run.js';
export { formatSummary, formatTimeline } from './format.js';
export type * from './types.js';
