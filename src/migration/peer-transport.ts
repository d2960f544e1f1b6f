// What the migration core needs from a peer cloudletd: JSON calls and streamed uploads of
// rounds and image files. The core defines it and its host (the daemon) implements it with
// the API client (src/api/client): the core stays free of HTTP, tokens and TLS, which the host
// owns, and a test can hand the core a transport of its own.
import type { Readable } from 'node:stream';
import type { ZodType, ZodTypeDef } from 'zod';

export type AnswerSchema<T> = ZodType<T, ZodTypeDef, unknown>;

/** A destination silent this long is given up on, unless the handoff asks otherwise (peerTimeoutMs). */
export const PEER_SILENCE_MS = 120_000;

export interface PeerUploaded<T> {
  response: T;
  /** Bytes of the body sent. */
  bytes: number;
  /** Until the last byte was handed to the socket: excludes the peer's work after it. */
  uploadMs: number;
}

/**
 * One peer. Every failure is an ApiError (util/errors.ts): the peer's own error answer with
 * its kind, or status 0 when it could not be reached or stayed silent too long.
 */
export interface PeerTransport {
  /** The peer's URL (its host is where a drain link points). */
  readonly baseUrl: string;
  get<T = unknown>(path: string, schema?: AnswerSchema<T>): Promise<T>;
  post<T = unknown>(path: string, json: unknown, schema?: AnswerSchema<T>): Promise<T>;
  delete<T = unknown>(path: string, schema?: AnswerSchema<T>): Promise<T>;
  /** Streams `body` (a round's frames, an overlay file) as it is produced; the answer is JSON. */
  upload<T = unknown>(o: {
    path: string;
    body: Readable | AsyncIterable<Uint8Array>;
    method?: 'PUT' | 'POST';
    contentType: string;
    contentLength?: number;
    schema?: AnswerSchema<T>;
    /** This upload's own silence limit (an image the peer loads before it answers). */
    silenceMs?: number;
  }): Promise<PeerUploaded<T>>;
}

/** Opens a transport to a peer; `silenceMs`: a peer silent this long is given up on. */
export type PeerConnector = (peer: { url: string; silenceMs: number }) => PeerTransport;
