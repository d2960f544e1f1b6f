// A cloudlet's content-addressed cache of memory pages from earlier handoffs: the pages
// of the dumps it sent (source side) and of the images it restored (destination side),
// kept per container image for a bounded time and size, oldest evicted first. A handoff
// of a container of that image to this cloudlet gets the cache's page hashes at prepare
// (`offer`), and the source leaves out of its pre-copy rounds every page whose hash is
// among them; the destination reads those pages from here and checks each against the
// hash the source sent (`PageCacheOffer.read`).
//
// On disk, one directory per entry, written by `ingest` and never changed afterwards:
//   pages.bin   unique non-zero pages of the ingested image directories, 4 KiB each
//   hashes.bin  xxh64 (u64 LE) of each page of pages.bin, in the same order
//   meta.json   PageCacheEntry; written last: an entry without it is incomplete and removed
// Entries are self-contained copies: the image directories they come from are staging
// data, removed when the handoff ends.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { hashPage, isZeroPage } from './page-index.js';
import { isPageImageName, PAGE_SIZE } from './pagemap.js';

export interface PageCacheOptions {
  dir: string;
  /** Largest total size of the entries' pages; the oldest entries go first beyond it. */
  maxBytes: number;
  /** Entries older than this are evicted. */
  maxAgeMs: number;
  /** Clock (tests). */
  now?: () => number;
}

export interface PageCacheEntry {
  id: string;
  /** The container image the pages belong to (sha256 digest): offers are per image. */
  imageId: string;
  /** What the pages were (e.g. "sent: migration ID" or "restored: migration ID"). */
  label: string;
  createdAt: number;
  pages: number;
  bytes: number;
}

export interface IngestStats {
  entry: PageCacheEntry | null;
  /** Pages read from the image directories (zero and repeated ones included). */
  pagesRead: number;
  ms: number;
}

/** What this cloudlet can supply to a handoff of one image. */
export interface PageCacheOffer {
  /** Sorted, unique. */
  hashes: BigUint64Array;
  /**
   * The pages with these hashes, in the same order, each checked against its hash; null
   * where one is not held (or no longer matches). Consecutive pages are read in one call.
   */
  read(hashes: readonly bigint[]): Promise<(Buffer | null)[]>;
  close(): Promise<void>;
}

const META = 'meta.json';
const PAGES = 'pages.bin';
const HASHES = 'hashes.bin';
const READ_PAGES = 256;

export class PageCache {
  private entries: PageCacheEntry[] = [];
  private loaded: Promise<void> | null = null;

  constructor(private readonly o: PageCacheOptions) {}

  /** Reads the cache directory once (creating it); incomplete entries left by a crash are removed. */
  private load(): Promise<void> {
    this.loaded ??= (async () => {
      await mkdir(this.o.dir, { recursive: true });
      for (const name of await readdir(this.o.dir)) {
        const meta = await readFile(join(this.o.dir, name, META), 'utf8').catch(() => null);
        const entry = meta === null ? null : parseEntry(meta, name);
        if (entry) this.entries.push(entry);
        else await rm(join(this.o.dir, name), { recursive: true, force: true });
      }
      this.entries.sort((a, b) => a.createdAt - b.createdAt);
      await this.evictLoaded();
    })();
    return this.loaded;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  async list(): Promise<PageCacheEntry[]> {
    await this.load();
    return this.entries.map((e) => ({ ...e }));
  }

  /**
   * Copies the unique non-zero pages of every pages-N.img file in `dirs` (missing
   * directories are skipped; a `parent` link is not followed: pass its target too) into a
   * new entry for `imageId`. Returns entry null when there was no page to keep.
   */
  async ingest(o: { imageId: string; label: string; dirs: string[] }): Promise<IngestStats> {
    await this.load();
    const t0 = performance.now();
    const createdAt = this.now();
    const id = `${createdAt}-${randomBytes(4).toString('hex')}`;
    const tmp = join(this.o.dir, `.tmp-${id}`);
    await mkdir(tmp, { recursive: true });
    try {
      const { hashes, pagesRead } = await copyUniquePages(o.dirs, join(tmp, PAGES));
      if (hashes.length === 0) {
        await rm(tmp, { recursive: true, force: true });
        return { entry: null, pagesRead, ms: performance.now() - t0 };
      }
      await writeFile(join(tmp, HASHES), Buffer.from(BigUint64Array.from(hashes).buffer));
      const entry: PageCacheEntry = { id, imageId: o.imageId, label: o.label, createdAt, pages: hashes.length, bytes: hashes.length * PAGE_SIZE };
      await writeFile(join(tmp, META), JSON.stringify(entry));
      await rename(tmp, join(this.o.dir, id));
      this.entries.push(entry);
      await this.evictLoaded();
      return { entry, pagesRead, ms: performance.now() - t0 };
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Removes expired entries, then the oldest until the size bound holds. Returns how many went. */
  async evict(): Promise<number> {
    await this.load();
    return this.evictLoaded();
  }

  private async evictLoaded(): Promise<number> {
    const now = this.now();
    const keep: PageCacheEntry[] = [];
    const drop: PageCacheEntry[] = [];
    for (const e of this.entries) (now - e.createdAt > this.o.maxAgeMs ? drop : keep).push(e);
    let total = keep.reduce((n, e) => n + e.bytes, 0);
    while (keep.length > 0 && total > this.o.maxBytes) {
      const e = keep.shift()!;
      total -= e.bytes;
      drop.push(e);
    }
    this.entries = keep;
    // An offer still reading a dropped entry keeps its open file: unlinking does not disturb it.
    for (const e of drop) await rm(join(this.o.dir, e.id), { recursive: true, force: true });
    return drop.length;
  }

  /** The pages held for `imageId` (entries not expired), with their files opened for reading. */
  async offer(imageId: string): Promise<PageCacheOffer> {
    await this.evict();
    const where = new Map<bigint, PageAt>();
    const files: FileHandle[] = [];
    try {
      for (const e of this.entries.filter((x) => x.imageId === imageId)) {
        const raw = await readFile(join(this.o.dir, e.id, HASHES));
        const hashes = new BigUint64Array(raw.buffer, raw.byteOffset, Math.floor(raw.length / 8));
        const file = await open(join(this.o.dir, e.id, PAGES), 'r');
        files.push(file);
        hashes.forEach((h, page) => {
          if (!where.has(h)) where.set(h, { file, page });
        });
      }
    } catch (err) {
      await Promise.all(files.map((f) => f.close()));
      throw err;
    }
    const sorted = BigUint64Array.from(where.keys()).sort();
    return {
      hashes: sorted,
      read: (hashes) => readPages(where, hashes),
      close: async () => {
        await Promise.all(files.map((f) => f.close()));
        where.clear();
      },
    };
  }
}

interface PageAt {
  file: FileHandle;
  page: number;
}

/** Reads the pages by location, runs of consecutive pages of one file at a time, and checks each hash. */
async function readPages(where: Map<bigint, PageAt>, hashes: readonly bigint[]): Promise<(Buffer | null)[]> {
  const out: (Buffer | null)[] = hashes.map(() => null);
  const wanted = hashes.map((h, i) => ({ i, h, at: where.get(h) })).filter((x): x is { i: number; h: bigint; at: PageAt } => x.at !== undefined);
  const fileNo = new Map<FileHandle, number>();
  for (const x of wanted) if (!fileNo.has(x.at.file)) fileNo.set(x.at.file, fileNo.size);
  wanted.sort((a, b) => fileNo.get(a.at.file)! - fileNo.get(b.at.file)! || a.at.page - b.at.page);
  for (let k = 0; k < wanted.length;) {
    const first = wanted[k]!;
    let n = 1;
    while (k + n < wanted.length && n < READ_PAGES && wanted[k + n]!.at.file === first.at.file && wanted[k + n]!.at.page === first.at.page + n) n++;
    const buf = Buffer.alloc(n * PAGE_SIZE);
    const { bytesRead } = await first.at.file.read(buf, 0, buf.length, first.at.page * PAGE_SIZE);
    for (let j = 0; j < n && (j + 1) * PAGE_SIZE <= bytesRead; j++) {
      const page = buf.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE);
      const x = wanted[k + j]!;
      if (hashPage(page) === x.h) out[x.i] = page;
    }
    k += n;
  }
  return out;
}

function parseEntry(text: string, dirName: string): PageCacheEntry | null {
  try {
    const e = JSON.parse(text) as Partial<PageCacheEntry>;
    const ok =
      e.id === dirName &&
      typeof e.imageId === 'string' &&
      typeof e.label === 'string' &&
      typeof e.createdAt === 'number' &&
      typeof e.pages === 'number' &&
      e.bytes === (e.pages ?? 0) * PAGE_SIZE;
    return ok ? (e as PageCacheEntry) : null;
  } catch {
    return null;
  }
}

/** Every page of a pages file is data (CRIU's layout); a size not a multiple of a page is not a pages file. */
async function pagesFilesOf(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: string[] = [];
  for (const n of names.filter((x) => isPageImageName(x) && x.startsWith('pages-')).sort()) {
    const st = await stat(join(dir, n)).catch(() => null);
    if (st?.isFile() && st.size % PAGE_SIZE === 0) out.push(join(dir, n));
  }
  return out;
}

async function copyUniquePages(dirs: string[], outFile: string): Promise<{ hashes: bigint[]; pagesRead: number }> {
  const seen = new Set<bigint>();
  const hashes: bigint[] = [];
  let pagesRead = 0;
  const out = await open(outFile, 'w');
  let outPos = 0;
  const buf = Buffer.allocUnsafe(READ_PAGES * PAGE_SIZE);
  const keep = Buffer.allocUnsafe(READ_PAGES * PAGE_SIZE);
  try {
    for (const dir of dirs) {
      for (const file of await pagesFilesOf(dir)) {
        const fh = await open(file, 'r');
        try {
          for (let pos = 0; ;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
            const n = Math.floor(bytesRead / PAGE_SIZE);
            if (n === 0) break;
            pos += n * PAGE_SIZE;
            pagesRead += n;
            let k = 0;
            for (let i = 0; i < n; i++) {
              const page = buf.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
              const h = hashPage(page);
              if (isZeroPage(page, h) || seen.has(h)) continue;
              seen.add(h);
              hashes.push(h);
              page.copy(keep, k * PAGE_SIZE);
              k++;
            }
            if (k > 0) {
              await out.write(keep, 0, k * PAGE_SIZE, outPos);
              outPos += k * PAGE_SIZE;
            }
          }
        } finally {
          await fh.close();
        }
      }
    }
  } finally {
    await out.close();
  }
  return { hashes, pagesRead };
}
