// bench/node/semaphore.mjs: the seed's Semaphore, as written there
// (SeedSemaphore: its waiter queue is an Array and release() takes the
// next waiter with Array.prototype.shift, O(n) in the queue's length) and
// with an O(1) queue (Semaphore: the same code over a ring buffer).
// Used by bench/node/gate.mjs and bench/node/plimit.mjs.

// A FIFO of callbacks in a growable ring buffer: push and shift are O(1).
export class Ring {
  constructor(cap = 16) {
    this.buf = new Array(cap);
    this.mask = cap - 1;
    this.head = 0;
    this.length = 0;
  }
  push(x) {
    if (this.length > this.mask) this.grow();
    this.buf[(this.head + this.length) & this.mask] = x;
    this.length++;
  }
  shift() {
    if (this.length === 0) return undefined;
    const x = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.length--;
    return x;
  }
  grow() {
    const old = this.buf, cap = old.length, buf = new Array(cap * 2);
    for (let i = 0; i < this.length; i++) buf[i] = old[(this.head + i) & this.mask];
    this.buf = buf;
    this.mask = cap * 2 - 1;
    this.head = 0;
  }
}

// The seed's Semaphore, with the Ring in place of the Array.
export class Semaphore {
  constructor(maxConcurrency) {
    if (maxConcurrency < 1) throw new RangeError("Semaphore requires at least 1 permit");
    this.permits = maxConcurrency;
    this.queue = new Ring();
  }
  async acquire() {
    if (this.permits > 0) {
      this.permits--;
      return;
    }
    return new Promise((resolve) => {
      this.queue.push(resolve);
    });
  }
  release() {
    const next = this.queue.shift();
    if (next) {
      // Don't increment permits: hand the permit directly to the waiter.
      queueMicrotask(next);
    } else {
      this.permits++;
    }
  }
  get available() { return this.permits; }
  get waiting() { return this.queue.length; }
  async withPermit(fn) {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

// The seed's Semaphore unchanged (TypeScript types dropped).
export class SeedSemaphore {
  constructor(maxConcurrency) {
    if (maxConcurrency < 1) throw new RangeError("Semaphore requires at least 1 permit");
    this.permits = maxConcurrency;
    this.queue = [];
  }
  async acquire() {
    if (this.permits > 0) {
      this.permits--;
      return;
    }
    return new Promise((resolve) => {
      this.queue.push(resolve);
    });
  }
  release() {
    const next = this.queue.shift();
    if (next) {
      // Don't increment permits - hand the permit directly to the waiter.
      // Use queueMicrotask to avoid deep stack recursion.
      queueMicrotask(next);
    } else {
      this.permits++;
    }
  }
  get available() { return this.permits; }
  get waiting() { return this.queue.length; }
  async withPermit(fn) {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
