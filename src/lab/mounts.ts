// Mounts left under the lab's directories (overlay layers, netns bind mounts of containers,
// shm): found in /proc/self/mountinfo and lazily unmounted, deepest first.
import { readFileSync } from 'node:fs';
import { run } from '../util/exec.js';

/** Mount points under any of the given directories. Octal escapes (\040) are decoded. */
export function mountsUnder(dirs: readonly string[]): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  return points.filter((p) => dirs.some((d) => p === d || p.startsWith(d.endsWith('/') ? d : d + '/')));
}

export async function unmountAllUnder(dirs: readonly string[]): Promise<string[]> {
  const points = mountsUnder(dirs).sort((a, b) => b.length - a.length);
  const done: string[] = [];
  for (const p of points) {
    await run('umount', ['-l', p]);
    done.push(p);
  }
  return done;
}
