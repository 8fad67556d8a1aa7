import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ErrorCode, TopicError } from "../../src/core/errors.ts";
import {
  MAX_TOPIC_BYTES,
  Topic,
  topicMatches,
  validateTopicFilter,
  validateTopicName,
} from "../../src/core/topic.ts";
import { TopicNameTrie, TopicTrie } from "../../src/core/topic_trie.ts";

// ---------------------------------------------------------------------------------------------
// A deliberately naive reference: split both, walk level by level. Written from the spec text,
// independent of the implementation, so the property tests compare two different designs.

function refValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes("\0") || !filter.isWellFormed()) return false;
  if (new TextEncoder().encode(filter).length > MAX_TOPIC_BYTES) return false;
  const levels = filter.split("/");
  return levels.every((level, i) => {
    if (level === "+" || level === "*") return true;
    if (level === "#") return i === levels.length - 1;
    return !/[+*#]/.test(level);
  });
}

function refValidName(name: string): boolean {
  return refValidFilter(name) && !/[+*#]/.test(name);
}

function refMatch(filter: string, name: string): boolean {
  const f = filter.split("/").map((l) => l === "*" ? "+" : l);
  const t = name.split("/");
  if (name.startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function throwsTopicError(fn: () => unknown, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TopicError, `expected TopicError, got ${err}`);
    assert.equal(err.code, ErrorCode.InvalidTopic);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1 §4.7 conformance, table-driven: every case runs through topicMatches, Topic,
// TopicTrie (filter side) and TopicNameTrie (name side) and is checked against the reference.

const CASES: [filter: string, name: string, matches: boolean][] = [
  // §4.7.1.2 multi-level wildcard
  ["sport/tennis/player1/#", "sport/tennis/player1", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
  ["sport/tennis/player1/#", "sport/tennis/player2", false],
  ["sport/tennis/player1/#", "sport/tennis", false],
  ["sport/#", "sport", true],
  ["sport/#", "sport/", true],
  ["sport/#", "sports", false],
  ["#", "sport", true],
  ["#", "/", true],
  ["#", "a/b/c/d", true],
  // §4.7.1.3 single-level wildcard
  ["sport/tennis/+", "sport/tennis/player1", true],
  ["sport/tennis/+", "sport/tennis/player2", true],
  ["sport/tennis/+", "sport/tennis/player1/ranking", false],
  ["sport/+", "sport", false],
  ["sport/+", "sport/", true],
  ["+/+", "/finance", true],
  ["/+", "/finance", true],
  ["+", "/finance", false],
  ["+", "finance", true],
  ["+/tennis/#", "sport/tennis", true],
  ["+/tennis/#", "sport/tennis/x/y", true],
  ["sport/+/player1", "sport/tennis/player1", true],
  ["sport/+/player1", "sport//player1", true],
  ["+/+", "/", true],
  ["+", "/", false],
  ["+/+/+", "//", true],
  // `*` is an alias of `+`
  ["sport/*", "sport/tennis", true],
  ["sport/*", "sport", false],
  ["*/+", "/finance", true],
  ["*", "$SYS", false],
  // §4.7.2 topics beginning with $
  ["#", "$SYS/monitor/Clients", false],
  ["#", "$SYS", false],
  ["+/monitor/Clients", "$SYS/monitor/Clients", false],
  ["$SYS/#", "$SYS/monitor/Clients", true],
  ["$SYS/#", "$SYS", true],
  ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
  ["+", "$", false],
  ["$", "$", true],
  ["a/+", "a/$b", true], // the rule is about the first character only
  ["a/#", "a/$b/c", true],
  ["+/#", "$a", false],
  // §4.7.3 semantics: case-sensitive, spaces allowed, leading "/" makes a distinct level
  ["ACCOUNTS", "Accounts", false],
  ["Accounts payable", "Accounts payable", true],
  ["/finance", "finance", false],
  ["finance", "/finance", false],
  ["a//b", "a//b", true],
  ["a//b", "a/b", false],
  ["a/", "a/", true],
  ["a/", "a", false],
  ["ü/€/😀", "ü/€/😀", true],
  ["+/€/#", "ü/€/😀", true],
];

describe("MQTT 3.1.1 §4.7 conformance", () => {
  for (const [filter, name, expected] of CASES) {
    test(`${JSON.stringify(filter)} ${expected ? "matches" : "does not match"} ${JSON.stringify(name)}`, () => {
      assert.equal(refMatch(filter, name), expected, "reference disagrees with the table");
      assert.equal(topicMatches(filter, name), expected, "topicMatches");
      assert.equal(new Topic(filter).matches(name), expected, "Topic.matches");
      const trie = new TopicTrie<number>().add(filter, 1);
      assert.deepEqual(trie.match(name), expected ? [1] : [], "TopicTrie.match");
      assert.deepEqual(trie.match(Topic.parseName(name)), expected ? [1] : [], "match(Topic)");
      const names = new TopicNameTrie<number>().set(name, 1);
      assert.deepEqual(names.match(filter), expected ? [1] : [], "TopicNameTrie.match");
    });
  }
});

describe("validation", () => {
  const validFilters = [
    "sport/tennis/#",
    "#",
    "+",
    "+/tennis/#",
    "sport/+/player1",
    "/",
    "//",
    "a/",
    "/a",
    "$SYS/#",
    "*",
    "a/*/b",
    "a b",
    "€",
  ];
  for (const f of validFilters) {
    test(`filter ${JSON.stringify(f)} is valid`, () => {
      validateTopicFilter(f);
      assert.ok(refValidFilter(f));
    });
  }

  const invalidFilters: [string, RegExp][] = [
    ["", /must not be empty/],
    ["sport/tennis#", /'#' must occupy an entire level \(level 1, character 12\)/],
    ["sport/tennis/#/ranking", /'#' must be the last level \(level 2, character 13\)/],
    ["a/#/b", /'#' must be the last level/],
    ["sport+", /'\+' must occupy an entire level \(level 0, character 5\)/],
    ["a+", /entire level/],
    ["+a", /entire level/],
    ["a/b+/c", /level 1, character 3/],
    ["a*", /'\*' must occupy an entire level/],
    ["#/", /last level/],
    ["##", /entire level/],
    ["\0", /NUL/],
    ["a/b\0c", /NUL character \(level 1, character 3\)/],
    ["a/\uD800", /lone surrogate, which UTF-8 cannot encode \(level 1, character 2\)/],
    ["\uDC00x", /lone surrogate/],
  ];
  for (const [f, pattern] of invalidFilters) {
    test(`filter ${JSON.stringify(f)} is invalid`, () => {
      throwsTopicError(() => validateTopicFilter(f), pattern);
      throwsTopicError(() => new Topic(f), pattern);
      throwsTopicError(() => new TopicTrie<number>().add(f, 1), pattern);
      throwsTopicError(() => new TopicNameTrie<number>().match(f), pattern);
      assert.ok(!refValidFilter(f));
    });
  }

  const invalidNames: [string, RegExp][] = [
    ["", /must not be empty/],
    ["sport/+", /wildcard '\+' is not allowed in a topic name \(level 1, character 6\)/],
    ["sport/#", /'#' is not allowed/],
    ["a/*", /'\*' is not allowed/],
    ["a+b", /'\+' is not allowed/],
    ["a/\0", /NUL/],
    ["\uD83D", /lone surrogate/],
  ];
  for (const [name, pattern] of invalidNames) {
    test(`name ${JSON.stringify(name)} is invalid`, () => {
      throwsTopicError(() => validateTopicName(name), pattern);
      throwsTopicError(() => Topic.parseName(name), pattern);
      throwsTopicError(() => new TopicTrie<number>().match(name), pattern);
      throwsTopicError(() => new TopicTrie<number>().forEachMatch(name, () => {}), pattern);
      throwsTopicError(() => new TopicNameTrie<number>().set(name, 1), pattern);
      throwsTopicError(() => topicMatches("#", name), pattern);
    });
  }

  test("length limit is 65535 UTF-8 bytes, not UTF-16 units", () => {
    validateTopicName("a".repeat(MAX_TOPIC_BYTES));
    throwsTopicError(() => validateTopicName("a".repeat(MAX_TOPIC_BYTES + 1)), /65536 UTF-8 bytes/);
    // 21845 × "€" (3 bytes) = 65535 bytes; one more is over
    validateTopicName("€".repeat(21845));
    throwsTopicError(() => validateTopicName("€".repeat(21846)), /65538 UTF-8 bytes/);
    // 16383 × "😀" (4 bytes, 2 UTF-16 units) = 65532 bytes
    validateTopicFilter("😀".repeat(16383) + "/#");
    throwsTopicError(() => validateTopicFilter("😀".repeat(16384)), /65536 UTF-8 bytes/);
    const trie = new TopicTrie<number>().add("#", 1);
    assert.deepEqual(trie.match("€".repeat(21845)), [1]);
    throwsTopicError(() => trie.match("€".repeat(21846)));
  });

  test("long topics with many levels match", () => {
    const name = Array.from({ length: 5000 }, (_, i) => `l${i % 7}`).join("/");
    const trie = new TopicTrie<number>().add("#", 1).add(name, 2).add("l0/+/#", 3);
    assert.deepEqual(sorted(trie.match(name)), [1, 2, 3]);
    assert.deepEqual(trie.match(name + "/x").length, 2);
  });

  test("a long input is shortened in the message", () => {
    throwsTopicError(() => validateTopicName("x".repeat(200) + "+"), /"x{61}\.\.\."/);
  });

  test("non-strings are rejected", () => {
    throwsTopicError(() => validateTopicName(42 as unknown as string), /must be a string/);
    throwsTopicError(() => validateTopicFilter(null as unknown as string), /must be a string/);
    const trie = new TopicTrie<number>();
    throwsTopicError(() => trie.match(7 as unknown as string), /string or a Topic, got number/);
    throwsTopicError(() => trie.add({} as Topic, 1), /string or a Topic, got object/);
    throwsTopicError(() => new TopicNameTrie<number>().get(null as unknown as string), /got null/);
  });
});

describe("Topic", () => {
  test("levels, wildcard and system flags", () => {
    const f = new Topic("sensors/*/temperature");
    assert.deepEqual(f.levels, ["sensors", "+", "temperature"]);
    assert.equal(f.isWildcard, true);
    assert.equal(f.toString(), "sensors/*/temperature");
    assert.ok(f.equals(new Topic("sensors/+/temperature")));
    assert.ok(!f.equals(new Topic("sensors/+")));
    const n = Topic.parseName("$SYS/uptime");
    assert.equal(n.isWildcard, false);
    assert.equal(n.isSystem, true);
    assert.deepEqual(n.levels, ["$SYS", "uptime"]);
  });

  test("matching against a wildcard is an error", () => {
    throwsTopicError(() => new Topic("a/+").matches(new Topic("a/+")), /cannot be matched/);
    throwsTopicError(() => new TopicTrie<number>().match(new Topic("a/#")), /only allowed/);
  });
});

describe("TopicTrie", () => {
  test("several values per filter, `*` and `+` are one filter", () => {
    const trie = new TopicTrie<string>();
    trie.add("a/+", "x").add("a/*", "y").add("a/#", "z").add("a/+", "x");
    assert.equal(trie.size, 4);
    assert.deepEqual(trie.match("a/b").sort(), ["x", "x", "y", "z"]);
    assert.ok(trie.has("a/*", "y"));
    assert.ok(trie.has("a/+"));
    assert.ok(!trie.has("a/+", "z"));
    assert.ok(!trie.has("a/b"));
    assert.equal(trie.remove("a/*", "x"), true);
    assert.deepEqual(trie.match("a/b").sort(), ["x", "y", "z"]);
    assert.equal(trie.remove("a/+"), true); // every value of the filter
    assert.deepEqual(trie.match("a/b"), ["z"]);
    assert.equal(trie.remove("a/+"), false);
    assert.equal(trie.remove("a/#", "nope"), false);
    assert.equal(trie.remove("q/r/s", "x"), false);
    assert.equal(trie.size, 1);
    assert.deepEqual([...trie.entries()], [["a/#", "z"]]);
    trie.clear();
    assert.equal(trie.size, 0);
    assert.deepEqual(trie.match("a/b"), []);
  });

  test("undefined is a value like any other", () => {
    const trie = new TopicTrie<string | undefined>().add("a", undefined).add("a", "x");
    assert.equal(trie.remove("a", undefined), true);
    assert.deepEqual(trie.match("a"), ["x"]);
  });

  test("matchInto appends and counts, forEachMatch visits", () => {
    const trie = new TopicTrie<number>().add("a/#", 1).add("a/b", 2).add("+/b", 3);
    const out = [0];
    assert.equal(trie.matchInto("a/b", out), 3);
    assert.deepEqual(sorted(out), [0, 1, 2, 3]);
    const seen: number[] = [];
    trie.forEachMatch("a/b", (v) => seen.push(v));
    assert.deepEqual(sorted(seen), [1, 2, 3]);
  });

  test("a match from inside forEachMatch gets its own buffer", () => {
    const trie = new TopicTrie<number>().add("a/+/c", 1).add("x/y", 2).add("a/#", 3);
    const seen: string[] = [];
    trie.forEachMatch("a/b/c", (v) => {
      seen.push(`${v}:${trie.match("x/y").join()}`);
    });
    assert.deepEqual(seen.sort(), ["1:2", "3:2"]);
    assert.deepEqual(sorted(trie.match("a/b/c")), [1, 3]);
  });

  test("forEachMatch callbacks may modify the trie", () => {
    const trie = new TopicTrie<number>().add("a/+", 1).add("a/#", 2).add("+/b", 3);
    const seen: number[] = [];
    trie.forEachMatch("a/b", (v) => {
      seen.push(v);
      trie.remove("a/#");
      trie.remove("+/b", 3);
      if (!trie.has("a/b")) trie.add("a/b", 4);
    });
    assert.deepEqual(sorted(seen), [1, 2, 3]);
    assert.deepEqual(sorted(trie.match("a/b")), [1, 4]);
  });

  test("an exception from a visitor does not break later matches", () => {
    const trie = new TopicTrie<number>().add("a/#", 1);
    assert.throws(() =>
      trie.forEachMatch("a/b", () => {
        throw new Error("boom");
      }), /boom/);
    assert.deepEqual(trie.match("a/b"), [1]);
  });

  test("entries spell filters canonically", () => {
    const trie = new TopicTrie<number>().add("#", 1).add("*/x", 2).add("a//b", 3).add("$SYS/#", 4);
    assert.deepEqual(
      [...trie.entries()].sort((a, b) => a[1] - b[1]),
      [["#", 1], ["+/x", 2], ["a//b", 3], ["$SYS/#", 4]],
    );
  });
});

describe("TopicTrie at scale", () => {
  // Seeded so a failure reproduces; sizes large enough for table growth, long probe runs,
  // backward-shift deletions, node and level-id reuse, and compaction of the level text.
  function prng(seed: number): () => number {
    let s = seed | 0;
    return () => {
      s = (s + 0x6d2b79f5) | 0;
      let t = Math.imul(s ^ (s >>> 15), 1 | s);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  test("heavy add/remove churn stays equal to the reference", () => {
    const rnd = prng(7);
    const int = (n: number) => Math.floor(rnd() * n);
    const words = Array.from({ length: 300 }, (_, i) => i % 50 === 0 ? "" : `w${i}`);
    const longWord = () => `long-${int(1e9)}-${"x".repeat(40)}`;
    const randomFilter = () => {
      const len = 1 + int(5);
      const levels: string[] = [];
      for (let i = 0; i < len; i++) {
        const r = rnd();
        if (r < 0.1) levels.push("+");
        else if (r < 0.15 && i === len - 1) levels.push("#");
        else if (r < 0.2) levels.push(longWord());
        else levels.push(words[int(words.length)]);
      }
      return levels.join("/") || "w1"; // a lone empty level is the empty (invalid) filter
    };
    const randomTopic = (filters: string[]) => {
      const f = filters.length > 0 && rnd() < 0.8 ? filters[int(filters.length)].split("/") : [];
      const levels = f.flatMap((l) =>
        l === "+" ? [words[int(words.length)]] : l === "#" ? [] : [l]
      );
      if (levels.length === 0 || rnd() < 0.3) levels.push(words[int(words.length)]);
      return levels.join("/") || "w1";
    };
    const trie = new TopicTrie<number>();
    let model: [string, number][] = [];
    const check = () => {
      const filters = model.map(([f]) => f);
      for (let k = 0; k < 200; k++) {
        const t = randomTopic(filters);
        const expected = model.filter(([f]) => refMatch(f, t)).map(([, v]) => v);
        assert.deepEqual(sorted(trie.match(t)), sorted(expected), t);
      }
      assert.equal(trie.size, model.length);
    };
    let next = 0;
    for (let phase = 0; phase < 4; phase++) {
      for (let i = 0; i < 1500; i++) {
        const f = randomFilter();
        trie.add(f, next);
        model.push([f, next++]);
      }
      check();
      const keep: [string, number][] = [];
      for (const entry of model) {
        if (rnd() < 0.6) assert.equal(trie.remove(entry[0], entry[1]), true);
        else keep.push(entry);
      }
      model = keep;
      check();
    }
    for (const [f, v] of model) assert.equal(trie.remove(f, v), true);
    model = [];
    assert.equal(trie.size, 0);
    assert.deepEqual([...trie.entries()], []);
    assert.deepEqual(trie.match("w1/w2"), []);
    trie.add("w1/+", 1);
    assert.deepEqual(trie.match("w1/w2"), [1]);
  });
});

describe("TopicNameTrie", () => {
  test("set, get, delete, match", () => {
    const names = new TopicNameTrie<number>();
    names.set("a/b", 1).set("a", 2).set("a/b", 3).set("$SYS/x", 4).set("/", 5);
    assert.equal(names.size, 4);
    assert.equal(names.get("a/b"), 3);
    assert.equal(names.get("a/c"), undefined);
    assert.ok(names.has("a"));
    assert.deepEqual(sorted(names.match("#")), [2, 3, 5]);
    assert.deepEqual(sorted(names.match("a/#")), [2, 3]);
    assert.deepEqual(sorted(names.match("$SYS/+")), [4]);
    assert.deepEqual(sorted(names.match("+/+")), [3, 5]);
    const seen: string[] = [];
    names.forEachMatch("+/#", (_, topic) => seen.push(topic));
    assert.deepEqual(seen.sort(), ["/", "a", "a/b"]);
    assert.equal(names.delete("a"), true);
    assert.equal(names.delete("a"), false);
    assert.equal(names.delete("q"), false);
    assert.deepEqual(sorted(names.match("a/#")), [3]);
    assert.deepEqual([...names.entries()].sort(), [["$SYS/x", 4], ["/", 5], ["a/b", 3]]);
    names.clear();
    assert.equal(names.size, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties over a small alphabet that makes collisions, empty levels and `$` topics common.

const FILTER_LEVELS = ["", "a", "b", "ab", "$", "$a", "+", "*", "#", "a+", "#b", "\0"];
const NAME_LEVELS = ["", "a", "b", "ab", "$", "$a"];
const rawTopic = (levels: string[]) =>
  fc.array(fc.constantFrom(...levels), { minLength: 0, maxLength: 5 }).map((l) => l.join("/"));
const anyFilter = rawTopic(FILTER_LEVELS);
const validFilter = anyFilter.filter(refValidFilter);
const name = rawTopic(NAME_LEVELS).filter((s) => s.length > 0);

describe("properties", () => {
  test("validation agrees with the reference", () => {
    fc.assert(
      fc.property(anyFilter, (f) => {
        let filterOk = true;
        try {
          validateTopicFilter(f);
        } catch (err) {
          assert.ok(err instanceof TopicError);
          filterOk = false;
        }
        let nameOk = true;
        try {
          validateTopicName(f);
        } catch (err) {
          assert.ok(err instanceof TopicError);
          nameOk = false;
        }
        assert.equal(filterOk, refValidFilter(f));
        assert.equal(nameOk, refValidName(f));
      }),
      { numRuns: 2000 },
    );
  });

  test("TopicTrie.match equals the reference matcher", () => {
    fc.assert(
      fc.property(
        fc.array(validFilter, { maxLength: 30 }),
        fc.array(name, { maxLength: 20 }),
        (filters, names) => {
          const trie = new TopicTrie<number>();
          filters.forEach((f, i) => trie.add(f, i));
          for (const n of names) {
            const expected = filters.flatMap((f, i) => refMatch(f, n) ? [i] : []);
            assert.deepEqual(sorted(trie.match(n)), expected, n);
            assert.equal(topicMatches(filters[0] ?? "#", n), refMatch(filters[0] ?? "#", n));
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test("TopicNameTrie.match equals the reference matcher", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { maxLength: 30 }),
        fc.array(validFilter, { maxLength: 20 }),
        (names, filters) => {
          const trie = new TopicNameTrie<number>();
          names.forEach((n, i) => trie.set(n, i));
          for (const f of filters) {
            const expected = names.flatMap((n, i) => refMatch(f, n) ? [i] : []);
            assert.deepEqual(sorted(trie.match(f)), expected, f);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test("add/remove churn keeps TopicTrie equal to a model", () => {
    const op = fc.oneof(
      fc.record({
        add: fc.constant(true),
        filter: validFilter,
        value: fc.integer({ min: 0, max: 3 }),
      }),
      fc.record({
        add: fc.constant(false),
        filter: validFilter,
        value: fc.option(fc.integer({ min: 0, max: 3 })),
      }),
    );
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 60 }),
        fc.array(name, { maxLength: 10 }),
        (ops, names) => {
          const trie = new TopicTrie<number>();
          let model: [string, number][] = [];
          const canon = (f: string) => f.split("/").map((l) => l === "*" ? "+" : l).join("/");
          for (const o of ops) {
            const f = canon(o.filter);
            if (o.add) {
              trie.add(o.filter, o.value);
              model.push([f, o.value]);
            } else if (o.value === null) {
              const had = model.some(([g]) => g === f);
              assert.equal(trie.remove(o.filter), had);
              model = model.filter(([g]) => g !== f);
            } else {
              const at = model.findIndex(([g, v]) => g === f && v === o.value);
              assert.equal(trie.remove(o.filter, o.value), at >= 0);
              if (at >= 0) model.splice(at, 1);
            }
            assert.equal(trie.size, model.length);
          }
          const key = (e: [string, number]) => `${e[0]}\u0001${e[1]}`;
          assert.deepEqual([...trie.entries()].map(key).sort(), model.map(key).sort());
          for (const n of names) {
            const expected = model.filter(([f]) => refMatch(f, n)).map(([, v]) => v);
            assert.deepEqual(sorted(trie.match(n)), sorted(expected));
          }
          for (const [f, v] of [...model]) assert.equal(trie.remove(f, v), true);
          assert.equal(trie.size, 0);
          assert.deepEqual([...trie.entries()], []);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("set/delete churn keeps TopicNameTrie equal to a model", () => {
    const op = fc.record({ set: fc.boolean(), name, value: fc.integer() });
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 60 }),
        fc.array(validFilter, { maxLength: 10 }),
        (ops, filters) => {
          const trie = new TopicNameTrie<number>();
          const model = new Map<string, number>();
          for (const o of ops) {
            if (o.set) {
              trie.set(o.name, o.value);
              model.set(o.name, o.value);
            } else {
              assert.equal(trie.delete(o.name), model.delete(o.name));
            }
            assert.equal(trie.size, model.size);
          }
          assert.deepEqual([...trie.entries()].sort(), [...model.entries()].sort());
          for (const f of filters) {
            const expected = [...model].filter(([n]) => refMatch(f, n)).map(([, v]) => v);
            assert.deepEqual(sorted(trie.match(f)), sorted(expected));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
