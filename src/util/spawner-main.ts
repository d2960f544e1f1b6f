// The spawner process (see spawner.ts): starts programs on behalf of a daemon whose own
// fork would be slow. It stays small - it holds no migration data - so its fork copies
// few page tables.
import { startProgram, type SpawnRequest } from './spawn-program.js';

process.on('message', (req: SpawnRequest) => startProgram(req, (a) => process.send?.(a)));
// The daemon went away: nothing more will be asked. Programs still running carry on, as
// they would have as the daemon's own children.
process.on('disconnect', () => process.exit(0));
