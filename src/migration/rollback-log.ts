// What a rollback did, step by step: the outcome of each step is typed, not read back out
// of its words. The words are what the report's error message shows (after "rollback: ").

export interface RollbackStep {
  /** As the report shows it; a failed step's words start with "FAILED". */
  text: string;
  ok: boolean;
  /** The step concerned the source's own container (its restore): its final dump is then kept. */
  sourceContainer: boolean;
}

/** How a rollback ended: everything put back, or something left for an operator. */
export type RollbackOutcome = 'rolled-back' | 'failed';

export class RollbackLog {
  readonly steps: RollbackStep[] = [];

  done(text: string): void {
    this.steps.push({ text, ok: true, sourceContainer: false });
  }

  failed(text: string, o: { sourceContainer?: boolean } = {}): void {
    this.steps.push({ text, ok: false, sourceContainer: o.sourceContainer ?? false });
  }

  get anyFailed(): boolean {
    return this.steps.some((s) => !s.ok);
  }

  /** A step on the source container failed: it may be stopped here without a copy elsewhere. */
  get sourceContainerFailed(): boolean {
    return this.steps.some((s) => !s.ok && s.sourceContainer);
  }

  get outcome(): RollbackOutcome {
    return this.anyFailed ? 'failed' : 'rolled-back';
  }

  get empty(): boolean {
    return this.steps.length === 0;
  }

  /** The steps as the report's error message tells them: "a; b; c". */
  toString(): string {
    return this.steps.map((s) => s.text).join('; ');
  }
}
