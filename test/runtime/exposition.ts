// A strict parser of the Prometheus text exposition format 0.0.4, shared by the telemetry tests
// (prometheusText itself) and the runtime tests (runtime.metricsText()).
import assert from "node:assert/strict";

/** One sample line. */
export interface Sample {
  readonly name: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly value: number;
}
/** A metric family: TYPE, HELP and its samples. */
export interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const FLOAT = /^(NaN|[+-]Inf|[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)$/;

/**
 * A strict parser of the text exposition format 0.0.4: stricter than Prometheus where the
 * format is lenient (no blank lines, no free comments, single spaces, no trailing commas), exact
 * where it is not (escapes, TYPE before samples, contiguous families, unique series, summary
 * shape). Throws on the first violation.
 */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const helpOnly = new Map<string, string>();
  const seriesSeen = new Set<string>();
  let current: Family | undefined;
  if (text === "") return families;
  assert.ok(text.endsWith("\n"), "output ends with a line feed");
  // Carriage returns are legal inside label values and HELP text (the format escapes only backslash,
  // quote and line feed), and the token checks below reject them everywhere else.
  const lines = text.slice(0, -1).split("\n");
  for (const [n, line] of lines.entries()) {
    const where = `line ${n + 1}: ${JSON.stringify(line)}`;
    assert.ok(line.length > 0, `${where}: blank line`);
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) ([^ ]+) (.*)$/.exec(line);
      assert.ok(m, `${where}: only HELP and TYPE comments`);
      const [, kind, name, rest] = m;
      assert.ok(METRIC_NAME.exec(name)?.[0] === name, `${where}: metric name`);
      if (kind === "HELP") {
        assert.ok(!helpOnly.has(name) && !families.has(name), `${where}: one HELP per family`);
        helpOnly.set(name, unescape(rest, false, where));
      } else {
        assert.ok(["counter", "gauge", "summary", "histogram", "untyped"].includes(rest), where);
        assert.ok(!families.has(name), `${where}: one TYPE per family`);
        current = { name, type: rest, help: helpOnly.get(name) ?? "", samples: [] };
        families.set(name, current);
      }
      continue;
    }
    // A sample.
    const name = METRIC_NAME.exec(line)?.[0];
    assert.ok(name !== undefined, `${where}: sample name`);
    let i = name.length;
    const labels = new Map<string, string>();
    if (line[i] === "{") {
      i++;
      for (;;) {
        const ln = LABEL_NAME.exec(line.slice(i))?.[0];
        assert.ok(ln !== undefined, `${where}: label name at ${i}`);
        assert.ok(!ln.startsWith("__"), `${where}: reserved label name`);
        assert.ok(!labels.has(ln), `${where}: duplicate label ${ln}`);
        i += ln.length;
        assert.equal(line.slice(i, i + 2), '="', `${where}: ="`);
        i += 2;
        let raw = "";
        while (line[i] !== '"') {
          assert.ok(i < line.length, `${where}: unterminated label value`);
          if (line[i] === "\\") {
            raw += line.slice(i, i + 2);
            i += 2;
          } else raw += line[i++];
        }
        i++;
        labels.set(ln, unescape(raw, true, where));
        if (line[i] === ",") {
          i++;
          continue;
        }
        assert.equal(line[i], "}", `${where}: , or }`);
        i++;
        break;
      }
    }
    assert.equal(line[i], " ", `${where}: one space before the value`);
    const fields = line.slice(i + 1).split(" ");
    assert.ok(fields.length <= 2, `${where}: value [timestamp]`);
    assert.ok(FLOAT.test(fields[0]), `${where}: value ${fields[0]}`);
    if (fields.length === 2) assert.ok(/^-?\d+$/.test(fields[1]), `${where}: timestamp`);
    const value = fields[0] === "NaN"
      ? NaN
      : fields[0].endsWith("Inf")
      ? (fields[0][0] === "-" ? -Infinity : Infinity)
      : Number(fields[0]);
    // The sample must belong to the family whose TYPE came last.
    assert.ok(current !== undefined, `${where}: sample before any TYPE`);
    const fam = current;
    if (fam.type === "summary") {
      if (name === fam.name) {
        const q = labels.get("quantile");
        assert.ok(q !== undefined && FLOAT.test(q), `${where}: summary quantile label`);
        assert.ok(Number(q) >= 0 && Number(q) <= 1, `${where}: quantile in [0, 1]`);
      } else {
        assert.ok(name === fam.name + "_sum" || name === fam.name + "_count", where);
        assert.ok(!labels.has("quantile"), `${where}: no quantile on _sum/_count`);
        if (name.endsWith("_count")) assert.ok(Number.isInteger(value) && value >= 0, where);
      }
    } else {
      assert.equal(name, fam.name, `${where}: sample outside its family`);
    }
    if (fam.type === "counter") assert.ok(value >= 0, `${where}: negative counter`);
    const key = name + "{" + [...labels].sort().map(([k, v]) => `${k}=${JSON.stringify(v)}`) + "}";
    assert.ok(!seriesSeen.has(key), `${where}: duplicate series`);
    seriesSeen.add(key);
    fam.samples.push({ name, labels, value });
  }
  for (const name of helpOnly.keys()) assert.ok(families.has(name), `HELP without TYPE: ${name}`);
  return families;
}

/** Undoes the format's escapes; only \\ and \n (and \" in label values) are legal. */
function unescape(raw: string, labelValue: boolean, where: string): string {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c !== "\\") {
      assert.ok(c !== "\n", where);
      if (labelValue) assert.ok(c !== '"', `${where}: bare quote`);
      out += c;
      continue;
    }
    const e = raw[++i];
    if (e === "\\") out += "\\";
    else if (e === "n") out += "\n";
    else if (e === '"' && labelValue) out += '"';
    else assert.fail(`${where}: illegal escape \\${e}`);
  }
  return out;
}

/** The value of the sample `name` whose labels include all of `labels`; throws if none. */
export function sampleValue(
  families: Map<string, Family>,
  family: string,
  name: string,
  labels: Record<string, string>,
): number {
  const f = families.get(family);
  assert.ok(f !== undefined, `no family ${family}`);
  const s = f.samples.find((x) =>
    x.name === name && Object.entries(labels).every(([k, v]) => x.labels.get(k) === v)
  );
  assert.ok(s !== undefined, `no sample ${name} ${JSON.stringify(labels)}`);
  return s.value;
}
