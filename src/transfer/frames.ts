// The framed binary stream of one migration round: named artifacts, each compressed in
// blocks, each with a sha256 of its raw bytes. Transport-agnostic: the writer
// (frame-writer.ts) writes to any Writable (TCP socket, HTTP request, file, PassThrough) or
// hands out a Readable; the reader (frame-reader.ts) consumes any async iterable of bytes.
// This module holds the format: its constants, its types and the frame encoding.
//
// WIRE FORMAT (version 1; all integers big-endian)
//
//   stream   := MAGIC HELLO artifact* EOS
//   MAGIC    := "CLT" 0x01                                   (4 bytes: protocol and version)
//   artifact := BEGIN DATA* END
//   frame    := type u8 | flags u8 | length u32 | crc u32 | payload[length]
//               crc = CRC-32 (zlib's) of the 6 header bytes before it, then the payload:
//               any damage to a frame is caught at that frame, before its payload is used.
//
//   type 0x01 HELLO  payload: UTF-8 JSON {"v":1,"meta":{...}}           (first frame, once)
//   type 0x02 BEGIN  payload: UTF-8 JSON {"name","codec","rawSize"|null,"meta"?}
//                    name: 1..255 bytes, unique in the stream; codec: none|lz4|zstd|gzip
//   type 0x03 DATA   payload: rawLen u32 | block
//                    flags bit0 STORED: block is rawLen raw bytes; otherwise block is one
//                    codec-compressed unit (see codecs.ts) strictly smaller than rawLen.
//                    rawLen <= the reader's maxBlockSize (default 8 MiB, writer uses 1 MiB)
//   type 0x04 END    payload: sha256[32] of the artifact's raw bytes |
//                    sha256[32] of its BEGIN payload | rawBytes u64 |
//                    sentBytes u64 = wire bytes of this artifact's BEGIN and DATA frames
//   type 0x05 EOS    payload: artifacts u32 | rawBytes u64 (all artifacts) |
//                    wireBytes u64 = stream bytes before this frame (MAGIC included) |
//                    sha256[32] of the HELLO payload
//   The CRC catches damage in transit; the sha256s catch what a CRC can miss (or damage
//   done before framing), for the data and for the metadata (names, codecs, meta) alike.
//   Flags other than DATA's STORED must be 0. Control frames (all but DATA) are at most
//   64 KiB. A stream that ends anywhere before the end of EOS is truncated.
//
// The reader yields each artifact's raw bytes as they are decoded, BEFORE its END has been
// checked: a consumer must treat an artifact as valid only once its 'end' event arrived
// (write to a temporary name, rename on 'end'). Any failure throws a TransferError with
// kind, frame index and stream offset in its context; after an error nothing of the
// artifact in progress may be used.
import zlib from 'node:zlib';
import { UsageError } from '../util/errors.js';
import type { CodecName } from './codecs.js';

export const FRAME_MAGIC = Buffer.from([0x43, 0x4c, 0x54, 0x01]); // "CLT" v1
export const FRAME_HEADER_BYTES = 10;
export const FrameType = { HELLO: 0x01, BEGIN: 0x02, DATA: 0x03, END: 0x04, EOS: 0x05 } as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];
const TYPE_NAMES: Record<number, string> = { 1: 'HELLO', 2: 'BEGIN', 3: 'DATA', 4: 'END', 5: 'EOS' };
export const FLAG_STORED = 0x01;
/** Largest HELLO/BEGIN/END/EOS payload. */
export const MAX_CONTROL_FRAME = 64 * 1024;
export const END_PAYLOAD = 80;
export const EOS_PAYLOAD = 52;
export const MAX_NAME_BYTES = 255;

export function frameTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `0x${t.toString(16).padStart(2, '0')}`;
}

export type Meta = Record<string, unknown>;

export interface ArtifactHeader {
  name: string;
  codec: CodecName;
  /** Raw size announced by the sender; null when it streamed without knowing it. */
  rawSize: number | null;
  meta?: Meta;
}

export interface ArtifactSummary {
  name: string;
  codec: CodecName;
  rawBytes: number;
  /** Wire bytes of the artifact's BEGIN and DATA frames (headers included). */
  sentBytes: number;
  /** sha256 of the raw bytes, hex. */
  sha256: string;
  blocks: number;
  /** Blocks sent raw because compression would not have shrunk them. */
  storedBlocks: number;
}

export interface StreamSummary {
  artifacts: number;
  rawBytes: number;
  /** All bytes of the stream, EOS included. */
  wireBytes: number;
}

/** What an artifact is read from: whole (a Buffer, its size then announced) or streamed. */
export type ArtifactSource = Buffer | Iterable<Buffer | Uint8Array> | AsyncIterable<Buffer | Uint8Array>;

// ---------------------------------------------------------------------------------------
// Frame encoding

export function frameHeader(type: number, flags: number, payload: Buffer, prefix?: Buffer): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  const len = payload.length + (prefix?.length ?? 0);
  h.writeUInt8(type, 0);
  h.writeUInt8(flags, 1);
  h.writeUInt32BE(len, 2);
  let crc = zlib.crc32(h.subarray(0, 6));
  if (prefix) crc = zlib.crc32(prefix, crc);
  crc = zlib.crc32(payload, crc);
  h.writeUInt32BE(crc >>> 0, 6);
  return h;
}

export function jsonPayload(v: unknown): Buffer {
  const b = Buffer.from(JSON.stringify(v), 'utf8');
  if (b.length > MAX_CONTROL_FRAME) throw new UsageError(`control frame of ${b.length} bytes exceeds ${MAX_CONTROL_FRAME} (meta too large?)`);
  return b;
}

export function writeU64(b: Buffer, v: number, off: number): void {
  b.writeBigUInt64BE(BigInt(v), off);
}
