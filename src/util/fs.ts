// Small file-system helpers shared by modules that treat "not there" as an answer.
import { readFile } from 'node:fs/promises';

/** The file's bytes, or null when it does not exist; every other error is thrown. */
export async function readFileIfExists(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
