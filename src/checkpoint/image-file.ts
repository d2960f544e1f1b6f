// CRIU image files as data: the container format (magics + length-prefixed protobuf
// entries) and a minimal protobuf wire codec, written here for the few messages we need
// (pagemap_head, pagemap_entry) instead of pulling in a generic protobuf runtime.
//
// Layout of an image file (verified on criu 4.2.1 images, see docs in PLATFORM.md):
//   u32 LE 0x54564319 (IMG_COMMON) or 0x55105940 (IMG_SERVICE, e.g. stats-dump)
//   u32 LE per-type magic (pagemap 0x56084025, ...)
//   entries: u32 LE length, then `length` bytes of one protobuf message
// inventory.img is the one exception: it starts directly with its own type magic
// (0x58313116) and no common magic. pages-N.img has NO header at all: it is raw page data,
// the 4 KiB pages of the PRESENT pagemap entries in pagemap order.
//
// Only "pure" entry streams can be parsed generically. Some images (pipes-data, fifo-data,
// tcp-stream, ghost files...) carry raw payload bytes after some entries; we never parse
// those: the migration copies every non-pages image as opaque bytes.
//
// Numbers: protobuf uint64 fields are decoded as bigint on the wire and converted to JS
// numbers only when they are <= Number.MAX_SAFE_INTEGER (2^53 - 1). User-space addresses
// on x86_64 (4-level paging) are below 2^47 and on arm64 below 2^52, so every vaddr and page
// count we meet is a safe number; anything larger is rejected with ImageFormatError rather
// than silently rounded (5-level paging processes that opt into > 2^53 addresses are not
// supported).
import { readFile, writeFile } from 'node:fs/promises';
import { CloudletError, type ErrorContext } from '../util/errors.js';

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;
export const INVENTORY_MAGIC = 0x58313116;
export const PAGEMAP_MAGIC = 0x56084025;

/** Default upper bound for one entry: real entries are far smaller (pagemap: < 32 bytes). */
export const DEFAULT_MAX_ENTRY_BYTES = 4 * 1024 * 1024;

/** A CRIU image (or a page delta) is malformed: names the file and the byte offset. */
export class ImageFormatError extends CloudletError {
  readonly file: string;
  readonly offset: number | undefined;
  constructor(file: string, offset: number | undefined, message: string, context: ErrorContext = {}) {
    super('image_format', `${file}${offset === undefined ? '' : ` @${offset}`}: ${message}`, { context: { file, offset, ...context }, kind: 'invalid-data' });
    this.file = file;
    this.offset = offset;
  }
}

export type ImagePrefix = 'common' | 'service' | 'none';

export interface ImageFile {
  /** Which leading magic the file had: IMG_COMMON, IMG_SERVICE, or none (inventory). */
  prefix: ImagePrefix;
  typeMagic: number;
  /** Raw protobuf messages, in file order (subarrays of the file buffer). */
  entries: Buffer[];
  /** Byte offset of each entry's length word, for error messages. */
  offsets: number[];
}

export interface ParseImageOptions {
  /** Reject files whose type magic differs. */
  expectMagic?: number;
  maxEntryBytes?: number;
}

/** Parses a whole image file held in memory. `file` is only used in error messages. */
export function parseImage(buf: Buffer, file: string, opts: ParseImageOptions = {}): ImageFile {
  const maxEntry = opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
  if (buf.length < 4) {
    throw new ImageFormatError(file, 0, `truncated header: ${buf.length} bytes, need at least 4`);
  }
  const first = buf.readUInt32LE(0);
  let prefix: ImagePrefix;
  let typeMagic: number;
  let pos: number;
  if (first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC) {
    if (buf.length < 8) throw new ImageFormatError(file, 4, 'truncated header: no type magic after the common magic');
    prefix = first === IMG_COMMON_MAGIC ? 'common' : 'service';
    typeMagic = buf.readUInt32LE(4);
    pos = 8;
  } else if (first === INVENTORY_MAGIC) {
    prefix = 'none';
    typeMagic = first;
    pos = 4;
  } else {
    throw new ImageFormatError(file, 0, `bad magic 0x${hex32(first)} (expected CRIU image magic 0x${hex32(IMG_COMMON_MAGIC)})`, {
      magic: first,
    });
  }
  if (opts.expectMagic !== undefined && typeMagic !== opts.expectMagic) {
    throw new ImageFormatError(file, prefix === 'none' ? 0 : 4, `bad type magic 0x${hex32(typeMagic)} (expected 0x${hex32(opts.expectMagic)})`, {
      magic: typeMagic,
    });
  }
  const entries: Buffer[] = [];
  const offsets: number[] = [];
  while (pos < buf.length) {
    if (buf.length - pos < 4) {
      throw new ImageFormatError(file, pos, `truncated entry length: ${buf.length - pos} bytes left`);
    }
    const len = buf.readUInt32LE(pos);
    if (len > maxEntry) {
      throw new ImageFormatError(file, pos, `entry length ${len} over the limit of ${maxEntry} bytes`, { length: len });
    }
    if (pos + 4 + len > buf.length) {
      throw new ImageFormatError(file, pos, `truncated entry: length ${len} but only ${buf.length - pos - 4} bytes left`, {
        length: len,
      });
    }
    offsets.push(pos);
    entries.push(buf.subarray(pos + 4, pos + 4 + len));
    pos += 4 + len;
  }
  return { prefix, typeMagic, entries, offsets };
}

export function serializeImage(img: Pick<ImageFile, 'prefix' | 'typeMagic' | 'entries'>): Buffer {
  const headLen = img.prefix === 'none' ? 4 : 8;
  let total = headLen;
  for (const e of img.entries) total += 4 + e.length;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  if (img.prefix !== 'none') {
    out.writeUInt32LE(img.prefix === 'common' ? IMG_COMMON_MAGIC : IMG_SERVICE_MAGIC, 0);
    pos = 4;
  }
  out.writeUInt32LE(img.typeMagic >>> 0, pos);
  pos += 4;
  for (const e of img.entries) {
    out.writeUInt32LE(e.length, pos);
    e.copy(out, pos + 4);
    pos += 4 + e.length;
  }
  return out;
}

export async function readImageFile(path: string, opts: ParseImageOptions = {}): Promise<ImageFile> {
  return parseImage(await readFile(path), path, opts);
}

export async function writeImageFile(path: string, img: Pick<ImageFile, 'prefix' | 'typeMagic' | 'entries'>): Promise<void> {
  await writeFile(path, serializeImage(img));
}

// ------------------------------------------------------------------ protobuf wire codec

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

export interface PbField {
  field: number;
  wire: number;
  /** varint / fixed values as bigint; length-delimited values as bytes. */
  value: bigint | Buffer;
}

/** Where a message came from, for error messages: file and offset of its first byte. */
export interface PbSource {
  file: string;
  offset: number;
}

function readVarint(buf: Buffer, pos: number, src: PbSource): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new ImageFormatError(src.file, src.offset + pos, 'truncated varint in protobuf message');
    const b = buf[pos++]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) {
      if (result > 0xffff_ffff_ffff_ffffn) throw new ImageFormatError(src.file, src.offset + pos - 1, 'varint over 64 bits');
      return [result, pos];
    }
    shift += 7n;
  }
  throw new ImageFormatError(src.file, src.offset + pos, 'varint longer than 10 bytes');
}

/** Splits a protobuf message into its fields (in wire order). Groups are rejected. */
export function decodeFields(buf: Buffer, src: PbSource): PbField[] {
  const out: PbField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const keyAt = pos;
    const [key, p1] = readVarint(buf, pos, src);
    pos = p1;
    const wire = Number(key & 7n);
    const field = Number(key >> 3n);
    if (field === 0 || field > 0x1fff_ffff) {
      throw new ImageFormatError(src.file, src.offset + keyAt, `invalid protobuf field number ${field}`);
    }
    switch (wire) {
      case WIRE_VARINT: {
        const [v, p2] = readVarint(buf, pos, src);
        out.push({ field, wire, value: v });
        pos = p2;
        break;
      }
      case WIRE_FIXED64:
        if (pos + 8 > buf.length) throw new ImageFormatError(src.file, src.offset + pos, 'truncated fixed64 field');
        out.push({ field, wire, value: buf.readBigUInt64LE(pos) });
        pos += 8;
        break;
      case WIRE_FIXED32:
        if (pos + 4 > buf.length) throw new ImageFormatError(src.file, src.offset + pos, 'truncated fixed32 field');
        out.push({ field, wire, value: BigInt(buf.readUInt32LE(pos)) });
        pos += 4;
        break;
      case WIRE_LEN: {
        const [len, p2] = readVarint(buf, pos, src);
        pos = p2;
        if (BigInt(pos) + len > BigInt(buf.length)) {
          throw new ImageFormatError(src.file, src.offset + pos, `truncated length-delimited field ${field} (${len} bytes)`);
        }
        out.push({ field, wire, value: buf.subarray(pos, pos + Number(len)) });
        pos += Number(len);
        break;
      }
      default:
        throw new ImageFormatError(src.file, src.offset + keyAt, `unknown protobuf wire type ${wire} (field ${field})`, {
          wireType: wire,
          field,
        });
    }
  }
  return out;
}

/** Appends the minimal varint encoding of v (0 <= v < 2^64) to out. */
export function pushVarint(out: number[], v: bigint | number): void {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint value ${v} is not a safe non-negative integer`);
    while (v >= 0x80) {
      out.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    out.push(v);
    return;
  }
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`varint value ${v} out of uint64 range`);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/** Encodes fields in the given order (callers pass them in field-number order, like protobuf-c). */
export function encodeFields(fields: readonly PbField[]): Buffer {
  const out: number[] = [];
  const parts: Buffer[] = [];
  for (const f of fields) {
    pushVarint(out, (BigInt(f.field) << 3n) | BigInt(f.wire));
    switch (f.wire) {
      case WIRE_VARINT:
        pushVarint(out, f.value as bigint);
        break;
      case WIRE_FIXED64: {
        const b = Buffer.allocUnsafe(8);
        b.writeBigUInt64LE(f.value as bigint);
        out.push(...b);
        break;
      }
      case WIRE_FIXED32: {
        const b = Buffer.allocUnsafe(4);
        b.writeUInt32LE(Number(f.value as bigint));
        out.push(...b);
        break;
      }
      case WIRE_LEN: {
        const v = f.value as Buffer;
        pushVarint(out, v.length);
        parts.push(Buffer.from(out), v);
        out.length = 0;
        break;
      }
      default:
        throw new RangeError(`cannot encode wire type ${f.wire}`);
    }
  }
  if (parts.length === 0) return Buffer.from(out);
  parts.push(Buffer.from(out));
  return Buffer.concat(parts);
}

function toSafeNumber(v: bigint, what: string, src: PbSource): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageFormatError(src.file, src.offset, `${what} 0x${v.toString(16)} is above 2^53 and cannot be represented exactly`);
  }
  return Number(v);
}

function toU32(v: bigint, what: string, src: PbSource): number {
  // uint32 fields are encoded as (possibly 64-bit) varints; protobuf truncates to 32 bits.
  if (v > 0xffff_ffffn) throw new ImageFormatError(src.file, src.offset, `${what} ${v} does not fit uint32`);
  return Number(v);
}

function expectVarint(f: PbField, name: string, src: PbSource): bigint {
  if (f.wire !== WIRE_VARINT) {
    throw new ImageFormatError(src.file, src.offset, `field ${name} (${f.field}) has wire type ${f.wire}, expected varint`);
  }
  return f.value as bigint;
}

// ------------------------------------------------------------------ pagemap messages
// images/pagemap.proto (criu 4.x):
//   message pagemap_head  { required uint32 pages_id = 1; }
//   message pagemap_entry { required uint64 vaddr = 1; required uint32 compat_nr_pages = 2;
//                           optional bool in_parent = 3; optional uint32 flags = 4;
//                           optional uint64 nr_pages = 5; }
// criu >= 4.0 writes compat_nr_pages = 0, flags, and the real count in nr_pages (field 5);
// older images only have compat_nr_pages (and in_parent instead of flags).

export interface PagemapHeadMsg {
  pagesId: number;
  unknown: PbField[];
}

export interface PagemapEntryMsg {
  vaddr: number;
  compatNrPages: number;
  inParent: boolean | undefined;
  flags: number | undefined;
  nrPages: number | undefined;
  /** Fields we do not know, re-emitted after the known ones when encoding. */
  unknown: PbField[];
}

export function decodePagemapHead(buf: Buffer, src: PbSource): PagemapHeadMsg {
  let pagesId: number | undefined;
  const unknown: PbField[] = [];
  for (const f of decodeFields(buf, src)) {
    if (f.field === 1) pagesId = toU32(expectVarint(f, 'pages_id', src), 'pages_id', src);
    else unknown.push(f);
  }
  if (pagesId === undefined) throw new ImageFormatError(src.file, src.offset, 'pagemap_head without pages_id');
  return { pagesId, unknown };
}

export function encodePagemapHead(m: PagemapHeadMsg): Buffer {
  return encodeFields([{ field: 1, wire: WIRE_VARINT, value: BigInt(m.pagesId) }, ...m.unknown]);
}

export function decodePagemapEntry(buf: Buffer, src: PbSource): PagemapEntryMsg {
  let vaddr: number | undefined;
  let compatNrPages: number | undefined;
  let inParent: boolean | undefined;
  let flags: number | undefined;
  let nrPages: number | undefined;
  const unknown: PbField[] = [];
  for (const f of decodeFields(buf, src)) {
    switch (f.field) {
      case 1:
        vaddr = toSafeNumber(expectVarint(f, 'vaddr', src), 'vaddr', src);
        break;
      case 2:
        compatNrPages = toU32(expectVarint(f, 'compat_nr_pages', src), 'compat_nr_pages', src);
        break;
      case 3:
        inParent = expectVarint(f, 'in_parent', src) !== 0n;
        break;
      case 4:
        flags = toU32(expectVarint(f, 'flags', src), 'flags', src);
        break;
      case 5:
        nrPages = toSafeNumber(expectVarint(f, 'nr_pages', src), 'nr_pages', src);
        break;
      default:
        unknown.push(f);
    }
  }
  if (vaddr === undefined) throw new ImageFormatError(src.file, src.offset, 'pagemap_entry without vaddr');
  if (compatNrPages === undefined && nrPages === undefined) {
    throw new ImageFormatError(src.file, src.offset, 'pagemap_entry without nr_pages');
  }
  return { vaddr, compatNrPages: compatNrPages ?? 0, inParent, flags, nrPages, unknown };
}

export function encodePagemapEntry(m: PagemapEntryMsg): Buffer {
  const fields: PbField[] = [
    { field: 1, wire: WIRE_VARINT, value: BigInt(m.vaddr) },
    { field: 2, wire: WIRE_VARINT, value: BigInt(m.compatNrPages) },
  ];
  if (m.inParent !== undefined) fields.push({ field: 3, wire: WIRE_VARINT, value: m.inParent ? 1n : 0n });
  if (m.flags !== undefined) fields.push({ field: 4, wire: WIRE_VARINT, value: BigInt(m.flags) });
  if (m.nrPages !== undefined) fields.push({ field: 5, wire: WIRE_VARINT, value: BigInt(m.nrPages) });
  fields.push(...m.unknown);
  return encodeFields(fields);
}

export function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}
