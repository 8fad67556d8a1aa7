/**
 * Topic names and topic filters with the rules of MQTT 3.1.1 §4.7.
 *
 * - A *topic name* is what a message is published on: one or more levels separated by `/`,
 *   no wildcards. Levels may be empty (`a//b`, `/a`, `a/` are three, two and two levels).
 * - A *topic filter* is what a subscription listens on: a topic name that may also use the
 *   wildcards `+` (exactly one level, which may be empty) and `#` (any number of levels,
 *   including none, so `sport/#` also matches `sport`). `#` must be the last level. Each
 *   wildcard must occupy a whole level: `a+` and `a/#b` are invalid.
 * - `*` is accepted as an alias of `+`. Because it is a wildcard in this dialect, `*` is not
 *   allowed in topic names either (MQTT itself would allow it there); otherwise a name could
 *   not be told apart from the filter it looks like.
 * - Filters that start with a wildcard do not match topic names that start with `$`
 *   (`#` and `+/x` do not match `$SYS/x`; `$SYS/#` does).
 * - Both are non-empty, well-formed UTF-8 (no lone surrogates), at most 65535 UTF-8 bytes, and
 *   contain no NUL character.
 *
 * Every violation throws a {@linkcode TopicError} with code `E_INVALID_TOPIC` whose message names
 * the input, the level and the character position of the problem.
 *
 * @example
 * ```ts
 * import { Topic, topicMatches } from "@ringkernel/core";
 * const filter = new Topic("sensors/+/temperature");
 * console.log(filter.matches("sensors/kitchen/temperature")); // true
 * console.log(topicMatches("sport/#", "sport")); // true
 * ```
 * @module
 */

import { ErrorCode, TopicError } from "./errors.ts";

/** The level separator of topic names and filters. */
export const TOPIC_SEPARATOR = "/";
/** The single-level wildcard of topic filters. */
export const WILDCARD_ONE = "+";
/** Accepted alias of {@linkcode WILDCARD_ONE}. */
export const WILDCARD_ONE_ALIAS = "*";
/** The multi-level wildcard; only valid as the last level of a filter. */
export const WILDCARD_SOME = "#";
/** The largest topic name or filter, in UTF-8 bytes (MQTT's two-byte length prefix). */
export const MAX_TOPIC_BYTES = 65535;

const SLASH = 0x2f;
const PLUS = 0x2b;
const STAR = 0x2a;
const HASH = 0x23;
const DOLLAR = 0x24;

// Characters that are never valid in a topic name; a name without them, that is well formed and
// short enough, is valid. Used as a cheap pre-check before the exact, position-reporting scan.
const NAME_SUSPECT = /[\0+*#]/;
// A string this short cannot exceed MAX_TOPIC_BYTES (a UTF-16 code unit is at most 3 UTF-8 bytes).
const SAFE_LENGTH = Math.floor(MAX_TOPIC_BYTES / 3);

type Kind = "topic name" | "topic filter";

function show(input: string): string {
  const text = input.length > 64 ? `${input.slice(0, 61)}...` : input;
  return JSON.stringify(text);
}

function fail(input: string, kind: Kind, level: number, index: number, problem: string): never {
  throw new TopicError(
    ErrorCode.InvalidTopic,
    `invalid ${kind} ${show(input)}: ${problem} (level ${level}, character ${index})`,
  );
}

// One pass that checks every rule and reports the first violation with its position. Code unit
// indexes are reported because that is what `input[index]` and `slice` use.
function scan(input: string, kind: Kind): void {
  const n = input.length;
  if (n === 0) fail(input, kind, 0, 0, "must not be empty");
  const filter = kind === "topic filter";
  let bytes = 0;
  let level = 0;
  let levelStart = 0;
  for (let i = 0; i < n; i++) {
    const c = input.charCodeAt(i);
    if (c === SLASH) {
      bytes++;
      level++;
      levelStart = i + 1;
      continue;
    }
    if (c === 0) fail(input, kind, level, i, "contains a NUL character");
    if (c < 0x80) {
      bytes++;
      if (c === PLUS || c === STAR || c === HASH) {
        const ch = String.fromCharCode(c);
        if (!filter) fail(input, kind, level, i, `wildcard '${ch}' is not allowed in a topic name`);
        const next = i + 1 < n ? input.charCodeAt(i + 1) : SLASH;
        if (i !== levelStart || next !== SLASH) {
          fail(input, kind, level, i, `wildcard '${ch}' must occupy an entire level`);
        }
        if (c === HASH && i + 1 !== n) {
          fail(input, kind, level, i, "wildcard '#' must be the last level");
        }
      }
    } else if (c < 0x800) {
      bytes += 2;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const low = i + 1 < n ? input.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || low < 0xdc00 || low > 0xdfff) {
        fail(input, kind, level, i, "contains a lone surrogate, which UTF-8 cannot encode");
      }
      bytes += 4;
      i++;
    } else {
      bytes += 3;
    }
  }
  if (bytes > MAX_TOPIC_BYTES) {
    fail(input, kind, level, n, `is ${bytes} UTF-8 bytes, more than ${MAX_TOPIC_BYTES}`);
  }
}

/**
 * Throws a {@linkcode TopicError} unless `name` is a valid topic name (no wildcards).
 *
 * @example
 * ```ts
 * import { validateTopicName } from "@ringkernel/core";
 * validateTopicName("sensors/kitchen/temperature"); // ok
 * validateTopicName("sensors/+/temperature"); // throws TopicError
 * ```
 */
export function validateTopicName(name: string): void {
  if (typeof name !== "string") {
    throw new TopicError(ErrorCode.InvalidTopic, `topic name must be a string, got ${typeof name}`);
  }
  // The exact scan only runs when the cheap checks see something suspicious.
  if (
    name.length === 0 || name.length > SAFE_LENGTH || NAME_SUSPECT.test(name) ||
    !name.isWellFormed()
  ) {
    scan(name, "topic name");
  }
}

/** Throws a {@linkcode TopicError} unless `filter` is a valid topic filter. */
export function validateTopicFilter(filter: string): void {
  if (typeof filter !== "string") {
    throw new TopicError(
      ErrorCode.InvalidTopic,
      `topic filter must be a string, got ${typeof filter}`,
    );
  }
  scan(filter, "topic filter");
}

/** True when `filter` (already valid) contains a wildcard level. */
function hasWildcard(levels: readonly string[]): boolean {
  for (const l of levels) {
    if (l === WILDCARD_ONE || l === WILDCARD_ONE_ALIAS || l === "#") return true;
  }
  return false;
}

/**
 * Splits a valid filter into levels with `*` rewritten to `+`, so that the two spellings of the
 * single-level wildcard are one filter everywhere (tries, equality, removal).
 */
export function filterLevels(filter: string): string[] {
  const levels = filter.split(TOPIC_SEPARATOR);
  for (let i = 0; i < levels.length; i++) {
    if (levels[i] === WILDCARD_ONE_ALIAS) levels[i] = WILDCARD_ONE;
  }
  return levels;
}

/**
 * Level-by-level match of already split and validated levels. Shared by {@linkcode topicMatches}
 * and {@linkcode Topic.matches}; the tries implement the same rules without this function.
 */
function matchLevels(filter: readonly string[], name: readonly string[], dollar: boolean): boolean {
  if (dollar && (filter[0] === WILDCARD_ONE || filter[0] === WILDCARD_SOME)) return false;
  const n = filter.length;
  for (let i = 0; i < n; i++) {
    const f = filter[i];
    if (f === WILDCARD_SOME) return true; // also matches the parent: `i === name.length` is fine
    if (i >= name.length) return false;
    if (f !== WILDCARD_ONE && f !== name[i]) return false;
  }
  return n === name.length;
}

/**
 * True when the topic filter matches the topic name under MQTT 3.1.1 §4.7. Validates both and
 * throws {@linkcode TopicError} if either is invalid. For many filters use a
 * {@linkcode TopicTrie} instead.
 *
 * @example
 * ```ts
 * import { topicMatches } from "@ringkernel/core";
 * topicMatches("sport/+", "sport/"); // true: `+` matches one empty level
 * topicMatches("sport/+", "sport"); // false
 * topicMatches("#", "$SYS/uptime"); // false: wildcards at the start never match `$` topics
 * ```
 */
export function topicMatches(filter: string, name: string): boolean {
  validateTopicFilter(filter);
  validateTopicName(name);
  return matchLevels(
    filterLevels(filter),
    name.split(TOPIC_SEPARATOR),
    name.charCodeAt(0) === DOLLAR,
  );
}

/**
 * A validated topic filter or topic name, split into levels once. Build it once and reuse it:
 * {@linkcode TopicTrie.match} and the broker accept a `Topic` and skip validation and splitting.
 *
 * `new Topic(s)` accepts anything that is a valid filter (names are filters without
 * wildcards); {@linkcode Topic.parseName} additionally rejects wildcards.
 *
 * @example
 * ```ts
 * import { Topic } from "@ringkernel/core";
 * const filter = new Topic("sensors/+/temperature");
 * filter.isWildcard; // true
 * filter.matches("sensors/lab/temperature"); // true
 * const name = Topic.parseName("sensors/lab/temperature");
 * name.levels; // ["sensors", "lab", "temperature"]
 * ```
 */
export class Topic {
  /** The topic exactly as given. */
  readonly value: string;
  /** The levels; in filters the alias `*` is already rewritten to `+`. */
  readonly levels: readonly string[];
  /** True when the topic contains a wildcard level, so it can only be used as a filter. */
  readonly isWildcard: boolean;

  /** Validates `value` as a topic filter (a topic name is a filter without wildcards). */
  constructor(value: string) {
    validateTopicFilter(value);
    this.value = value;
    const levels = filterLevels(value);
    this.isWildcard = hasWildcard(levels);
    this.levels = Object.freeze(levels);
  }

  /** Parses a topic name: like the constructor, but wildcards are a {@linkcode TopicError}. */
  static parseName(value: string): Topic {
    validateTopicName(value);
    return new Topic(value);
  }

  /** True when the topic starts with `$`, which wildcard-led filters never match. */
  get isSystem(): boolean {
    return this.value.charCodeAt(0) === DOLLAR;
  }

  /** True when this topic, as a filter, matches the topic name `name`. */
  matches(name: string | Topic): boolean {
    const t = typeof name === "string" ? Topic.parseName(name) : name;
    if (t.isWildcard) {
      throw new TopicError(
        ErrorCode.InvalidTopic,
        `invalid topic name ${show(t.value)}: a filter with wildcards cannot be matched against`,
      );
    }
    return matchLevels(this.levels, t.levels, t.isSystem);
  }

  /** True when both denote the same filter (`a/*` equals `a/+`). */
  equals(other: Topic): boolean {
    if (this.levels.length !== other.levels.length) return false;
    for (let i = 0; i < this.levels.length; i++) {
      if (this.levels[i] !== other.levels[i]) return false;
    }
    return true;
  }

  /** The topic as given. */
  toString(): string {
    return this.value;
  }
}
