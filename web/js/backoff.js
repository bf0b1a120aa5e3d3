// Reconnect delays: exponential backoff with full jitter (so a thousand clients that lost the same server
// do not come back in the same millisecond).

export class Backoff {
  constructor({ base = 500, max = 30000, random = Math.random } = {}) {
    this.base = base;
    this.max = max;
    this.random = random;
    this.attempt = 0;
  }
  /** The next delay in ms: uniform in [0, min(max, base * 2^attempt)]. */
  next() {
    const cap = Math.min(this.max, this.base * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.floor(this.random() * cap);
  }
  reset() {
    this.attempt = 0;
  }
}
