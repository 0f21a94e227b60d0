import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { room, startWithAliceAndBob } from "../roomserver/harness.ts";
import type { TestServer, TestUser } from "../roomserver/harness.ts";
import { defaultPushRules, evaluatePushRules, globMatch, mergeRules } from "../../../src/homeserver/services/pushRules.ts";
import type { PushContext } from "../../../src/homeserver/services/pushRules.ts";

const ME = "@me:hs.test";
const ctx = (over: Partial<PushContext> = {}): PushContext => ({ userId: ME, memberCount: 3, senderPowerLevel: 0, displayName: "Me", ...over });
const msg = (content: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: "m.room.message", sender: "@other:hs.test", room_id: "!r:hs.test", content: { msgtype: "m.text", ...content }, ...extra,
});
const rules = defaultPushRules(ME);

describe("push rule evaluation (pure)", () => {
  it.each([
    ["lunc?*", "Lunch plans", false, true],
    ["lunc?*", "LUNCH", false, true],
    ["lunc?*", " lunch", false, false],
    ["lunc?*", "lunc", false, false],
    ["ex*ple", "An example event.", true, true],
    ["ex*ple", "exple", true, true],
    ["ex*ple", "An exciting triple-whammy", true, true],
    ["cake", "cakes are nice", true, false],
    ["cake", "I like cake!", true, true],
  ])("glob %s vs %s (body=%s) → %s", (pattern, value, body, expected) => {
    expect(globMatch(pattern, value, body)).toBe(expected);
  });

  it("a plain message in a group room notifies without highlight", () => {
    expect(evaluatePushRules(rules, msg({ body: "hi" }), ctx())).toMatchObject({ ruleId: ".m.rule.message", notify: true, highlight: false });
  });
  it("one-to-one rooms use room_one_to_one with sound", () => {
    expect(evaluatePushRules(rules, msg({ body: "hi" }), ctx({ memberCount: 2 }))?.ruleId).toBe(".m.rule.room_one_to_one");
  });
  it("user mentions highlight; notices, edits and reactions do not notify", () => {
    expect(evaluatePushRules(rules, msg({ body: "x", "m.mentions": { user_ids: [ME] } }), ctx())).toMatchObject({ ruleId: ".m.rule.is_user_mention", highlight: true });
    expect(evaluatePushRules(rules, msg({ msgtype: "m.notice", body: "bot" }), ctx())?.notify).toBe(false);
    expect(evaluatePushRules(rules, msg({ body: "* x", "m.relates_to": { rel_type: "m.replace", event_id: "$e" } }), ctx())?.ruleId).toBe(".m.rule.suppress_edits");
    expect(evaluatePushRules(rules, { type: "m.reaction", sender: "@o:hs.test", content: {} }, ctx())?.notify).toBe(false);
  });
  it("room mentions need the sender's notification power", () => {
    const e = msg({ body: "@room", "m.mentions": { room: true } });
    expect(evaluatePushRules(rules, e, ctx({ senderPowerLevel: 50 }))?.ruleId).toBe(".m.rule.is_room_mention");
    expect(evaluatePushRules(rules, e, ctx({ senderPowerLevel: 0 }))?.ruleId).toBe(".m.rule.message");
    expect(evaluatePushRules(rules, e, ctx({ senderPowerLevel: 10, powerLevels: { notifications: { room: 10 } } }))?.ruleId).toBe(".m.rule.is_room_mention");
  });
  it("invites for me notify; own events never do", () => {
    const invite = { type: "m.room.member", state_key: ME, sender: "@o:hs.test", content: { membership: "invite" } };
    expect(evaluatePushRules(rules, invite, ctx())?.ruleId).toBe(".m.rule.invite_for_me");
    expect(evaluatePushRules(rules, { ...msg({ body: "x" }), sender: ME }, ctx())).toBeUndefined();
  });
  it("conditions: room_member_count operators, contains_display_name, event_property_is, unknown kinds", () => {
    const rule = (conditions: unknown[]) => mergeRules(ME, {
      user: { override: [{ rule_id: "r", default: false, enabled: true, actions: ["notify"], conditions: conditions as never }], content: [], room: [], sender: [], underride: [] },
      defaults: { ".m.rule.message": { enabled: false } },
    });
    const hit = (conditions: unknown[], e = msg({ body: "hello Me!" }), c = ctx()) => evaluatePushRules(rule(conditions), e, c)?.ruleId === "r";
    expect(hit([{ kind: "room_member_count", is: ">2" }])).toBe(true);
    expect(hit([{ kind: "room_member_count", is: "<=2" }])).toBe(false);
    expect(hit([{ kind: "room_member_count", is: "3" }])).toBe(true);
    expect(hit([{ kind: "contains_display_name" }])).toBe(true);
    expect(hit([{ kind: "contains_display_name" }], msg({ body: "Meh" }))).toBe(false);
    expect(hit([{ kind: "event_property_is", key: "content.msgtype", value: "m.text" }])).toBe(true);
    expect(hit([{ kind: "event_property_is", key: "content.n", value: 1 }], msg({ n: "1" }))).toBe(false);
    expect(hit([{ kind: "event_property_contains", key: "content.list", value: 2 }], msg({ list: [1, 2] }))).toBe(true);
    expect(hit([{ kind: "event_match", key: "content.missing", pattern: "*" }])).toBe(false);
    expect(hit([{ kind: "org.unknown" }])).toBe(false);
    expect(hit([{ kind: "event_match", key: "content.m\\.dotted", pattern: "yes" }], msg({ "m.dotted": "yes" }))).toBe(true);
  });
  it("the master rule, when enabled, silences everything", () => {
    const r = mergeRules(ME, { user: { override: [], content: [], room: [], sender: [], underride: [] }, defaults: { ".m.rule.master": { enabled: true } } });
    expect(evaluatePushRules(r, msg({ body: "x", "m.mentions": { user_ids: [ME] } }), ctx())).toMatchObject({ ruleId: ".m.rule.master", notify: false });
  });
});

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  ({ t, alice, bob } = await startWithAliceAndBob());
});
afterEach(async () => t.close());

describe("push rules API", () => {
  it("serves the spec's predefined rules", async () => {
    const g = (await t.ok("GET", "/pushrules/", alice)).global;
    expect(g.override.map((r: { rule_id: string }) => r.rule_id)).toEqual([
      ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event", ".m.rule.is_user_mention",
      ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits",
    ]);
    expect(g.underride.map((r: { rule_id: string }) => r.rule_id)).toEqual([
      ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted",
    ]);
    expect(g.override[2].conditions[2].pattern).toBe(alice.userId);
    expect(g.content).toEqual([]);
    expect((await t.ok("GET", "/pushrules/global/", alice)).override).toHaveLength(10);
  });

  it("adds, orders, reads, toggles and deletes user rules", async () => {
    const base = "/pushrules/global";
    await t.ok("PUT", `${base}/content/cake`, alice, { pattern: "cake*", actions: ["notify"] });
    await t.ok("PUT", `${base}/override/first`, alice, { conditions: [], actions: [] });
    await t.ok("PUT", `${base}/override/second?after=first`, alice, { conditions: [], actions: ["notify"] });
    await t.ok("PUT", `${base}/override/zero?before=first`, alice, { conditions: [], actions: [] });
    const g = (await t.ok("GET", "/pushrules/", alice)).global;
    expect(g.override.slice(0, 4).map((r: { rule_id: string }) => r.rule_id)).toEqual([".m.rule.master", "zero", "first", "second"]);
    expect(await t.ok("GET", `${base}/content/cake`, alice)).toEqual({ rule_id: "cake", default: false, enabled: true, actions: ["notify"], pattern: "cake*" });
    await t.ok("PUT", `${base}/content/cake/enabled`, alice, { enabled: false });
    expect(await t.ok("GET", `${base}/content/cake/enabled`, alice)).toEqual({ enabled: false });
    await t.ok("PUT", `${base}/content/cake/actions`, alice, { actions: ["notify", { set_tweak: "highlight" }] });
    expect(await t.ok("GET", `${base}/content/cake/actions`, alice)).toEqual({ actions: ["notify", { set_tweak: "highlight" }] });
    await t.ok("PUT", `${base}/override/.m.rule.master/enabled`, alice, { enabled: true });
    expect(await t.ok("GET", `${base}/override/.m.rule.master/enabled`, alice)).toEqual({ enabled: true });
    await t.ok("DELETE", `${base}/content/cake`, alice);
    expect((await t.req("GET", `${base}/content/cake`, alice)).status).toBe(404);
    // Bob's rules are his own.
    expect((await t.ok("GET", "/pushrules/", bob)).global.override).toHaveLength(10);
    // Changes reach sync as m.push_rules account data.
    const s = await t.ok("GET", "/sync?set_presence=offline", alice);
    const pr = s.account_data.events.find((e: { type: string }) => e.type === "m.push_rules");
    expect(pr.content.global.override[0]).toMatchObject({ rule_id: ".m.rule.master", enabled: true });
  });

  it("errors per spec", async () => {
    const base = "/pushrules/global";
    expect((await t.req("PUT", `${base}/override/.mine`, alice, { actions: [] })).status).toBe(400);
    expect((await t.req("PUT", `${base}/override/x?before=nope`, alice, { conditions: [], actions: [] })).status).toBe(400);
    expect((await t.req("PUT", `${base}/content/x`, alice, { actions: [] })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("PUT", `${base}/bogus/x`, alice, { actions: [] })).status).toBe(400);
    expect((await t.req("GET", `${base}/override/nope`, alice)).body.errcode).toBe("M_NOT_FOUND");
    expect((await t.req("DELETE", `${base}/override/nope`, alice)).status).toBe(404);
    expect((await t.req("DELETE", `${base}/override/.m.rule.master`, alice)).status).toBe(400);
    expect((await t.req("PUT", `${base}/override/nope/enabled`, alice, { enabled: true })).status).toBe(404);
    expect((await t.req("PUT", `${base}/override/.m.rule.master/enabled`, alice, { enabled: "yes" })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("GET", "/pushrules/")).body.errcode).toBe("M_MISSING_TOKEN");
  });
});

describe("pushers and notifications", () => {
  it("stores, lists and deletes pushers; validates", async () => {
    const p = { kind: "http", app_id: "org.example.app", pushkey: "k1", app_display_name: "App", device_display_name: "Phone", lang: "en", data: { url: "https://push.example/_matrix/push/v1/notify" } };
    await t.ok("POST", "/pushers/set", alice, p);
    expect((await t.ok("GET", "/pushers", alice)).pushers).toEqual([p]);
    expect((await t.ok("GET", "/pushers", bob)).pushers).toEqual([]);
    // Without `append`, the same app_id+pushkey for another user replaces Alice's.
    await t.ok("POST", "/pushers/set", bob, p);
    expect((await t.ok("GET", "/pushers", alice)).pushers).toEqual([]);
    await t.ok("POST", "/pushers/set", bob, { ...p, kind: null });
    expect((await t.ok("GET", "/pushers", bob)).pushers).toEqual([]);
    const missing = await t.req("POST", "/pushers/set", alice, { kind: "http", app_id: "a", pushkey: "k" });
    expect(missing.body.errcode).toBe("M_MISSING_PARAM");
    expect((await t.req("POST", "/pushers/set", alice, { ...p, data: {} })).status).toBe(400);
  });

  it("lists notifying events, highlight-only, and read state", async () => {
    const roomId = await t.createRoom(alice, { preset: "private_chat" });
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    const e1 = await t.send(bob, roomId, "plain");
    await t.send(bob, roomId, { msgtype: "m.text", body: "hey", "m.mentions": { user_ids: [alice.userId] } });
    await t.send(bob, roomId, { msgtype: "m.notice", body: "bot" });
    const all = await t.ok("GET", "/notifications", alice);
    expect(all.notifications.map((n: { event: { content: { body: string } } }) => n.event.content.body)).toEqual(["hey", "plain"]);
    expect(all.notifications[0]).toMatchObject({ room_id: roomId, read: false, actions: expect.arrayContaining(["notify"]) });
    const hl = await t.ok("GET", "/notifications?only=highlight", alice);
    expect(hl.notifications.map((n: { event: { content: { body: string } } }) => n.event.content.body)).toEqual(["hey"]);
    await t.ok("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(e1)}`), alice, {});
    const after = await t.ok("GET", "/notifications", alice);
    expect(after.notifications.map((n: { read: boolean }) => n.read)).toEqual([false, true]);
    const page = await t.ok("GET", "/notifications?limit=1", alice);
    expect(page.notifications).toHaveLength(1);
    const next = await t.ok("GET", `/notifications?limit=1&from=${page.next_token}`, alice);
    expect(next.notifications[0].event.content.body).toBe("plain");
    expect((await t.req("GET", "/notifications?from=zz", alice)).status).toBe(400);
  });
});
