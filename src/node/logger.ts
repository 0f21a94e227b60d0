/** A console logger for the runner: log lines go to stderr, so stdout carries only the listening lines. */
import { inspect } from "node:util";
import type { Logger } from "../homeserver/context.ts";
import type { LogLevel } from "./config.ts";

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger that prints lines at `level` and above to stderr. */
export function consoleLogger(level: LogLevel = "info", write: (line: string) => void = (l) => process.stderr.write(l + "\n")): Logger {
  const at = (l: LogLevel) => (...args: unknown[]): void => {
    if (ORDER[l] < ORDER[level]) return;
    const text = args.map((a) => (typeof a === "string" ? a : inspect(a, { depth: 4, breakLength: Infinity }))).join(" ");
    write(`${new Date().toISOString()} [${l}] ${text}`);
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
