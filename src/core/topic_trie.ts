/**
 * Tries over topic levels, for matching without scanning every filter or every topic:
 *
 * - {@linkcode TopicTrie} holds topic *filters* and answers "which filters match this topic
 *   name?" (publish side). A lookup follows only the paths the name can take: at each visited
 *   node the literal child, the `+` child and the node's `#` values. Its cost depends on the
 *   number of levels and of wildcard branches, not on the number of filters.
 * - {@linkcode TopicNameTrie} holds topic *names* and answers "which names does this filter
 *   match?" (retained-message replay): the filter walks the trie, `+` fans out over one level's
 *   children and `#` takes a whole subtree.
 *
 * Both follow MQTT 3.1.1 §4.7 exactly (see `topic.ts`), including the `$` rule.
 *
 * @module
 */

import {
  filterLevels,
  MAX_TOPIC_BYTES,
  Topic,
  TOPIC_SEPARATOR,
  validateTopicFilter,
  validateTopicName,
  WILDCARD_ONE,
  WILDCARD_SOME,
} from "./topic.ts";
import { ErrorCode, TopicError } from "./errors.ts";

const DOLLAR = 0x24;
const SLASH = 0x2f;
const PLUS = 0x2b;
const STAR = 0x2a;
const HASH = 0x23;
// Shorter names cannot exceed MAX_TOPIC_BYTES, so only longer ones need the exact byte count.
const SAFE_LENGTH = Math.floor(MAX_TOPIC_BYTES / 3);

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 16777619;
// Hashes are folded to 30 bits: non-negative, so -1 can mark an empty slot.
const HASH_BITS = 0x3fffffff;
const EMPTY = -1;

/*
 * Layout of the filter trie. Matching 10k filters against random topics is bound by memory
 * latency, not by instructions, so the trie lives in a few typed arrays instead of one object
 * (plus a child map, plus key strings) per node:
 *
 * - Levels are interned: each distinct literal level used by a filter gets a small integer id.
 *   A topic is cut into levels in one pass that hashes each level and looks its id up, so the
 *   topic is never split into substrings and each of its levels is compared with a stored
 *   string once, however many trie nodes the walk then visits.
 * - Nodes are integers (0 is the root). `nodeHot[4n..4n+3]` holds the `+` child (0 = none),
 *   the flags (1 = filters end here, 2 = filters end here with `/#`, 4 = more than one literal
 *   child), and one literal child inline (level id, node). Most nodes of a real filter set have
 *   a single literal child, so the walk usually finds it in the record it has just read; the
 *   walk reads only these records and, for nodes flagged 4, the edge table. Parent, key and
 *   child counts, needed only to prune on removal, live in separate arrays.
 * - Literal edges (all of them, the inline ones too) live in one open-addressing table keyed by
 *   (parent, level id), four int32 per slot [parent, level, child, unused], so a probe usually
 *   costs one cache line.
 */

/** Interned literal levels: string ↔ id, with reference counts so removal can free ids. */
class Interner {
  slotHash = new Int32Array(16).fill(EMPTY);
  slotId = new Int32Array(16);
  mask = 15;
  count = 0;
  strings: string[] = [];
  refs = new Int32Array(16);
  offsets = new Int32Array(16);
  lengths = new Int32Array(16);
  chars = new Uint16Array(256);
  charsUsed = 0;
  free: number[] = [];

  static hash(s: string): number {
    let h = FNV_OFFSET;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
    return h & HASH_BITS;
  }

  /** The id of `level` in `topic[start, start + len)` with hash `h`, or -1 when unknown. */
  find(topic: string, start: number, len: number, h: number): number {
    const mask = this.mask;
    const slotHash = this.slotHash;
    let slot = h & mask;
    for (;;) {
      const sh = slotHash[slot];
      if (sh === EMPTY) return -1;
      if (sh === h) {
        const id = this.slotId[slot];
        // Compare against the copy in `chars`: reading a typed array is cheaper than a second
        // string's charCodeAt, and this runs once per level of every matched topic.
        if (this.lengths[id] === len) {
          const chars = this.chars;
          const at = this.offsets[id];
          let j = 0;
          while (j < len && chars[at + j] === topic.charCodeAt(start + j)) j++;
          if (j === len) return id;
        }
      }
      slot = (slot + 1) & mask;
    }
  }

  /** The id of `level`, creating it (with no references yet) when new. */
  intern(level: string): number {
    const h = Interner.hash(level);
    const found = this.find(level, 0, level.length, h);
    if (found >= 0) return found;
    let id: number;
    if (this.free.length > 0) {
      id = this.free.pop()!;
      this.strings[id] = level;
    } else {
      id = this.strings.length;
      this.strings.push(level);
      if (id >= this.refs.length) {
        this.refs = grown(this.refs, id + 1);
        this.offsets = grown(this.offsets, id + 1);
        this.lengths = grown(this.lengths, id + 1);
      }
    }
    this.refs[id] = 0;
    this.#store(id, level);
    if ((this.count + 1) * 2 > this.mask + 1) this.#rehash((this.mask + 1) * 2);
    this.#place(h, id);
    this.count++;
    return id;
  }

  // Appends the level's code units to `chars`. Space of released levels is reclaimed by
  // compacting when more than half of `chars` is garbage.
  #store(id: number, text: string): void {
    if (this.charsUsed + text.length > this.chars.length) this.#compact(text.length);
    const at = this.charsUsed;
    for (let j = 0; j < text.length; j++) this.chars[at + j] = text.charCodeAt(j);
    this.offsets[id] = at;
    this.lengths[id] = text.length;
    this.charsUsed = at + text.length;
  }

  #compact(extra: number): void {
    let live = extra;
    for (let id = 0; id < this.strings.length; id++) live += this.strings[id].length;
    let size = this.chars.length;
    while (size < 2 * live) size *= 2;
    const old = this.chars;
    this.chars = new Uint16Array(size);
    let used = 0;
    for (let id = 0; id < this.strings.length; id++) {
      const len = this.strings[id].length;
      if (len > 0) this.chars.set(old.subarray(this.offsets[id], this.offsets[id] + len), used);
      this.offsets[id] = used;
      used += len;
    }
    this.charsUsed = used;
  }

  #place(h: number, id: number): void {
    let slot = h & this.mask;
    while (this.slotHash[slot] !== EMPTY) slot = (slot + 1) & this.mask;
    this.slotHash[slot] = h;
    this.slotId[slot] = id;
  }

  #rehash(capacity: number): void {
    const oldHash = this.slotHash;
    const oldId = this.slotId;
    this.slotHash = new Int32Array(capacity).fill(EMPTY);
    this.slotId = new Int32Array(capacity);
    this.mask = capacity - 1;
    for (let i = 0; i < oldHash.length; i++) {
      if (oldHash[i] !== EMPTY) this.#place(oldHash[i], oldId[i]);
    }
  }

  /** Drops one reference; the last one forgets the level and recycles its id. */
  release(id: number): void {
    if (--this.refs[id] > 0) return;
    const s = this.strings[id];
    const h = Interner.hash(s);
    const mask = this.mask;
    let slot = h & mask;
    while (this.slotId[slot] !== id || this.slotHash[slot] !== h) slot = (slot + 1) & mask;
    backshift(this.slotHash, this.slotId, slot, mask);
    this.count--;
    this.strings[id] = "";
    this.free.push(id);
  }
}

// Backward-shift deletion for linear probing over parallel arrays (`hashes` gives home slots):
// later entries of the probe run move into the hole, so lookups never need tombstones.
function backshift(hashes: Int32Array, ids: Int32Array, hole: number, mask: number): void {
  let next = (hole + 1) & mask;
  for (;;) {
    const h = hashes[next];
    if (h === EMPTY) break;
    const home = h & mask;
    // The entry may fill the hole unless its home lies cyclically within (hole, next].
    const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
    if (!stays) {
      hashes[hole] = h;
      ids[hole] = ids[next];
      hole = next;
    }
    next = (next + 1) & mask;
  }
  hashes[hole] = EMPTY;
}

function grown(a: Int32Array<ArrayBuffer>, atLeast: number): Int32Array<ArrayBuffer> {
  let n = a.length * 2;
  while (n < atLeast) n *= 2;
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

function edgeHash(parent: number, level: number): number {
  let h = Math.imul(parent, 0x9e3779b1) ^ level;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  return (h ^ (h >>> 13)) & HASH_BITS;
}

const NO_PLUS_KEY = -2; // `key` of a node reached through `+`
const FLAG_EXACT = 1;
const FLAG_HASH = 2;
// Set when the node may have a literal child other than its inline one: look in the edge table.
const FLAG_MANY = 4;
const FLAGS_VALUES = FLAG_EXACT | FLAG_HASH;
// `nodeHot` record: [`+` child, flags, inline child's level id, inline child].
const HOT = 4;

/** The trie's storage; TopicTrie wraps it so that the hot functions below stay monomorphic. */
class Core<V> {
  levels = new Interner();
  nodeHot = new Int32Array(HOT * 64);
  nodeParent = new Int32Array(64);
  nodeKey = new Int32Array(64);
  nodeKids = new Int32Array(64);
  nodeLiterals = new Int32Array(64);
  nodeCount = 1; // the root
  freeNodes: number[] = [];
  exact: (V[] | null)[] = [null];
  hash: (V[] | null)[] = [null];
  edges = new Int32Array(4 * 16).fill(EMPTY);
  edgeMask = 15;
  edgeCount = 0;
  size = 0;

  constructor() {
    this.nodeHot[2] = EMPTY; // the root has no inline child yet
  }

  newNode(parent: number, key: number): number {
    let n: number;
    if (this.freeNodes.length > 0) {
      n = this.freeNodes.pop()!;
    } else {
      n = this.nodeCount++;
      if (n >= this.nodeParent.length) {
        this.nodeHot = grown(this.nodeHot, HOT * (n + 1));
        this.nodeParent = grown(this.nodeParent, n + 1);
        this.nodeKey = grown(this.nodeKey, n + 1);
        this.nodeKids = grown(this.nodeKids, n + 1);
        this.nodeLiterals = grown(this.nodeLiterals, n + 1);
      }
      this.exact.push(null);
      this.hash.push(null);
    }
    const hot = this.nodeHot;
    hot[HOT * n] = 0;
    hot[HOT * n + 1] = 0;
    hot[HOT * n + 2] = EMPTY;
    hot[HOT * n + 3] = 0;
    this.nodeParent[n] = parent;
    this.nodeKey[n] = key;
    this.nodeKids[n] = 0;
    this.nodeLiterals[n] = 0;
    this.nodeKids[parent]++;
    return n;
  }

  /** The literal child of `parent` for level id `level`, or -1. */
  child(parent: number, level: number): number {
    // Most nodes have one literal child: it sits next to the `+` child and flags the walk has
    // just read, so neither the hash nor a probe of the (much larger) edge table is needed.
    const hot = this.nodeHot;
    if (hot[HOT * parent + 2] === level) return hot[HOT * parent + 3];
    if ((hot[HOT * parent + 1] & FLAG_MANY) === 0) return -1;
    return this.edgeChild(parent, level);
  }

  /** The literal child of `parent` for level id `level` per the edge table, or -1. */
  edgeChild(parent: number, level: number): number {
    const e = this.edges;
    const mask = this.edgeMask;
    let slot = edgeHash(parent, level) & mask;
    for (;;) {
      const p = e[4 * slot];
      if (p === EMPTY) return -1;
      if (p === parent && e[4 * slot + 1] === level) return e[4 * slot + 2];
      slot = (slot + 1) & mask;
    }
  }

  /** The literal child of `parent` for `level`, created when absent. */
  childOrCreate(parent: number, levelText: string): number {
    const level = this.levels.intern(levelText);
    const found = this.edgeChild(parent, level);
    if (found >= 0) return found;
    const n = this.newNode(parent, level);
    this.levels.refs[level]++;
    // Every literal edge is in the table; the inline copy is a shortcut for the first child.
    const hot = this.nodeHot;
    if (this.nodeLiterals[parent]++ > 0) hot[HOT * parent + 1] |= FLAG_MANY;
    if (hot[HOT * parent + 2] === EMPTY) {
      hot[HOT * parent + 2] = level;
      hot[HOT * parent + 3] = n;
    }
    if ((this.edgeCount + 1) * 2 > this.edgeMask + 1) this.#rehashEdges((this.edgeMask + 1) * 2);
    this.#placeEdge(parent, level, n);
    this.edgeCount++;
    return n;
  }

  plusOrCreate(parent: number): number {
    let p = this.nodeHot[HOT * parent];
    if (p === 0) {
      p = this.newNode(parent, NO_PLUS_KEY);
      this.nodeHot[HOT * parent] = p;
    }
    return p;
  }

  #placeEdge(parent: number, level: number, child: number): void {
    const e = this.edges;
    let slot = edgeHash(parent, level) & this.edgeMask;
    while (e[4 * slot] !== EMPTY) slot = (slot + 1) & this.edgeMask;
    e[4 * slot] = parent;
    e[4 * slot + 1] = level;
    e[4 * slot + 2] = child;
  }

  #rehashEdges(capacity: number): void {
    const old = this.edges;
    this.edges = new Int32Array(4 * capacity).fill(EMPTY);
    this.edgeMask = capacity - 1;
    for (let i = 0; i < old.length; i += 4) {
      if (old[i] !== EMPTY) this.#placeEdge(old[i], old[i + 1], old[i + 2]);
    }
  }

  #deleteEdge(parent: number, level: number): void {
    const e = this.edges;
    const mask = this.edgeMask;
    let hole = edgeHash(parent, level) & mask;
    while (e[4 * hole] !== parent || e[4 * hole + 1] !== level) hole = (hole + 1) & mask;
    let next = (hole + 1) & mask;
    for (;;) {
      const p = e[4 * next];
      if (p === EMPTY) break;
      const home = edgeHash(p, e[4 * next + 1]) & mask;
      const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (!stays) {
        e[4 * hole] = p;
        e[4 * hole + 1] = e[4 * next + 1];
        e[4 * hole + 2] = e[4 * next + 2];
        hole = next;
      }
      next = (next + 1) & mask;
    }
    e[4 * hole] = EMPTY;
    this.edgeCount--;
  }

  /** Unlinks `n` and its ancestors while they hold no values and no children. */
  prune(n: number): void {
    const hot = this.nodeHot;
    while (n !== 0 && (hot[HOT * n + 1] & FLAGS_VALUES) === 0 && this.nodeKids[n] === 0) {
      const parent = this.nodeParent[n];
      const key = this.nodeKey[n];
      if (key === NO_PLUS_KEY) {
        hot[HOT * parent] = 0;
      } else {
        this.#deleteEdge(parent, key);
        this.levels.release(key);
        // The inline slot is emptied, not refilled from the table: FLAG_MANY stays set while
        // other literal children remain, so they are still found there.
        if (hot[HOT * parent + 3] === n) hot[HOT * parent + 2] = EMPTY;
        if (--this.nodeLiterals[parent] === 0) hot[HOT * parent + 1] &= ~FLAG_MANY;
      }
      this.nodeKids[parent]--;
      this.exact[n] = null;
      this.hash[n] = null;
      this.freeNodes.push(n);
      n = parent;
    }
  }

  /** The node a filter's levels lead to without creating anything, or -1. */
  find(levels: readonly string[], stopAtHash: boolean): number {
    let n = 0;
    for (const level of levels) {
      if (level === WILDCARD_SOME && stopAtHash) return n;
      if (level === WILDCARD_ONE) {
        n = this.nodeHot[HOT * n];
        if (n === 0) return -1;
      } else {
        const h = Interner.hash(level);
        const id = this.levels.find(level, 0, level.length, h);
        if (id < 0) return -1;
        n = this.child(n, id);
        if (n < 0) return -1;
      }
    }
    return n;
  }
}

/**
 * Cuts a topic name into levels in one pass: each level is hashed as it is read and looked up
 * among the interned levels (id, or -1 when no filter uses that literal). The same pass notices
 * anything a topic name may not contain and then defers to the exact validator, which throws
 * with the position (or accepts well-formed surrogate pairs). Returns the number of levels.
 */
function cut<V>(core: Core<V>, topic: string, ids: Int32Array): number {
  const n = topic.length;
  if (n === 0 || n > SAFE_LENGTH) validateTopicName(topic); // throws, or accepts a long name
  const levels = core.levels;
  let suspect = false;
  let level = 0;
  let start = 0;
  let h = FNV_OFFSET;
  for (let i = 0; i < n; i++) {
    const c = topic.charCodeAt(i);
    if (c <= SLASH) {
      if (c === SLASH) {
        ids[level++] = levels.find(topic, start, i - start, h & HASH_BITS);
        start = i + 1;
        h = FNV_OFFSET;
        continue;
      }
      if (c === 0 || c === PLUS || c === STAR || c === HASH) suspect = true;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      suspect = true;
    }
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  ids[level++] = levels.find(topic, start, n - start, h & HASH_BITS);
  if (suspect) validateTopicName(topic);
  return level;
}

/** Upper bound of the levels in `topic`, to size the id buffer before cutting. */
function maxLevels(topic: string): number {
  // Only long topics can have more levels than the default buffer holds.
  if (topic.length < 64) return 64;
  let count = 1;
  for (let i = topic.indexOf("/"); i >= 0; i = topic.indexOf("/", i + 1)) count++;
  return count;
}

function pushAll<V>(out: V[], values: V[]): void {
  for (let i = 0; i < values.length; i++) out.push(values[i]);
}

// The walk, depth-first without recursion: it follows the literal child in a loop and parks
// each `+` child it passes on `stack` as (node, level index), resuming the latest one when a
// branch ends. At most one entry per level is parked at a time, so `stack` needs 2 × levels.
// Function calls cost more than the loads here, so the child lookup is inlined too.
function collect<V>(
  core: Core<V>,
  ids: Int32Array,
  levels: number,
  n: number,
  i: number,
  out: V[],
  stack: Int32Array,
): void {
  const hot = core.nodeHot;
  let sp = 0;
  for (;;) {
    const at = HOT * n;
    const flags = hot[at + 1];
    if ((flags & FLAG_HASH) !== 0) pushAll(out, core.hash[n]!);
    let next = -1;
    if (i === levels) {
      if ((flags & FLAG_EXACT) !== 0) pushAll(out, core.exact[n]!);
    } else {
      const plus = hot[at];
      if (plus !== 0) {
        stack[sp++] = plus;
        stack[sp++] = i + 1;
      }
      const id = ids[i];
      if (id >= 0) {
        if (hot[at + 2] === id) next = hot[at + 3];
        else if ((flags & FLAG_MANY) !== 0) next = core.edgeChild(n, id);
      }
    }
    if (next >= 0) {
      n = next;
      i++;
    } else {
      if (sp === 0) return;
      i = stack[--sp];
      n = stack[--sp];
    }
  }
}

function notATopic(value: unknown): TopicError {
  return new TopicError(
    ErrorCode.InvalidTopic,
    `a topic must be a string or a Topic, got ${value === null ? "null" : typeof value}`,
  );
}

function nameOf(topic: string | Topic): string {
  if (typeof topic === "string") return topic;
  if (!(topic instanceof Topic)) throw notATopic(topic);
  if (topic.isWildcard) {
    throw new TopicError(
      ErrorCode.InvalidTopic,
      `invalid topic name ${JSON.stringify(topic.value)}: wildcards are only allowed in filters`,
    );
  }
  return topic.value;
}

function levelsOfName(topic: string | Topic): readonly string[] {
  if (typeof topic === "string") {
    validateTopicName(topic);
    return topic.split(TOPIC_SEPARATOR);
  }
  nameOf(topic); // rejects wildcards
  return topic.levels;
}

function levelsOfFilter(filter: string | Topic): readonly string[] {
  if (typeof filter === "string") {
    validateTopicFilter(filter);
    return filterLevels(filter);
  }
  if (!(filter instanceof Topic)) throw notATopic(filter);
  return filter.levels;
}

/**
 * A set of topic filters, each with one or more values, matched against topic names.
 *
 * Adding the same filter twice with two values keeps both; `a/*` and `a/+` are the same filter.
 * A topic name matches each filter at most once, so a value added once is returned at most
 * once per match. Results come in no particular order.
 *
 * A match allocates nothing but its result array ({@linkcode TopicTrie.matchInto} and
 * {@linkcode TopicTrie.forEachMatch} reuse theirs): the topic is never split into strings.
 * Removing filters frees their nodes, edges and interned levels, so a trie whose filters churn
 * does not grow.
 *
 * @example
 * ```ts
 * import { TopicTrie } from "@ringkernel/core";
 * const trie = new TopicTrie<string>();
 * trie.add("sensors/+/temperature", "thermostat");
 * trie.add("sensors/#", "logger");
 * trie.add("$SYS/#", "monitor");
 * trie.match("sensors/kitchen/temperature"); // ["logger", "thermostat"] (any order)
 * trie.match("$SYS/uptime"); // ["monitor"]
 * trie.remove("sensors/#", "logger"); // true
 * ```
 */
export class TopicTrie<V> {
  #core = new Core<V>();
  // Level ids of the name being matched, reused. No user code runs during a walk, so one
  // buffer per trie suffices.
  #ids = new Int32Array(64);
  // The walk's stack of parked `+` branches, reused likewise.
  #stack = new Int32Array(128);
  // Results of forEachMatch, reused; taken while its callbacks run (they may match again).
  #found: V[] | null = [];

  /** Number of (filter, value) entries. */
  get size(): number {
    return this.#core.size;
  }

  /** Adds `value` under `filter` (validated; throws {@linkcode TopicError}). Returns `this`. */
  add(filter: string | Topic, value: V): this {
    const core = this.#core;
    const levels = levelsOfFilter(filter);
    let n = 0;
    for (const level of levels) {
      if (level === WILDCARD_SOME) {
        // Validation guarantees `#` is last.
        (core.hash[n] ??= []).push(value);
        core.nodeHot[HOT * n + 1] |= FLAG_HASH;
        core.size++;
        return this;
      }
      n = level === WILDCARD_ONE ? core.plusOrCreate(n) : core.childOrCreate(n, level);
    }
    (core.exact[n] ??= []).push(value);
    core.nodeHot[HOT * n + 1] |= FLAG_EXACT;
    core.size++;
    return this;
  }

  /**
   * Removes one entry of `value` under `filter` (compared with `===`), or every value of the
   * filter when `value` is omitted. Returns true when something was removed.
   */
  remove(filter: string | Topic, value?: V): boolean {
    const core = this.#core;
    const levels = levelsOfFilter(filter);
    const hash = levels[levels.length - 1] === WILDCARD_SOME;
    const n = core.find(levels, true);
    if (n < 0) return false;
    const lists = hash ? core.hash : core.exact;
    const list = lists[n];
    if (list === null) return false;
    let removed: number;
    if (arguments.length < 2) {
      removed = list.length;
      list.length = 0;
    } else {
      const at = list.indexOf(value as V);
      if (at < 0) return false;
      list.splice(at, 1);
      removed = 1;
    }
    if (list.length === 0) {
      lists[n] = null;
      core.nodeHot[HOT * n + 1] &= hash ? ~FLAG_HASH : ~FLAG_EXACT;
      core.prune(n);
    }
    core.size -= removed;
    return true;
  }

  /** True when `filter` holds `value` (or any value when `value` is omitted). */
  has(filter: string | Topic, value?: V): boolean {
    const core = this.#core;
    const levels = levelsOfFilter(filter);
    const n = core.find(levels, true);
    if (n < 0) return false;
    const list = levels[levels.length - 1] === WILDCARD_SOME ? core.hash[n] : core.exact[n];
    return list !== null && (arguments.length < 2 || list.includes(value as V));
  }

  /** Removes every entry. */
  clear(): void {
    this.#core = new Core<V>();
  }

  /**
   * The values of every filter that matches the topic name, in no particular order. A string
   * is validated (throws {@linkcode TopicError}); a {@linkcode Topic} must not be a wildcard.
   */
  match(topic: string | Topic): V[] {
    const out: V[] = [];
    this.matchInto(topic, out);
    return out;
  }

  /**
   * Like {@linkcode TopicTrie.match} but appends to `out` (which it does not clear), so a hot
   * loop can reuse one array. Returns the number of values appended.
   */
  matchInto(topic: string | Topic, out: V[]): number {
    const name = nameOf(topic);
    const core = this.#core;
    const need = maxLevels(name);
    if (this.#ids.length < need) {
      this.#ids = new Int32Array(need);
      this.#stack = new Int32Array(2 * need);
    }
    const ids = this.#ids;
    const stack = this.#stack;
    const levels = cut(core, name, ids);
    const before = out.length;
    if (name.charCodeAt(0) === DOLLAR) {
      // `$` topics: a filter's first level must be literal, so skip the root's `+` and `#`.
      const first = ids[0] < 0 ? -1 : core.child(0, ids[0]);
      if (first >= 0) collect(core, ids, levels, first, 1, out, stack);
    } else {
      collect(core, ids, levels, 0, 0, out, stack);
    }
    return out.length - before;
  }

  /**
   * Calls `fn` with every matching value. The matches are gathered first (into a reused
   * array), so `fn` may add or remove filters, or match again, without disturbing the walk.
   */
  forEachMatch(topic: string | Topic, fn: (value: V) => void): void {
    const found = this.#found ?? [];
    this.#found = null;
    try {
      this.matchInto(topic, found);
      for (let i = 0; i < found.length; i++) fn(found[i]);
    } finally {
      found.length = 0;
      this.#found = found;
    }
  }

  /** Every `[filter, value]` entry, with filters spelled canonically (`*` as `+`). */
  *entries(): IterableIterator<[string, V]> {
    const core = this.#core;
    // The edge table is keyed by parent; gather each node's literal children once.
    const kids = new Map<number, [string, number][]>();
    const e = core.edges;
    for (let i = 0; i < e.length; i += 4) {
      if (e[i] === EMPTY) continue;
      let list = kids.get(e[i]);
      if (list === undefined) kids.set(e[i], list = []);
      list.push([core.levels.strings[e[i + 1]], e[i + 2]]);
    }
    const stack: [number, string[]][] = [[0, []]];
    while (stack.length > 0) {
      const [n, prefix] = stack.pop()!;
      const joined = prefix.join(TOPIC_SEPARATOR);
      for (const v of core.exact[n] ?? []) yield [joined, v];
      const f = prefix.length === 0 ? WILDCARD_SOME : `${joined}${TOPIC_SEPARATOR}${WILDCARD_SOME}`;
      for (const v of core.hash[n] ?? []) yield [f, v];
      const plus = core.nodeHot[HOT * n];
      if (plus !== 0) stack.push([plus, [...prefix, WILDCARD_ONE]]);
      for (const [level, child] of kids.get(n) ?? []) stack.push([child, [...prefix, level]]);
    }
  }
}

class NameNode<V> {
  children: Map<string, NameNode<V>> | null = null;
  /** The full topic name when a value is stored here (null otherwise). */
  topic: string | null = null;
  value: V | undefined = undefined;
}

/**
 * A map from topic names to values that can be queried with a topic filter: the store behind
 * retained messages. `matchFilter` walks only the branches the filter can reach (`+` visits
 * one level's children, `#` a subtree), never the whole set, and applies the `$` rule.
 *
 * @example
 * ```ts
 * import { TopicNameTrie } from "@ringkernel/core";
 * const names = new TopicNameTrie<number>();
 * names.set("sensors/a/temperature", 21);
 * names.set("sensors/b/humidity", 40);
 * names.match("sensors/+/temperature"); // [21]
 * names.match("sensors/#"); // [21, 40]
 * ```
 */
export class TopicNameTrie<V> {
  #root = new NameNode<V>();
  #size = 0;

  /** Number of stored topic names. */
  get size(): number {
    return this.#size;
  }

  #find(levels: readonly string[]): NameNode<V> | undefined {
    let node: NameNode<V> | undefined = this.#root;
    for (let i = 0; i < levels.length && node !== undefined; i++) {
      node = node.children?.get(levels[i]);
    }
    return node;
  }

  /** Stores `value` under the topic name (validated), replacing any previous value. */
  set(topic: string | Topic, value: V): this {
    const levels = levelsOfName(topic);
    let node = this.#root;
    for (const level of levels) {
      const children = node.children ??= new Map();
      let child = children.get(level);
      if (child === undefined) {
        child = new NameNode<V>();
        children.set(level, child);
      }
      node = child;
    }
    if (node.topic === null) this.#size++;
    node.topic = typeof topic === "string" ? topic : topic.value;
    node.value = value;
    return this;
  }

  /** The value stored under the topic name, if any. */
  get(topic: string | Topic): V | undefined {
    const node = this.#find(levelsOfName(topic));
    return node?.topic != null ? node.value : undefined;
  }

  /** True when a value is stored under the topic name. */
  has(topic: string | Topic): boolean {
    return this.#find(levelsOfName(topic))?.topic != null;
  }

  /** Removes the topic name; true when it was present. Empty branches are pruned. */
  delete(topic: string | Topic): boolean {
    const levels = levelsOfName(topic);
    const path: NameNode<V>[] = [this.#root];
    let node: NameNode<V> | undefined = this.#root;
    for (const level of levels) {
      node = node.children?.get(level);
      if (node === undefined) return false;
      path.push(node);
    }
    if (node.topic === null) return false;
    node.topic = null;
    node.value = undefined;
    this.#size--;
    for (let k = path.length - 1; k > 0; k--) {
      const n = path[k];
      if (n.topic !== null || (n.children !== null && n.children.size > 0)) break;
      path[k - 1].children!.delete(levels[k - 1]);
    }
    return true;
  }

  /** Removes every entry. */
  clear(): void {
    this.#root = new NameNode<V>();
    this.#size = 0;
  }

  /** The values of every stored topic name the filter matches, in no particular order. */
  match(filter: string | Topic): V[] {
    const out: V[] = [];
    this.forEachMatch(filter, (value) => {
      out.push(value);
    });
    return out;
  }

  /**
   * Calls `fn(value, topic)` for every stored topic name the filter (validated) matches. The
   * matches are gathered first, so `fn` may modify the trie.
   */
  forEachMatch(filter: string | Topic, fn: (value: V, topic: string) => void): void {
    const levels = levelsOfFilter(filter);
    const found: NameNode<V>[] = [];
    walkFilter(this.#root, levels, 0, true, found);
    // Read every (value, topic) before the first callback can change a node.
    const pairs = found.map((node): [V, string] => [node.value as V, node.topic!]);
    for (const [value, topic] of pairs) fn(value, topic);
  }

  /** Every `[topic, value]` entry. */
  *entries(): IterableIterator<[string, V]> {
    const stack: NameNode<V>[] = [this.#root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.topic !== null) yield [node.topic, node.value as V];
      if (node.children !== null) { for (const child of node.children.values()) stack.push(child); }
    }
  }
}

function walkFilter<V>(
  node: NameNode<V>,
  levels: readonly string[],
  i: number,
  root: boolean,
  out: NameNode<V>[],
): void {
  for (;;) {
    if (i === levels.length) {
      if (node.topic !== null) out.push(node);
      return;
    }
    const level = levels[i];
    if (level === WILDCARD_SOME) {
      // `#` matches the parent level too, then everything below it.
      if (node.topic !== null) out.push(node);
      emitSubtree(node, root, out);
      return;
    }
    if (node.children === null) return;
    if (level === WILDCARD_ONE) {
      for (const [key, child] of node.children) {
        if (root && key.charCodeAt(0) === DOLLAR) continue;
        walkFilter(child, levels, i + 1, false, out);
      }
      return;
    }
    const next = node.children.get(level);
    if (next === undefined) return;
    node = next;
    i++;
    root = false;
  }
}

// Every value strictly below `node`; at the root, `$` branches are skipped (the `$` rule).
function emitSubtree<V>(
  node: NameNode<V>,
  root: boolean,
  out: NameNode<V>[],
): void {
  if (node.children === null) return;
  const stack: NameNode<V>[] = [];
  for (const [key, child] of node.children) {
    if (root && key.charCodeAt(0) === DOLLAR) continue;
    stack.push(child);
  }
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (n.topic !== null) out.push(n);
    if (n.children !== null) { for (const child of n.children.values()) stack.push(child); }
  }
}
