/**
 * Stage 1 of the kernel DSL: from a live function to acorn's AST. `Function.prototype.toString()`
 * gives the function's source as the runtime holds it — in Deno and Bun that is JavaScript with
 * the TypeScript types already stripped (and in Bun reformatted: `2.0` prints as `2`), which is
 * why the DSL never reads types or literal spelling from the text.
 * @module
 */

import { type Expression, type Function as FunctionNode, parse, type Pattern } from "acorn";
import { DslError, ErrorCode } from "../core/errors.ts";

/** A parsed kernel or device function. */
export interface ParsedFunction {
  /** The function's source text; every position below is an offset into it. */
  readonly source: string;
  /** The function node (arrow, function expression or method). */
  readonly node: FunctionNode;
  /** Its parameters. */
  readonly params: readonly Pattern[];
  /** Name used in error messages. */
  readonly kernel: string;
}

/** Line, column and a caret-marked snippet for a source offset. */
export function locate(
  source: string,
  offset: number,
): { line: number; column: number; snippet: string } {
  const before = source.slice(0, offset);
  const line = before.split("\n").length;
  const lineStart = before.lastIndexOf("\n") + 1;
  const lineEnd = source.indexOf("\n", offset);
  const text = source.slice(lineStart, lineEnd < 0 ? source.length : lineEnd);
  const column = offset - lineStart + 1;
  const gutter = `${line} | `;
  const snippet = `${gutter}${text}\n${" ".repeat(gutter.length + column - 1)}^`;
  return { line, column, snippet };
}

/** A DslError pointing at `offset` in `source`. */
export function dslError(
  code: typeof ErrorCode.DslUnsupported | typeof ErrorCode.DslType | typeof ErrorCode.DslTarget,
  kernel: string,
  source: string,
  offset: number | undefined,
  reason: string,
): DslError {
  return new DslError(
    code,
    kernel,
    reason,
    offset === undefined ? undefined : locate(source, offset),
  );
}

function isFunctionNode(node: Expression | undefined): node is FunctionNode & Expression {
  return node !== undefined &&
    (node.type === "ArrowFunctionExpression" || node.type === "FunctionExpression");
}

/**
 * Parses `fn`'s source. Arrow functions and function expressions parse as an expression; method
 * shorthand (`handler(msg) { ... }` from an object literal) parses as the method of an object.
 */
export function parseFunction(fn: (...args: never[]) => unknown, kernel: string): ParsedFunction {
  const source = fn.toString();
  if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) {
    throw new DslError(
      ErrorCode.DslUnsupported,
      kernel,
      "the function is native or bound; pass the kernel's own function",
    );
  }
  // Wrapping shifts offsets by the prefix length; positions are mapped back by subtracting it.
  for (const [prefix, suffix] of [["(", ")"], ["({", "})"]] as const) {
    let program;
    try {
      program = parse(prefix + source + suffix, { ecmaVersion: "latest", sourceType: "module" });
    } catch {
      continue;
    }
    const statement = program.body[0];
    if (statement?.type !== "ExpressionStatement" || program.body.length !== 1) continue;
    let node: Expression | undefined = statement.expression as Expression;
    if (node.type === "ObjectExpression") {
      const prop = node.properties[0];
      node = prop?.type === "Property" ? prop.value as Expression : undefined;
    }
    if (!isFunctionNode(node)) continue;
    shift(node, prefix.length);
    if (node.async) {
      throw dslError(
        ErrorCode.DslUnsupported,
        kernel,
        source,
        node.start,
        "async functions are not supported",
      );
    }
    if (node.generator) {
      throw dslError(
        ErrorCode.DslUnsupported,
        kernel,
        source,
        node.start,
        "generators are not supported",
      );
    }
    return { source, node, params: node.params, kernel };
  }
  throw new DslError(
    ErrorCode.DslUnsupported,
    kernel,
    `could not parse the function's source as a function:\n${source.slice(0, 200)}`,
  );
}

/** Moves every node's start/end back by `by` (the wrapper's prefix). */
function shift(root: object, by: number): void {
  const seen = new Set<object>();
  const visit = (value: unknown): void => {
    if (typeof value !== "object" || value === null || seen.has(value)) return;
    seen.add(value);
    if (Array.isArray(value)) {
      for (const item of value) visit(item);
      return;
    }
    const node = value as { start?: unknown; end?: unknown; type?: unknown };
    if (typeof node.type === "string" && typeof node.start === "number") {
      node.start -= by;
      node.end = (node.end as number) - by;
    }
    for (const key of Object.keys(node)) {
      if (key !== "start" && key !== "end") visit((node as Record<string, unknown>)[key]);
    }
  };
  visit(root);
}
