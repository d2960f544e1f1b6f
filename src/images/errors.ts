// Errors of the images module: building, reading and loading image archives.
import { CloudletError, type ErrorContext } from '../util/errors.js';

/** Building or reading an image archive failed, or an engine refused to load one. */
export class ImageError extends CloudletError {
  constructor(code: string, message: string, opts: { context?: ErrorContext; hint?: string; cause?: unknown } = {}) {
    super(code, message, opts);
  }
}
