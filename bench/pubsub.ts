/**
 * Topic matching: {@linkcode TopicTrie} against the `qlobber` package on the same workload,
 * 10,000 MQTT filters and 1,000 distinct 4–6 level topics, each of which a handful of filters
 * match. Both are configured for MQTT semantics and must return identical match sets for every
 * topic before anything is timed.
 *
 * What is timed: one "match" is resolving one topic string to the array of values of every
 * matching filter (validation of the topic included for TopicTrie; qlobber validates nothing).
 * Rounds alternate between the two implementations so that drift of the machine hits both; the
 * figure is the median round. A checksum over every result keeps the work observable.
 *
 * Run: `deno run -A bench/pubsub.ts` or `bun bench/pubsub.ts`.
 * @module
 */
import qlobberModule from "qlobber";
import { TopicTrie } from "../src/core/topic_trie.ts";
import { isMain, rate, runtimeInfo, writeResult } from "./harness.ts";

// qlobber is CommonJS without type declarations; this is the part of it used here.
interface QlobberLike {
  add(topic: string, value: number): unknown;
  match(topic: string): number[];
}
const { Qlobber } = qlobberModule as unknown as {
  Qlobber: new (options: Record<string, unknown>) => QlobberLike;
};

/** Deterministic PRNG (mulberry32) so that every run times the same workload. */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The workload: filters shaped like IoT subscriptions, topics derived from them. */
export interface Workload {
  filters: string[];
  topics: string[];
}

/**
 * Builds the workload. Levels are domain/site/device/id/metric[/unit]. Filters: 50% exact,
 * 30% one `+` (not first), 10% two `+`, 8% a 1–3 level prefix then `#`, 2% a leading `+`.
 * Each topic instantiates a random filter (wildcards replaced by vocabulary words), so every
 * topic matches at least one filter and typically a few.
 */
export function workload(filterCount = 10_000, topicCount = 1_000, seed = 42): Workload {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)];
  const vocab: string[][] = [
    ["sensors", "actuators", "fleet", "plant", "grid", "home", "lab", "farm", "city", "ship"],
    Array.from({ length: 100 }, (_, i) => `site-${i}`),
    Array.from({ length: 20 }, (_, i) => `dev-${i}`),
    Array.from({ length: 50 }, (_, i) => `${i}`),
    ["temperature", "humidity", "pressure", "voltage", "current", "status", "battery", "rssi"],
    ["c", "f", "raw", "avg"],
  ];
  const filters = new Set<string>();
  while (filters.size < filterCount) {
    const len = 4 + int(3);
    const levels = Array.from({ length: len }, (_, i) => pick(vocab[i]));
    const r = rnd();
    if (r < 0.5) {
      // exact
    } else if (r < 0.8) {
      levels[1 + int(len - 1)] = "+";
    } else if (r < 0.9) {
      levels[1 + int(len - 2)] = "+";
      levels[1 + int(len - 1)] = "+";
    } else if (r < 0.98) {
      levels.length = 1 + int(3);
      levels.push("#");
    } else {
      levels[0] = "+";
    }
    filters.add(levels.join("/"));
  }
  const list = [...filters];
  const topics: string[] = [];
  for (let t = 0; t < topicCount; t++) {
    const f = pick(list).split("/");
    const out: string[] = [];
    for (let i = 0; i < f.length; i++) {
      if (f[i] === "+") {
        out.push(pick(vocab[i]));
      } else if (f[i] === "#") {
        const len = 4 + int(3);
        while (out.length < len) out.push(pick(vocab[out.length]));
      } else {
        out.push(f[i]);
      }
    }
    topics.push(out.join("/"));
  }
  return { filters: list, topics };
}

interface Round {
  perSecond: number;
  check: number;
}

// One timing loop per implementation, on purpose: a shared loop calling either through a
// function value would mix both into one call site's type feedback and slow both down.

function roundTrie(trie: TopicTrie<number>, topics: string[], ms: number): Round {
  let check = 0;
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (let i = 0; i < topics.length; i++) {
      const r = trie.match(topics[i]);
      check = (check + r.length) | 0;
      for (let k = 0; k < r.length; k++) check = (check + r[k] * 31) | 0;
    }
    count += topics.length;
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  return { perSecond: count / (elapsed / 1000), check };
}

function roundQlobber(q: QlobberLike, topics: string[], ms: number): Round {
  let check = 0;
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (let i = 0; i < topics.length; i++) {
      const r = q.match(topics[i]);
      check = (check + r.length) | 0;
      for (let k = 0; k < r.length; k++) check = (check + r[k] * 31) | 0;
    }
    count += topics.length;
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  return { perSecond: count / (elapsed / 1000), check };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Runs the benchmark, prints a table, writes `bench/results/pubsub-<runtime>.json`. */
export async function run(): Promise<Record<string, unknown>> {
  const { filters, topics } = workload();
  const trie = new TopicTrie<number>();
  const qlobber = new Qlobber({
    separator: "/",
    wildcard_one: "+",
    wildcard_some: "#",
    match_empty_levels: true,
  }) as unknown as QlobberLike;
  filters.forEach((f, i) => {
    trie.add(f, i);
    qlobber.add(f, i);
  });

  // Identical match sets on every topic, or the comparison means nothing.
  let results = 0;
  let levels = 0;
  for (const t of topics) {
    const a = trie.match(t).sort((x, y) => x - y);
    const b = [...qlobber.match(t)].sort((x, y) => x - y);
    if (a.length !== b.length || a.some((v, i) => v !== b[i])) {
      throw new Error(`TopicTrie and qlobber disagree on ${t}: [${a}] vs [${b}]`);
    }
    results += a.length;
    levels += t.split("/").length;
  }

  // Warm-up: let both JITs settle before any timed round.
  roundTrie(trie, topics, 500);
  roundQlobber(qlobber, topics, 500);
  // Checksums of every result, folded and reported, so no engine can drop the work.
  let sink = 0;
  const ourSamples: number[] = [];
  const theirSamples: number[] = [];
  for (let r = 0; r < 7; r++) {
    // Yield between rounds so a runner that imports this (bench/main.ts) is not starved.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const a = roundTrie(trie, topics, 300);
    const b = roundQlobber(qlobber, topics, 300);
    ourSamples.push(a.perSecond);
    theirSamples.push(b.perSecond);
    sink ^= a.check ^ b.check;
  }
  const ours = median(ourSamples);
  const theirs = median(theirSamples);
  const perTopic = results / topics.length;
  const figures = {
    filters: filters.length,
    topics: topics.length,
    avgLevels: Number((levels / topics.length).toFixed(2)),
    avgMatchesPerTopic: Number(perTopic.toFixed(2)),
    topicTrieMatchesPerSec: Math.round(ours),
    qlobberMatchesPerSec: Math.round(theirs),
    ratio: Number((ours / theirs).toFixed(2)),
    topicTrieResultsPerSec: Math.round(ours * perTopic),
    checksum: sink,
    samples: { TopicTrie: ourSamples.map(Math.round), qlobber: theirSamples.map(Math.round) },
  };
  const info = runtimeInfo();
  console.log(
    `pub/sub matching — ${filters.length} filters, ${topics.length} topics ` +
      `(${figures.avgLevels} levels, ${figures.avgMatchesPerTopic} matching filters per topic) ` +
      `— ${info.runtime} ${info.version}, ${info.cpu}`,
  );
  console.table({
    TopicTrie: { "matches/s": rate(ours), "matched filters/s": rate(ours * perTopic) },
    qlobber: { "matches/s": rate(theirs), "matched filters/s": rate(theirs * perTopic) },
  });
  console.log(`ratio TopicTrie / qlobber: ${figures.ratio}×`);
  const path = writeResult("pubsub", figures);
  console.log(`wrote ${path}`);
  return figures;
}

if (isMain(import.meta)) await run();
