// Errors of the images module: building, reading and loading image archives and overlays.
import { CloudletError, type ErrorContext } from '../util/errors.js';

/** Building or reading an image archive failed, or an engine refused to load one. */
export class ImageError extends CloudletError {
  constructor(code: string, message: string, opts: { context?: ErrorContext; hint?: string; cause?: unknown; httpStatus?: number } = {}) {
    super(code, message, { ...opts, httpStatus: opts.httpStatus ?? IMAGE_ERROR_STATUS[code] ?? 500 });
  }
}

/** HTTP status of the errors that are the client's input at fault (cloudletd replies). */
const IMAGE_ERROR_STATUS: Record<string, number> = {
  bad_overlay: 422,
  unknown_codec: 422,
  unsafe_layer: 422,
  layer_digest_mismatch: 422,
  overlay_truncated: 422,
  overlay_too_large: 413,
  base_image_missing: 409,
  not_built_on_base: 422,
  image_not_found: 404,
};
