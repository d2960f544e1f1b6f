// Errors of the transfer module. Every failure of a framed stream or of a codec on received
// data is a TransferError: a stable `code` (transfer_<kind>) and the context needed to find
// the fault (frame index, byte offset of the frame, artifact name, sizes).
import { CloudletError, type ErrorContext } from '../util/errors.js';

export type TransferErrorKind =
  | 'truncated' // the stream ended inside a frame, an artifact or before END-OF-STREAM
  | 'bad_magic' // the stream does not start with the protocol preamble
  | 'bad_frame' // unknown frame type, unknown flags, malformed payload, frames out of order
  | 'oversize' // a frame, block or artifact larger than the reader accepts
  | 'crc' // a frame's CRC32 does not match (corruption in transit)
  | 'checksum' // an artifact's sha256 or size does not match its END trailer
  | 'codec' // a block failed to decompress, or decompressed to the wrong size
  | 'bomb' // decompressed output would exceed the allowed size
  | 'source'; // the artifact source or the sink failed while sending

export class TransferError extends CloudletError {
  readonly kind: TransferErrorKind;

  constructor(kind: TransferErrorKind, message: string, opts: { context?: ErrorContext; cause?: unknown } = {}) {
    super(`transfer_${kind}`, message, {
      context: opts.context ?? {},
      cause: opts.cause,
      // A stream over the receiver's size limits is refused as too large, not as malformed.
      kind: kind === 'oversize' || kind === 'bomb' ? 'too-large' : 'invalid-data',
      hint: kind === 'source' ? undefined : 'the transfer stream is damaged or was cut: the round must be re-sent (nothing received in it can be trusted)',
    });
    this.kind = kind;
  }
}
