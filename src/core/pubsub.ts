/**
 * Topic-based publish/subscribe with MQTT 3.1.1 topic semantics, retained messages and bounded
 * per-subscription buffers.
 *
 * Choices worth knowing (docs/pubsub.md has the full story):
 *
 * - **Per-subscription delivery.** Every `subscribe` call is its own subscription with its own
 *   buffer. A subscriber with two overlapping subscriptions (say `a/#` and `a/+`) receives a
 *   matching message once per subscription. `publish` returns the number of subscriptions the
 *   message was delivered to.
 * - **Nothing vanishes uncounted.** A full buffer applies its {@linkcode OverflowPolicy}:
 *   `DropOldest` evicts the oldest buffered message (a drop) and delivers the new one,
 *   `DropNewest` drops the new one (a drop, not a delivery), `Reject` refuses the whole publish
 *   with a `QueueFullError` before anything is delivered to anyone (a rejection).
 * - **Retained messages** (`publish(..., { retain: true })`) keep the last message per topic and
 *   are replayed to every new matching subscription before any live message, oldest first by
 *   HLC timestamp. Retaining an empty envelope clears the topic's retained message (it is still
 *   delivered live, as MQTT does).
 * - **Ending.** `unsubscribe()` (or broker `close()`) stops deliveries at once; messages already
 *   buffered can still be read, then iteration ends and `receive()` rejects.
 *
 * @example
 * ```ts
 * import { HlcClock, PubSubBroker, PubSubConfig } from "@ringkernel/core";
 * const broker = new PubSubBroker(PubSubConfig.default());
 * const clock = new HlcClock(1);
 * const sub = broker.subscribe("dashboard", "sensors/+/temperature");
 * broker.publish("sensors/lab/temperature", "sensor-7", new Uint8Array([21]), clock.tick());
 * for await (const msg of sub) {
 *   console.log(msg.topic, msg.sender, msg.envelope);
 *   break; // leaving the loop unsubscribes
 * }
 * ```
 * @module
 */

import {
  ErrorCode,
  InvalidStateError,
  QueueFullError,
  TimeoutError,
  ValidationError,
} from "./errors.ts";
import { HlcTimestamp } from "./hlc.ts";
import { Topic, validateTopicName } from "./topic.ts";
import { TopicNameTrie, TopicTrie } from "./topic_trie.ts";

/** What a subscription whose buffer is full does with the next message. */
export const OverflowPolicy = {
  /** Evict the oldest buffered message (counted as dropped) and deliver the new one. */
  DropOldest: "drop-oldest",
  /** Discard the new message (counted as dropped, not delivered); the buffer is unchanged. */
  DropNewest: "drop-newest",
  /**
   * Refuse the publish: `publish` throws `QueueFullError` (code `E_QUEUE_FULL`) and delivers
   * to no subscription at all, so the publisher can back off and retry. Counted as rejected.
   * Retained replay cannot be refused, so there a full buffer drops like `DropNewest`.
   */
  Reject: "reject",
} as const;

/** One of the {@linkcode OverflowPolicy} values. */
export type OverflowPolicy = typeof OverflowPolicy[keyof typeof OverflowPolicy];

const POLICIES: readonly string[] = Object.values(OverflowPolicy);
const MAX_BUFFER = 1 << 24;

function checkCount(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `${name} must be an integer in [${min}, ${max}], got ${value}`,
    );
  }
}

function checkPolicy(value: string): void {
  if (!POLICIES.includes(value)) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `overflowPolicy must be one of ${POLICIES.join(", ")}, got ${value}`,
    );
  }
}

/**
 * Broker settings. Immutable: each `with*` returns a changed copy.
 *
 * @example
 * ```ts
 * import { OverflowPolicy, PubSubConfig } from "@ringkernel/core";
 * const config = PubSubConfig.default()
 *   .withBufferCapacity(256)
 *   .withOverflowPolicy(OverflowPolicy.DropNewest)
 *   .withMaxRetained(10_000);
 * ```
 */
export class PubSubConfig {
  /** Messages each subscription buffers before its overflow policy applies (default 1024). */
  readonly bufferCapacity: number;
  /** Default overflow policy of new subscriptions (default `DropOldest`). */
  readonly overflowPolicy: OverflowPolicy;
  /** Most topics with a retained message (default 100,000); 0 disables retaining. */
  readonly maxRetained: number;

  private constructor(bufferCapacity: number, overflowPolicy: OverflowPolicy, maxRetained: number) {
    checkCount("bufferCapacity", bufferCapacity, 1, MAX_BUFFER);
    checkPolicy(overflowPolicy);
    checkCount("maxRetained", maxRetained, 0, Number.MAX_SAFE_INTEGER);
    this.bufferCapacity = bufferCapacity;
    this.overflowPolicy = overflowPolicy;
    this.maxRetained = maxRetained;
  }

  /** Buffers of 1024 messages, `DropOldest`, at most 100,000 retained topics. */
  static default(): PubSubConfig {
    return new PubSubConfig(1024, OverflowPolicy.DropOldest, 100_000);
  }

  /** A copy with another per-subscription buffer capacity (1 to 2^24). */
  withBufferCapacity(capacity: number): PubSubConfig {
    return new PubSubConfig(capacity, this.overflowPolicy, this.maxRetained);
  }

  /** A copy with another default overflow policy. */
  withOverflowPolicy(policy: OverflowPolicy): PubSubConfig {
    return new PubSubConfig(this.bufferCapacity, policy, this.maxRetained);
  }

  /** A copy with another limit on retained topics (0 disables retaining). */
  withMaxRetained(max: number): PubSubConfig {
    return new PubSubConfig(this.bufferCapacity, this.overflowPolicy, max);
  }
}

/** A message as a subscriber receives it. The same object may be shared by subscriptions. */
export interface Delivery<E = Uint8Array> {
  /** The topic name it was published on. */
  readonly topic: string;
  /** Who published it (a kernel or actor id). */
  readonly sender: string;
  /** The message envelope, passed through untouched. */
  readonly envelope: E;
  /** The publisher's HLC timestamp. */
  readonly timestamp: HlcTimestamp;
  /** True when it comes from the retained store (replay on subscribe), not a live publish. */
  readonly retained: boolean;
}

/** Options of {@linkcode PubSubBroker.publish}. */
export interface PublishOptions {
  /** Keep it as the topic's retained message (an empty envelope clears the retained one). */
  readonly retain?: boolean;
}

/** Options of {@linkcode PubSubBroker.subscribe}; unset fields come from the broker config. */
export interface SubscribeOptions {
  /** Messages buffered before the overflow policy applies (1 to 2^24). */
  readonly bufferCapacity?: number;
  /** What happens to a message that finds the buffer full. */
  readonly overflowPolicy?: OverflowPolicy;
}

/** Options of {@linkcode Subscription.receive} and {@linkcode Subscription.next}. */
export interface ReceiveOptions {
  /** Give up with a `TimeoutError` after this many milliseconds (0: only what is buffered). */
  readonly timeoutMs?: number;
  /** Give up with the signal's reason when it aborts. */
  readonly signal?: AbortSignal;
}

/** Counters of one subscription. */
export interface SubscriptionStats {
  /** Messages accepted: put in the buffer or handed straight to a waiting receiver. */
  readonly delivered: number;
  /** Messages lost to the overflow policy (evicted or discarded). */
  readonly dropped: number;
  /** Publishes refused because this subscription's buffer was full (`Reject` policy). */
  readonly rejected: number;
  /** Messages buffered now, not yet received. */
  readonly pending: number;
}

/** Counters of a broker, over its whole life (closed subscriptions included). */
export interface PubSubStats {
  /** Successful `publish` calls. */
  readonly published: number;
  /** Deliveries to subscriptions, retained replays included. */
  readonly delivered: number;
  /** Messages lost to overflow policies. */
  readonly dropped: number;
  /** Publishes refused by a `Reject` subscription (each counted once). */
  readonly rejected: number;
  /** Topics that hold a retained message now. */
  readonly retained: number;
  /** Open subscriptions now. */
  readonly subscriptions: number;
}

interface Counters {
  published: number;
  delivered: number;
  dropped: number;
  rejected: number;
}

/** A pending `receive`/`next`: settled by a delivery, a close, a timeout or an abort. */
class Waiter<E> {
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;

  constructor(
    readonly signal: AbortSignal | undefined,
    readonly deliver: (msg: Delivery<E>) => void,
    readonly end: () => void,
    readonly fail: (err: unknown) => void,
  ) {}

  /** Releases the timer and the abort listener; called once, whatever settles the waiter. */
  cleanup(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.onAbort !== undefined) this.signal?.removeEventListener("abort", this.onAbort);
    this.timer = undefined;
    this.onAbort = undefined;
  }
}

const INITIAL_SLOTS = 8;

/**
 * The broker-side state of a subscription: a ring buffer that grows on demand up to its
 * capacity (so 10k idle subscriptions do not reserve 10k full buffers) plus waiting receivers.
 */
class Inbox<E> {
  slots: (Delivery<E> | undefined)[] = [];
  head = 0;
  count = 0;
  delivered = 0;
  dropped = 0;
  rejected = 0;
  closed = false;
  readonly waiters: Waiter<E>[] = [];

  constructor(
    readonly id: number,
    readonly subscriberId: string,
    readonly filter: Topic,
    readonly capacity: number,
    readonly policy: OverflowPolicy,
    readonly counters: Counters,
  ) {}

  /** True when a live message would hit the overflow policy. */
  isFull(): boolean {
    return this.count === this.capacity && this.waiters.length === 0;
  }

  /** Delivers or applies the overflow policy; true when the message was accepted. */
  offer(msg: Delivery<E>): boolean {
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.delivered++;
      this.counters.delivered++;
      waiter.cleanup();
      waiter.deliver(msg);
      return true;
    }
    if (this.count === this.capacity) {
      this.dropped++;
      this.counters.dropped++;
      if (this.policy !== OverflowPolicy.DropOldest) return false;
      this.#shift();
    }
    if (this.count === this.slots.length) this.#grow();
    this.slots[(this.head + this.count) % this.slots.length] = msg;
    this.count++;
    this.delivered++;
    this.counters.delivered++;
    return true;
  }

  take(): Delivery<E> | undefined {
    return this.count === 0 ? undefined : this.#shift();
  }

  #shift(): Delivery<E> {
    const msg = this.slots[this.head]!;
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) % this.slots.length;
    this.count--;
    return msg;
  }

  #grow(): void {
    const size = Math.min(this.capacity, Math.max(INITIAL_SLOTS, this.slots.length * 2));
    const next = new Array<Delivery<E> | undefined>(size);
    for (let i = 0; i < this.count; i++) next[i] = this.slots[(this.head + i) % this.slots.length];
    this.slots = next;
    this.head = 0;
  }

  /** Stops deliveries; waiters end (the buffer stays readable). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) {
      w.cleanup();
      w.end();
    }
  }
}

function closedError<E>(inbox: Inbox<E>): InvalidStateError {
  return new InvalidStateError(
    ErrorCode.Closed,
    `subscription ${inbox.id} (${JSON.stringify(inbox.filter.value)}) is closed`,
  );
}

let newSubscription: <E>(inbox: Inbox<E>, detach: () => void) => Subscription<E>;

/**
 * One subscription of a {@linkcode PubSubBroker}: an async iterable of {@linkcode Delivery}
 * items with a bounded buffer. Single consumer: concurrent `receive` calls are served in order.
 *
 * Leaving a `for await` loop early (break, return, throw) unsubscribes. After `unsubscribe()`
 * or broker `close()`, already buffered messages can still be read; then iteration ends and
 * `receive()` rejects with `InvalidStateError` (code `E_CLOSED`).
 *
 * @example
 * ```ts
 * import { HlcTimestamp, PubSubBroker, PubSubConfig, TimeoutError } from "@ringkernel/core";
 * const broker = new PubSubBroker(PubSubConfig.default());
 * const sub = broker.subscribe("logger", "sensors/#", { bufferCapacity: 64 });
 * broker.publish("sensors/a", "s1", new Uint8Array(4), HlcTimestamp.zero(1));
 * sub.tryReceive(); // the delivery, or undefined when none is buffered
 * try {
 *   await sub.receive({ timeoutMs: 10 });
 * } catch (err) {
 *   if (!(err instanceof TimeoutError)) throw err;
 * }
 * console.log(sub.stats()); // { delivered: 1, dropped: 0, rejected: 0, pending: 0 }
 * sub.unsubscribe();
 * ```
 */
export class Subscription<E = Uint8Array>
  implements
    AsyncIterator<Delivery<E>, undefined, ReceiveOptions | undefined>,
    AsyncIterable<Delivery<E>> {
  readonly #inbox: Inbox<E>;
  readonly #detach: () => void;

  static {
    newSubscription = <T>(inbox: Inbox<T>, detach: () => void) => new Subscription(inbox, detach);
  }

  private constructor(inbox: Inbox<E>, detach: () => void) {
    this.#inbox = inbox;
    this.#detach = detach;
  }

  /** Broker-unique id of this subscription. */
  get id(): number {
    return this.#inbox.id;
  }

  /** The subscriber this subscription belongs to. */
  get subscriberId(): string {
    return this.#inbox.subscriberId;
  }

  /** The topic filter, as given. */
  get filter(): string {
    return this.#inbox.filter.value;
  }

  /** The buffer capacity of this subscription. */
  get capacity(): number {
    return this.#inbox.capacity;
  }

  /** The overflow policy of this subscription. */
  get overflowPolicy(): OverflowPolicy {
    return this.#inbox.policy;
  }

  /** True after `unsubscribe()` or broker `close()`. */
  get closed(): boolean {
    return this.#inbox.closed;
  }

  /** Messages lost to the overflow policy so far. */
  get dropped(): number {
    return this.#inbox.dropped;
  }

  /** Messages buffered now. */
  get pending(): number {
    return this.#inbox.count;
  }

  /** A snapshot of the counters. */
  stats(): SubscriptionStats {
    const i = this.#inbox;
    return { delivered: i.delivered, dropped: i.dropped, rejected: i.rejected, pending: i.count };
  }

  /** The oldest buffered message, or undefined when none is buffered. Never waits. */
  tryReceive(): Delivery<E> | undefined {
    return this.#inbox.take();
  }

  /**
   * The next message, waiting for one if needed. Rejects with `TimeoutError` (code
   * `E_TIMEOUT`) after `timeoutMs`, with the signal's reason on abort, and with
   * `InvalidStateError` (code `E_CLOSED`) once closed and drained.
   */
  receive(options?: ReceiveOptions): Promise<Delivery<E>> {
    return new Promise((resolve, reject) => {
      this.#wait(options, resolve, () => reject(closedError(this.#inbox)), reject);
    });
  }

  /**
   * Async-iterator step: like {@linkcode Subscription.receive}, but a closed and drained
   * subscription gives `{ done: true }` instead of rejecting.
   */
  next(options?: ReceiveOptions): Promise<IteratorResult<Delivery<E>, undefined>> {
    return new Promise((resolve, reject) => {
      this.#wait(
        options,
        (value) => resolve({ value, done: false }),
        () => resolve({ value: undefined, done: true }),
        reject,
      );
    });
  }

  #wait(
    options: ReceiveOptions | undefined,
    deliver: (msg: Delivery<E>) => void,
    end: () => void,
    fail: (err: unknown) => void,
  ): void {
    const inbox = this.#inbox;
    const timeoutMs = options?.timeoutMs;
    const signal = options?.signal;
    if (timeoutMs !== undefined && !(timeoutMs >= 0 && timeoutMs <= 2 ** 31 - 1)) {
      fail(
        new ValidationError(
          ErrorCode.InvalidArgument,
          `timeoutMs must be in [0, 2^31 - 1], got ${timeoutMs}`,
        ),
      );
      return;
    }
    const msg = inbox.take();
    if (msg !== undefined) return deliver(msg);
    if (inbox.closed) return end();
    if (signal?.aborted) return fail(signal.reason);
    const timeout = () =>
      new TimeoutError(
        ErrorCode.Timeout,
        `no message for subscription ${inbox.id} (${
          JSON.stringify(inbox.filter.value)
        }) within ${timeoutMs} ms`,
      );
    if (timeoutMs === 0) return fail(timeout());
    const waiter = new Waiter<E>(signal, deliver, end, fail);
    const drop = () => {
      const at = inbox.waiters.indexOf(waiter);
      if (at >= 0) inbox.waiters.splice(at, 1);
      waiter.cleanup();
    };
    if (timeoutMs !== undefined) {
      waiter.timer = setTimeout(() => {
        drop();
        fail(timeout());
      }, timeoutMs);
    }
    if (signal !== undefined) {
      waiter.onAbort = () => {
        drop();
        fail(signal.reason);
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
    }
    inbox.waiters.push(waiter);
  }

  /** Ends iteration early (what `break` in `for await` calls): unsubscribes. */
  return(): Promise<IteratorResult<Delivery<E>, undefined>> {
    this.unsubscribe();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** The subscription is its own async iterator. */
  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * Stops deliveries to this subscription now and removes it from the broker. Idempotent.
   * Buffered messages stay readable; pending `receive()` calls reject, pending `next()` calls
   * finish the iteration.
   */
  unsubscribe(): void {
    if (this.#inbox.closed) return;
    this.#detach();
    this.#inbox.close();
  }

  /** Same as {@linkcode Subscription.unsubscribe}, for `using sub = broker.subscribe(...)`. */
  [Symbol.dispose](): void {
    this.unsubscribe();
  }
}

// An envelope that clears a retained message: MQTT's zero-byte payload, in whatever shape E has.
function isEmptyEnvelope(envelope: unknown): boolean {
  if (envelope === undefined || envelope === null) return true;
  if (ArrayBuffer.isView(envelope) || envelope instanceof ArrayBuffer) {
    return envelope.byteLength === 0;
  }
  return typeof envelope === "string" && envelope.length === 0;
}

/**
 * The broker: subscriptions in a {@linkcode TopicTrie} (publish cost follows the topic's
 * levels and the wildcard branches it meets, not the number of subscriptions) and retained
 * messages in a {@linkcode TopicNameTrie} (replay walks only what the new filter can match).
 *
 * Synchronous and single-threaded: `publish` returns after every matching subscription has
 * the message (or has counted it dropped). `E` is the envelope type, opaque to the broker.
 *
 * @example
 * ```ts
 * import { HlcClock, OverflowPolicy, PubSubBroker, PubSubConfig } from "@ringkernel/core";
 * const broker = new PubSubBroker(PubSubConfig.default().withBufferCapacity(128));
 * const clock = new HlcClock(7);
 * broker.publish("config/limits", "controller", new Uint8Array([1]), clock.tick(), { retain: true });
 * const sub = broker.subscribe("kernel-3", "config/#", { overflowPolicy: OverflowPolicy.DropNewest });
 * sub.tryReceive()?.retained; // true: replayed from the retained store
 * const n = broker.publish("config/limits", "controller", new Uint8Array([2]), clock.tick());
 * console.log(n, broker.stats()); // 1 { published: 2, delivered: 2, ... }
 * broker.close();
 * ```
 */
export class PubSubBroker<E = Uint8Array> {
  /** The configuration the broker was created with. */
  readonly config: PubSubConfig;
  readonly #subscriptions = new TopicTrie<Inbox<E>>();
  readonly #bySubscriber = new Map<string, Set<Subscription<E>>>();
  readonly #retained = new TopicNameTrie<Delivery<E>>();
  readonly #counters: Counters = { published: 0, delivered: 0, dropped: 0, rejected: 0 };
  #open = 0;
  #rejecting = 0; // open subscriptions with the Reject policy: publish checks them first
  #nextId = 1;
  #closed = false;
  #scratch: Inbox<E>[] | null = [];

  /** Creates a broker; the default is {@linkcode PubSubConfig.default}. */
  constructor(config: PubSubConfig = PubSubConfig.default()) {
    if (!(config instanceof PubSubConfig)) {
      throw new ValidationError(ErrorCode.InvalidArgument, "config must be a PubSubConfig");
    }
    this.config = config;
  }

  /** True after {@linkcode PubSubBroker.close}. */
  get closed(): boolean {
    return this.#closed;
  }

  #checkOpen(what: string): void {
    if (this.#closed) {
      throw new InvalidStateError(ErrorCode.Closed, `cannot ${what}: broker is closed`);
    }
  }

  /**
   * Subscribes `subscriberId` to `filter` (validated; throws `TopicError`). Retained messages
   * that match are in the new subscription's buffer, oldest first, before this returns.
   */
  subscribe(
    subscriberId: string,
    filter: string | Topic,
    options?: SubscribeOptions,
  ): Subscription<E> {
    this.#checkOpen("subscribe");
    if (typeof subscriberId !== "string") {
      throw new ValidationError(ErrorCode.InvalidArgument, "subscriberId must be a string");
    }
    const topic = filter instanceof Topic ? filter : new Topic(filter); // validates
    const capacity = options?.bufferCapacity ?? this.config.bufferCapacity;
    const policy = options?.overflowPolicy ?? this.config.overflowPolicy;
    checkCount("bufferCapacity", capacity, 1, MAX_BUFFER);
    checkPolicy(policy);
    const inbox = new Inbox<E>(
      this.#nextId++,
      subscriberId,
      topic,
      capacity,
      policy,
      this.#counters,
    );
    const subscription = newSubscription(inbox, () => this.#remove(subscription, inbox));
    if (this.#retained.size > 0) {
      const replay: Delivery<E>[] = [];
      this.#retained.forEachMatch(topic, (msg) => {
        replay.push(msg);
      });
      replay.sort((a, b) => a.timestamp.compare(b.timestamp));
      for (const msg of replay) inbox.offer(msg);
    }
    this.#subscriptions.add(topic, inbox);
    let set = this.#bySubscriber.get(subscriberId);
    if (set === undefined) this.#bySubscriber.set(subscriberId, set = new Set());
    set.add(subscription);
    this.#open++;
    if (policy === OverflowPolicy.Reject) this.#rejecting++;
    return subscription;
  }

  #remove(subscription: Subscription<E>, inbox: Inbox<E>): void {
    this.#subscriptions.remove(inbox.filter, inbox);
    const set = this.#bySubscriber.get(inbox.subscriberId);
    set?.delete(subscription);
    if (set?.size === 0) this.#bySubscriber.delete(inbox.subscriberId);
    this.#open--;
    if (inbox.policy === OverflowPolicy.Reject) this.#rejecting--;
  }

  /**
   * Publishes `envelope` on the topic name (validated; wildcards are a `TopicError`) and
   * returns the number of subscriptions it was delivered to. With `retain`, it also becomes
   * the topic's retained message (an empty envelope clears it instead).
   *
   * Throws before any delivery (so nothing is half-published): `QueueFullError` with code
   * `E_QUEUE_FULL` when a matching `Reject` subscription is full, and with code
   * `E_RETAINED_FULL` when retaining a new topic would exceed `maxRetained`.
   */
  publish(
    topic: string | Topic,
    sender: string,
    envelope: E,
    timestamp: HlcTimestamp,
    options?: PublishOptions,
  ): number {
    this.#checkOpen("publish");
    if (!(timestamp instanceof HlcTimestamp)) {
      throw new ValidationError(ErrorCode.InvalidArgument, "timestamp must be an HlcTimestamp");
    }
    const name = typeof topic === "string" ? topic : topic.value;
    // A nested publish cannot happen today (delivery runs no user code), but if it ever does
    // it must not clobber the outer one's matches.
    const matches = this.#scratch ?? [];
    this.#scratch = null;
    try {
      this.#subscriptions.matchInto(topic, matches); // validates the topic name
      const retain = options?.retain === true;
      const clear = retain && isEmptyEnvelope(envelope);
      if (retain && !clear) this.#checkRetainRoom(name);
      if (this.#rejecting > 0) this.#checkRejecting(name, matches);

      const msg: Delivery<E> = { topic: name, sender, envelope, timestamp, retained: false };
      let delivered = 0;
      for (let i = 0; i < matches.length; i++) if (matches[i].offer(msg)) delivered++;
      if (clear) this.#retained.delete(topic);
      else if (retain) this.#retained.set(topic, { ...msg, retained: true });
      this.#counters.published++;
      return delivered;
    } finally {
      matches.length = 0;
      this.#scratch = matches;
    }
  }

  #checkRetainRoom(name: string): void {
    const max = this.config.maxRetained;
    if (this.#retained.size >= max && !this.#retained.has(name)) {
      throw new QueueFullError(
        ErrorCode.RetainedFull,
        `cannot retain a message on ${JSON.stringify(name)}: ${max} topics already hold one ` +
          `(maxRetained); nothing was published`,
      );
    }
  }

  #checkRejecting(name: string, matches: Inbox<E>[]): void {
    let full: Inbox<E> | undefined;
    for (const inbox of matches) {
      if (inbox.policy === OverflowPolicy.Reject && inbox.isFull()) {
        inbox.rejected++;
        full ??= inbox;
      }
    }
    if (full === undefined) return;
    this.#counters.rejected++;
    throw new QueueFullError(
      ErrorCode.QueueFull,
      `publish on ${JSON.stringify(name)} rejected: subscription ${full.id} of ` +
        `${JSON.stringify(full.subscriberId)} (${JSON.stringify(full.filter.value)}) is full ` +
        `(${full.capacity} messages); nothing was delivered`,
    );
  }

  /** The retained message of a topic name, if any. */
  retained(topic: string | Topic): Delivery<E> | undefined {
    return this.#retained.get(topic);
  }

  /** Removes a topic's retained message; true when there was one. */
  clearRetained(topic: string | Topic): boolean {
    if (typeof topic === "string") validateTopicName(topic);
    return this.#retained.delete(topic);
  }

  /** The open subscriptions, all or those of one subscriber. */
  subscriptions(subscriberId?: string): Subscription<E>[] {
    if (subscriberId !== undefined) return [...this.#bySubscriber.get(subscriberId) ?? []];
    return [...this.#bySubscriber.values()].flatMap((set) => [...set]);
  }

  /** Unsubscribes every subscription of a subscriber; returns how many there were. */
  unsubscribeAll(subscriberId: string): number {
    const subs = this.subscriptions(subscriberId);
    for (const s of subs) s.unsubscribe();
    return subs.length;
  }

  /** A snapshot of the broker's counters. */
  stats(): PubSubStats {
    const c = this.#counters;
    return {
      published: c.published,
      delivered: c.delivered,
      dropped: c.dropped,
      rejected: c.rejected,
      retained: this.#retained.size,
      subscriptions: this.#open,
    };
  }

  /**
   * Closes every subscription (buffered messages stay readable), forgets retained messages and
   * refuses further `subscribe`/`publish` with `InvalidStateError` (code `E_CLOSED`).
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.subscriptions()) s.unsubscribe();
    this.#retained.clear();
  }
}
