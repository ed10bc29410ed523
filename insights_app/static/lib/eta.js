// The time left of a page's attributions, from what the finished chunks measured.
//
// A page is computed in chunks: the first example alone (so that a card shows early), then as many
// as the engine attributes in one captum call. The first one is no guide to the rest (one example
// alone costs another time per example than a batch, and it pays the first call's set-up), so once a
// later chunk has finished the rate is measured over the chunks after the first: their examples
// divided into the time since the first one ended. Between events the estimate counts down; past
// it, it says 0 ("finishing") rather than a number that is already wrong.

/** A clock-driven estimate: start(t), done(t, n) as examples finish, left(t, pending) in ms (or null). */
export class TimeLeft {
  constructor() {
    this.started = null;
    this.firstEnd = null; // when the first example finished (the first chunk: one example alone)
    this.firstCount = 0;
    this.lastEnd = null;
    this.count = 0;
  }

  start(t) {
    this.started = t;
  }

  /** `n` more examples finished at `t`; `total` (when given) is the count finished so far. */
  done(t, n = 1, total = null) {
    this.count = total === null ? this.count + n : total;
    if (this.firstEnd === null) {
      this.firstEnd = t;
      this.firstCount = this.count;
    }
    this.lastEnd = t;
  }

  /** The per-example time measured so far (ms), or null before any example finished. */
  rate() {
    if (this.lastEnd === null || this.started === null) return null;
    const later = this.count - this.firstCount;
    if (later > 0 && this.lastEnd > this.firstEnd) return (this.lastEnd - this.firstEnd) / later;
    return (this.firstEnd - this.started) / Math.max(1, this.firstCount);
  }

  /** Time left (ms) for `pending` more examples at `t`, counted down since the last one finished. */
  left(t, pending) {
    const rate = this.rate();
    if (rate === null) return null;
    return Math.max(0, rate * pending - (t - this.lastEnd));
  }
}
