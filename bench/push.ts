/**
 * Push rule evaluation with a pathological glob: a user content rule `*a*a*a*b` against a
 * 10,000-character message body that almost matches (all `a`s, no `b`), evaluated through the whole
 * rule set (`evaluatePushRules`), as a ratio to a plain substring search over the same body in the
 * same run (for the pattern's last literal, `b`: one pass over the body, the least any matcher must
 * do). The bar: under 10 ms per evaluation (a backtracking RegExp does not finish).
 */
import { defaultPushRules, evaluatePushRules, globMatch } from "../src/homeserver/services/pushRules.ts";
import type { Bench, Figure } from "./harness.ts";
import { rate, versus } from "./harness.ts";

const ME = "@me:bench.local";

export const pushBench: Bench = async () => {
  const rules = defaultPushRules(ME);
  rules.content.unshift({ rule_id: "pathological", default: false, enabled: true, pattern: "*a*a*a*b", actions: ["notify"] });
  const body = "a".repeat(10_000);
  const event = { type: "m.room.message", sender: "@other:bench.local", room_id: "!r:bench.local", content: { msgtype: "m.text", body } };
  const ctx = { userId: ME, memberCount: 3, senderPowerLevel: 0, displayName: "Me" };
  // The outcome must be right for the figure to mean anything: no `b`, so the content rule fails
  // and `.m.rule.message` decides.
  const outcome = evaluatePushRules(rules, event, ctx);
  if (outcome?.ruleId !== ".m.rule.message") throw new Error(`unexpected outcome ${JSON.stringify(outcome)}`);
  if (globMatch("*a*a*a*b", body + "b", true) !== true) throw new Error("the glob must match once a b is there");

  let sink = 0;
  const substring = await rate(() => (sink += body.indexOf("b")), 1000);
  const glob = await rate(() => (sink += globMatch("*a*a*a*b", body, true) ? 1 : 0), 1000);
  const evaluation = await rate(() => (sink += evaluatePushRules(rules, event, ctx) ? 1 : 0), 1000);
  if (sink < 0) console.log(sink);
  const ms = (perSecond: number): number => 1000 / perSecond;
  const figures: Figure[] = [
    versus("push rules with glob *a*a*a*b, 10,000-char body (must be < 10 ms)", ms(evaluation), "ms/evaluation", "substring search for `b` (indexOf) over the same body", ms(substring), "ms/search"),
    versus("glob *a*a*a*b alone, 10,000-char body", ms(glob), "ms/match", "substring search for `b` (indexOf) over the same body", ms(substring), "ms/search"),
  ];
  return figures;
};
