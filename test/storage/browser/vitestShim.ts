/**
 * Just enough of vitest's API (describe / it / it.each / afterEach / expect) to run the storage
 * conformance suite inside a browser page, where vitest itself does not run. The bundler aliases
 * "vitest" to this file; `expect` is vitest's own (@vitest/expect on chai), so the matchers and
 * their messages are the same as in Node.
 */
import { chai, JestAsymmetricMatchers, JestChaiExpect, JestExtend } from "@vitest/expect";
import type { expect as VitestExpect } from "vitest";

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

/** vitest's expect, on chai. */
export const expect = ((value: unknown, message?: string) => chai.expect(value, message)) as unknown as typeof VitestExpect;

type Fn = () => unknown;
interface Case {
  name: string;
  fn: Fn;
  /** The afterEach lists of every enclosing describe, innermost first (filled in later too). */
  hookLists: Fn[][];
}
const cases: Case[] = [];
const path: string[] = [];
const hooks: Fn[][] = [[]];

/** Groups cases; names are joined with " > " as in vitest's reporter. */
export function describe(name: string, body: () => void): void {
  path.push(name);
  hooks.push([]);
  try {
    body();
  } finally {
    path.pop();
    hooks.pop();
  }
}

const format = (name: string, args: unknown[]): string => {
  let i = 0;
  return name.replace(/%[sdi]/g, () => String(args[i++]));
};

/** Registers a case. */
export const it = Object.assign(
  (name: string, fn: Fn): void => {
    cases.push({ name: [...path, name].join(" > "), fn, hookLists: [...hooks].reverse() });
  },
  {
    each:
      <T extends unknown[]>(table: readonly T[]) =>
      (name: string, fn: (...args: T) => unknown): void => {
        for (const row of table) it(format(name, row), () => fn(...row));
      },
  },
);

/** Registers a hook run after each case of the enclosing describe. */
export function afterEach(fn: Fn): void {
  hooks[hooks.length - 1].push(fn);
}

/** Unused in the browser; present because the suite imports it. */
export function afterAll(_fn: Fn): void {}

/** One case's outcome. */
export interface CaseResult {
  name: string;
  ok: boolean;
  error?: string;
  ms: number;
}

/** Runs every registered case in order. */
export async function run(): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  for (const c of cases) {
    const start = performance.now();
    let error: string | undefined;
    try {
      await c.fn();
    } catch (e) {
      error = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e);
    }
    for (const h of c.hookLists.flat()) {
      try {
        await h();
      } catch (e) {
        error ??= `afterEach: ${String(e)}`;
      }
    }
    results.push({ name: c.name, ok: error === undefined, error, ms: performance.now() - start });
  }
  return results;
}
