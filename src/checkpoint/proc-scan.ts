// Freeze-free memory scan of a running container, written as a CRIU-format "dump" that the
// pre-copy pipeline (indexDump / writeDelta) accepts in place of `runc checkpoint
// --leave-running`. A real CRIU dump freezes the container for the whole memory write
// (~0.4 s for 256 MiB); this scan reads /proc/PID/pagemap and /proc/PID/mem while the
// processes keep running, so its stall is zero by construction.
//
// Why a torn read is harmless: pre-copy only ships page CONTENTS that are probably final.
// The final round is a real CRIU dump taken while frozen; its index is compared with what
// the destination holds by (pagemap id, vaddr, xxh64), so any page that changed after the
// scan read it (or was read half-written) is resent then.
//
// What is written to outDir, per process (pre-order of the process tree from initPid,
// children by start time, which is the order CRIU dumps tasks in and so assigns pages ids):
//   pagemap-<VPID>.img  pagemap_head {pages_id} + one PE_PRESENT entry per run of pages
//                       (ascending vaddr); VPID = the pid in the container's pid namespace
//                       (last NSpid field), the id CRIU's own dump of the container uses.
//   pages-<pages_id>.img the 4 KiB pages of those entries, in order.
//
// Which pages (mirroring CRIU's should_dump_page for private mappings):
//   - private mappings only (maps perms 'p'); [vsyscall], [vvar], [vvar_vclock] and
//     [uprobes] are skipped (CRIU never dumps them). [vdso] IS taken: criu 4.2.1 writes its
//     2 pages into every process's pagemap (checked against real dumps), because for
//     mappings without a file CRIU does not look at bit 61;
//   - a page is taken when pagemap says present (bit 63) or swapped (bit 62); in a
//     file-backed private mapping only when also not "file page" (bit 61), i.e. COWed:
//     anonymous private pages and COWed file pages, as CRIU's should_dump_page;
//   - present pages mapped to the kernel's zero page are skipped, like CRIU does (its
//     zero_page_pfn test). The zero page's PFN is found once through /proc/kpageflags
//     (KPF_ZERO_PAGE) among PFNs that repeat inside one process; without CAP_SYS_ADMIN the
//     PFNs read as 0 and no page is skipped for this reason (the pages then read as zeros,
//     which the page index marks zero and never sends).
// Out of scope: anonymous MAP_SHARED and SysV shared memory (CRIU's pagemap-shmem-*.img),
// AIO rings, processes of the cgroup that are not descendants of initPid (`docker exec`
// sessions: CRIU's dump tree does not hold them either), and pages of 5-level-paging
// addresses above 2^53.
//
// Reading: pagemap in chunks of up to 64 Ki entries per VMA; consecutive taken pages are
// coalesced (across VMA boundaries, like CRIU's page pipes) into one pagemap entry and read
// with one pread of /proc/PID/mem per <= 1 MiB piece, several preads in flight. Root reads
// /proc/PID/mem of any process without ptrace-attaching (FOLL_FORCE reads PROT_NONE pages
// too). A piece that fails (EIO: unmapped between the pagemap read and the mem read) is
// dropped and the scan goes on; a process that exits mid-scan is dropped as a whole (its
// files are not written); when initPid itself is gone the scan fails with ScanProcessGoneError.
// Which processes, and their pagemap ids: proc-tree.ts.
import { mkdir, open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { UsageError } from '../util/errors.js';
import { encodePagemap, PAGE_SIZE, PE_PRESENT, pagemapPath, pagesPath, type PagemapEntry } from './pagemap.js';
import { containerProcesses, namespacePid, ScanProcessGoneError } from './proc-tree.js';

export interface ScanOptions {
  /** Host pid of the container's init process. */
  initPid: number;
  /** Where the images go (created if missing; must not already hold pagemap/pages images). */
  outDir: string;
  /** preads of /proc/PID/mem in flight at once (default 4, libuv's thread pool size). */
  concurrency?: number;
  /** Test hook: called after each batch of page reads of a process has been written. */
  onBatch?: (info: { pid: number; vpid: number; pagesSoFar: number }) => void | Promise<void>;
}

export interface ScanResult {
  /** Pages written, all processes. */
  pages: number;
  /** Bytes of page data written (pages * 4096). */
  bytes: number;
  /** Processes written (pagemaps). */
  processes: number;
  /** Wall time of the scan. */
  ms: number;
  /** Per process: host pid, pagemap id (vpid), pages id, pages. */
  detail: ScanProcessDetail[];
  /** Pages dropped because their read failed (unmapped meanwhile). */
  skippedPages: number;
  /** Processes that exited during the scan and were left out. */
  vanished: number[];
}

export interface ScanProcessDetail {
  pid: number;
  vpid: number;
  pagesId: number;
  pages: number;
  entries: number;
}

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst), in the high 32-bit word.
const PM_PRESENT_HI = 1 << 31; // bit 63
const PM_SWAP_HI = 1 << 30; // bit 62
const PM_FILE_HI = 1 << 29; // bit 61: file page or shared anon
const PFN_HI_MASK = 0x7fffff; // bits 32..54 of the PFN field (bits 0..54)
const KPF_ZERO_PAGE = 24n;

const SPECIAL_VMAS = new Set(['[vsyscall]', '[vvar]', '[vvar_vclock]', '[uprobes]']);
const PAGEMAP_CHUNK = 64 * 1024; // entries per pagemap read (512 KiB)
const PIECE_PAGES = 256; // 1 MiB per /proc/PID/mem read
const BATCH_PAGES = 2048; // 8 MiB per output write

export interface Vma {
  start: number;
  end: number;
  perms: string;
  /** Inode of the mapped file; 0 for anonymous mappings ([heap], [stack], [vdso] too). */
  inode: number;
  name: string;
}

/** Parses /proc/PID/maps. Mappings above 2^53 (5-level paging) are left out. */
export function parseMaps(text: string): Vma[] {
  const out: Vma[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const start = parseInt(m[1]!, 16);
    const end = parseInt(m[2]!, 16);
    if (!Number.isSafeInteger(end)) continue;
    out.push({ start, end, perms: m[3]!, inode: Number(m[4]), name: m[5]! });
  }
  return out;
}

/** True for the mappings whose pages a CRIU dump carries in the process's pagemap. */
export function isScannedVma(v: Vma): boolean {
  return v.perms[3] === 'p' && !SPECIAL_VMAS.has(v.name);
}

// ------------------------------------------------------------------ zero page PFN

let zeroPfn: number | null | undefined; // undefined: not looked for yet; null: unknown
let kpageflags: FileHandle | null | undefined;

async function isKernelZeroPfn(pfn: number): Promise<boolean> {
  if (kpageflags === undefined) kpageflags = await open('/proc/kpageflags', 'r').catch(() => null);
  if (!kpageflags) return false;
  const b = Buffer.alloc(8);
  const { bytesRead } = await kpageflags.read(b, 0, 8, pfn * 8).catch(() => ({ bytesRead: 0 }));
  return bytesRead === 8 && ((b.readBigUInt64LE(0) >> KPF_ZERO_PAGE) & 1n) === 1n && ((b.readBigUInt64LE(0) >> 15n) & 3n) === 0n; // not compound (huge zero page)
}

// ------------------------------------------------------------------ one process

interface Run {
  vaddr: number;
  pages: number;
}

class VanishedError extends Error {}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** Reads pagemap for the scanned VMAs and returns the runs of pages to take. */
async function takenRuns(pid: number, vmas: Vma[]): Promise<Run[]> {
  const fh = await open(`/proc/${pid}/pagemap`, 'r');
  const words = new Uint32Array(PAGEMAP_CHUNK * 2);
  const buf = Buffer.from(words.buffer);
  const runs: Run[] = [];
  // PFNs seen twice inside this process are zero-page candidates (only looked at until found).
  let firstPfns: Map<number, number> | null = zeroPfn === undefined ? new Map() : null;
  let candidates: Set<number> | null = zeroPfn === undefined ? new Set() : null;
  const rawVaddr: number[] = []; // taken pages (pfn 0 when not present or not readable)
  const rawPfn: number[] = [];
  try {
    for (const v of vmas) {
      // Bit 61 only excludes pages of file-backed mappings (not yet COWed file pages).
      const fileMask = v.inode !== 0 ? PM_FILE_HI : 0;
      const first = v.start / PAGE_SIZE;
      const total = (v.end - v.start) / PAGE_SIZE;
      for (let done = 0; done < total;) {
        const n = Math.min(PAGEMAP_CHUNK, total - done);
        let got = 0;
        while (got < n * 8) {
          const { bytesRead } = await fh.read(buf, got, n * 8 - got, (first + done) * 8 + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got === 0) throw new VanishedError();
        const entries = Math.floor(got / 8);
        for (let i = 0; i < entries; i++) {
          const hi = words[i * 2 + 1]!;
          if ((hi & (PM_PRESENT_HI | PM_SWAP_HI)) === 0 || (hi & fileMask) !== 0) continue;
          const vaddr = (first + done + i) * PAGE_SIZE;
          let pfn = 0;
          if (hi & PM_PRESENT_HI) {
            pfn = words[i * 2]! + (hi & PFN_HI_MASK) * 0x1_0000_0000;
            if (pfn !== 0 && pfn === zeroPfn) continue;
            if (firstPfns && pfn !== 0) {
              if (firstPfns.has(pfn)) candidates!.add(pfn);
              else firstPfns.set(pfn, vaddr);
            }
          }
          rawVaddr.push(vaddr);
          rawPfn.push(pfn);
        }
        done += entries;
        if (entries < n) break; // the VMA shrank meanwhile
      }
    }
  } finally {
    await fh.close();
  }
  if (candidates && candidates.size > 0) {
    for (const pfn of candidates) {
      if (await isKernelZeroPfn(pfn)) {
        zeroPfn = pfn;
        break;
      }
    }
    if (zeroPfn === undefined && candidates.size > 0 && kpageflags === null) zeroPfn = null;
  }
  firstPfns = null;
  candidates = null;
  for (let k = 0; k < rawVaddr.length; k++) {
    const pfn = rawPfn[k]!;
    const vaddr = rawVaddr[k]!;
    if (pfn !== 0 && pfn === zeroPfn) continue;
    const last = runs[runs.length - 1];
    if (last && last.vaddr + last.pages * PAGE_SIZE === vaddr) last.pages++;
    else runs.push({ vaddr, pages: 1 });
  }
  return runs;
}

interface Piece {
  vaddr: number;
  pages: number;
  /** Page offset in the batch buffer. */
  at: number;
  /** Pages actually read (whole pages only). */
  got: number;
}

async function readFull(fh: FileHandle, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(buf, off + got, len - got, pos + got));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EIO' || (err as NodeJS.ErrnoException).code === 'EFAULT') break;
      throw err;
    }
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** Where the next batch starts: run index and pages of that run already batched. */
interface RunCursor {
  r: number;
  rOff: number;
}

/** Cuts the next batch (up to BATCH_PAGES, in pieces of up to PIECE_PAGES) out of the runs. */
function nextPieces(runs: Run[], cursor: RunCursor): Piece[] {
  const pieces: Piece[] = [];
  let at = 0;
  while (cursor.r < runs.length && at < BATCH_PAGES) {
    const run = runs[cursor.r]!;
    const n = Math.min(PIECE_PAGES, run.pages - cursor.rOff, BATCH_PAGES - at);
    pieces.push({ vaddr: run.vaddr + cursor.rOff * PAGE_SIZE, pages: n, at, got: 0 });
    at += n;
    cursor.rOff += n;
    if (cursor.rOff === run.pages) {
      cursor.r++;
      cursor.rOff = 0;
    }
  }
  return pieces;
}

/** Reads the pieces into buf, `concurrency` preads in flight; returns the pages read. */
async function readPieces(mem: FileHandle, buf: Buffer, pieces: Piece[], concurrency: number): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pieces.length) {
      const p = pieces[next++]!;
      const got = await readFull(mem, buf, p.at * PAGE_SIZE, p.pages * PAGE_SIZE, p.vaddr);
      p.got = Math.floor(got / PAGE_SIZE);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, pieces.length) }, worker));
  return pieces.reduce((s, p) => s + p.got, 0);
}

/** What a process's pages file got: its pagemap entries, pages written and pages dropped. */
interface CopiedPages {
  entries: PagemapEntry[];
  written: number;
  skipped: number;
}

/** The pages read of a batch, as buffers to write; their pagemap entries are appended. */
function takePieces(buf: Buffer, pieces: Piece[], copied: CopiedPages): Buffer[] {
  const { entries } = copied;
  const parts: Buffer[] = [];
  for (const p of pieces) {
    copied.skipped += p.pages - p.got;
    if (p.got === 0) continue;
    parts.push(buf.subarray(p.at * PAGE_SIZE, (p.at + p.got) * PAGE_SIZE));
    const last = entries[entries.length - 1];
    if (last && last.vaddr + last.nrPages * PAGE_SIZE === p.vaddr) last.nrPages += p.got;
    else entries.push({ vaddr: p.vaddr, nrPages: p.got, flags: PE_PRESENT });
  }
  return parts;
}

/**
 * Copies the runs from /proc/PID/mem into the pages file `out`, batch by batch: two
 * buffers, so that one batch is read while the previous one is written.
 */
async function copyRuns(proc: { pid: number; vpid: number }, runs: Run[], mem: FileHandle, out: FileHandle, opts: ScanOptions): Promise<CopiedPages> {
  const { pid, vpid } = proc;
  const copied: CopiedPages = { entries: [], written: 0, skipped: 0 };
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    const bufs = [Buffer.allocUnsafeSlow(BATCH_PAGES * PAGE_SIZE), Buffer.allocUnsafeSlow(BATCH_PAGES * PAGE_SIZE)];
    let which = 0;
    const cursor: RunCursor = { r: 0, rOff: 0 };
    let anyRead = false;
    while (cursor.r < runs.length) {
      const buf = bufs[which]!;
      const pieces = nextPieces(runs, cursor);
      const batchGot = await readPieces(mem, buf, pieces, concurrency);
      // Everything failing on the very first batch, or on a whole batch with the maps
      // gone, means the process exited.
      if (batchGot === 0 && (!anyRead || (await mapsGone(pid)))) throw new VanishedError();
      if (batchGot > 0) anyRead = true;
      await pendingWrite; // the other buffer is free again after this
      const parts = takePieces(buf, pieces, copied);
      const pos = copied.written * PAGE_SIZE;
      copied.written += batchGot;
      pendingWrite = parts.length > 0 ? out.writev(parts, pos).then(() => undefined) : Promise.resolve();
      which ^= 1;
      if (opts.onBatch) {
        await pendingWrite;
        await opts.onBatch({ pid, vpid, pagesSoFar: copied.written });
      }
    }
    await pendingWrite;
    pendingWrite = Promise.resolve();
  } finally {
    await pendingWrite.catch(() => undefined);
  }
  return copied;
}

async function scanProcess(
  pid: number,
  vpid: number,
  pagesId: number,
  outDir: string,
  opts: ScanOptions,
): Promise<{ detail: ScanProcessDetail; skipped: number }> {
  const maps = await readFile(`/proc/${pid}/maps`, 'utf8');
  const vmas = parseMaps(maps).filter(isScannedVma);
  if (vmas.length === 0) throw new VanishedError(); // exited (maps of a dead mm are empty)
  const runs = await takenRuns(pid, vmas);
  const mem = await open(`/proc/${pid}/mem`, 'r');
  const out = await open(pagesPath(outDir, pagesId), 'w');
  let copied: CopiedPages;
  try {
    copied = await copyRuns({ pid, vpid }, runs, mem, out, opts);
  } finally {
    await mem.close();
    await out.close();
  }
  const pm = encodePagemap({ pagesId, entries: copied.entries });
  const fh = await open(pagemapPath(outDir, vpid), 'w');
  try {
    await fh.writeFile(pm);
  } finally {
    await fh.close();
  }
  return { detail: { pid, vpid, pagesId, pages: copied.written, entries: copied.entries.length }, skipped: copied.skipped };
}

async function mapsGone(pid: number): Promise<boolean> {
  try {
    return (await readFile(`/proc/${pid}/maps`, 'utf8')) === '';
  } catch {
    return true;
  }
}

// ------------------------------------------------------------------ the scan

/**
 * Scans every process of the container whose init has host pid `initPid` and writes a
 * CRIU-format page image directory (pagemap-VPID.img + pages-N.img per process) to outDir.
 * The processes are never stopped. Returns counts and the wall time.
 */
export async function scanContainerMemory(opts: ScanOptions): Promise<ScanResult> {
  const t0 = performance.now();
  if (!Number.isSafeInteger(opts.initPid) || opts.initPid <= 0) throw new UsageError(`bad pid ${opts.initPid}`);
  await mkdir(opts.outDir, { recursive: true });
  const existing = (await readdir(opts.outDir)).filter((n) => /^(pagemap-.*|pages-\d+)\.img$/.test(n));
  if (existing.length > 0) {
    throw new UsageError(`${opts.outDir} already holds page images (${existing[0]}): scan into an empty directory`, {
      context: { outDir: opts.outDir },
    });
  }
  const pids = await containerProcesses(opts.initPid);
  const detail: ScanProcessDetail[] = [];
  const vanished: number[] = [];
  let skippedPages = 0;
  let pagesId = 1;
  for (const pid of pids) {
    const vpid = await namespacePid(pid);
    try {
      if (vpid === null) throw new VanishedError();
      const r = await scanProcess(pid, vpid, pagesId, opts.outDir, opts);
      detail.push(r.detail);
      skippedPages += r.skipped;
      pagesId++;
    } catch (err) {
      if (!(err instanceof VanishedError) && !isGone(err)) throw err;
      // Exited mid-scan: leave it out entirely (the final dump will not have it either).
      await rm(pagesPath(opts.outDir, pagesId), { force: true });
      if (vpid !== null) await rm(pagemapPath(opts.outDir, vpid), { force: true });
      if (pid === opts.initPid) throw new ScanProcessGoneError(pid, err);
      vanished.push(pid);
    }
  }
  const pages = detail.reduce((s, d) => s + d.pages, 0);
  return {
    pages,
    bytes: pages * PAGE_SIZE,
    processes: detail.length,
    ms: performance.now() - t0,
    detail,
    skippedPages,
    vanished,
  };
}
