// Shapes every part of the API shares: the error body and the plain acknowledgement.
import { z } from './zod.js';

/** Every error answer: `{error, message, hint?, context?}` (src/util/errors.ts). */
export const ApiErrorSchema = z
  .object({
    error: z.string().describe('stable code'),
    message: z.string(),
    hint: z.string().optional(),
    context: z.record(z.unknown()).optional(),
  })
  .openapi('Error');
export type ApiErrorBody = z.infer<typeof ApiErrorSchema>;

export const OkSchema = z.object({ ok: z.boolean() }).openapi('Ok');
export type Ok = z.infer<typeof OkSchema>;

/** Left open: the answers whose shapes belong to the modules behind them (recreate's phases). */
export const OpenObjectSchema = z.object({}).passthrough();
