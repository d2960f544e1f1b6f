// Errors of the images module: building, reading and loading image archives and overlays.
import { CloudletError, type ErrorContext, type ErrorKind } from '../util/errors.js';

/**
 * Building or reading an image archive failed, or an engine refused to load one. The kind
 * follows from the code (IMAGE_ERROR_KIND); a code not listed there is a failure on this
 * side (internal).
 */
export class ImageError extends CloudletError {
  constructor(code: string, message: string, opts: { context?: ErrorContext; hint?: string; cause?: unknown; kind?: ErrorKind } = {}) {
    super(code, message, { ...opts, kind: opts.kind ?? IMAGE_ERROR_KIND[code] ?? 'internal' });
  }
}

/** Kinds of the errors that are the client's input at fault (cloudletd replies). */
const IMAGE_ERROR_KIND: Record<string, ErrorKind> = {
  bad_overlay: 'invalid-data',
  unknown_codec: 'invalid-data',
  unsafe_layer: 'invalid-data',
  layer_digest_mismatch: 'invalid-data',
  overlay_truncated: 'invalid-data',
  overlay_too_large: 'too-large',
  base_image_missing: 'conflict',
  not_built_on_base: 'invalid-data',
  image_not_found: 'not-found',
};
