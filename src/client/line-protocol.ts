// The handoff service's raw TCP protocol (src/workloads/handoff-service.ts), client side:
// `REQ <n> <payload>\n` out, `RES <n> <served> <instance>\n` or `ERR <reason>\n` back.

export function encodeRequest(n: number, payloadBytes: number): string {
  return `REQ ${n} ${'p'.repeat(Math.max(0, payloadBytes))}\n`;
}

export type ReplyLine = { kind: 'res'; n: number; served: number; instance: string } | { kind: 'err'; reason: string } | { kind: 'bad'; line: string };

export function parseReply(line: string): ReplyLine {
  const res = /^RES (\d+) (\d+) (\S+)$/.exec(line);
  if (res) return { kind: 'res', n: Number(res[1]), served: Number(res[2]), instance: res[3]! };
  if (line.startsWith('ERR ')) return { kind: 'err', reason: line.slice(4) };
  return { kind: 'bad', line: line.slice(0, 200) };
}

/** Splits a byte stream into lines; keeps the unfinished tail for the next chunk. */
export class LineSplitter {
  private buf = '';

  constructor(private readonly maxLine = 64 * 1024) {}

  push(chunk: string): string[] {
    this.buf += chunk;
    const parts = this.buf.split('\n');
    this.buf = parts.pop()!;
    if (this.buf.length > this.maxLine) throw new RangeError(`reply line longer than ${this.maxLine} bytes`);
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  }
}
