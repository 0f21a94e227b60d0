/**
 * The `/pushrules` API ("Push Notifications" module): parsing and answers. The rules, their
 * storage in account data and their evaluation are services/pushRules.ts's.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, notFound } from "../errors.ts";
import type { PushCondition, PushRule, RuleKind, RuleSet } from "../services/pushRules.ts";
import { RULE_KINDS, defaultPushRules, pushRulesOf, updateRules } from "../services/pushRules.ts";

function parseKind(kind: string | undefined): RuleKind {
  if (!RULE_KINDS.includes(kind as RuleKind)) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown rule kind ${kind}`);
  return kind as RuleKind;
}

function checkScope(scope: string | undefined): void {
  if (scope !== "global") throw new MatrixError(400, "M_INVALID_PARAM", "Only the global scope exists");
}

function validateActions(actions: unknown): unknown[] {
  if (!Array.isArray(actions)) throw badJson("actions must be a list");
  for (const a of actions) {
    if (typeof a === "string") {
      if (!["notify", "dont_notify", "coalesce"].includes(a)) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown action ${a}`);
    } else if (!(a !== null && typeof a === "object" && !Array.isArray(a) && typeof (a as Record<string, unknown>).set_tweak === "string")) {
      throw new MatrixError(400, "M_INVALID_PARAM", "Invalid action");
    }
  }
  return actions;
}

function findRule(rules: RuleSet, kind: RuleKind, ruleId: string): PushRule {
  const r = rules[kind].find((x) => x.rule_id === ruleId);
  if (!r) throw notFound("Unknown push rule");
  return r;
}

/** `GET /_matrix/client/v3/pushrules/` */
export async function getPushRules(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return { global: await pushRulesOf(ctx.hs, me.userId) };
}

/** `GET /_matrix/client/v3/pushrules/global/` */
export async function getGlobalPushRules(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  return await pushRulesOf(ctx.hs, me.userId);
}

/**
 * `GET /_matrix/client/v3/pushrules/global/{kind}/`
 * The rules of one kind, a JSON list (Synapse serves this listing too; clients use it).
 */
export async function getPushRulesOfKind(ctx: RequestContext, p: Record<string, string>): Promise<unknown[]> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  const kind = parseKind(p.kind);
  return (await pushRulesOf(ctx.hs, me.userId))[kind];
}

/**
 * `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{attr}` (and `PUT`) for an attribute
 * other than `enabled` and `actions`: none exists, so the request is malformed (400, as Synapse
 * answers it), whether or not the rule exists.
 */
export async function unknownPushRuleAttr(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  checkScope(p.scope);
  parseKind(p.kind);
  throw new MatrixError(400, "M_UNRECOGNIZED", `Unknown push rule attribute ${p.attr}`);
}

/** `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}` */
export async function getPushRule(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  const kind = parseKind(p.kind);
  const rules = await pushRulesOf(ctx.hs, me.userId);
  return findRule(rules, kind, p.ruleId!) as unknown as Record<string, unknown>;
}

/** `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}` */
export async function putPushRule(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  const kind = parseKind(p.kind);
  const ruleId = p.ruleId!;
  if (ruleId.startsWith(".")) throw new MatrixError(400, "M_INVALID_PARAM", "Rule IDs starting with '.' are reserved");
  // pushrules.yaml: no slashes or backslashes in a rule ID. Room and sender rules are the
  // exception: their rule ID must be the room or user ID, and those may hold a "/" (historical
  // user IDs, opaque room IDs); percent-encoded in the path, it is unambiguous.
  const namedById = kind === "room" || kind === "sender";
  if ((!namedById && /[/\\]/.test(ruleId)) || ruleId === "") throw new MatrixError(400, "M_INVALID_PARAM", "Invalid rule ID");
  const body = await ctx.json();
  const actions = validateActions(body.actions);
  const rule: PushRule = { rule_id: ruleId, default: false, enabled: true, actions };
  if (kind === "override" || kind === "underride") {
    const conditions = body.conditions ?? [];
    if (!Array.isArray(conditions) || conditions.some((c) => c === null || typeof c !== "object" || typeof (c as Record<string, unknown>).kind !== "string")) {
      throw badJson("conditions must be a list of objects with a kind");
    }
    rule.conditions = conditions as PushCondition[];
  } else if (kind === "content") {
    if (typeof body.pattern !== "string") throw badJson("Content rules need a pattern");
    rule.pattern = body.pattern;
  } else if (kind === "room" && !ruleId.startsWith("!")) {
    throw new MatrixError(400, "M_INVALID_PARAM", "Room rule IDs are room IDs");
  } else if (kind === "sender" && !ruleId.startsWith("@")) {
    throw new MatrixError(400, "M_INVALID_PARAM", "Sender rule IDs are user IDs");
  }
  const before = ctx.query("before");
  const after = ctx.query("after");
  for (const rel of [before, after]) {
    if (rel?.startsWith(".")) throw new MatrixError(400, "M_UNKNOWN", "Cannot place a rule relative to a predefined rule");
  }
  await updateRules(ctx.hs, me.userId, (s) => {
    const list = s.user[kind];
    const existing = list.findIndex((r) => r.rule_id === ruleId);
    if (existing >= 0) {
      rule.enabled = list[existing]!.enabled;
      list.splice(existing, 1);
    }
    let index: number;
    if (before !== undefined) {
      index = list.findIndex((r) => r.rule_id === before);
      if (index < 0) throw new MatrixError(400, "M_UNKNOWN", `before/after rule not found: ${before}`);
    } else if (after !== undefined) {
      index = list.findIndex((r) => r.rule_id === after);
      if (index < 0) throw new MatrixError(400, "M_UNKNOWN", `before/after rule not found: ${after}`);
      index += 1;
    } else {
      // An update keeps its place; a new rule is the most important user rule of its kind.
      index = existing >= 0 ? existing : 0;
    }
    list.splice(index, 0, rule);
  });
  return {};
}

/** `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}` */
export async function deletePushRule(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  const kind = parseKind(p.kind);
  if (p.ruleId!.startsWith(".")) {
    const rules = await pushRulesOf(ctx.hs, me.userId);
    findRule(rules, kind, p.ruleId!);
    throw new MatrixError(400, "M_INVALID_PARAM", "Predefined rules cannot be deleted");
  }
  await updateRules(ctx.hs, me.userId, (s) => {
    const i = s.user[kind].findIndex((r) => r.rule_id === p.ruleId);
    if (i < 0) throw notFound("Unknown push rule");
    s.user[kind].splice(i, 1);
  });
  return {};
}

/** `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{attr}` (`enabled` or `actions`) */
export async function getPushRuleAttr(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  const kind = parseKind(p.kind);
  const rule = findRule(await pushRulesOf(ctx.hs, me.userId), kind, p.ruleId!);
  return p.attr === "enabled" ? { enabled: rule.enabled } : { actions: rule.actions };
}

/** `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{attr}` (`enabled` or `actions`) */
export async function putPushRuleAttr(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  checkScope(p.scope);
  const kind = parseKind(p.kind);
  const body = await ctx.json();
  const attr = p.attr as "enabled" | "actions";
  let value: boolean | unknown[];
  if (attr === "enabled") {
    if (typeof body.enabled !== "boolean") throw badJson("enabled must be a boolean");
    value = body.enabled;
  } else {
    value = validateActions(body.actions);
  }
  const ruleId = p.ruleId!;
  await updateRules(ctx.hs, me.userId, (s) => {
    if (ruleId.startsWith(".")) {
      if (!defaultPushRules(me.userId)[kind].some((r) => r.rule_id === ruleId)) throw notFound("Unknown push rule");
      s.defaults[ruleId] = { ...s.defaults[ruleId], [attr]: value };
    } else {
      const r = s.user[kind].find((x) => x.rule_id === ruleId);
      if (!r) throw notFound("Unknown push rule");
      if (attr === "enabled") r.enabled = value as boolean;
      else r.actions = value as unknown[];
    }
  });
  return {};
}
