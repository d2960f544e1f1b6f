// A FIFO of byte chunks: push what a stream delivers, take exactly N bytes when N are there.
// Avoids re-concatenating the whole backlog on every chunk (O(n^2) on many small chunks).

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes already consumed from chunks[0]
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** The first n bytes without consuming them (n <= length). */
  peek(n: number): Buffer {
    return this.copyOut(n, false);
  }

  /** Remove and return the first n bytes (n <= length). */
  take(n: number): Buffer {
    return this.copyOut(n, true);
  }

  private copyOut(n: number, consume: boolean): Buffer {
    if (n > this.total) throw new RangeError(`ByteQueue: ${n} bytes asked, ${this.total} held`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    // Fast path: the bytes lie inside the first chunk: a view, no copy.
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      if (consume) {
        this.head += n;
        this.total -= n;
        if (this.head === first.length) {
          this.chunks.shift();
          this.head = 0;
        }
      }
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let idx = 0;
    let head = this.head;
    while (filled < n) {
      const c = this.chunks[idx]!;
      const m = Math.min(c.length - head, n - filled);
      c.copy(out, filled, head, head + m);
      filled += m;
      head += m;
      if (head === c.length) {
        idx++;
        head = 0;
      }
    }
    if (consume) {
      this.chunks.splice(0, idx);
      this.head = head;
      this.total -= n;
    }
    return out;
  }
}
